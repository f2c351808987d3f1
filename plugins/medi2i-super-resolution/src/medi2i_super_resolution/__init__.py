"""medi2i-super-resolution: volumes onto finer grids.

Methods: ``interpolation`` (linear or cubic B-spline), ``srcnn`` (SRCNN in 3D, trained
on pairs), ``edsr`` (EDSR in 3D, upsampling the slice axis inside the network) and
``smore`` (self-supervised through-plane super-resolution, fitted on the input) and
``srgan`` (SRGAN in 3D: an SRResNet generator against a discriminator). This
module holds the plugin's hook implementation; medi2i imports it on every command, so
the method modules (scipy, torch) are imported inside the hook only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import medi2i

if TYPE_CHECKING:
    from medi2i import MethodClass

MEDI2I_PLUGIN_API = "2.0"
__all__ = ["register_methods"]


@medi2i.hookimpl
def register_methods(register: Callable[[MethodClass], None]) -> None:
    """Register :class:`~medi2i_super_resolution.interpolation.Interpolation`,
    :class:`~medi2i_super_resolution.srcnn.Srcnn`,
    :class:`~medi2i_super_resolution.edsr.Edsr`,
    :class:`~medi2i_super_resolution.smore.Smore` and
    :class:`~medi2i_super_resolution.srgan.Srgan`."""
    from medi2i_super_resolution.edsr import Edsr
    from medi2i_super_resolution.interpolation import Interpolation
    from medi2i_super_resolution.smore import Smore
    from medi2i_super_resolution.srcnn import Srcnn
    from medi2i_super_resolution.srgan import Srgan

    register(Interpolation)
    register(Srcnn)
    register(Edsr)
    register(Smore)
    register(Srgan)
