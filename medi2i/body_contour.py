"""The body (or head) in an MR volume, found from its intensities alone.

:func:`body_mask` marks the voxels of the body in a volume that shows air around it, as
MR volumes do. MR→CT methods use it to set every voxel outside the input's body to air
(``body_contour`` in their options), so a synthetic CT carries no structure in the air;
``medi2i mask INPUT OUTPUT`` writes it for a file.

The steps, all on the volume's own voxel grid (no resampling):

1. **Threshold.** Voxels above Otsu's threshold of the whole volume (256-bin histogram
   of every voxel, :func:`skimage.filters.threshold_otsu`) are foreground. A few
   extreme voxels far beyond the rest (spikes) do not stretch the histogram's range. Air is dark
   and usually the largest class, so the threshold falls between air and tissue.
   Otsu's threshold moves with any increasing affine change of the intensities, so a
   z-score normalized volume gives the same mask as the raw one. When the darker class
   is not dark (see *No air* below), the volume has no background and all of it is
   the body. When the brighter class is a bright object rather than the body (see
   *Bright objects* below), the threshold is taken again without it.
2. **Components.** Foreground components (6-connected) of at least
   ``min_component_fraction`` of the largest one's voxels are kept: the largest is the
   body, and parts the threshold cut off from it (arms beside a trunk, a head rest seen
   in the image) stay, while specks of background noise go.
3. **Holes.** Dark tissue inside the body (bone, CSF, air in the sinuses) is filled in:
   background regions that do not reach the volume's border are filled in 3D; then, in
   every slice along each of the three array axes, the regions that do not reach the
   slice's border (this closes cavities that a cut face of the volume opens in 3D, e.g.
   a head cut at the neck); then once more in 3D.
4. **Margin.** Voxels within ``margin_voxels`` (Euclidean distance, in voxels) of the
   filled mask are added, so that the skin's partial-volume voxels stay inside.

**No air.** Air is the darkest thing in a volume, near the bottom of its intensity
range, so the darker of Otsu's classes is air only when its mean lies near that bottom,
well below the brighter class's mean. In a volume cropped inside the body there is no
air to find, and Otsu's threshold splits tissue from tissue instead (brain from bone in
a head CT, whose mask was the skull alone, 17 % of a volume 97 % above -500 HU). So
when the darker class's mean lies more than :data:`AIR_DARKNESS` of the way from the
bottom of the histogram's range to the brighter class's mean, the whole volume is the
body. The MR and CT volumes of the benchmarks, uncropped, lie at most 0.14 of the way
(air's noise, a scanner's bias); heads and trunks cropped inside the body, at 0.5 or
more.

**Bright objects.** Otsu's two classes are air and the body only when nothing in the
volume is far brighter than the body: a small bright object (a marker, a fiducial, a
hot spot of a few voxels) or a saturated region otherwise becomes the brighter class by
itself, with air and the whole body below the threshold (a 6×6 column at 2000 beside a
head of 0-247, 0.4 % of the voxels, cut the mask from 62 % to 0.6 % of the volume;
a fifth of the slices set to the maximum lifted the threshold from 49 to 137 and cut
the mask to 34 %). So the
threshold is taken again, by the same rule from a histogram of the remaining voxels
only (256 bins from the bottom of the range to the largest of them), when

- the brighter class holds under :data:`BRIGHT_OBJECT_FRACTION` (5 %) of the voxels: a
  body is never so small a part of a volume made to show it (the smallest among the
  project's volumes, a brain-masked white-matter map, is 8 %); its voxels are left
  out; or
- at least :data:`SATURATED_FRACTION` (1 %) of the voxels equal the volume's maximum: a
  clipped or saturated region, not tissue, whose intensity tells nothing (in the
  project's volumes at most 0.2 % do); those voxels are left out.

The new threshold is used only when its darker class passes as air (the test of *No
air* above); otherwise the remaining voxels are air alone (a small body in a wide field
of view) or hold no air, and the first threshold stays. The left-out voxels lie above
either threshold, so they stay foreground and are kept or dropped as components (step
2). Neither rule takes effect on the volumes of the benchmarks, the shared data or the
demo phantoms: their masks are bit for bit what they were before the rules. Both rest
on fractions of voxels and on equality with the maximum, so a z-score normalized volume
still gives the raw one's mask. Not handled: a bright object of 5 % of the voxels or
more, a saturated region not exactly at the maximum, and a volume with no air whose
bright object is bright enough for the first split to pass as air (its mask stays the
object alone).

Limits: the volume should show air around the body. A volume cropped inside the body on
some sides only still shows air on the others, and dark tissue at its cut faces is then
taken for air; turn a method's ``body_contour`` off for such volumes. A volume with no
foreground (constant) gives an all-true mask: nothing is ever set to air for want of a
mask.

Example:
    >>> import numpy as np
    >>> volume = np.zeros((24, 24, 24), np.float32)
    >>> volume[6:18, 6:18, 6:18] = 100.0
    >>> volume[10:14, 10:14, 10:14] = 0.0  # a dark cavity inside the body
    >>> mask = body_mask(volume, margin_voxels=0)
    >>> int(mask.sum()), bool(mask[12, 12, 12]), bool(mask[2, 2, 2])
    (1728, True, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage

from medi2i.errors import GeometryError, InputError

BoolArray = npt.NDArray[np.bool_]

MARGIN_VOXELS = 2.0
"""Default margin added around the filled body, in voxels."""
MIN_COMPONENT_FRACTION = 0.01
"""Default smallest kept component, as a fraction of the largest one's voxels."""
OTSU_BINS = 256
"""Bins of the histogram Otsu's threshold is taken from (skimage's default)."""
SPIKE_REACH = 2.0
"""How far beyond the 0.1-99.9 percentile span (in spans) extreme voxels must reach for
the histogram to leave them out of its range (see :func:`_histogram_range`)."""
SPIKE_SAMPLE = 1_000_000
"""About how many voxels the percentiles of :func:`_histogram_range` are taken from."""
AIR_DARKNESS = 0.3
"""Farthest the darker Otsu class's mean may lie, as a fraction of the way from the
bottom of the histogram's range (0) to the brighter class's mean (1), for that class to
be the air around the body; beyond it the volume has no air and is all body (see the
module docstring's *No air*)."""
BRIGHT_OBJECT_FRACTION = 0.05
"""Largest fraction of the volume's voxels that Otsu's brighter class may hold and still
be taken for a bright object rather than the body (see the module docstring's *Bright
objects*)."""
SATURATED_FRACTION = 0.01
"""Smallest fraction of the volume's voxels at exactly its maximum that is taken for a
saturated region rather than tissue (see the module docstring's *Bright objects*)."""
CHUNK_VOXELS = 1 << 22
"""Voxels counted at a time into a histogram or label sizes (16 MiB of float32)."""


