"""Voxel grids: where a volume's voxels lie in the world.

A grid is a spatial shape and a 4x4 affine that maps voxel indices ``(i, j, k, 1)``
(voxel centres) to world positions in RAS+ millimetres, as in NIfTI and MONAI's
``MetaTensor``. This module holds :class:`Grid` and :class:`SpatialPlan`, the working
grid a method asks the core for.

Example:
    >>> import numpy as np
    >>> grid = Grid((4, 4, 2), np.diag([1.0, 1.0, 3.0, 1.0]))
    >>> grid.scaled((1, 1, 3)).shape
    (4, 4, 6)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch


class SpatialPlan(BaseModel):
    """The working grid a method wants; the core resamples to it and back.

    Attributes:
        orientation: Axis codes such as ``"RAS"`` to reorient to, or ``None`` to keep
            the stored orientation.
        spacing: Voxel spacing in mm to resample to (linear), or ``None`` to keep it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    orientation: str | None = None
    spacing: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Grid:
    """A voxel grid: spatial shape and the voxel-to-world (RAS, mm) affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, in mm."""
        sizes = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(sizes[0]), float(sizes[1]), float(sizes[2]))

    @classmethod
    def of(cls, image: torch.Tensor) -> Grid:
        """The grid of a channel-first ``MetaTensor`` (identity affine for a plain tensor)."""
        affine = getattr(image, "affine", None)
        matrix = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
        shape = tuple(int(s) for s in image.shape[-3:])
        return cls((shape[0], shape[1], shape[2]), matrix)

    def same_as(self, other: Grid, *, atol: float = 1e-6) -> bool:
        """Whether both grids have the same shape and (to ``atol`` mm) the same affine."""
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=atol))

    def scaled(self, factors: tuple[float, float, float]) -> Grid:
        """The grid covering the same field of view with ``factors`` times more voxels.

        Voxel centres move so that the outer voxel edges stay where they were.
        """
        scale = np.asarray(factors, dtype=np.float64)
        shape = tuple(round(n * f) for n, f in zip(self.shape, factors, strict=True))
        affine = self.affine.copy()
        affine[:3, :3] = self.affine[:3, :3] / scale
        # corner of voxel 0 is at -0.5 old voxels; the new first centre sits half a new voxel in
        shift = -0.5 + 0.5 / scale
        affine[:3, 3] = self.affine[:3, 3] + self.affine[:3, :3] @ shift
        return Grid((shape[0], shape[1], shape[2]), affine)
