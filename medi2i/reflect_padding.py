"""Reflection padding at predict time (:attr:`medi2i.InferenceSettings.reflect_padding`).

The method is run on the input volume extended on each side by its own mirror image
(reflected about the first and last voxels, which are not repeated) and its output is
cropped back to the grid it gives for the unpadded input. Everything the method does
sees the extended volume: its network meets tissue cut by the volume's edge with
mirror-image context instead of padding, and what it computes from the whole volume
(an MR→CT method's body mask, its normalization statistics) sees a body that continues
across a cut face instead of ending at it (a head cut at the midline, whose dark CSF at
the cut face the body mask would otherwise take for air).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from medi2i.errors import OptionsError
from medi2i.grid import Grid

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor


def reflection_widths(spatial: Sequence[int], widths: Sequence[int]) -> tuple[int, int, int]:
    """``widths`` capped at each axis's length minus one (a reflection repeats no edge
    voxel, so it can add at most that many)."""
    capped = [max(0, min(int(w), int(n) - 1)) for w, n in zip(widths, spatial, strict=True)]
    return (capped[0], capped[1], capped[2])


def _reflected_indices(length: int, width: int) -> torch.Tensor:
    inner = torch.arange(length)
    if not width:
        return inner
    before = torch.arange(width, 0, -1)
    after = torch.arange(length - 2, length - 2 - width, -1)
    return torch.cat([before, inner, after])


def reflect_pad(volume: torch.Tensor, widths: Sequence[int]) -> torch.Tensor:
    """A channel-first ``volume`` ``(C, X, Y, Z)`` reflected by ``widths`` voxels on each
    side of each spatial axis (edge voxels not repeated, each width below its axis's
    length); ``volume`` itself when all widths are 0. Any dtype (int16 stays int16)."""
    for axis, width in enumerate(widths):
        if width:
            length = int(volume.shape[1 + axis])
            volume = volume.index_select(1 + axis, _reflected_indices(length, int(width)))
    return volume


def reflected_volume(image: MetaTensor, widths: Sequence[int]) -> MetaTensor:
    """``image`` reflected by ``widths`` (:func:`reflect_pad`), on the grid that extends
    its own: the affine moved back by the widths, the metadata kept."""
    from monai.data.meta_tensor import MetaTensor

    padded = reflect_pad(image.as_tensor(), widths)
    affine = np.asarray(Grid.of(image).affine, np.float64).copy()
    affine[:3, 3] -= affine[:3, :3] @ np.asarray(widths, np.float64)
    meta = {**image.meta, "spatial_shape": tuple(int(n) for n in padded.shape[1:])}
    meta.pop("affine", None)
    return MetaTensor(padded, affine=torch.from_numpy(affine), meta=meta)


def cropped_to_grid(output: MetaTensor, grid: Grid, *, method_id: str) -> MetaTensor:
    """The part of ``output`` (on the grid a method gives for the padded input) that is
    ``grid`` (the grid it gives for the unpadded input).

    Raises:
        OptionsError: ``grid`` is not a whole-voxel part of the output's grid (a method
            whose output voxels do not divide the padding evenly, e.g. 1.5 output voxels
            per input voxel and an odd width).
    """
    from monai.data.meta_tensor import MetaTensor

    padded = Grid.of(output)
    start = np.linalg.solve(padded.affine, np.asarray(grid.affine)[:, 3])[:3]
    first = np.round(start).astype(int)
    aligned = np.allclose(padded.affine[:3, :3], grid.affine[:3, :3], rtol=1e-6, atol=1e-6)
    inside = all(
        f >= 0 and f + n <= m for f, n, m in zip(first, grid.shape, padded.shape, strict=True)
    )
    if not aligned or not np.allclose(start, first, atol=1e-3) or not inside:
        raise OptionsError(
            f"reflect_padding does not fit method {method_id!r}: its output for the padded "
            "volume does not hold its output grid for the volume itself in whole voxels "
            "(a method that changes resolution needs widths that are whole output voxels); "
            "choose other widths, or predict without reflect_padding"
        )
    index = tuple(slice(int(f), int(f) + n) for f, n in zip(first, grid.shape, strict=True))
    part = output.as_tensor()[(slice(None), *index)].contiguous()
    meta = {**output.meta, "spatial_shape": grid.shape}
    meta.pop("affine", None)
    return MetaTensor(part, affine=torch.from_numpy(grid.affine), meta=meta)