def body_mask(
    volume: npt.ArrayLike,
    *,
    margin_voxels: float = MARGIN_VOXELS,
    min_component_fraction: float = MIN_COMPONENT_FRACTION,
) -> BoolArray:
    """The body in a 3D volume that shows air around it (steps in the module docstring).

    Args:
        volume: Intensities ``(X, Y, Z)``, e.g. an MR volume in any units; a
            channel-first ``(C, X, Y, Z)`` volume is reduced to its channels' mean.
        margin_voxels: Distance in voxels (Euclidean, >= 0) by which the filled body is
            grown.
        min_component_fraction: Smallest foreground component kept, as a fraction (in
            (0, 1]) of the largest one's voxels.

    Returns:
        A boolean array ``(X, Y, Z)``, True in the body; True everywhere when the volume
        shows no air (constant, or cropped inside the body: the module docstring's
        *No air*).

    Raises:
        GeometryError: The volume is not 3D (or channel-first 3D).
        InputError: The volume is not real numbers, or holds a NaN or infinite voxel
            (its mask would silently be the whole volume).
        ValueError: A parameter is out of range (or NaN).
    """
    data = _spatial(volume)
    if not 0.0 <= margin_voxels < np.inf or not 0.0 < min_component_fraction <= 1.0:
        raise ValueError(
            f"margin_voxels must be a finite number >= 0 (got {margin_voxels}) and "
            f"min_component_fraction in (0, 1] (got {min_component_fraction})"
        )
    body = _large_components(data, min_component_fraction)
    if body is None:
        return np.ones(data.shape, bool)
    body = _fill_holes(body, (0, 1, 2))  # each step holds a mask, labels and a result
    for axis in range(3):
        in_plane = tuple(a for a in range(3) if a != axis)
        body = _fill_holes(body, in_plane)
    body = _fill_holes(body, (0, 1, 2))
    if margin_voxels > 0:
        body = _grown(body, margin_voxels)
    return body


