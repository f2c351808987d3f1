"""Image-quality metrics: one model, registered through the ``register_metrics`` hook.

A metric compares a prediction with a reference on the same grid, optionally inside a
mask (``mask > 0``). Every metric in medi2i takes its arguments in one order,
**reference first**: ``metric(reference, prediction, mask)``, the order of the
SynthRAD2025 evaluation code and of scikit-image (``image_true, image_test``), and of
every metric function in :mod:`medi2i.evaluation`. A name means one metric wherever it
is used (evaluation, workflows, training validation, the benchmarks): ``mae`` is the
plain masked MAE in image units, ``synthrad_mae`` the SynthRAD2025 one in HU.

Commands and benchmarks pick registered metrics by name or by preset
(:data:`medi2i.evaluation.METRIC_PRESETS`). The built-ins here are the plain masked MAE
and PSNR; :mod:`medi2i.evaluation` registers the SynthRAD2025, air, SSIM and histogram
metrics; plugins add more by registering :class:`Metric` instances.

Example:
    >>> import numpy as np
    >>> MeanAbsoluteError()(np.zeros((4, 4, 4)), np.full((4, 4, 4), 3.0))
    3.0
"""

from __future__ import annotations

import abc
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medi2i.errors import GeometryError, InputError

FloatArray = npt.NDArray[np.floating]
BoolArray = npt.NDArray[np.bool_]


class Metric(abc.ABC):
    """A named image metric, called as ``metric(reference, prediction, mask)``.

    Subclasses set the attributes and define :meth:`score`.

    Attributes:
        name: Unique name, e.g. ``"mae"``; it means this metric everywhere.
        higher_is_better: Whether larger values mean a better prediction.
        units: Units of the value (``"HU"``, ``"dB"``, ``""``).
    """

    name: str
    higher_is_better: bool
    units: str = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "compute" in cls.__dict__ and "score" not in cls.__dict__:
            # a metric written for medi2i 0.1.0: prediction first; adapt it, loudly
            warnings.warn(
                f"metric class {cls.__qualname__} defines compute(prediction, reference, "
                "inside), which is deprecated: medi2i metrics take the reference first; "
                "define score(reference, prediction, inside) instead",
                DeprecationWarning,
                stacklevel=2,
            )
            cls.score = _legacy_score  # type: ignore[method-assign]

    def __call__(
        self,
        reference: npt.ArrayLike,
        prediction: npt.ArrayLike,
        mask: npt.ArrayLike | None = None,
    ) -> float:
        """The metric of ``prediction`` against ``reference`` over the voxels with ``mask > 0``.

        Args:
            reference: The ground truth (e.g. the real CT), 3D ``(X, Y, Z)``, or with one
                channel first ``(1, X, Y, Z)`` as :func:`medi2i.read_volume` and
                :func:`medi2i.predict_tensor` return volumes (the channel is dropped).
            prediction: The image to evaluate, same shape.
            mask: Voxels with ``mask > 0`` are evaluated; every voxel when ``None``.

        Raises:
            GeometryError: The arrays are not 3D, differ in shape, or the mask selects
                no voxel; or, given volumes that carry an affine (``MetaTensor``, as
                :func:`medi2i.read_volume` returns), the prediction or the mask lies on
                another grid than the reference (:func:`medi2i.grid.require_same_grid`,
                the check of ``medi2i evaluate``).
            InputError: The reference or the prediction is not real numbers (complex,
                text, objects) or holds a NaN or infinite voxel, which would make the
                value NaN, infinite or meaningless (SSIM's windows see the voxels around
                the mask too, so the whole volume is checked).
        """
        require_one_grid(self.name, reference, prediction, mask)
        ref = _real_values(reference, "reference", self.name)
        pred = _real_values(prediction, "prediction", self.name)
        inside = np.ones(ref.shape, bool) if mask is None else _spatial(np.asarray(mask) > 0)
        if ref.ndim != 3 or pred.ndim != 3 or inside.ndim != 3:
            raise GeometryError(
                f"metric {self.name!r} takes 3D volumes (X, Y, Z), or (1, X, Y, Z) with one "
                f"channel, got reference {ref.shape}, prediction {pred.shape} and mask "
                f"{inside.shape}"
            )
        if len({ref.shape, pred.shape, inside.shape}) != 1:
            raise GeometryError(
                f"metric {self.name!r} needs volumes of one shape, got reference {ref.shape}, "
                f"prediction {pred.shape} and mask {inside.shape}; resample them onto one grid"
            )
        if not inside.any():
            raise GeometryError(f"metric {self.name!r}: the mask selects no voxel")
        return float(self.score(ref, pred, inside))

    @abc.abstractmethod
    def score(self, reference: FloatArray, prediction: FloatArray, inside: BoolArray) -> float:
        """The metric on float64 arrays of one shape and a boolean mask of at least one voxel."""


