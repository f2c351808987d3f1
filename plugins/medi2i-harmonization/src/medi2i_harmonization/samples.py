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
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from medi2i import InputError

ForegroundRule = Literal["head", "otsu", "above-mean", "nonzero", "all"]
"""How the foreground is found: ``"head"`` the head as one solid region
(:func:`head_mask`); ``"otsu"`` above Otsu's threshold (1979) of the whole volume;
``"above-mean"`` above the volume's mean intensity (what the WhiteStripe authors use
on images that are not skull-stripped); ``"nonzero"`` every voxel that is not exactly
0 (skull-stripped or masked images); ``"all"`` every voxel. Otsu's threshold and the
mean are computed on the values clipped to their :func:`robust_range`, so that a few
extreme voxels cannot move them."""

HEAD_CLOSING = 5
"""Edge (voxels) of the cube that closes gaps in the head mask before holes are filled."""

ROBUST_PERCENTILES = (0.1, 99.9)
"""Percentiles that bound the bulk of a volume's intensities (see :func:`robust_range`)."""

SLAB_VOXELS = 1 << 16
"""Voxels per slab when a whole volume is mapped in float64 (:func:`mapped_in_slabs`):
512 kB temporaries, whatever the volume's size."""

FloatArray = npt.NDArray[np.floating]
"""A volume's intensities: float32 (what medi2i reads) or float64, C-contiguous as
:func:`volume_array` returns them. Statistics are computed in float64 from these values."""
BoolArray = npt.NDArray[np.bool_]


