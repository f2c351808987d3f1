"""Masked image metrics for MR outputs (harmonization, super-resolution).

MR intensities have no absolute scale, so unlike the SynthRAD CT metrics nothing is
clipped to a fixed range here: the data range defaults to the reference's range
inside the mask, the same choice as the built-in ``psnr`` metric, so that ``psnr``
and :func:`masked_psnr` agree.

Example:
    >>> import numpy as np
    >>> t1 = np.linspace(0.0, 1.0, 8**3).reshape(8, 8, 8)
    >>> round(masked_mae(t1, t1 + 0.1, t1 > 0.5), 6)
    0.1
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from skimage.metrics import structural_similarity

from medi2i.errors import GeometryError, InputError, OptionsError

SSIM_WINDOW = 7
"""Edge of the cubic uniform SSIM window (voxels): skimage's default."""
ROBUST_RANGE_PERCENTILES = (1.0, 99.0)
"""Percentiles of the reference inside the mask whose gap normalises the histogram distance."""

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class MetricUndefinedError(InputError):
    """A metric has no value for these volumes (e.g. ``air_mae`` with no air around the
    mask); :attr:`reason` says why, as the result tables' ``n/a`` notes do.

    :func:`medi2i.evaluation.evaluate_case` (``medi2i evaluate``, a workflow's evaluate
    stage) records such a metric as NaN, shown as ``n/a`` with the reason.
    """

    def __init__(self, metric: str, reason: str) -> None:
        super().__init__(f"metric {metric!r} is undefined here: {reason}")
        self.metric = metric
        self.reason = reason


def masked_mae(reference: npt.ArrayLike, prediction: npt.ArrayLike, mask: npt.ArrayLike) -> float:
    """Mean absolute difference over the voxels with ``mask > 0``, in image units.

    Raises:
        GeometryError: The arrays differ in shape, are not 3D, or the mask is empty.
    """
    ref, pred, inside = masked_arrays(reference, prediction, mask)
    return float(np.mean(np.abs(ref[inside] - pred[inside])))


def masked_psnr(
    reference: npt.ArrayLike,
    prediction: npt.ArrayLike,
    mask: npt.ArrayLike,
    *,
    data_range: float | None = None,
) -> float:
    """Peak signal-to-noise ratio over the voxels with ``mask > 0``.

    Args:
        reference: Reference image, 3D.
        prediction: Image to evaluate, same shape.
        mask: Voxels with ``mask > 0`` are evaluated; same shape.
        data_range: Peak value, in image units; by default the reference's maximum
            minus its minimum inside the mask.

    Returns:
        PSNR in dB; ``inf`` when the images agree on every mask voxel.

    Raises:
        GeometryError: The arrays differ in shape, are not 3D, or the mask is empty.
        InputError: The reference is constant inside the mask and ``data_range`` is
            not given (it has no range to be the peak).
        OptionsError: ``data_range`` is not positive.
    """
    ref, pred, inside = masked_arrays(reference, prediction, mask)
    peak = _data_range(ref[inside], data_range)
    mse = float(np.mean((ref[inside] - pred[inside]) ** 2))
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(peak**2 / mse))


def masked_ssim(
    reference: npt.ArrayLike,
    prediction: npt.ArrayLike,
    mask: npt.ArrayLike,
    *,
    data_range: float | None = None,
) -> float:
    """Structural similarity averaged over the voxels with ``mask > 0``.

    The SSIM map is skimage's ``structural_similarity(full=True)`` on the whole 3D
    images: a 7×7×7 uniform window, sample covariance, K1 = 0.01 and K2 = 0.03, as in
    Wang et al. (2004) except for the uniform window. Windows near the mask's edge
    see the voxels around it too, so the background counts where it touches the
    anatomy; the images are not masked before filtering.

    Args:
        reference: Reference image, 3D, at least 7 voxels along each axis.
        prediction: Image to evaluate, same shape.
        mask: Voxels with ``mask > 0`` are averaged; same shape.
        data_range: Dynamic range in image units, which sets SSIM's stabilising
            constants; by default the reference's range inside the mask, as for
            :func:`masked_psnr`.

    Returns:
        Mean SSIM over the mask, at most 1 (identical images).

    Raises:
        GeometryError: The arrays differ in shape, are not 3D, are smaller than the
            window, or the mask is empty.
        InputError: The reference is constant inside the mask and ``data_range`` is
            not given.
        OptionsError: ``data_range`` is not positive.
    """
    ref, pred, inside = masked_arrays(reference, prediction, mask)
    if min(ref.shape) < SSIM_WINDOW:
        raise GeometryError(
            f"SSIM needs at least {SSIM_WINDOW} voxels along each axis, got {ref.shape}"
        )
    peak = _data_range(ref[inside], data_range)
    _, ssim_map = structural_similarity(  # type: ignore[no-untyped-call]
        ref, pred, win_size=SSIM_WINDOW, data_range=peak, full=True
    )
    return float(np.mean(ssim_map[inside]))