_BALL_REACH = 8
"""Margins up to this many voxels dilate by a ball (fast); wider ones use a distance
transform, whose memory is the volume's, not the ball's ((2r + 1)³ voxels)."""


def _grown(mask: BoolArray, radius: float) -> BoolArray:
    """``mask`` with every voxel at most ``radius`` voxels (Euclidean) from it added."""
    if radius <= _BALL_REACH or not mask.any():
        return _dilate(mask, _ball(radius))
    return np.asarray(ndimage.distance_transform_edt(~mask) <= radius)


def _dilate(mask: BoolArray, structure: BoolArray) -> BoolArray:
    """:func:`scipy.ndimage.binary_dilation`; an x-fastest mask is dilated as its
    C-ordered transpose (several times faster in scipy), the same voxels."""
    if mask.flags.f_contiguous and not mask.flags.c_contiguous:
        return np.asarray(ndimage.binary_dilation(mask.T, structure=structure.T)).T
    return np.asarray(ndimage.binary_dilation(mask, structure=structure))


def _ball(radius: float) -> BoolArray:
    """Offsets within ``radius`` voxels (Euclidean): dilating by it adds every voxel at
    most ``radius`` from the mask, as a distance transform would, in boolean memory."""
    reach = int(np.floor(radius))
    offsets = np.arange(-reach, reach + 1) ** 2
    squared = offsets[:, None, None] + offsets[None, :, None] + offsets[None, None, :]
    return np.asarray(squared <= radius**2)


def _spatial(volume: npt.ArrayLike) -> npt.NDArray[np.float32]:
    from medi2i.voxel_checks import non_finite_voxels

    if isinstance(volume, str | PathLike):
        raise InputError(
            f"body_mask takes a volume's intensities, not the path {volume!r}; read it first "
            "(medi2i.read_volume), or use the command medi2i mask IN OUT"
        )
    given = np.asarray(volume)
    if given.dtype.kind not in "biuf":
        raise InputError(
            f"a body mask needs real intensities, got {given.dtype} values (for complex "
            "data, pass its magnitude)"
        )
    data = given.astype(np.float32, copy=False)
    if data.ndim == 4:  # one channel is a view, several their mean (a new volume)
        data = data[0] if data.shape[0] == 1 else data.mean(axis=0)
    if data.ndim != 3 or min(data.shape) < 1:
        raise GeometryError(
            f"a body mask needs a 3D volume (or a channel-first 3D one), got shape "
            f"{np.shape(volume)}"
        )
    bad = non_finite_voxels(data)
    if bad:
        raise InputError(f"a body mask needs finite intensities: {bad}; replace or fix them")
    return data


def _foreground(data: npt.NDArray[np.float32]) -> BoolArray | None:
    """Voxels above Otsu's threshold; None when the volume has no background (constant,
    or no class dark enough to be air)."""
    low, high = float(data.min()), float(data.max())
    if not (np.isfinite(low) and np.isfinite(high)) or low == high:
        return None
    # In memory order: a C-order ravel of an x-fastest (NIfTI, DICOM) volume is a copy.
    flat = data.ravel(order="K")
    low, top = _histogram_range(flat, low, high)
    counts, centers = _histogram(flat, low, top)
    threshold = _otsu(counts, centers)
    if not _darker_class_is_air(counts, centers, threshold, low):
        return None
    return np.asarray(data > _past_bright_object(flat, counts, centers, threshold, low, high))