def volume_array(volume: object) -> FloatArray:
    """A single-channel volume as a C-contiguous ``(X, Y, Z)`` array of its own
    precision: float32 for float32 (or float16, or 8- and 16-bit integer) intensities,
    which it holds exactly, else float64.

    At most one copy is made (none for a C-contiguous float32 or float64 array), in C
    order, so that masks, percentiles and slabs of it make no strided copies: a
    whole-volume float64 copy of a large scan would be twice its size again. Treat the
    result as read-only: it may be the input's own memory.

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
    raw = np.asarray(detach().cpu().numpy() if callable(detach) else volume)
    if raw.ndim == 4 and raw.shape[0] == 1:
        raw = raw[0]
    if raw.ndim != 3:
        raise InputError(
            f"expected a single-channel 3D volume, (X, Y, Z) or (1, X, Y, Z), "
            f"got shape {tuple(raw.shape)}"
        )
    return np.ascontiguousarray(raw, dtype=_exact_float(raw.dtype))


def _exact_float(dtype: np.dtype) -> type[np.floating]:
    """The narrowest of float32 and float64 that holds every value of ``dtype``."""
    narrow = dtype.kind == "f" and dtype.itemsize <= 4
    small_integer = dtype.kind in "uib" and dtype.itemsize <= 2
    return np.float32 if narrow or small_integer else np.float64


def mapped_in_slabs(
    values: FloatArray, function: Callable[[FloatArray], FloatArray], *, dtype: type[np.floating]
) -> FloatArray:
    """``function`` (elementwise, on float64) of every voxel of ``values``, as ``dtype``.

    The volume is mapped :data:`SLAB_VOXELS` at a time, each slab in float64 and
    rounded once into the output: the result is exactly ``function(values as float64)
    .astype(dtype)``, without a float64 array of the volume's size.
    """
    flat = np.ascontiguousarray(values).reshape(-1)
    output = np.empty(flat.shape, dtype)
    for start in range(0, flat.size, SLAB_VOXELS):
        stop = start + SLAB_VOXELS
        output[start:stop] = function(flat[start:stop].astype(np.float64))
    return output.reshape(np.shape(values))


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


def foreground_mask(
    values: FloatArray, *, rule: ForegroundRule, bounds: tuple[float, float] | None = None
) -> BoolArray:
    """The foreground voxels of ``values`` under ``rule`` (see :data:`ForegroundRule`).

    Args:
        values: The volume.
        rule: How the foreground is found.
        bounds: Its :func:`robust_range`, when the caller has it already.

    Raises:
        InputError: The rule leaves no voxel (e.g. ``"nonzero"`` on an all-zero volume).
    """
    if rule == "all":
        mask = np.ones(values.shape, dtype=bool)
    elif rule == "head":
        mask = head_mask(values, bounds=bounds)
    elif rule == "nonzero":
        mask = values != 0
    elif rule == "above-mean":
        mask = _above(values, _clipped_mean(values, bounds or robust_range(values)))
    else:
        mask = _above(values, _otsu_threshold(values, bounds=bounds))
    if not mask.any():
        raise InputError(f"the foreground rule {rule!r} leaves no voxel in this volume")
    return np.asarray(mask)


def foreground_values(
    values: FloatArray, *, rule: ForegroundRule, bounds: tuple[float, float] | None = None
) -> FloatArray:
    """The intensities of the foreground voxels, flattened in C order, as float64 (the
    precision every statistic is computed in; a foreground is a part of the volume).

    Args:
        values: The volume.
        rule: How the foreground is found.
        bounds: The volume's :func:`robust_range`, when the caller has it already.
    """
    inside = values[foreground_mask(values, rule=rule, bounds=bounds)]
    return np.asarray(inside, dtype=np.float64)


def head_mask(values: FloatArray, *, bounds: tuple[float, float] | None = None) -> BoolArray:
    """The head (or brain, on a skull-stripped image) as one solid region.

    Voxels above half the Otsu threshold, closed with a ``HEAD_CLOSING``-voxel cube,
    holes filled, largest connected component. Dark tissue enclosed by the head (CSF,
    bone) is kept, so the region barely moves when a scanner's contrast curve moves the
    Otsu threshold between tissues: statistics measured inside it compare across scanners.
    """
    from scipy import ndimage

    mask = _above(values, 0.5 * _otsu_threshold(values, bounds=bounds))
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
    # a float64 threshold: a Python float would be rounded to a float32 volume's type
    mask = values > np.float64(threshold)
    # a constant volume has nothing above any threshold: it is all foreground
    return mask if mask.any() else np.ones(values.shape, dtype=bool)


def robust_range(values: FloatArray) -> tuple[float, float]:
    """The range of ``values`` without their extreme voxels, for thresholds and
    histograms: the lowest and highest values within ``w`` of the
    :data:`ROBUST_PERCENTILES` (0.1st to 99.9th), ``w`` the distance between them.

    One corrupt or hot voxel (1e7 in a volume of intensities below 4,000, 65,535 in a
    12-bit scan stored as 16-bit) otherwise stretches Otsu's 256 bins or WhiteStripe's
    histogram until all real tissue falls in a few bins: Otsu's foreground becomes that
    one voxel, the white-matter peak moves. Without it the range is the clean volume's;
    and a clean volume's extremes lie within ``w`` of those percentiles, so its range,
    and every result computed over it, is its minimum to maximum as before.

    Example:
        >>> values = np.arange(10000.0)
        >>> robust_range(values)
        (0.0, 9999.0)
        >>> values[-1] = 1e7  # one corrupt voxel
        >>> robust_range(values)
        (0.0, 9998.0)
    """
    low, high = (float(v) for v in percentiles(values, ROBUST_PERCENTILES))
    width = high - low
    if width <= 0.0:  # almost all one value: nothing to tell the bulk from the extremes
        return float(values.min()), float(values.max())
    kept = (values >= np.float64(low - width)) & (values <= np.float64(high + width))
    least = np.min(values, where=kept, initial=np.inf)
    most = np.max(values, where=kept, initial=-np.inf)
    return float(least), float(most)


def percentiles(
    values: FloatArray, q: Sequence[float], *, presorted: bool = False
) -> npt.NDArray[np.float64]:
    """``np.percentile(values, q)`` (linear) as float64, exactly as numpy gives it for
    ``values`` as float64, without a float64 copy of them.

    numpy interpolates between two order statistics in the array's own type; here they
    are found by partitioning one copy of ``values`` in their own type (no copy when
    ``presorted``, a sorted 1D array) and interpolated in float64, by numpy's formulas.

    Example:
        >>> percentiles(np.array([3.0, 1.0, 2.0, 4.0], np.float32), (0.0, 50.0, 90.0)).tolist()
        [1.0, 2.5, 3.7]
    """
    fractions = np.true_divide(np.asarray(q, dtype=np.float64), 100)
    flat = np.asarray(values).reshape(-1)
    count = flat.size
    virtual = (count - 1) * fractions  # numpy's linear method (Hyndman & Fan 7)
    below = np.floor(virtual)
    above = below + 1
    below[virtual >= count - 1], above[virtual >= count - 1] = -1, -1
    below[virtual < 0], above[virtual < 0] = 0, 0
    below_index, above_index = below.astype(np.intp), above.astype(np.intp)
    if not presorted:
        flat = flat.copy()
        flat.partition(np.unique(np.concatenate(([0, -1], below_index, above_index))))
    if count and np.isnan(flat[-1]):  # NaN sorts last: numpy's percentiles are then NaN
        return np.full(fractions.shape, np.nan)
    low = flat[below_index].astype(np.float64)
    high = flat[above_index].astype(np.float64)
    gamma = virtual - below
    difference = high - low
    result: npt.NDArray[np.float64] = low + difference * gamma
    np.subtract(high, difference * (1 - gamma), out=result, where=gamma >= 0.5)
    return result


def _clipped_mean(values: FloatArray, bounds: tuple[float, float]) -> float:
    """The mean of ``values`` clipped to ``bounds``, in float64, a slab at a time."""
    flat = np.ascontiguousarray(values).reshape(-1)
    total = 0.0
    for start in range(0, flat.size, SLAB_VOXELS):
        slab = flat[start : start + SLAB_VOXELS].astype(np.float64)
        total += float(np.clip(slab, *bounds, out=slab).sum())
    return total / flat.size


def degenerate_foreground(values: FloatArray, inside: FloatArray, *, rule: ForegroundRule) -> str:
    """Why the foreground ``inside`` of ``values`` has no spread, for an error message.

    When the volume is not constant, its foreground is most often a few extreme voxels
    (a corrupt value, a hot spot) at its maximum, which took the foreground threshold:
    the message then says so, with the maximum and the 99.9th percentile.

    Example:
        >>> values = np.zeros(1000)
        >>> values[:500], values[-3:] = np.linspace(1.0, 100.0, 500), 1e7
        >>> "extreme voxels" in degenerate_foreground(values, values[-3:], rule="otsu")
        True
    """
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return f"the volume is constant ({low:.6g}): there is nothing to standardize"
    level = float(inside.min()) if inside.size else high
    top, typical = (float(v) for v in percentiles(values, (ROBUST_PERCENTILES[1], 99.0)))
    found = (
        f"the foreground (rule {rule!r}) is {inside.size} of the volume's {values.size} "
        f"voxels, all at {level:.6g}, although the volume runs from {low:.6g} to {high:.6g}"
    )
    if level >= high and inside.size <= 0.01 * values.size:
        return (
            f"{found}: a few extreme voxels at its maximum {high:.6g} (99.9th percentile "
            f"{top:.6g}, 99th {typical:.6g}) probably took the foreground threshold; fix "
            "or clip them, or choose another foreground rule"
        )
    return f"{found}; choose another foreground rule"


OTSU_BINS = 256
"""Bins of the histogram Otsu's threshold is found in (scikit-image's default)."""


def _otsu_threshold(values: FloatArray, *, bounds: tuple[float, float] | None = None) -> float:
    """Otsu's threshold of ``values`` clipped to their :func:`robust_range` (``bounds``).

    The float64 histogram of the clipped values is counted without clipping a copy:
    voxels below (above) the range are added to the first (last) bin, where clipping
    would put them; scikit-image then finds the threshold in it, as it would in the
    histogram it counts itself.
    """
    from skimage.filters import threshold_otsu

    low, high = bounds or robust_range(values)
    if low == high:
        return low
    edges = (np.float64(low), np.float64(high))  # float64 bins, whatever the volume's type
    counts, bin_edges = np.histogram(values, bins=OTSU_BINS, range=edges)
    counts[0] += np.count_nonzero(values < edges[0])
    counts[-1] += np.count_nonzero(values > edges[1])
    centers = (bin_edges[:-1] + bin_edges[1:]) / 2.0
    threshold: float = threshold_otsu(hist=(counts, centers))  # type: ignore[no-untyped-call]
    return float(threshold)


def merged_ties(positions: np.ndarray, heights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The knots of a piecewise-linear map: ``positions`` sorted with ties merged, and
    for each the mean of the ``heights`` of its ties (a foreground whose percentiles or
    quantiles coincide, an 8-bit volume, gives ties).

    Example:
        >>> knots, means = merged_ties(np.array([1.0, 1.0, 3.0]), np.array([10.0, 20.0, 40.0]))
        >>> knots.tolist(), means.tolist()
        ([1.0, 3.0], [15.0, 40.0])
    """
    knots, inverse = np.unique(positions, return_inverse=True)
    means = np.bincount(inverse, weights=heights) / np.bincount(inverse)
    return knots, means
