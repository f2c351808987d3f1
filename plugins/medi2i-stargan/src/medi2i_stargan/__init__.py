"""medi2i-stargan: StarGAN, translation among several domains with one generator.

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
    """Register :class:`~medi2i_stargan.stargan.StarGAN` (``stargan``)."""
    from medi2i_stargan.stargan import StarGAN

    register(StarGAN)
