"""Thick-slice degradation: what a 2D multi-slice acquisition does to a 3D volume.

A thick-slice scan integrates the object over each slice with a slice profile and
samples it at the slice spacing. We model the profile as a Gaussian whose full width at
half maximum (FWHM) equals the slice thickness (by default the spacing, i.e. no gap),
then keep every ``step``-th slice. This is the degradation of benchmark Q2.

Example:
    >>> import numpy as np
    >>> volume = np.random.default_rng(0).random((8, 8, 17)).astype(np.float32)
    >>> thick = thick_slices(volume, affine=np.eye(4), axis=2, slice_spacing_mm=4.0)
    >>> thick.data.shape, thick.kept_indices[:3]
    ((8, 8, 5), (0, 4, 8))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from medi2i.errors import OptionsError
from medi2i.synth.fields import fwhm_to_sigma

FloatArray = npt.NDArray[np.float32]

_STEP_TOLERANCE = 1e-3
"""How far the slice spacing may be from a whole number of voxels (in voxels)."""


@dataclass(frozen=True)
class ThickSliceVolume:
    """A thick-slice volume and where its slices came from.

    Attributes:
        data: The degraded array, ``step`` times fewer voxels along ``axis``.
        affine: Its voxel-to-world affine (mm); slice ``k`` lies where source slice
            ``kept_indices[k]`` was.
        axis: The through-plane array axis.
        step: Source voxels per slice.
        kept_indices: Indices of the source slices that were kept.
        fwhm_mm: FWHM of the Gaussian slice profile applied before sampling, in mm.
    """

    data: FloatArray
    affine: npt.NDArray[np.float64]
    axis: int
    step: int
    kept_indices: tuple[int, ...]
    fwhm_mm: float


def slice_profile_blur(
    volume: npt.ArrayLike, *, axis: int, voxel_mm: float, fwhm_mm: float
) -> FloatArray:
    """Blur along one axis with a Gaussian slice profile of the given FWHM.

    Args:
        volume: 3D array.
        axis: The through-plane axis (0, 1 or 2).
        voxel_mm: Voxel size along ``axis`` in mm.
        fwhm_mm: Full width at half maximum of the profile in mm; 0 leaves it as is.

    Returns:
        float32 array of the same shape; edges replicated.
    """
    data = np.asarray(volume, np.float32)
    if fwhm_mm < 0 or voxel_mm <= 0:
        raise OptionsError(
            f"slice profile needs fwhm_mm >= 0 and voxel_mm > 0, got {fwhm_mm} and {voxel_mm}"
        )
    if fwhm_mm == 0:
        return data.copy()
    sigma_voxels = fwhm_to_sigma(fwhm_mm) / voxel_mm
    blurred = ndimage.gaussian_filter1d(data, sigma_voxels, axis=axis, mode="nearest")
    return np.asarray(blurred, np.float32)


def thick_slices(
    volume: npt.ArrayLike,
    *,
    affine: npt.ArrayLike,
    axis: int,
    slice_spacing_mm: float,
    fwhm_mm: float | None = None,
    first_index: int = 0,
) -> ThickSliceVolume:
    """Simulate a thick-slice acquisition of a finely sampled volume.

    Args:
        volume: 3D array on a fine grid.
        affine: Its voxel-to-world affine (mm).
        axis: Through-plane array axis (0, 1 or 2).
        slice_spacing_mm: Distance between kept slices, in mm; must be a whole multiple
            of the voxel size along ``axis``.
        fwhm_mm: FWHM of the Gaussian slice profile in mm; ``None`` means the slice
            spacing (contiguous slices, as in benchmark Q2).
        first_index: Index of the first source slice to keep.

    Returns:
        The degraded volume with its affine and the kept slice indices.

    Raises:
        OptionsError: The spacing is not a whole number of voxels, or leaves no slice.
    """
    matrix = np.asarray(affine, np.float64)
    data = np.asarray(volume, np.float32)
    if data.ndim != 3 or axis not in (0, 1, 2):
        raise OptionsError(f"thick_slices needs a 3D array and axis 0-2, got {data.shape}, {axis}")
    voxel_mm = float(np.linalg.norm(matrix[:3, axis]))
    step = _whole_step(slice_spacing_mm, voxel_mm)
    kept = tuple(range(first_index, data.shape[axis], step))
    if not kept:
        raise OptionsError(f"first_index {first_index} leaves no slice of {data.shape[axis]}")
    profile = slice_spacing_mm if fwhm_mm is None else fwhm_mm
    blurred = slice_profile_blur(data, axis=axis, voxel_mm=voxel_mm, fwhm_mm=profile)
    degraded = np.take(blurred, kept, axis=axis)
    new_affine = matrix.copy()
    new_affine[:3, axis] = matrix[:3, axis] * step
    new_affine[:3, 3] = matrix[:3, 3] + matrix[:3, axis] * first_index
    return ThickSliceVolume(
        data=np.ascontiguousarray(degraded),
        affine=new_affine,
        axis=axis,
        step=step,
        kept_indices=kept,
        fwhm_mm=float(profile),
    )


def _whole_step(slice_spacing_mm: float, voxel_mm: float) -> int:
    ratio = slice_spacing_mm / voxel_mm
    step = round(ratio)
    if step < 1 or abs(ratio - step) > _STEP_TOLERANCE:
        raise OptionsError(
            f"slice spacing {slice_spacing_mm} mm is not a whole multiple of the voxel size "
            f"{voxel_mm:.4g} mm; resample the volume first or choose a multiple"
        )
    return step


def measured_fwhm(profile: npt.ArrayLike, *, voxel_mm: float) -> float:
    """FWHM in mm of a single-peaked 1D profile, by linear interpolation at half maximum.

    Used to check a slice profile (blur a one-slice impulse and measure it).
    """
    values = np.asarray(profile, np.float64)
    peak = int(values.argmax())
    half = values[peak] / 2.0
    left = peak
    while left > 0 and values[left - 1] > half:
        left -= 1
    right = peak
    while right < len(values) - 1 and values[right + 1] > half:
        right += 1
    if left == 0 or right == len(values) - 1:
        raise OptionsError("the profile does not fall below half its maximum on both sides")
    left_cross = left - (values[left] - half) / (values[left] - values[left - 1])
    right_cross = right + (values[right] - half) / (values[right] - values[right + 1])
    return float((right_cross - left_cross) * voxel_mm)
