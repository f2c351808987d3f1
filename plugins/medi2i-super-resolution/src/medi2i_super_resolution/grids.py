"""The finer grid a super-resolution method delivers, and how it samples the input.

The output grid covers the input's field of view with more voxels along some axes. Its
axes are the input's, so every output voxel centre lies at input voxel index
``offset + step · j`` along each axis (``j`` the output index): resampling is separable.
Two conventions fix where the new voxels sit:

* ``"edges"`` (default, :meth:`medi2i.Grid.scaled`): the outer voxel *edges* stay where
  they were. A thick slice covers its whole slab, so its thin slices fill that slab:
  ×4 turns slice ``k`` into slices centred at ``k - 0.375, ..., k + 0.375``.
* ``"centres"``: the first and last voxel *centres* stay where they were (as MONAI's
  ``Spacing`` and most resampling tools keep the origin). A volume made by keeping
  every ``f``-th slice of a thin-slice volume with ``n`` slices, ``n - 1`` a multiple
  of ``f`` (as ``medi2i.synth.thick_slices`` and benchmark Q2 do), comes back exactly on
  the thin-slice grid.

Example:
    >>> import numpy as np
    >>> from medi2i import Grid
    >>> fine = finer_grid(Grid((4, 4, 10), np.eye(4)), scale=(1, 1, 4), align="centres")
    >>> fine.grid.shape, fine.steps
    ((4, 4, 37), (1.0, 1.0, 0.25))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import model_validator

from medi2i import Grid, Options, OptionsError

Alignment = Literal["edges", "centres"]
Triple = tuple[float, float, float]


class GridOptions(Options):
    """Where a super-resolution method puts its output: give ``target_spacing`` or ``scale``.

    Attributes:
        target_spacing: Output voxel size along each array axis, in mm. The number of
            voxels is rounded so that the field of view is kept exactly, so the spacing
            is the nearest one that fits (exact when the input spacing is a multiple of
            it). An input already at this spacing is left on its grid, so a model can be
            applied to volumes that were interpolated beforehand. Set to ``None`` when
            ``scale`` is given.
        scale: Output voxels per input voxel along each array axis (e.g. ``(1, 1, 4)``),
            instead of ``target_spacing``.
        align: ``"edges"`` keeps the outer voxel edges (the field of view, as
            :meth:`medi2i.Grid.scaled`); ``"centres"`` keeps the first and last voxel
            centres. See :mod:`medi2i_super_resolution.grids`.
    """

    target_spacing: tuple[float, float, float] | None = (1.0, 1.0, 1.0)
    scale: tuple[float, float, float] | None = None
    align: Alignment = "edges"

    @model_validator(mode="before")
    @classmethod
    def _scale_replaces_the_default_spacing(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("scale") is not None:
            return {"target_spacing": None, **data}
        return data

    @model_validator(mode="after")
    def _one_rule(self) -> GridOptions:
        if (self.target_spacing is None) == (self.scale is None):
            raise ValueError("give exactly one of target_spacing (mm) and scale")
        for name in ("target_spacing", "scale"):
            value = getattr(self, name)
            if value is not None and min(value) <= 0:
                raise ValueError(f"{name} must be positive along every axis, got {value}")
        return self


@dataclass(frozen=True)
class FinerGrid:
    """An output grid and where its voxel centres fall in the input.

    Attributes:
        grid: The output grid.
        steps: Input voxels between neighbouring output voxels, per axis.
        offsets: Input voxel index of the first output voxel centre, per axis.
    """

    grid: Grid
    steps: Triple
    offsets: Triple

    def is_identity(self, shape: tuple[int, int, int]) -> bool:
        """Whether the output grid is the input grid of ``shape`` itself."""
        return self.grid.shape == shape and self.steps == (1.0, 1.0, 1.0) and not any(self.offsets)


def output_grid_for(grid: Grid, options: GridOptions) -> FinerGrid:
    """The output grid of ``options`` for an input on ``grid``."""
    return finer_grid(
        grid, target_spacing=options.target_spacing, scale=options.scale, align=options.align
    )


def finer_grid(
    grid: Grid,
    *,
    target_spacing: Triple | None = None,
    scale: Triple | None = None,
    align: Alignment = "edges",
) -> FinerGrid:
    """The grid covering ``grid``'s field of view at ``target_spacing`` (mm) or ``scale``.

    Raises:
        OptionsError: Neither or both of ``target_spacing`` and ``scale`` are given.
    """
    if (target_spacing is None) == (scale is None):
        raise OptionsError("give exactly one of target_spacing (mm) and scale")
    if scale is None:
        assert target_spacing is not None
        scale = (
            grid.spacing[0] / target_spacing[0],
            grid.spacing[1] / target_spacing[1],
            grid.spacing[2] / target_spacing[2],
        )
    axes = [_axis(n, f, align) for n, f in zip(grid.shape, scale, strict=True)]
    counts = tuple(count for count, _, _ in axes)
    steps = np.array([step for _, step, _ in axes])
    offsets = np.array([offset for _, _, offset in axes])
    affine = grid.affine.copy()
    affine[:3, :3] = grid.affine[:3, :3] * steps[None, :]
    affine[:3, 3] = grid.affine[:3, 3] + grid.affine[:3, :3] @ offsets
    return FinerGrid(
        grid=Grid((counts[0], counts[1], counts[2]), affine),
        steps=(float(steps[0]), float(steps[1]), float(steps[2])),
        offsets=(float(offsets[0]), float(offsets[1]), float(offsets[2])),
    )


def _axis(count: int, factor: float, align: Alignment) -> tuple[int, float, float]:
    """``(output voxels, step, offset)`` along one axis of ``count`` input voxels."""
    if align == "centres" and count > 1:
        # whole numbers of output voxels between the first and the last centre
        intervals = max(1, round((count - 1) * factor))
        return intervals + 1, (count - 1) / intervals, 0.0
    if align == "centres":
        return 1, 1.0, 0.0
    # whole numbers of output voxels across the field of view; edges stay put
    voxels = max(1, round(count * factor))
    step = count / voxels
    return voxels, step, -0.5 + 0.5 * step
