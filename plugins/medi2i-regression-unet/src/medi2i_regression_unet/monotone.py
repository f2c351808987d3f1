"""A monotone MR→HU intensity mapping fitted on paired MR and CT: the simplest MR→CT
method, and the baseline every network should beat.

Fitting (:meth:`MonotoneMapping.fit_pairs`): the MR voxels of the training cases inside
their masks are split into ``bins`` quantile bins of MR intensity; the mean HU of each
bin is fitted by weighted isotonic regression (pool-adjacent-violators, weights = voxel
counts), once increasing and once decreasing, and the direction with the lower mean
absolute error on the training voxels is kept. Prediction maps every voxel by linear
interpolation between the bins' mean MR intensities (constant beyond the first and
last), clipped to [-1024, 3071] HU, and sets air outside the input's body
(``body_contour``).

In a T1-weighted MR both bone and air are dark, so no monotone curve gets both right:
what is left of its error is the MR→CT ambiguity a network has to resolve from context.

Example:
    >>> curve = fit_curve(np.array([1.0, 2.0, 3.0]), np.array([-10.0, 0.0, 10.0]), bins=3)
    >>> curve.increasing, float(curve(np.array([2.5]))[0])
    (True, 5.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
import numpy.typing as npt
import torch
from pydantic import BaseModel, Field
from scipy import ndimage

from medi2i import (
    AIR_HU,
    HU_MAX,
    HU_MIN,
    DataKind,
    FitPair,
    GeometryError,
    InputError,
    Medi2iError,
    Method,
    ModelFormatError,
    NoCondition,
    Options,
    OptionsError,
    PredictContext,
    StateValue,
    Task,
    Training,
    TrainingError,
    VolumeSpec,
    body_mask,
    normalize_mr,
)

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

FloatArray = npt.NDArray[np.float64]

TARGET_BODY_HU = -500.0
"""A case without a mask is fitted where its CT is above this (holes filled)."""


class MonotoneMappingOptions(Options):
    """Options of :class:`MonotoneMapping`.

    Attributes:
        mr_normalization: ``"zscore"``: each MR volume standardized by the mean and
            standard deviation of its foreground (:func:`medi2i.normalize_mr`), so that
            the curve carries over between scans of different gain; ``"none"``: raw
            intensities, for MR of one scanner and protocol (the Q1 benchmark).
        bins: Quantile bins of MR intensity the curve is fitted on (>= 2); equal
            quantiles merge, so the curve may have fewer knots.
        body_contour: Set every output voxel outside the input MR's body
            (:func:`medi2i.body_mask`) to air, -1024 HU.
    """

    mr_normalization: Literal["zscore", "none"] = "zscore"
    bins: int = Field(default=256, ge=2)
    body_contour: bool = True


@dataclass(frozen=True)
class Curve:
    """A monotone, piecewise-linear map from (normalized) MR intensity to HU.

    Attributes:
        intensities: MR intensity of each knot (bin mean), increasing.
        hounsfield: HU at each knot, monotone.
        increasing: Whether HU grows with MR intensity.
    """

    intensities: FloatArray
    hounsfield: FloatArray
    increasing: bool

    def __call__(self, mr: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """HU for each MR intensity (interpolated in float64, returned as float32)."""
        values = np.interp(np.asarray(mr, np.float64), self.intensities, self.hounsfield)
        return np.asarray(values, np.float32)


def fit_curve(mr: npt.ArrayLike, ct: npt.ArrayLike, *, bins: int) -> Curve:
    """Fit a :class:`Curve` to paired voxel values (the module docstring says how).

    Args:
        mr: MR intensities, any shape (flattened).
        ct: CT values in HU at the same voxels.
        bins: Quantile bins of MR intensity.

    Raises:
        GeometryError: No voxel, or ``mr`` and ``ct`` differ in size.
    """
    x = np.asarray(mr, np.float64).ravel()
    y = np.asarray(ct, np.float64).ravel()
    if x.size == 0 or x.size != y.size:
        raise GeometryError(
            f"a monotone mapping needs paired voxels: got {x.size} MR and {y.size} CT values"
        )
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)))
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(len(edges) - 2, 0))
    counts = np.bincount(which, minlength=len(edges) - 1).astype(np.float64)
    used = counts > 0
    centres = np.bincount(which, weights=x, minlength=len(counts))[used] / counts[used]
    means = np.bincount(which, weights=y, minlength=len(counts))[used] / counts[used]
    candidates = [
        Curve(centres, isotonic_regression(means, counts[used], increasing=up), up)
        for up in (True, False)
    ]
    return min(candidates, key=lambda curve: float(np.mean(np.abs(curve(x) - y))))


def isotonic_regression(
    values: npt.ArrayLike, weights: npt.ArrayLike, *, increasing: bool = True
) -> FloatArray:
    """Weighted least-squares monotone fit of a sequence (pool-adjacent-violators).

    Example:
        >>> isotonic_regression([1.0, 3.0, 2.0], [1.0, 1.0, 1.0]).tolist()
        [1.0, 2.5, 2.5]
    """
    y = np.asarray(values, np.float64)
    w = np.asarray(weights, np.float64)
    if not increasing:
        return -isotonic_regression(-y, w, increasing=True)
    # blocks of pooled neighbours: (weighted mean, total weight, length)
    blocks: list[list[float]] = []
    for value, weight in zip(y, w, strict=True):
        blocks.append([float(value), float(weight), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean2, weight2, length2 = blocks.pop()
            mean1, weight1, length1 = blocks[-1]
            total = weight1 + weight2
            blocks[-1] = [(mean1 * weight1 + mean2 * weight2) / total, total, length1 + length2]
    return np.concatenate([np.full(int(length), mean) for mean, _, length in blocks])


class MonotoneMapping(Method[MonotoneMappingOptions, NoCondition]):
    """MR to synthetic CT by a monotone intensity curve fitted on paired MR and CT.

    Example:
        >>> method = MonotoneMapping({"mr_normalization": "none"})
        >>> method.training.value, method.data.value
        ('fit', 'paired')
    """

    id = "monotone-mapping"
    version = "0.1.0"
    tasks = (Task.TRANSLATION,)
    data = DataKind.PAIRED
    training = Training.FIT
    input_spec = VolumeSpec(modality="MR", units="arbitrary")
    output_spec = VolumeSpec(modality="CT", units="HU", value_range=(HU_MIN, HU_MAX))
    paper = (
        "Ayer M, Brunk HD, Ewing GM, Reid WT, Silverman E. An empirical distribution "
        "function for sampling with incomplete information. Annals of Mathematical "
        "Statistics 26, 641-647 (1955) (pool-adjacent-violators isotonic regression)"
    )

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self.curve: Curve | None = None

    def preprocess(
        self,
        image: MetaTensor,
        *,
        domain: str | None = None,
        condition: NoCondition | None = None,
    ) -> MetaTensor:
        """The MR volume, z-scored over its foreground unless ``mr_normalization`` is
        ``"none"``."""
        if self.options.mr_normalization == "none":
            return image
        return cast("MetaTensor", normalize_mr(image, scheme="zscore", percentiles=(0.0, 100.0)))

    def fit_pairs(self, pairs: Sequence[FitPair]) -> None:
        """Fit the curve on the voxels of every pair inside its mask (without a mask:
        where the CT is above -500 HU, holes filled).

        Each pair's source must be preprocessed as predict preprocesses its input
        (``method.preprocess(volume)``; a workflow's train stage does it): a curve
        fitted on raw intensities would map every z-scored input to one value.

        Example:
            >>> method = MonotoneMapping()  # doctest: +SKIP
            >>> method.fit_pairs([FitPair("case", method.preprocess(mr), ct)])  # doctest: +SKIP

        Raises:
            InputError: A source was not preprocessed.
            GeometryError: A case's MR, CT and mask do not lie on one grid.
            TrainingError: The fitted curve is constant (the CT inside the masks holds
                one value): the model would predict one value everywhere.
        """
        given = list(pairs) if isinstance(pairs, list | tuple) else None
        if given is None or not all(isinstance(pair, FitPair) for pair in given):
            what = f"a {type(pairs).__name__}" if given is None else "a list holding other values"
            raise OptionsError(
                f"method {self.id!r}: fit_pairs takes a list of medi2i.FitPair "
                f"(FitPair(case_id, source, target)), not {what}"
            )
        if not pairs:
            raise Medi2iError(f"method {self.id!r} needs at least one paired case to fit on")
        sources, targets = [], []
        for pair in pairs:
            self._require_preprocessed(pair)
            source = pair.source.detach().cpu().numpy()
            target = pair.target.detach().cpu().numpy()
            if source.shape != target.shape:
                raise GeometryError(
                    f"case {pair.case_id!r}: MR {source.shape} and CT {target.shape} must "
                    "lie on one grid to fit a voxel-wise mapping"
                )
            inside = _fit_mask(pair, target)
            if inside.shape != source.shape:
                raise GeometryError(
                    f"case {pair.case_id!r}: the mask {inside.shape} and the MR "
                    f"{source.shape} must lie on one grid"
                )
            sources.append(source[inside])
            targets.append(target[inside])
        curve = fit_curve(np.concatenate(sources), np.concatenate(targets), bins=self.options.bins)
        if np.ptp(curve.hounsfield) == 0.0:
            raise TrainingError(
                f"method {self.id!r}: the fitted mapping is constant (every MR intensity "
                f"maps to {curve.hounsfield[0]:g} HU), so its model would predict one value "
                "everywhere; check that the targets are CT volumes in HU and the masks "
                "cover the body"
            )
        self.curve = curve

    def _require_preprocessed(self, pair: FitPair) -> None:
        """Refuse a source that ``preprocess`` would still change: z-scoring is
        idempotent, so a preprocessed source comes back (nearly) as it is."""
        if self.options.mr_normalization == "none":
            return
        given = pair.source.detach().cpu().float()
        again = self.preprocess(cast("MetaTensor", given))
        if torch.allclose(torch.as_tensor(again), torch.as_tensor(given), rtol=1e-3, atol=1e-3):
            return
        raise InputError(
            f"method {self.id!r}, case {pair.case_id!r}: the source is not preprocessed "
            f"(FitPair.source must be method.preprocess(volume), as predict sees it); pass "
            "method.preprocess(volume) as the source and method.preprocess_target(volume) "
            "as the target"
        )

    def predict(self, image: MetaTensor, context: PredictContext[NoCondition]) -> torch.Tensor:
        """Map every voxel through the fitted curve (HU)."""
        curve = self._fitted()
        return torch.from_numpy(curve(image.detach().cpu().numpy()))

    def postprocess(
        self,
        output: MetaTensor,
        image: MetaTensor,
        *,
        domain: str | None = None,
        condition: NoCondition | None = None,
    ) -> MetaTensor:
        """Clip to [-1024, 3071] HU; with ``body_contour``, air outside the input's body.

        The body mask is taken from ``image``, the preprocessed input: a z-score is an
        increasing affine map, which leaves :func:`medi2i.body_mask` unchanged.
        """
        hounsfield = output.clamp(HU_MIN, HU_MAX)
        if not self.options.body_contour:
            return cast("MetaTensor", hounsfield)
        inside = torch.from_numpy(body_mask(image.detach().cpu().numpy()))
        return cast("MetaTensor", hounsfield.masked_fill(~inside, AIR_HU))

    def state_values(self) -> dict[str, StateValue]:
        """The curve's knots and direction."""
        curve = self._fitted()
        return {
            "intensities": [float(v) for v in curve.intensities],
            "hounsfield": [float(v) for v in curve.hounsfield],
            "increasing": curve.increasing,
        }

    def load_state_values(self, values: Mapping[str, StateValue]) -> None:
        """Restore what :meth:`state_values` returned.

        Raises:
            ModelFormatError: The values are not a curve.
        """
        intensities, hounsfield = values.get("intensities"), values.get("hounsfield")
        increasing = values.get("increasing")
        if not (
            isinstance(intensities, list)
            and isinstance(hounsfield, list)
            and isinstance(increasing, bool)
            and len(intensities) == len(hounsfield) > 0
            and sorted(values) == ["hounsfield", "increasing", "intensities"]
        ):
            raise ModelFormatError(
                f"method {self.id!r}: the model's fitted values are not a monotone curve "
                f"(keys {sorted(values)})"
            )
        self.curve = Curve(
            np.asarray(intensities, np.float64), np.asarray(hounsfield, np.float64), increasing
        )

    def _fitted(self) -> Curve:
        if self.curve is None:
            raise OptionsError(
                f"method {self.id!r} has not been fitted: fit it with "
                "method.fit_pairs(pairs) on preprocessed paired volumes, or run a workflow "
                "with paired training data (it fits in the train stage) and predict with "
                "its model (medi2i.load_model)"
            )
        return self.curve


def _fit_mask(pair: FitPair, target: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    if pair.mask is not None:
        return np.asarray(pair.mask.detach().cpu().numpy(), bool)
    channels = [ndimage.binary_fill_holes(channel > TARGET_BODY_HU) for channel in target]
    return np.stack([np.asarray(c, bool) for c in channels])
