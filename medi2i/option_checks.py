"""Checks of options many methods share, for their pydantic validators.

Each returns the value when it is valid and raises ``ValueError`` otherwise, which a
method's options turn into a one-line :class:`medi2i.OptionsError`::

    @field_validator("spacing")
    @classmethod
    def _positive_spacing(cls, value):
        return check_spacing(value)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable


def check_spacing(
    spacing: tuple[float, float, float] | None,
) -> tuple[float, float, float] | None:
    """``spacing`` (mm per axis, or ``None`` for each volume's own) if it is three
    positive, finite numbers.

    Raises:
        ValueError: It is not (a NaN, infinite or zero spacing, or not three values).

    Example:
        >>> check_spacing((1.0, 1.0, 2.5))
        (1.0, 1.0, 2.5)
    """
    if spacing is not None and not _numbers(spacing, 3, lambda v: 0.0 < v < math.inf):
        raise ValueError(
            f"spacing {spacing!r} must be three positive, finite numbers, one per axis (mm)"
        )
    return spacing


def check_betas(betas: tuple[float, float]) -> tuple[float, float]:
    """Adam's moment decay rates ``betas`` if they are two numbers, each in [0, 1).

    Raises:
        ValueError: They are not.

    Example:
        >>> check_betas((0.5, 0.999))
        (0.5, 0.999)
    """
    if not _numbers(betas, 2, lambda v: 0.0 <= v < 1.0):
        raise ValueError(f"betas {betas!r} must be two numbers, each in [0, 1)")
    return betas


def _numbers(values: object, count: int, valid: Callable[[float], bool]) -> bool:
    """Whether ``values`` is ``count`` real numbers, each ``valid`` (NaN never is)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        return False
    items = list(values)
    return (
        len(items) == count
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in items)
        and all(valid(float(v)) for v in items)
    )
