"""Voxel grids: where a volume's voxels lie in the world.

A grid is a spatial shape and a 4x4 affine that maps voxel indices ``(i, j, k, 1)``
(voxel centres) to world positions in RAS+ millimetres, as in NIfTI and MONAI's
``MetaTensor``. This module holds:

- :class:`Grid`, with the one test of whether two volumes lie on the same grid
  (:meth:`Grid.same_as`: every point of the field of view within
  :data:`GRID_TOLERANCE_MM`), and :func:`require_same_grid`,
  the one check built on it that stops with a message (evaluation, workflows, the
  benchmarks);
- :class:`SpatialPlan`, the working grid a method asks the core for;
- :func:`lps_to_ras` and :func:`ras_to_lps`, between medi2i's RAS+ world and the LPS+
  world of DICOM patient coordinates and ITK images.

Example:
    >>> import numpy as np
    >>> grid = Grid((4, 4, 2), np.diag([1.0, 1.0, 3.0, 1.0]))
    >>> grid.scaled((1, 1, 3)).shape
    (4, 4, 6)
    >>> grid.same_as(Grid((4, 4, 2), np.diag([1.0, 1.0, 3.0005, 1.0])))
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from medi2i.errors import GeometryError

if TYPE_CHECKING:
    import torch


GRID_TOLERANCE_MM = 1e-3
"""How far apart (mm) two grids may place the same point of the field of view for them
to count as the same (:meth:`Grid.world_gap`).

One micrometre, absolute (no relative part): far below any voxel size, and above the
rounding of affines that files store as float32 (NIfTI) or as decimal strings (DICOM).
"""


def lps_to_ras(affine: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The same map or position with world coordinates LPS+ (DICOM, ITK) made RAS+.

    LPS and RAS differ by the sign of x (left vs right) and y (posterior vs anterior),
    so this negates the first two rows; it is its own inverse (see :func:`ras_to_lps`).

    Args:
        affine: A 4x4 voxel-to-world affine, a 3x3 matrix of axis directions (columns),
            or one world position of 3 coordinates; rows are world x, y, z (and 1).

    Returns:
        A new float64 array of the same shape.

    Raises:
        ValueError: The first axis does not have 3 or 4 entries.
    """
    return _flip_xy(affine)