def _histogram(
    flat: npt.NDArray[np.float32], low: float, high: float, cap: float | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Counts and bin centres of the histogram skimage would take (256 equal bins from
    ``low`` to ``high``, voxels beyond them in the end bins), of the voxels at or below
    ``cap`` (all when None).

    Counted in chunks: skimage's own histogram of a whole volume holds temporaries as
    large as the volume. Counting chunk by chunk bins every voxel exactly as one call
    would (np.histogram bins each value on its own).
    """
    counts = np.zeros(OTSU_BINS, np.int64)
    for start in range(0, flat.size, CHUNK_VOXELS):  # equal bins: NumPy's fast path
        chunk = flat[start : start + CHUNK_VOXELS]
        if cap is not None:
            chunk = chunk[chunk <= cap]
        counts += np.histogram(np.clip(chunk, low, high), bins=OTSU_BINS, range=(low, high))[0]
    edges = np.histogram_bin_edges(flat[:1], bins=OTSU_BINS, range=(low, high))
    return counts, (edges[:-1] + edges[1:]) / 2


def _otsu(counts: npt.NDArray[np.int64], centers: npt.NDArray[np.float64]) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(hist=(counts, centers)))  # type: ignore[no-untyped-call]


def _past_bright_object(
    flat: npt.NDArray[np.float32],
    counts: npt.NDArray[np.int64],
    centers: npt.NDArray[np.float64],
    threshold: float,
    low: float,
    high: float,
) -> float:
    """Otsu's threshold between air and tissue when the brighter class is a bright
    object (the module docstring's *Bright objects*), else ``threshold``.

    ``counts`` and ``centers`` are the volume's histogram, ``threshold`` Otsu's threshold
    of it, ``low`` the histogram's bottom and ``high`` the volume's maximum.
    """
    if counts[centers > threshold].sum() < BRIGHT_OBJECT_FRACTION * flat.size:
        cap = threshold  # the brighter class is too small to be the body
    elif _count_equal(flat, high) >= SATURATED_FRACTION * flat.size:
        cap = float(np.nextafter(np.float32(high), np.float32(-np.inf)))  # all but the maximum
    else:
        return threshold
    rest_top = _largest_at_most(flat, cap)
    if not rest_top > low:
        return threshold  # nothing left to split
    rest_counts, rest_centers = _histogram(flat, low, rest_top, cap)
    retaken = _otsu(rest_counts, rest_centers)
    if not _darker_class_is_air(rest_counts, rest_centers, retaken, low):
        return threshold  # the rest is not air and tissue (air alone, say): keep the first
    return retaken


def _count_equal(flat: npt.NDArray[np.float32], value: float) -> int:
    """How many voxels equal ``value``, counted in chunks."""
    return sum(
        int(np.count_nonzero(flat[start : start + CHUNK_VOXELS] == value))
        for start in range(0, flat.size, CHUNK_VOXELS)
    )


def _largest_at_most(flat: npt.NDArray[np.float32], cap: float) -> float:
    """The largest voxel at most ``cap`` (-inf when there is none), in chunks."""
    largest = -np.inf
    for start in range(0, flat.size, CHUNK_VOXELS):
        chunk = flat[start : start + CHUNK_VOXELS]
        chunk = chunk[chunk <= cap]
        if chunk.size:
            largest = max(largest, float(chunk.max()))
    return largest


def _darker_class_is_air(
    counts: npt.NDArray[np.int64], centers: npt.NDArray[np.float64], threshold: float, low: float
) -> bool:
    """Whether the voxels at or below ``threshold`` are dark enough to be air: their
    mean (from the histogram) within :data:`AIR_DARKNESS` of the way from ``low`` to
    the mean of the voxels above it."""
    darker = centers <= threshold
    weights = counts.astype(np.float64)
    dark, bright = weights[darker].sum(), weights[~darker].sum()
    if dark == 0 or bright == 0:
        return True  # one class only: leave it to the components
    dark_mean = float((weights[darker] * centers[darker]).sum() / dark)
    bright_mean = float((weights[~darker] * centers[~darker]).sum() / bright)
    return dark_mean - low <= AIR_DARKNESS * (bright_mean - low)


def _histogram_range(flat: npt.NDArray[np.float32], low: float, high: float) -> tuple[float, float]:
    """The range Otsu's histogram spans: the volume's, unless a few extreme voxels (a
    spike, a hot pixel) lie far beyond the rest.

    An end is moved in to the 0.1 or 99.9 percentile (of an evenly strided sample of at
    most about a million voxels) when the voxels past that percentile reach more than
    :data:`SPIKE_REACH` times the percentiles' span beyond it; the voxels past it then
    count in the end bin. One bright voxel would otherwise widen every bin, so that the
    air's noise shares the first bin with the threshold and is cut in two (a 400 voxel
    in a box of 100 on 0-1 noise added 13 % of noise voxels to the box's mask). A volume
    without such spikes keeps its full range, and so the mask it always had.
    """
    sample = flat[:: max(1, flat.size // SPIKE_SAMPLE)]
    bottom, top = (float(v) for v in np.percentile(sample, [0.1, 99.9]))
    span = top - bottom
    if span <= 0:
        return low, high
    if high > top + SPIKE_REACH * span:
        high = top
    if low < bottom - SPIKE_REACH * span:
        low = bottom
    return low, high


def _large_components(data: npt.NDArray[np.float32], fraction: float) -> BoolArray | None:
    """The foreground's large components; None where there is no foreground or no
    background (the whole volume is the body)."""
    foreground = _foreground(data)
    if foreground is None:
        return None
    labels, count = _label(foreground, (0, 1, 2))
    del foreground  # only the labels are needed from here
    if count == 0:
        return None
    sizes = np.zeros(count + 1, np.int64)
    flat = labels.ravel(order="K")
    for start in range(0, flat.size, CHUNK_VOXELS):  # bincount casts to int64: in chunks
        sizes += np.bincount(flat[start : start + CHUNK_VOXELS], minlength=count + 1)
    sizes[0] = 0
    kept = sizes >= fraction * sizes.max()
    kept[0] = False
    return np.asarray(kept[labels])


def _label(mask: BoolArray, axes: tuple[int, ...]) -> tuple[npt.NDArray[np.integer], int]:
    """Components of ``mask`` connected along ``axes`` (:func:`scipy.ndimage.label`),
    their labels in 16 bits when :func:`_most_components` shows they fit (half the memory
    of 32), else in 32. (Asking scipy for 16 bits and catching its error would cost more:
    it labels again in 32 bits and compares before it gives up.)

    An x-fastest (Fortran-order) mask is labelled as its transpose, which is C-ordered
    (twice as fast in scipy), and the labels are transposed back: the same components.
    """
    reverse = mask.flags.f_contiguous and not mask.flags.c_contiguous
    if reverse:
        mask = mask.T
        axes = tuple(2 - axis for axis in axes)
    structure = np.zeros((3, 3, 3), bool)
    structure[1, 1, 1] = True
    for axis in axes:
        for step in (0, 2):
            index = [1, 1, 1]
            index[axis] = step
            structure[tuple(index)] = True
    fits = _most_components(mask, axes) <= np.iinfo(np.uint16).max
    output = np.uint16 if fits else np.int32
    labels, count = ndimage.label(mask, structure=structure, output=output)
    return (labels.T if reverse else labels), int(count)


def _most_components(mask: BoolArray, axes: tuple[int, ...]) -> int:
    """At least the number of components of ``mask`` connected along ``axes``: its voxels
    with no neighbour before them in the mask along any of ``axes`` (a component's first
    voxel in scan order is one), counted in slabs of whole slices."""
    slabs = max(1, CHUNK_VOXELS // max(1, mask[0].size))
    found = 0
    for first in range(0, mask.shape[0], slabs):
        block = mask[first : first + slabs]
        starts = block.copy()
        for axis in axes:
            later = (slice(None),) * axis + (slice(1, None),)
            earlier = (slice(None),) * axis + (slice(None, -1),)
            starts[later] &= ~block[earlier]
        if 0 in axes and first > 0:
            starts[0] &= ~mask[first - 1]
        found += int(np.count_nonzero(starts))
    return found


def _fill_holes(mask: BoolArray, axes: tuple[int, ...]) -> BoolArray:
    """``mask`` with the background regions that do not reach the border filled, in
    place (``mask`` is this module's own intermediate, never the caller's).

    Connectivity runs along ``axes`` only: all three fill 3D holes; two fill the holes of
    every slice across the remaining axis, in one labelling of the whole volume. The
    result is written back slab by slab, so at most the mask and its labels are held.
    """
    np.logical_not(mask, out=mask)  # the background
    labels, count = _label(mask, axes)
    reaches_border = np.zeros(count + 1, bool)
    for axis in axes:
        for end in (0, -1):
            face = labels[(slice(None),) * axis + (end,)]  # a view (np.take copies slowly)
            reaches_border[np.unique(face)] = True
    reaches_border[0] = False
    inside = ~reaches_border  # the mask and the enclosed background (label 0: the mask)
    slowest = 2 if mask.flags.f_contiguous and not mask.flags.c_contiguous else 0
    slabs = max(1, CHUNK_VOXELS * mask.shape[slowest] // max(1, mask.size))
    for first in range(0, mask.shape[slowest], slabs):
        slab = (slice(None),) * slowest + (slice(first, first + slabs),)
        mask[slab] = inside[labels[slab]]
    return mask


@dataclass(frozen=True, eq=False)
class PackedMask:
    """A boolean volume ``(X, Y, Z)`` at one bit per voxel: 1/32 of the float32 volume.

    MR→CT methods keep the input's body mask from preprocess to postprocess, through the
    whole sliding window; packed, it adds little to the peak there. It is packed in
    slabs of whole ``z`` slices, so that it can be applied to a volume slab by slab
    without unpacking it whole.

    Example:
        >>> mask = np.zeros((4, 3, 5), bool)
        >>> mask[1:3, :, 2:] = True
        >>> packed = PackedMask.pack(mask)
        >>> bool((packed.unpack() == mask).all())
        True
        >>> volume = torch.zeros(1, 4, 3, 5)
        >>> int(packed.fill_outside_(volume, -1000.0).eq(-1000.0).sum())
        42
    """

    shape: tuple[int, int, int]
    """The mask's shape."""
    slabs: tuple[tuple[int, int, npt.NDArray[np.uint8]], ...]
    """``(first z, end z, bits)`` of every slab, the bits of its C-ordered voxels."""

    @classmethod
    def pack(cls, mask: npt.ArrayLike) -> PackedMask:
        """Pack a 3D boolean ``mask`` (any memory order)."""
        data = np.asarray(mask, bool)
        if data.ndim != 3:
            raise GeometryError(f"a packed mask is 3D, got shape {data.shape}")
        x, y, z = (int(n) for n in data.shape)
        step = max(1, CHUNK_VOXELS // max(1, x * y))
        slabs = tuple(
            (first, min(first + step, z), np.packbits(data[:, :, first : first + step]))
            for first in range(0, z, step)
        )
        return cls((x, y, z), slabs)

    def _slab(self, first: int, end: int, bits: npt.NDArray[np.uint8]) -> BoolArray:
        x, y, _ = self.shape
        count = x * y * (end - first)
        return np.unpackbits(bits, count=count).reshape(x, y, end - first).view(bool)

    def unpack(self) -> BoolArray:
        """The mask as a boolean array."""
        mask = np.empty(self.shape, bool)
        for first, end, bits in self.slabs:
            mask[:, :, first:end] = self._slab(first, end, bits)
        return mask

    def fill_outside_(self, volume: torch.Tensor, value: float) -> torch.Tensor:
        """Set every voxel of ``volume`` (``(..., X, Y, Z)``, the mask's spatial shape)
        outside the mask to ``value``, in place, slab by slab; returns ``volume``."""
        if tuple(volume.shape[-3:]) != self.shape:
            raise GeometryError(
                f"the mask has shape {self.shape}, the volume {tuple(volume.shape[-3:])}"
            )
        for first, end, bits in self.slabs:
            outside = torch.from_numpy(~self._slab(first, end, bits)).to(volume.device)
            volume[..., first:end].masked_fill_(outside, value)
        return volume
