"""medi2i-pix2pix: Pix2Pix for MR to synthetic CT, in 3D and 2.5D.

This module holds the plugin's hook implementations. medi2i imports it on every command
(``medi2i --help`` included), so it imports nothing heavy at its top level: the method
module, which needs torch and MONAI, is imported inside the hook.
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
    """Register :class:`~medi2i_pix2pix.method.Pix2Pix` (``pix2pix``) and
    :class:`~medi2i_pix2pix.method.Pix2Pix25D` (``pix2pix-2.5d``)."""
    from medi2i_pix2pix.method import Pix2Pix, Pix2Pix25D

    register(Pix2Pix)
    register(Pix2Pix25D)