def ras_to_lps(affine: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The same map or position with world coordinates RAS+ made LPS+ (DICOM, ITK).

    The inverse of :func:`lps_to_ras` (and the same operation); takes the same shapes.

    Raises:
        ValueError: The first axis does not have 3 or 4 entries.
    """
    return _flip_xy(affine)


def _flip_xy(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    flipped = np.array(values, dtype=np.float64, copy=True)
    if flipped.ndim == 0 or flipped.shape[0] not in (3, 4):
        raise ValueError(
            f"expected world coordinates along the first axis (3 or 4 rows), got shape "
            f"{flipped.shape}"
        )
    flipped[:2] = 0.0 - flipped[:2]  # not negation: a zero stays +0.0, never -0.0
    return flipped


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

    def affine_gap(self, other: Grid) -> float:
        """The largest difference between the two affines' entries, in mm (NaN when an
        entry is NaN; equal infinite entries count as no difference)."""
        mine = np.asarray(self.affine, dtype=np.float64)
        theirs = np.asarray(other.affine, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            difference = np.where(mine == theirs, 0.0, mine - theirs)
        return float(np.max(np.abs(difference)))

    def world_gap(self, other: Grid) -> float:
        """How far apart (mm) the two affines place the same point of this grid's field
        of view, at most (NaN when an entry is NaN).

        The largest distance lies at a corner of the field of view (the outer voxel
        edges), so a small tilt of a long axis counts by how far it moves the far end: a
        0.05° tilt of a 400 mm axis moves it 0.36 mm, though no affine entry changes by
        more than 0.001.
        """
        mine = np.asarray(self.affine, dtype=np.float64)
        theirs = np.asarray(other.affine, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            difference = np.where(mine == theirs, 0.0, mine - theirs)[:3]
        ends = [(-0.5, n - 0.5) for n in self.shape]
        corners = np.array([[i, j, k, 1.0] for i in ends[0] for j in ends[1] for k in ends[2]])
        moved = np.linalg.norm(difference @ corners.T, axis=0)
        return float(np.nan if np.isnan(moved).any() else moved.max())

    def same_as(self, other: Grid, *, atol: float = GRID_TOLERANCE_MM) -> bool:
        """Whether both grids have the same shape and place every point of the field of
        view (voxel edges included) within ``atol`` mm of each other (:meth:`world_gap`).

        Args:
            other: The grid to compare with.
            atol: Largest distance (mm) allowed. medi2i's own checks all use the default,
                :data:`GRID_TOLERANCE_MM`; pass a smaller value only to demand more
                (e.g. in a test).
        """
        return self.shape == other.shape and self.world_gap(other) <= atol

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


def require_same_grid(
    grid: Grid, reference: Grid, *, what: str, reference_name: str, hint: str
) -> None:
    """Raise unless ``grid`` is ``reference``'s grid (:meth:`Grid.same_as`, to
    :data:`GRID_TOLERANCE_MM`): the one same-grid check of evaluation and the benchmarks.

    Args:
        grid: The grid of the volume to check (e.g. a prediction or a mask).
        reference: The grid it must lie on.
        what: The checked volume, for the message (e.g. its file).
        reference_name: The reference, for the message.
        hint: What the user should do, for the message.

    Raises:
        GeometryError: The shapes differ, or the grids place a point of the field of
            view further apart than the tolerance; the message names both volumes, says
            by how much, and ``hint``.
    """
    if grid.same_as(reference):
        return
    if _same_field_reordered(grid, reference):
        problem = (
            "it covers the same voxels in the world, stored with its axes flipped or in "
            f"another order ({_axes_difference(grid, reference)}; not a displacement)"
        )
    elif grid.shape != reference.shape:
        problem = f"shape {grid.shape} differs from {reference.shape}"
    else:
        spacing = tuple(round(v, 4) for v in grid.spacing)
        expected = tuple(round(v, 4) for v in reference.spacing)
        problem = (
            f"{_affine_difference(grid, reference)}, placing its voxels up to "
            f"{grid.world_gap(reference):.4g} mm from the reference's (spacing {spacing} "
            f"vs {expected} mm)"
        )
    raise GeometryError(f"{what} is not on the grid of {reference_name}: {problem}; {hint}")


def _affine_difference(grid: Grid, reference: Grid) -> str:
    """How two affines differ, in their units: the origins in mm, the axis vectors
    (direction times spacing) in mm per voxel, and which axes point the other way; a
    flipped direction is no distance, so it is not reported as one."""
    mine = np.asarray(grid.affine, dtype=np.float64)
    theirs = np.asarray(reference.affine, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        axes = float(np.max(np.abs(np.where(mine == theirs, 0.0, mine - theirs)[:3, :3])))
    if axes == 0.0:
        return f"voxel-to-world affines differ by up to {grid.affine_gap(reference):.4g} mm"
    origin = float(np.linalg.norm(mine[:3, 3] - theirs[:3, 3]))
    return (
        f"voxel-to-world affines differ: {_axes_difference(grid, reference)}, origins "
        f"{origin:.4g} mm apart"
    )


def _axes_difference(grid: Grid, reference: Grid) -> str:
    """Which array axes point the other way, else how far the axis vectors differ
    (mm per voxel)."""
    mine = np.asarray(grid.affine, dtype=np.float64)[:3, :3]
    theirs = np.asarray(reference.affine, dtype=np.float64)[:3, :3]
    with np.errstate(invalid="ignore"):
        cosines = np.sum(mine * theirs, axis=0) / (
            np.linalg.norm(mine, axis=0) * np.linalg.norm(theirs, axis=0)
        )
    reversed_axes = [axis for axis in range(3) if cosines[axis] < -0.5]
    if reversed_axes:
        named = " and ".join(str(axis) for axis in reversed_axes)
        if len(reversed_axes) == 1:
            return f"array axis {named} points the opposite way"
        return f"array axes {named} point the opposite way"
    gap = float(np.nanmax(np.abs(mine - theirs)))
    return f"axis vectors differ by up to {gap:.4g} mm per voxel"


def same_voxels(grid: Grid, reference: Grid) -> bool:
    """Whether ``grid`` holds ``reference``'s voxel centres, in the same storage order
    (:meth:`Grid.same_as`) or another (an axis flipped, axes permuted): what the trainer
    accepts for a case's mask, since it brings both onto one working grid."""
    return grid.same_as(reference) or _same_field_reordered(grid, reference)


def _same_field_reordered(grid: Grid, reference: Grid) -> bool:
    """Whether ``grid`` holds ``reference``'s voxel centres in another storage order (an
    axis flipped, axes permuted): the same corners in the world, read differently.
    Called once the grids are known to differ."""
    if sorted(grid.shape) != sorted(reference.shape):
        return False
    with np.errstate(all="ignore"):
        try:
            axes = np.linalg.solve(reference.affine[:3, :3], grid.affine[:3, :3])
        except np.linalg.LinAlgError:
            return False
    if np.array_equal(np.rint(axes), np.eye(3)):
        return False  # the same axes, the same order: a displacement, however small

    def corners(g: Grid) -> np.ndarray:
        ends = [(0, n - 1) for n in g.shape]
        index = np.array([[i, j, k, 1.0] for i in ends[0] for j in ends[1] for k in ends[2]])
        points = (np.asarray(g.affine, dtype=np.float64) @ index.T).T[:, :3]
        return np.asarray(sorted(map(tuple, np.round(points, 3))))

    return bool(np.allclose(corners(grid), corners(reference), atol=GRID_TOLERANCE_MM))
