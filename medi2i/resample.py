"""Moving volumes between voxel grids: onto a method's working grid and back again.

World coordinates are RAS millimetres throughout; an affine maps voxel indices (voxel
centres) to world coordinates, as in NIfTI and MONAI's ``MetaTensor``.
"""

from __future__ import annotations

from typing import Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from monai.data.meta_tensor import MetaTensor
from monai.data.utils import compute_shape_offset, zoom_affine
from monai.transforms.spatial.array import Orientation, Spacing

from medi2i.errors import GeometryError, OptionsError
from medi2i.grid import Grid, SpatialPlan

_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
_VOXEL_ATOL = 1e-4
"""Voxel offsets closer than this (in voxels) to whole numbers count as whole: far below
any geometric meaning, above the rounding of affines stored as float32 in NIfTI."""
_SLAB_VOXELS = 1 << 20
"""Output voxels interpolated at once: keeps the sampling coordinates of a large volume
(float64 while computed) under about 100 MB."""


def apply_spatial_plan(image: MetaTensor, plan: SpatialPlan) -> MetaTensor:
    """Reorient and/or resample a volume onto the working grid a method asked for.

    Args:
        image: Channel-first volume with its affine (RAS, mm).
        plan: The method's spatial plan; an empty plan returns ``image`` itself.

    Returns:
        The volume reoriented to ``plan.orientation`` (exact: axes permuted and flipped)
        and then resampled to ``plan.spacing`` mm by trilinear interpolation, keeping the
        first voxel centre in place, with enough voxels along each axis to reach the
        last input voxel centre (replicating edge voxels where the new grid reaches past
        the old one), so every input voxel lies inside the working grid.
    """
    out: torch.Tensor = image
    if plan.orientation is not None:
        out = Orientation(axcodes=plan.orientation, labels=_RAS_LABELS)(out)
    if plan.spacing is not None:
        spacing = Spacing(
            pixdim=plan.spacing, mode="bilinear", padding_mode="border", dtype=np.float32
        )
        covering = _covering_shape(cast(MetaTensor, out), plan.spacing)
        out = spacing(out, output_spatial_shape=covering)
    return cast(MetaTensor, out)


def _covering_shape(
    image: MetaTensor, spacing: tuple[float, float, float]
) -> tuple[int, int, int] | None:
    """The working grid's shape that reaches every input voxel centre, or ``None`` where
    MONAI's own does (it rounds the extent to whole voxels, so 20 voxels of 2.5 mm at
    1 mm gave 48 voxels, the last input centre 0.5 mm past the last working one).

    Only an axis that falls short gets more voxels, and only at its far end: MONAI's
    grid starts at the first input centre, which stays the working grid's first.
    """
    source = np.asarray(image.affine, dtype=np.float64)
    working = zoom_affine(source, np.asarray(spacing, dtype=np.float64), diagonal=False)
    shape, offset = compute_shape_offset(image.shape[1:], source, working)
    working[:3, 3] = offset[:3]
    ends = [(0.0, n - 1.0) for n in image.shape[1:]]
    corners = np.array([[i, j, k, 1.0] for i in ends[0] for j in ends[1] for k in ends[2]])
    reached = np.linalg.solve(working, source) @ corners.T
    if (reached[:3].min(axis=1) < -_VOXEL_ATOL).any():
        return None  # not anchored at a corner (a sheared grid): MONAI's shape as it is
    needed = np.ceil(reached[:3].max(axis=1) - _VOXEL_ATOL).astype(int) + 1
    if (needed <= shape).all():
        return None
    covering = np.maximum(shape, needed)
    return (int(covering[0]), int(covering[1]), int(covering[2]))


def resample_to_grid(
    volume: torch.Tensor, grid: Grid, *, mode: Literal["linear", "nearest"] = "linear"
) -> MetaTensor:
    """Deliver a volume onto another voxel grid, matching points in world coordinates.

    Exact when no interpolation is needed: the same grid (the result may then share
    memory with ``volume``), or a grid that differs only by the order and direction of
    its axes with the same voxel centres (an orientation change). Otherwise every target
    voxel centre is sampled from ``volume`` by trilinear (``"linear"``) or
    nearest-neighbour interpolation. Target voxels outside the volume take the value
    of the nearest edge voxel ("border" padding), so edges are neither darkened nor
    filled with a made-up background value.

    Args:
        volume: Channel-first ``(C, X, Y, Z)`` volume; a ``MetaTensor``'s affine places it
            in the world (a plain tensor has the identity affine).
        grid: The target grid (e.g. the input grid, or ``Grid.scaled`` of it for
            super-resolution).
        mode: ``"linear"`` for continuous images (intensities, HU), ``"nearest"`` for
            labels and masks.

    Returns:
        A ``MetaTensor`` of shape ``(C, *grid.shape)`` with ``grid.affine`` and the
        volume's other metadata; float unless ``mode="nearest"`` keeps the input dtype.

    Raises:
        GeometryError: ``volume`` is not channel-first 3D, or an affine is singular.
        OptionsError: ``mode`` is not ``"linear"`` or ``"nearest"``.
    """
    if mode not in ("linear", "nearest"):
        raise OptionsError(f"unknown resampling mode {mode!r}: use 'linear' or 'nearest'")
    if volume.ndim != 4:
        raise GeometryError(
            f"expected a channel-first 3D volume (C, X, Y, Z), got shape {tuple(volume.shape)}"
        )
    source = Grid.of(volume)
    data = volume.as_tensor() if isinstance(volume, MetaTensor) else volume
    if source.same_as(grid):
        moved = data
    else:
        index_map = _index_map(source, grid)
        reoriented = _reoriented(data, index_map, source.shape, grid.shape)
        if reoriented is None:
            reoriented = _interpolated(data, index_map, grid.shape, mode)
        moved = reoriented
    return _on_grid(moved, grid, volume)


