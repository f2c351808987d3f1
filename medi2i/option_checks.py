"""Checks of options many methods share, for their pydantic validators.

Each returns the value when it is valid and raises ``ValueError`` otherwise, which a
method's options turn into a one-line :class:`medi2i.OptionsError`::

    @field_validator("spacing")
    @classmethod
    def _positive_spacing(cls, value):
        return check_spacing(value)
"""

from __future__ import annotations


def check_spacing(
    spacing: tuple[float, float, float] | None,
) -> tuple[float, float, float] | None:
    """``spacing`` (mm per axis, or ``None`` for each volume's own) if it is positive.

    Example:
        >>> check_spacing((1.0, 1.0, 2.5))
        (1.0, 1.0, 2.5)
    """
    if spacing is not None and min(spacing) <= 0.0:
        raise ValueError(f"spacing {spacing} must be positive in every axis (mm)")
    return spacing


def check_betas(betas: tuple[float, float]) -> tuple[float, float]:
    """Adam's moment decay rates ``betas`` if each lies in [0, 1).

    Example:
        >>> check_betas((0.5, 0.999))
        (0.5, 0.999)
    """
    if not all(0.0 <= beta < 1.0 for beta in betas):
        raise ValueError(f"betas {betas} must each lie in [0, 1)")
    return betas
