"""The error of a synthetic CT in the air around the body, which the SynthRAD metrics ignore.

The SynthRAD2025 metrics look inside a body mask only, but a synthetic CT is used whole
(dose calculation, attenuation correction), so what a method puts in the air matters
too. :func:`air_mae` is the mean absolute error over the *air region*: the voxels where

1. the reference CT is below -900 HU (:data:`AIR_THRESHOLD_HU`),
2. the mask is off (``mask <= 0``, the SynthRAD binarisation of the body mask), and
3. the distance to the nearest mask voxel is at least 10 voxels
   (:data:`AIR_MARGIN_VOXELS`): the Euclidean distance transform of the outside
   (:func:`scipy.ndimage.distance_transform_edt` of ``mask <= 0``), in voxels of the
   reference's grid whatever the spacing, so a voxel next to the mask is at distance 1.

The margin keeps the skin, the partial-volume voxels around it and a mask drawn a little
tight out of the air score. Values are raw HU, not clipped (as the SynthRAD MAE): a
reference that stores the outside of the scanner's field of view as -2048 or -3024 HU
counts those voxels with their stored values.

With no such voxel (a field of view that ends at the skin, a mask that covers the volume,
or no mask at all) the metric is undefined: :func:`air_mae` and the ``air_mae`` metric
raise :class:`~medi2i.evaluation.image_metrics.MetricUndefinedError` saying why, and
:func:`~medi2i.evaluation.evaluate_case` (``medi2i evaluate``, workflows) records it as
NaN, shown as ``n/a`` with that reason.

Example:
    >>> import numpy as np
    >>> ct = np.full((32, 32, 32), -1000.0)
    >>> body = np.zeros_like(ct)
    >>> body[12:20, 12:20, 12:20] = 1
    >>> air_mae(ct, ct + 20.0, body)
    20.0
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from medi2i.evaluation.image_metrics import MetricUndefinedError, masked_arrays

AIR_THRESHOLD_HU = -900.0
"""Reference CT values below this are air (HU)."""
AIR_MARGIN_VOXELS = 10.0
"""Smallest distance from the mask of a scored air voxel, in voxels."""

AIR_MAE_MISSING = (
    f"no reference air (below {AIR_THRESHOLD_HU:.0f} HU) {AIR_MARGIN_VOXELS:.0f} voxels or "
    "more outside the body mask, e.g. a field of view that ends at the skin"
)
"""Why a case has no ``air_mae``, as the result tables explain a missing value."""
AIR_MAE_NO_MASK = (
    "no body mask was given, so every voxel is inside the body and none is air around it; "
    "give the body mask (`medi2i mask` writes one)"
)
"""Why ``air_mae`` has no value without a mask."""

BoolArray = npt.NDArray[np.bool_]


def air_region(
    gt: npt.ArrayLike,
    mask: npt.ArrayLike,
    *,
    threshold_hu: float = AIR_THRESHOLD_HU,
    margin_voxels: float = AIR_MARGIN_VOXELS,
) -> BoolArray:
    """The voxels :func:`air_mae` scores (the module docstring says which).

    Args:
        gt: Reference CT (HU), 3D.
        mask: Body mask, same shape; voxels with ``mask > 0`` are the body.
        threshold_hu: Reference values below this are air.
        margin_voxels: Smallest distance from the mask, in voxels.

    Returns:
        Boolean array of the air region (possibly empty).

    Raises:
        GeometryError: The arrays differ in shape, are not 3D, or the mask is empty.
    """
    reference, _, inside = masked_arrays(gt, gt, mask)
    return _air(reference, inside, threshold_hu, margin_voxels)


def air_mae(gt: npt.ArrayLike, pred: npt.ArrayLike, mask: npt.ArrayLike) -> float:
    """Mean absolute error in the air around the body, in HU (see the module docstring).

    Args:
        gt: Reference CT (HU), 3D.
        pred: Synthetic CT (HU), same shape.
        mask: Body mask, same shape; voxels with ``mask > 0`` are the body.

    Returns:
        Mean of ``|gt - pred|`` over the air region.

    Raises:
        GeometryError: The arrays differ in shape, are not 3D, or the mask is empty.
        MetricUndefinedError: The air region is empty (no reference air 10 voxels or
            more from the mask, e.g. a mask that covers the volume); its ``reason`` is
            :data:`AIR_MAE_MISSING`.
    """
    reference, prediction, inside = masked_arrays(gt, pred, mask)
    air = _air(reference, inside, AIR_THRESHOLD_HU, AIR_MARGIN_VOXELS)
    if not air.any():
        raise MetricUndefinedError("air_mae", AIR_MAE_MISSING)
    return float(np.mean(np.abs(reference[air] - prediction[air])))


def _air(
    reference: npt.NDArray[np.float64], inside: BoolArray, threshold_hu: float, margin: float
) -> BoolArray:
    # distance of every outside voxel to the nearest mask voxel (0 inside the mask)
    distance = ndimage.distance_transform_edt(~inside)
    return np.asarray((reference < threshold_hu) & (distance >= margin))