def _index_map(source: Grid, target: Grid) -> np.ndarray:
    """The 4×4 matrix taking target voxel indices to source voxel indices."""
    try:
        return np.linalg.solve(source.affine, target.affine)
    except np.linalg.LinAlgError:
        raise GeometryError(
            f"cannot resample: the volume's affine is singular\n{source.affine}"
        ) from None


def _reoriented(
    data: torch.Tensor,
    index_map: np.ndarray,
    source_shape: tuple[int, int, int],
    target_shape: tuple[int, int, int],
) -> torch.Tensor | None:
    """``data`` with axes permuted and flipped onto the target grid, or ``None`` when the
    grids differ by more than that (voxel centres must coincide one to one)."""
    signed = np.rint(index_map[:3, :3])
    if not np.allclose(index_map[:3, :3], signed, atol=_VOXEL_ATOL):
        return None
    if not (np.abs(signed).sum(axis=0) == 1).all() or not (np.abs(signed).sum(axis=1) == 1).all():
        return None
    axes = [int(np.argmax(np.abs(signed[:, k]))) for k in range(3)]
    flips = [signed[axes[k], k] < 0 for k in range(3)]
    for k in range(3):
        length = source_shape[axes[k]]
        first = length - 1 if flips[k] else 0
        if target_shape[k] != length or abs(index_map[axes[k], 3] - first) > _VOXEL_ATOL:
            return None
    moved = data.permute(0, *(1 + a for a in axes))
    flipped = [1 + k for k in range(3) if flips[k]]
    return torch.flip(moved, flipped) if flipped else moved.contiguous()


def _interpolated(
    data: torch.Tensor, index_map: np.ndarray, shape: tuple[int, int, int], mode: str
) -> torch.Tensor:
    work_dtype = data.dtype if data.is_floating_point() else torch.float32
    source = data.to(work_dtype)[None]
    out_dtype = data.dtype if mode == "nearest" else work_dtype
    out = torch.empty((data.shape[0], *shape), dtype=out_dtype, device=data.device)
    slab = max(1, _SLAB_VOXELS // (shape[1] * shape[2]))
    for start in range(0, shape[0], slab):
        stop = min(start + slab, shape[0])
        sample_grid = _sampling_grid(index_map, (start, stop), shape, data.shape[1:], work_dtype)
        values = F.grid_sample(
            source,
            sample_grid.to(data.device),
            mode="bilinear" if mode == "linear" else "nearest",
            padding_mode="border",
            align_corners=False,
        )
        out[:, start:stop] = values[0].to(out_dtype)
    return out


def _sampling_grid(
    index_map: np.ndarray,
    rows: tuple[int, int],
    shape: tuple[int, int, int],
    source_shape: torch.Size,
    dtype: torch.dtype,
) -> torch.Tensor:
    """grid_sample's normalized source coordinates of target voxels ``rows`` along axis 0."""
    matrix = torch.as_tensor(index_map, dtype=torch.float64)
    i = torch.arange(*rows, dtype=torch.float64)[:, None, None, None]
    j = torch.arange(shape[1], dtype=torch.float64)[None, :, None, None]
    k = torch.arange(shape[2], dtype=torch.float64)[None, None, :, None]
    points = i * matrix[:3, 0] + j * matrix[:3, 1] + k * matrix[:3, 2] + matrix[:3, 3]
    sizes = torch.tensor([float(n) for n in source_shape], dtype=torch.float64)
    # align_corners=False: -1 and +1 are the outer voxel edges, so index i sits at (2i + 1) / n - 1
    normalized = (2.0 * points + 1.0) / sizes - 1.0
    # grid_sample reads coordinates as (last axis, ..., first axis)
    return normalized.flip(-1)[None].to(dtype)


def _on_grid(data: torch.Tensor, grid: Grid, like: torch.Tensor) -> MetaTensor:
    meta = dict(like.meta) if isinstance(like, MetaTensor) else {}
    for key in ("affine", "spatial_shape"):
        meta.pop(key, None)
    meta["spatial_shape"] = np.asarray(grid.shape)
    return MetaTensor(data, affine=torch.as_tensor(grid.affine, dtype=torch.float64), meta=meta)
