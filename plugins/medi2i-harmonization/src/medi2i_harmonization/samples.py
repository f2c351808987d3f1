"""Which voxels a method's intensity statistics come from.

Every method of this plugin measures intensities inside a foreground mask, never over
the whole field of view: background air (and, on a whole-head scan, everything dark)
would otherwise dominate means, percentiles and histograms, and the same anatomy
scanned with a larger field of view would be standardized differently.

Example:
    >>> import numpy as np
    >>> values = np.array([0.0, 0.0, 0.0, 10.0, 12.0, 14.0])
    >>> foreground_mask(values, rule="otsu").tolist()
    [False, False, False, True, True, True]
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Literal

import numpy as np
import numpy.typing as npt

from medi2i import InputError

ForegroundRule = Literal["head", "otsu", "above-mean", "nonzero", "all"]
"""How the foreground is found: ``"head"`` the head as one solid region
(:func:`head_mask`); ``"otsu"`` above Otsu's threshold (1979) of the whole volume;
``"above-mean"`` above the volume's mean intensity (what the WhiteStripe
authors use on images that are not skull-stripped); ``"nonzero"`` every voxel that is
not exactly 0 (skull-stripped or masked images); ``"all"`` every voxel."""

HEAD_CLOSING = 5
"""Edge (voxels) of the cube that closes gaps in the head mask before holes are filled."""

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def volume_array(volume: object) -> FloatArray:
    """A single-channel volume as a float64 ``(X, Y, Z)`` array.

    Args:
        volume: A channel-first ``(1, X, Y, Z)`` tensor or ``MetaTensor``, a ``(X, Y, Z)``
            or ``(1, X, Y, Z)`` array, or the path of a volume file medi2i can read.

    Raises:
        InputError: The volume is not 3D with one channel.
    """
    if isinstance(volume, (str, os.PathLike)):
        from pathlib import Path

        from medi2i import read_volume

        volume = read_volume(Path(volume))
    detach = getattr(volume, "detach", None)
    raw = detach().cpu().numpy() if callable(detach) else volume
    values = np.asarray(raw, dtype=np.float64)
    if values.ndim == 4 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 3:
        raise InputError(
            f"expected a single-channel 3D volume, (X, Y, Z) or (1, X, Y, Z), "
            f"got shape {tuple(values.shape)}"
        )
    return values


def volume_arrays(volumes: object) -> list[FloatArray]:
    """Every volume of an iterable (tensors, arrays or file paths) as an array.

    Raises:
        InputError: ``volumes`` is not an iterable of volumes, or is empty.
    """
    if not isinstance(volumes, Iterable) or isinstance(volumes, (str, bytes, os.PathLike)):
        raise InputError(
            f"fit takes an iterable of volumes (tensors, arrays or file paths), "
            f"got {type(volumes).__name__}"
        )
    arrays = [volume_array(volume) for volume in volumes]
    if not arrays:
        raise InputError("fit needs at least one volume of the target domain; none was given")
    return arrays


def foreground_mask(values: FloatArray, *, rule: ForegroundRule) -> BoolArray:
    """The foreground voxels of ``values`` under ``rule`` (see :data:`ForegroundRule`).

    Raises:
        InputError: The rule leaves no voxel (e.g. ``"nonzero"`` on an all-zero volume).
    """
    if rule == "all":
        mask = np.ones(values.shape, dtype=bool)
    elif rule == "head":
        mask = head_mask(values)
    elif rule == "nonzero":
        mask = values != 0
    elif rule == "above-mean":
        mask = _above(values, float(values.mean()))
    else:
        mask = _above(values, _otsu_threshold(values))
    if not mask.any():
        raise InputError(f"the foreground rule {rule!r} leaves no voxel in this volume")
    return np.asarray(mask)


def foreground_values(values: FloatArray, *, rule: ForegroundRule) -> FloatArray:
    """The intensities of the foreground voxels, flattened."""
    return np.asarray(values[foreground_mask(values, rule=rule)])


def head_mask(values: FloatArray) -> BoolArray:
    """The head (or brain, on a skull-stripped image) as one solid region.

    Voxels above half the Otsu threshold, closed with a ``HEAD_CLOSING``-voxel cube,
    holes filled, largest connected component. Dark tissue enclosed by the head (CSF,
    bone) is kept, so the region barely moves when a scanner's contrast curve moves the
    Otsu threshold between tissues: statistics measured inside it compare across scanners.
    """
    from scipy import ndimage

    mask = _above(values, 0.5 * _otsu_threshold(values))
    cube = np.ones((HEAD_CLOSING,) * values.ndim, dtype=bool)
    # pad so that closing does not erode the mask where it touches the volume's faces
    margin = HEAD_CLOSING
    closed = ndimage.binary_closing(np.pad(mask, margin), structure=cube)
    filled = ndimage.binary_fill_holes(closed)[(slice(margin, -margin),) * values.ndim]
    labels, count = ndimage.label(filled)
    if count <= 1:
        return np.asarray(filled)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.asarray(labels == int(sizes.argmax()))


def _above(values: FloatArray, threshold: float) -> BoolArray:
    mask = values > threshold
    # a constant volume has nothing above any threshold: it is all foreground
    return mask if mask.any() else np.ones(values.shape, dtype=bool)


def _otsu_threshold(values: FloatArray) -> float:
    from skimage.filters import threshold_otsu

    if float(values.min()) == float(values.max()):
        return float(values.min())
    threshold: float = threshold_otsu(values)  # type: ignore[no-untyped-call]
    return float(threshold)
