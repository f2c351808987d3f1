"""The evaluation metrics as :class:`medi2i.Metric` objects, and named sets of them.

:func:`evaluation_metrics` is what the ``register_metrics`` hook hands over; commands
then pick metrics by name or by preset (:data:`METRIC_PRESETS`) from the registry, so
plugin metrics can be asked for the same way.

Example:
    >>> import numpy as np
    >>> metric = SynthradMeanAbsoluteError()
    >>> metric(np.zeros((4, 4, 4)), np.full((4, 4, 4), 10.0))  # reference, prediction
    10.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medi2i.errors import OptionsError
from medi2i.evaluation import air, image_metrics, synthrad
from medi2i.metrics import BoolArray, FloatArray, Metric

METRIC_PRESETS: Mapping[str, tuple[str, ...]] = {
    "synthrad": ("synthrad_mae", "synthrad_psnr", "synthrad_ms_ssim", "air_mae"),
    "mr": ("mae", "psnr", "ssim", "histogram_distance"),
    "super_resolution": ("psnr", "ssim", "edge_sharpness"),
}
"""Metric names behind each preset: ``synthrad`` for synthetic CT (HU): the three
SynthRAD2025 metrics inside the mask and, beside them, ``air_mae`` outside it (not a
challenge metric); ``mr`` for MR (harmonization); ``super_resolution`` for a restored
image against its high-resolution original (MR intensities, no fixed range)."""


@dataclass(frozen=True)
class SynthradMeanAbsoluteError(Metric):
    """SynthRAD2025 MAE: mean ``|reference - prediction|`` in the mask, raw HU."""

    name: str = "synthrad_mae"
    higher_is_better: bool = False
    units: str = "HU"

    def score(self, reference: FloatArray, prediction: FloatArray, inside: BoolArray) -> float:
        return synthrad.mae(reference, prediction, inside)


@dataclass(frozen=True)
class SynthradPeakSignalToNoiseRatio(Metric):
    """SynthRAD2025 PSNR: both clipped to [-1024, 3071] HU, peak 4095 HU."""

    name: str = "synthrad_psnr"
    higher_is_better: bool = True
    units: str = "dB"

    def score(self, reference: FloatArray, prediction: FloatArray, inside: BoolArray) -> float:
        return synthrad.psnr(reference, prediction, inside)


@dataclass(frozen=True)
class SynthradMultiScaleSsim(Metric):
    """SynthRAD2025 masked MS-SSIM (see :func:`medi2i.evaluation.synthrad.ms_ssim`).

    The challenge binarises the mask as ``mask > 0`` before anything else, so the
    boolean mask :class:`Metric` passes on loses nothing.
    """

    name: str = "synthrad_ms_ssim"
    higher_is_better: bool = True
    units: str = ""

    def score(self, reference: FloatArray, prediction: FloatArray, inside: BoolArray) -> float:
        return synthrad.ms_ssim(reference, prediction, inside)


@dataclass(frozen=True)
class AirMeanAbsoluteError(Metric):
    """MAE in the air around the body (see :func:`medi2i.evaluation.air.air_mae`).

    Reference below -900 HU, outside the mask and at least 10 voxels from it; raw HU.
    Called without a mask (the whole volume is then inside) or with no such voxel, it
    raises :class:`~medi2i.evaluation.image_metrics.MetricUndefinedError` saying why;
    :func:`evaluate_case` records that as NaN (``n/a`` in ``medi2i evaluate``).

    Example:
        >>> import numpy as np
        >>> ct = np.full((32, 32, 32), -1000.0)
        >>> try:
        ...     AirMeanAbsoluteError()(ct, ct, None)
        ... except image_metrics.MetricUndefinedError as error:
        ...     print(error.reason.split(",")[0])
        no body mask was given
    """

    name: str = "air_mae"
    higher_is_better: bool = False
    units: str = "HU"

    def __call__(
        self,
        reference: npt.ArrayLike,
        prediction: npt.ArrayLike,
        mask: npt.ArrayLike | None = None,
    ) -> float:
        """:meth:`medi2i.Metric.__call__`; a missing mask is refused (no air is outside).

        Raises:
            MetricUndefinedError: No mask, or no air region (see :func:`air.air_mae`).
        """
        if mask is None:
            raise image_metrics.MetricUndefinedError(self.name, air.AIR_MAE_NO_MASK)
        return super().__call__(reference, prediction, mask)

    def score(self, reference: FloatArray, prediction: FloatArray, inside: BoolArray) -> float:
        return air.air_mae(reference, prediction, inside)


@dataclass(frozen=True)
class MaskedStructuralSimilarity(Metric):
    """Mean 3D SSIM map in the mask (see :func:`medi2i.evaluation.image_metrics.masked_ssim`)."""

    name: str = "ssim"
    higher_is_better: bool = True
    units: str = ""

    def score(self, reference: FloatArray, prediction: FloatArray, inside: BoolArray) -> float:
        return image_metrics.masked_ssim(reference, prediction, inside)


@dataclass(frozen=True)
class HistogramDistance(Metric):
    """Wasserstein-1 distance of the intensity distributions in the mask, from 100
    quantiles of each.

    In units of the reference's 1st-99th percentile range; see
    :func:`medi2i.evaluation.image_metrics.histogram_distance`.
    """

    name: str = "histogram_distance"
    higher_is_better: bool = False
    units: str = "reference range"

    def score(self, reference: FloatArray, prediction: FloatArray, inside: BoolArray) -> float:
        return image_metrics.histogram_distance(reference, prediction, inside)


@dataclass(frozen=True)
class EdgeSharpness(Metric):
    """Prediction gradient over reference gradient at the reference's strongest edges in
    the mask (see :func:`medi2i.evaluation.image_metrics.edge_sharpness`); 1 is as sharp
    as the reference, below 1 blurred, above 1 overshoot."""

    name: str = "edge_sharpness"
    higher_is_better: bool = True
    units: str = ""

    def score(self, reference: FloatArray, prediction: FloatArray, inside: BoolArray) -> float:
        return image_metrics.edge_sharpness(reference, prediction, inside)


def evaluation_metrics() -> list[Metric]:
    """The metrics of this package, for the ``register_metrics`` hook."""
    return [
        SynthradMeanAbsoluteError(),
        SynthradPeakSignalToNoiseRatio(),
        SynthradMultiScaleSsim(),
        AirMeanAbsoluteError(),
        MaskedStructuralSimilarity(),
        HistogramDistance(),
        EdgeSharpness(),
    ]


VALIDATION_METRICS: Mapping[str, Mapping[str, str]] = {
    "HU": {"mae": "synthrad_mae", "psnr": "synthrad_psnr"},
    "arbitrary": {"mae": "mae", "psnr": "psnr"},
}
"""The metrics behind training validation's ``mae`` and ``psnr`` by the units of the
method's output: for a CT in HU those of the ``synthrad`` preset (the PSNR over the
fixed range [-1024, 3071] HU), for anything else those of the ``mr`` preset; so a run's
validation and its evaluate stage score a case alike."""


def validation_metrics(units: str) -> dict[str, Metric]:
    """The built-in metrics training validation reports, by the name it reports them
    under (``mae`` ranks checkpoints), for an output in ``units`` (:data:`VALIDATION_METRICS`).

    Example:
        >>> validation_metrics("HU")["psnr"].name
        'synthrad_psnr'
    """
    from medi2i.metrics import builtin_metrics

    available = {m.name: m for m in (*builtin_metrics(), *evaluation_metrics())}
    names = VALIDATION_METRICS.get(units, VALIDATION_METRICS["arbitrary"])
    return {reported: available[name] for reported, name in names.items()}


def describe_presets(metrics: Sequence[Metric] | None = None) -> str:
    """The presets and the metric names behind each, as ``--metrics``'s help gives them:
    made from :data:`METRIC_PRESETS`, so the help cannot drift from what runs.

    Args:
        metrics: The metrics whose units mark a preset as one for CT in HU; this
            package's (:func:`evaluation_metrics`) when ``None``.

    Example:
        >>> describe_presets().split("; ")[1]
        'mr: mae,psnr,ssim,histogram_distance'
    """
    units = {m.name: m.units for m in (evaluation_metrics() if metrics is None else metrics)}
    described = []
    for preset, names in METRIC_PRESETS.items():
        kind = "CT in HU, " if any(units.get(name) == "HU" for name in names) else ""
        described.append(f"{preset}: {kind}{','.join(names)}")
    return "; ".join(described)


def select_metrics(spec: str, available: Mapping[str, Metric]) -> list[Metric]:
    """The metrics a comma-separated list of names and presets asks for, in order.

    Args:
        spec: E.g. ``"synthrad"``, ``"mr"`` or ``"mae,ssim"``; presets and names mix.
        available: Registered metrics by name (``Registry(...).metrics``).

    Returns:
        The metrics, each once, in the order asked.

    Raises:
        OptionsError: A name is neither a preset nor a registered metric, or none is given.
    """
    names: list[str] = []
    for item in (part.strip() for part in spec.split(",")):
        for name in METRIC_PRESETS.get(item, (item,) if item else ()):
            if name not in names:
                names.append(name)
    unknown = [name for name in names if name not in available]
    if unknown or not names:
        problem = f"unknown metrics: {', '.join(unknown)}" if unknown else "no metric given"
        raise OptionsError(
            f"{problem}; use a preset ({', '.join(METRIC_PRESETS)}) or registered metric "
            f"names ({', '.join(sorted(available)) or 'none'}), separated by commas"
        )
    return [available[name] for name in names]


def evaluate_case(
    reference: npt.ArrayLike,
    prediction: npt.ArrayLike,
    mask: npt.ArrayLike | None,
    metrics: Sequence[Metric],
) -> dict[str, float]:
    """Every metric of one prediction against its reference (reference first, as every
    metric in medi2i).

    Args:
        reference: Reference image, 3D.
        prediction: Image to evaluate, on the reference's grid (refused, with the mask,
            when given with an affine that puts it elsewhere).
        mask: Voxels with ``mask > 0`` are evaluated; all voxels when ``None``.
        metrics: The metrics to compute.

    Returns:
        Metric values by metric name, in the order of ``metrics``; NaN for a metric
        undefined for these volumes (it raised
        :class:`~medi2i.evaluation.image_metrics.MetricUndefinedError`, e.g. ``air_mae``
        without air around the mask), which the tables show as ``n/a``.
    """
    from medi2i.metrics import require_one_grid

    if metrics:  # volumes with affines (MetaTensor) lie on one grid, as each metric checks
        require_one_grid(metrics[0].name, reference, prediction, mask)
    ref = np.asarray(reference, dtype=np.float64)
    pred = np.asarray(prediction, dtype=np.float64)
    inside = None if mask is None else np.asarray(mask, dtype=np.float64)
    return {metric.name: _value(metric, ref, pred, inside) for metric in metrics}


def _value(
    metric: Metric, reference: FloatArray, prediction: FloatArray, inside: FloatArray | None
) -> float:
    try:
        return metric(reference, prediction, inside)
    except image_metrics.MetricUndefinedError:
        return float("nan")