def histogram_distance(
    reference: npt.ArrayLike,
    prediction: npt.ArrayLike,
    mask: npt.ArrayLike,
    *,
    bins: int = 100,
) -> float:
    """Wasserstein-1 distance between the intensity distributions inside the mask,
    approximated from quantiles.

    It compares the images' histograms and ignores where the intensities lie, so it
    measures how well a harmonization matched the target scanner's contrast. The
    distance is approximated as the mean absolute difference of the two images'
    quantiles at ``bins`` evenly spaced levels (the bin centres ``(k + 0.5) / bins``),
    which is exact for a shifted or scaled copy, and divided by the reference's
    robust range (its 99th minus its 1st percentile inside the mask), so that 0.01
    means "1% of the reference's contrast range" whatever the intensity scale.

    Args:
        reference: Reference image, 3D.
        prediction: Image to evaluate, same shape.
        mask: Voxels with ``mask > 0`` are compared; same shape.
        bins: Number of quantile levels.

    Returns:
        The normalised distance (unitless), 0 for identical distributions.

    Raises:
        GeometryError: The arrays differ in shape, are not 3D, or the mask is empty.
        InputError: The reference is constant inside the mask (no range to divide by).
        OptionsError: ``bins`` is less than 1.
    """
    if bins < 1:
        raise OptionsError(f"histogram_distance needs bins >= 1, got {bins}")
    ref, pred, inside = masked_arrays(reference, prediction, mask)
    levels = (np.arange(bins) + 0.5) / bins
    gap = np.abs(np.quantile(ref[inside], levels) - np.quantile(pred[inside], levels))
    return float(np.mean(gap) / _robust_range(ref[inside]))


EDGE_QUANTILE = 0.9
"""Voxels of the mask whose reference gradient magnitude is at or above this quantile
are the edges :func:`edge_sharpness` looks at (the strongest tenth)."""


def edge_sharpness(
    reference: npt.ArrayLike,
    prediction: npt.ArrayLike,
    mask: npt.ArrayLike,
    *,
    quantile: float = EDGE_QUANTILE,
) -> float:
    """How steep the prediction's edges are where the reference has edges, relative to
    the reference's own.

    PSNR and SSIM reward a blurred answer that is right on average, so a method that
    restores sharp boundaries (a GAN, say) can lose on them while looking better. This
    measure compares the gradient magnitudes (central differences along the three array
    axes, in intensity per voxel) of the two images at the reference's edges: the voxels
    of the mask where the reference's gradient magnitude is in its top ``1 - quantile``
    fraction. It is the mean prediction gradient there divided by the mean reference
    gradient there: 1 means as sharp as the reference, below 1 blurred (interpolation
    across thick slices gives about 0.6-0.8), above 1 overshoot (ringing or
    exaggerated contrast). Edges drawn where the reference has none do not count, so
    invented detail earns nothing. On an isotropic reference grid the axes weigh equally;
    on an anisotropic one they are still per voxel.

    Args:
        reference: Reference image, 3D.
        prediction: Image to evaluate, same shape.
        mask: Voxels with ``mask > 0`` are considered; same shape.
        quantile: The edge threshold, in [0, 1).

    Returns:
        The ratio (unitless).

    Raises:
        GeometryError: The arrays differ in shape, are not 3D, or the mask is empty.
        OptionsError: ``quantile`` is outside [0, 1), or the reference is constant on
            the mask.
    """
    if not 0.0 <= quantile < 1.0:
        raise OptionsError(f"edge_sharpness needs a quantile in [0, 1), got {quantile}")
    ref, pred, inside = masked_arrays(reference, prediction, mask)
    ref_gradient = _gradient_magnitude(ref)
    pred_gradient = _gradient_magnitude(pred)
    threshold = np.quantile(ref_gradient[inside], quantile)
    edges = inside & (ref_gradient >= threshold)
    steepness = float(np.mean(ref_gradient[edges]))
    if steepness <= 0.0:
        raise OptionsError("edge_sharpness: the reference has no edge inside the mask")
    return float(np.mean(pred_gradient[edges]) / steepness)


def _gradient_magnitude(values: FloatArray) -> FloatArray:
    components = np.gradient(values)
    return np.asarray(np.sqrt(sum(c * c for c in components)), np.float64)


def _robust_range(values: FloatArray) -> float:
    low, high = np.percentile(values, ROBUST_RANGE_PERCENTILES)
    if high > low:
        return float(high - low)
    full = float(values.max() - values.min())
    if full > 0:
        return full
    raise InputError(_constant_reference(values, "histogram_distance's unit"))


def _data_range(reference_inside: FloatArray, data_range: float | None) -> float:
    if data_range is not None:
        if not data_range > 0:
            raise OptionsError(f"data_range must be positive, got {data_range}")
        return float(data_range)
    spread = float(reference_inside.max() - reference_inside.min())
    if spread > 0:
        return spread
    raise InputError(
        _constant_reference(reference_inside, "the peak of PSNR and the constants of SSIM")
    )


def _constant_reference(values: FloatArray, what: str) -> str:
    """Why a metric measured against the reference's range is undefined here."""
    return (
        f"the reference is constant inside the mask (every voxel {float(values[0]):g}), so "
        f"it has no range to set {what}: a score against it would mean nothing; evaluate "
        "in a mask where the reference varies, or choose metrics that need no range "
        "(mae, or the synthrad preset's fixed HU range; in Python, psnr and ssim take "
        "data_range=)"
    )


def masked_arrays(
    reference: npt.ArrayLike, prediction: npt.ArrayLike, mask: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """The images as float64 arrays and the mask as ``mask > 0``, checked for metrics.

    Raises:
        GeometryError: The arrays differ in shape, are not 3D, or the mask is empty.
    """
    ref = np.asarray(reference, dtype=np.float64)
    pred = np.asarray(prediction, dtype=np.float64)
    inside = np.asarray(mask) > 0
    if len({ref.shape, pred.shape, inside.shape}) != 1 or ref.ndim != 3:
        raise GeometryError(
            "image metrics need a 3D reference, prediction and mask of one shape, got "
            f"{ref.shape}, {pred.shape} and {inside.shape}; resample them onto one grid"
        )
    if not inside.any():
        raise GeometryError("the mask selects no voxel (mask > 0 nowhere); check the mask file")
    return ref, pred, inside
