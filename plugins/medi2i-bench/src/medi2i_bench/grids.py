"""Resampling the benchmarks' volumes onto other grids along their own array axes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medi2i_bench.cases import Volume


def resample_to_spacing(volume: Volume, spacing_mm: Sequence[float]) -> Volume:
    """Resample a volume onto a grid of another voxel size along the same array axes.

    The new grid covers the same extent (its shape is the old extent over the new
    spacing, rounded) with its first voxel's corner on the old first voxel's corner.
    Before linear interpolation each axis that gets coarser is blurred with a Gaussian
    of FWHM ``sqrt(new² - old²)`` mm, so that the result has about the new resolution
    and no aliasing.

    Args:
        volume: The volume (e.g. a CT in HU).
        spacing_mm: The new voxel size per array axis, in mm.

    Returns:
        The resampled volume (float32) with its new affine.
    """
    from medi2i.synth.fields import gaussian_blur_mm

    old = np.asarray(volume.spacing_mm, np.float64)
    new = np.asarray(spacing_mm, np.float64)
    extent = old * np.asarray(volume.array.shape, np.float64)
    shape = tuple(max(1, round(float(n))) for n in extent / new)
    fwhm = np.sqrt(np.clip(new**2 - old**2, 0.0, None))
    blurred = gaussian_blur_mm(volume.array, spacing_mm=old.tolist(), fwhm_mm=fwhm.tolist())
    zoom = new / old
    # new voxel i's centre lies at old voxel index (i + 0.5) * zoom - 0.5
    offset = 0.5 * zoom - 0.5
    array = ndimage.affine_transform(
        blurred, zoom, offset=offset, output_shape=shape, order=1, mode="nearest"
    )
    affine = volume.affine.copy()
    affine[:3, :3] = volume.affine[:3, :3] * zoom[None, :]
    affine[:3, 3] = volume.affine[:3, :3] @ offset + volume.affine[:3, 3]
    return Volume(np.asarray(array, np.float32), affine)


def resample_isotropic(volume: Volume, voxel_mm: float) -> Volume:
    """``volume`` (isotropic) resampled by cubic B-splines onto a grid of ``voxel_mm``
    voxels along the same axes, from the same first voxel centre, clipped to the
    original's range; the volume itself when its voxels are already that size."""
    spacing = np.asarray(volume.spacing_mm, np.float64)
    if np.allclose(spacing, voxel_mm, atol=1e-4):
        return volume
    zoom = voxel_mm / spacing
    shape = tuple(
        int(np.floor((n - 1) / z + 1e-6)) + 1 for n, z in zip(volume.array.shape, zoom, strict=True)
    )
    array = ndimage.affine_transform(
        np.asarray(volume.array, np.float64), zoom, output_shape=shape, order=3, mode="nearest"
    )
    array = np.clip(array, float(volume.array.min()), float(volume.array.max()))
    affine = volume.affine.copy()
    affine[:3, :3] = volume.affine[:3, :3] * zoom[None, :]
    return Volume(np.asarray(array, np.float32), affine)
