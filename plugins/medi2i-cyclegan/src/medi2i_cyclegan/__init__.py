"""medi2i-cyclegan: CycleGAN and DiscoGAN, two-way translation learned from unpaired data.

This module holds the plugin's hook implementations. medi2i imports it on every command
(``medi2i --help`` included), so it imports nothing heavy at its top level: the method
modules, which need torch and MONAI, are imported inside the hook.
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
    """Register :class:`~medi2i_cyclegan.cyclegan.CycleGAN` (``cyclegan``),
    :class:`~medi2i_cyclegan.discogan.DiscoGAN` (``discogan``) and their 2.5D variants
    (``cyclegan-2.5d``, ``discogan-2.5d``)."""
    from medi2i_cyclegan.cyclegan import CycleGAN
    from medi2i_cyclegan.discogan import DiscoGAN
    from medi2i_cyclegan.slice_methods import CycleGAN25D, DiscoGAN25D

    register(CycleGAN)
    register(DiscoGAN)
    register(CycleGAN25D)
    register(DiscoGAN25D)
