"""The benchmarks' metric masks: the head of an MR, the body of a CT."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from medi2i import InputError
from medi2i.synth.scanner_styles import otsu_threshold
from medi2i_bench.cases import BoolArray

BODY_THRESHOLD_HU = -500.0
"""A CT voxel above this is in the body (Q1, Q1x, Q4), before holes are filled."""


def head_mask(image: npt.ArrayLike) -> BoolArray:
    """Foreground of an MR volume: the head (Colin27) or the brain (skull-stripped MNI152).

    Voxels above half the Otsu threshold, closed with a 5³ cube, holes filled in 3D and
    then slice by slice (axial), largest connected component kept. Used as the metric
    mask of Q2 and Q3 (on the clean reference) and by the z-score baseline (on its input).
    """
    data = np.asarray(image, np.float32)
    foreground = data > 0.5 * otsu_threshold(data)
    foreground = ndimage.binary_closing(foreground, structure=np.ones((5, 5, 5), bool))
    foreground = ndimage.binary_fill_holes(foreground)
    labelled, count = ndimage.label(foreground)
    if count == 0:
        raise InputError("the image has no foreground above its Otsu threshold")
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    largest = labelled == int(sizes.argmax())
    for index in range(largest.shape[2]):
        largest[:, :, index] = ndimage.binary_fill_holes(largest[:, :, index])
    return np.asarray(largest)


def body_mask(ct_hu: npt.ArrayLike, *, fill_slices_axis: int | None = None) -> BoolArray:
    """Q1's body mask: CT > -500 HU, holes filled (3D).

    Args:
        ct_hu: CT volume in HU.
        fill_slices_axis: Also fill the holes of every slice across this array axis
            (Q1x: 2, axial). A chest scan that ends inside the lungs leaves them open to
            the outside in 3D, so they stay out of the mask; in each axial slice the
            chest wall closes them.

    Returns:
        The mask, boolean, of the CT's shape.
    """
    mask = np.asarray(ndimage.binary_fill_holes(np.asarray(ct_hu) > BODY_THRESHOLD_HU))
    if fill_slices_axis is not None:
        moved = np.moveaxis(mask, fill_slices_axis, 0)
        for index in range(moved.shape[0]):
            moved[index] = ndimage.binary_fill_holes(moved[index])
    return mask
