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
    """Register :class:`~medi2i_cyclegan.cyclegan.CycleGAN` (``cyclegan``) and
    :class:`~medi2i_cyclegan.discogan.DiscoGAN` (``discogan``)."""
    from medi2i_cyclegan.cyclegan import CycleGAN
    from medi2i_cyclegan.discogan import DiscoGAN

    register(CycleGAN)
    register(DiscoGAN)