def require_one_grid(metric: str, reference: object, *others: object) -> None:
    """Refuse a prediction or mask whose affine puts it elsewhere than the reference:
    arrays of one shape compare voxel by voxel, so a mask moved 30 mm would score the
    wrong voxels without a word. Plain arrays carry no affine and are not checked."""
    if getattr(reference, "affine", None) is None:
        return
    from medi2i.grid import Grid, require_same_grid

    for role, other in zip(("prediction", "mask"), others, strict=False):
        affine = getattr(other, "affine", None)
        if affine is None or len(getattr(other, "shape", ())) < 3:
            continue
        require_same_grid(
            Grid.of(other),  # type: ignore[arg-type]
            Grid.of(reference),  # type: ignore[arg-type]
            what=f"metric {metric!r}: the {role}",
            reference_name="the reference",
            hint="resample it onto the reference grid first (metrics compare voxel by voxel)",
        )


def _real_values(values: npt.ArrayLike, role: str, metric: str) -> FloatArray:
    """``values`` as float64, refused unless they are finite real numbers."""
    from medi2i.voxel_checks import non_finite_voxels

    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise InputError(
            f"metric {metric!r}: the {role} holds {array.dtype} values; give real numbers "
            "(an integer, boolean or floating-point array; for complex data, its magnitude "
            "or real part)"
        )
    array = _spatial(array.astype(np.float64, copy=False))
    bad = non_finite_voxels(array)
    if bad:
        raise InputError(
            f"metric {metric!r}: in the {role}, {bad}; the metric would not be a number "
            "(replace them, e.g. with numpy.nan_to_num, or fix the image they come from)"
        )
    return array


def _spatial(array: np.ndarray) -> np.ndarray:
    """A one-channel volume ``(1, X, Y, Z)`` as ``(X, Y, Z)``; other arrays as given."""
    return array[0] if array.ndim == 4 and array.shape[0] == 1 else array


def _legacy_score(
    self: Metric, reference: FloatArray, prediction: FloatArray, inside: BoolArray
) -> float:
    compute = getattr(self, "compute")  # noqa: B009 (defined by the legacy subclass only)
    return float(compute(prediction, reference, inside))


@dataclass(frozen=True)
class MeanAbsoluteError(Metric):
    """Mean absolute difference over the mask, in the images' units
    (:func:`medi2i.evaluation.image_metrics.masked_mae`)."""

    name: str = "mae"
    higher_is_better: bool = False
    units: str = "image units"

    def score(self, reference: FloatArray, prediction: FloatArray, inside: BoolArray) -> float:
        from medi2i.evaluation.image_metrics import masked_mae

        return masked_mae(reference, prediction, inside)


@dataclass(frozen=True)
class PeakSignalToNoiseRatio(Metric):
    """PSNR over the mask, with the data range of the reference inside the mask (dB)
    (:func:`medi2i.evaluation.image_metrics.masked_psnr`)."""

    name: str = "psnr"
    higher_is_better: bool = True
    units: str = "dB"

    def score(self, reference: FloatArray, prediction: FloatArray, inside: BoolArray) -> float:
        from medi2i.evaluation.image_metrics import masked_psnr

        return masked_psnr(reference, prediction, inside)


def builtin_metrics() -> list[Metric]:
    """The metrics medi2i registers itself besides those of :mod:`medi2i.evaluation`."""
    return [MeanAbsoluteError(), PeakSignalToNoiseRatio()]
