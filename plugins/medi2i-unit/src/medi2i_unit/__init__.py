"""medi2i-unit: UNIT and MUNIT, unpaired two-way translation in 3D.

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
    """Register :class:`~medi2i_unit.unit.Unit` (``unit``) and
    :class:`~medi2i_unit.munit.Munit` (``munit``)."""
    from medi2i_unit.munit import Munit
    from medi2i_unit.unit import Unit

    register(Unit)
    register(Munit)
