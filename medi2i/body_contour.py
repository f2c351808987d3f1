"""The body (or head) in an MR volume, found from its intensities alone.

:func:`body_mask` marks the voxels of the body in a volume that shows air around it, as
MR volumes do. MR→CT methods use it to set every voxel outside the input's body to air
(``body_contour`` in their options), so a synthetic CT carries no structure in the air;
``medi2i mask INPUT OUTPUT`` writes it for a file.

The steps, all on the volume's own voxel grid (no resampling):

1. **Threshold.** Voxels above Otsu's threshold of the whole volume (256-bin histogram
   of every voxel, :func:`skimage.filters.threshold_otsu`) are foreground. Air is dark
   and usually the largest class, so the threshold falls between air and tissue.
   Otsu's threshold moves with any increasing affine change of the intensities, so a
   z-score normalized volume gives the same mask as the raw one.
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

Limits: the volume must show air around the body. In a volume cropped inside the body,
dark tissue at its border is taken for air; turn a method's ``body_contour`` off for
such volumes. A volume with no foreground (constant) gives an all-true mask: nothing is
ever set to air for want of a mask.

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

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from medi2i.errors import GeometryError

BoolArray = npt.NDArray[np.bool_]

MARGIN_VOXELS = 2.0
"""Default margin added around the filled body, in voxels."""
MIN_COMPONENT_FRACTION = 0.01
"""Default smallest kept component, as a fraction of the largest one's voxels."""
OTSU_BINS = 256
"""Bins of the histogram Otsu's threshold is taken from (skimage's default)."""
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
        A boolean array ``(X, Y, Z)``, True in the body.

    Raises:
        GeometryError: The volume is not 3D (or channel-first 3D).
        ValueError: A parameter is out of range.
    """
    data = _spatial(volume)
    if margin_voxels < 0 or not 0.0 < min_component_fraction <= 1.0:
        raise ValueError(
            f"margin_voxels must be >= 0 (got {margin_voxels}) and min_component_fraction "
            f"in (0, 1] (got {min_component_fraction})"
        )
    foreground = _foreground(data)
    if not foreground.any():
        return np.ones(data.shape, bool)
    body = _large_components(foreground, min_component_fraction)
    del foreground  # the steps below hold at most the mask, its labels and one result
    body = _fill_holes(body, (0, 1, 2))
    for axis in range(3):
        in_plane = tuple(a for a in range(3) if a != axis)
        body = _fill_holes(body, in_plane)
    body = _fill_holes(body, (0, 1, 2))
    if margin_voxels > 0:
        body = _dilate(body, _ball(margin_voxels))
    return body


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
    data = np.asarray(volume, np.float32)
    if data.ndim == 4:  # one channel is a view, several their mean (a new volume)
        data = data[0] if data.shape[0] == 1 else data.mean(axis=0)
    if data.ndim != 3 or min(data.shape) < 1:
        raise GeometryError(
            f"a body mask needs a 3D volume (or a channel-first 3D one), got shape "
            f"{np.shape(volume)}"
        )
    return data


def _foreground(data: npt.NDArray[np.float32]) -> BoolArray:
    low, high = float(data.min()), float(data.max())
    if not (np.isfinite(low) and np.isfinite(high)) or low == high:
        return np.zeros(data.shape, bool)
    from skimage.filters import threshold_otsu

    # Otsu's threshold from the histogram skimage would take (256 equal bins from the
    # minimum to the maximum), counted in chunks: skimage's own histogram of a whole
    # volume holds temporaries as large as the volume. Counting chunk by chunk bins
    # every voxel exactly as one call would (np.histogram bins each value on its own).
    # In memory order: a C-order ravel of an x-fastest (NIfTI, DICOM) volume is a copy.
    flat = data.ravel(order="K")
    counts = np.zeros(OTSU_BINS, np.int64)
    for start in range(0, flat.size, CHUNK_VOXELS):  # equal bins: NumPy's fast path
        chunk = flat[start : start + CHUNK_VOXELS]
        counts += np.histogram(chunk, bins=OTSU_BINS, range=(low, high))[0]
    edges = np.histogram_bin_edges(flat[:1], bins=OTSU_BINS, range=(low, high))
    centers = (edges[:-1] + edges[1:]) / 2
    threshold = float(threshold_otsu(hist=(counts, centers)))  # type: ignore[no-untyped-call]
    return np.asarray(data > threshold)


def _large_components(foreground: BoolArray, fraction: float) -> BoolArray:
    labels, count = _label(foreground)
    sizes = np.zeros(count + 1, np.int64)
    flat = labels.ravel(order="K")
    for start in range(0, flat.size, CHUNK_VOXELS):  # bincount casts to int64: in chunks
        sizes += np.bincount(flat[start : start + CHUNK_VOXELS], minlength=count + 1)
    sizes[0] = 0
    kept = sizes >= fraction * sizes.max()
    kept[0] = False
    return np.asarray(kept[labels])


def _label(
    mask: BoolArray, structure: BoolArray | None = None
) -> tuple[npt.NDArray[np.integer], int]:
    """Connected components of ``mask`` (:func:`scipy.ndimage.label`), their labels in
    16 bits when they fit (half the memory of scipy's default 32), else in 32.

    An x-fastest (Fortran-order) mask is labelled as its transpose, which is C-ordered
    (twice as fast in scipy), and the labels are transposed back: the same components.
    """
    reverse = mask.flags.f_contiguous and not mask.flags.c_contiguous
    if reverse:
        mask = mask.T
        structure = None if structure is None else structure.T
    try:
        labels, count = ndimage.label(mask, structure=structure, output=np.uint16)
    except RuntimeError:  # more than 65535 components
        labels, count = ndimage.label(mask, structure=structure, output=np.int32)
    return (labels.T if reverse else labels), int(count)


def _fill_holes(mask: BoolArray, axes: tuple[int, ...]) -> BoolArray:
    """``mask`` with the background regions that do not reach the border filled.

    Connectivity runs along ``axes`` only: all three fill 3D holes; two fill the holes of
    every slice across the remaining axis, in one labelling of the whole volume.
    """
    structure = np.zeros((3, 3, 3), bool)
    structure[1, 1, 1] = True
    for axis in axes:
        for step in (0, 2):
            index = [1, 1, 1]
            index[axis] = step
            structure[tuple(index)] = True
    labels, count = _label(~mask, structure)
    reaches_border = np.zeros(count + 1, bool)
    for axis in axes:
        for end in (0, -1):
            face = labels[(slice(None),) * axis + (end,)]  # a view (np.take copies slowly)
            reaches_border[np.unique(face)] = True
    reaches_border[0] = False
    filled: BoolArray = reaches_border[labels]
    del labels
    np.logical_not(filled, out=filled)
    return filled
