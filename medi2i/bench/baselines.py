"""The baselines every method must beat on the quality benchmarks.

- Q1 (MR→CT): bulk water (0 HU in the body mask, -1000 HU outside) and a monotone
  MR→HU mapping fitted on the training half (:class:`MonotoneMapping`).
- Q2 (super-resolution): linear and cubic B-spline interpolation through-plane
  (:func:`interpolate_onto`).
- Q3 (harmonization): no harmonization (the input as is) and z-score standardisation
  onto the target scanner's statistics (:class:`ZScoreHarmonizer`).

Each baseline is a :class:`Contender`: a name and a function from a test case to a
prediction on the reference's grid; :func:`baselines_for` builds them for a dataset.

Example:
    >>> import numpy as np
    >>> mapping = MonotoneMapping.fit(
    ...     mr=np.array([1.0, 2.0, 3.0]), ct=np.array([-10.0, 0.0, 10.0]), mask=np.ones(3))
    >>> mapping.increasing, float(mapping(np.array([2.5]))[0])
    (True, 5.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from medi2i.bench.datasets import BenchCase, BenchDataset, Volume
from medi2i.errors import GeometryError, InputError
from medi2i.synth.scanner_styles import otsu_threshold

FloatArray = npt.NDArray[np.float32]
ContenderKind = Literal["baseline", "method", "model"]

WATER_HU = 0.0
AIR_HU = -1000.0
MAPPING_BINS = 256
"""Quantile bins of MR intensity the monotone MR→HU mapping is fitted on."""


@dataclass(frozen=True)
class Contender:
    """Something the benchmark evaluates: a baseline, a method or a trained model.

    Attributes:
        name: Row label in the tables, e.g. ``"bulk-water"``.
        kind: ``"baseline"``, ``"method"`` or ``"model"``.
        predict: Maps a test case to a prediction on ``case.target``'s grid.
        description: One line for the Markdown table's legend.
    """

    name: str
    kind: ContenderKind
    predict: Callable[[BenchCase], FloatArray]
    description: str


# -- Q1 ---------------------------------------------------------------------------------


def bulk_water(mask: npt.ArrayLike) -> FloatArray:
    """Q1's bulk-water synthetic CT: 0 HU where ``mask > 0``, -1000 HU elsewhere."""
    inside = np.asarray(mask) > 0
    return np.where(inside, np.float32(WATER_HU), np.float32(AIR_HU)).astype(np.float32)


@dataclass(frozen=True)
class MonotoneMapping:
    """A monotone, piecewise-linear map from MR intensity to HU.

    Fitted by isotonic (least-squares) regression of the mean HU of quantile bins of MR
    intensity inside the training mask, increasing and decreasing; the direction with
    the lower training MAE is kept. Between bin centres it interpolates linearly and it
    is constant beyond the first and last.

    Attributes:
        intensities: MR intensity of each knot (bin mean), increasing.
        hounsfield: HU at each knot, monotone.
        increasing: Whether HU grows with MR intensity.
    """

    intensities: npt.NDArray[np.float64]
    hounsfield: npt.NDArray[np.float64]
    increasing: bool

    @classmethod
    def fit(
        cls, *, mr: npt.ArrayLike, ct: npt.ArrayLike, mask: npt.ArrayLike, bins: int = MAPPING_BINS
    ) -> MonotoneMapping:
        """Fit on paired MR and CT (HU) voxels where ``mask > 0``."""
        inside = np.asarray(mask) > 0
        if not inside.any():
            raise GeometryError("the monotone mapping needs a non-empty training mask")
        x = np.asarray(mr, np.float64)[inside]
        y = np.asarray(ct, np.float64)[inside]
        edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)))
        which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(len(edges) - 2, 0))
        counts = np.bincount(which, minlength=len(edges) - 1).astype(np.float64)
        used = counts > 0
        centres = (np.bincount(which, weights=x, minlength=len(counts))[used]) / counts[used]
        means = (np.bincount(which, weights=y, minlength=len(counts))[used]) / counts[used]
        candidates = [
            cls(centres, isotonic_regression(means, counts[used], increasing=up), up)
            for up in (True, False)
        ]
        return min(candidates, key=lambda m: float(np.mean(np.abs(m(x) - y))))

    def __call__(self, mr: npt.ArrayLike) -> FloatArray:
        """HU predicted for each MR intensity."""
        values = np.interp(np.asarray(mr, np.float64), self.intensities, self.hounsfield)
        return np.asarray(values, np.float32)


def isotonic_regression(
    values: npt.ArrayLike, weights: npt.ArrayLike, *, increasing: bool = True
) -> npt.NDArray[np.float64]:
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


# -- Q2 ---------------------------------------------------------------------------------


def interpolate_onto(
    volume: Volume, *, shape: Sequence[int], affine: npt.ArrayLike, order: int
) -> FloatArray:
    """Resample ``volume`` onto another grid by spline interpolation in world coordinates.

    Args:
        volume: The (e.g. thick-slice) volume with its affine.
        shape: Target grid shape.
        affine: Target voxel-to-world affine (mm).
        order: Spline order: 0 nearest, 1 linear, 3 cubic B-spline (interpolating, with
            scipy's prefilter). Target voxels outside take the nearest edge value.

    Returns:
        float32 array of ``shape``. Where the target grid's in-plane voxels coincide with
        the source's (Q2), only the through-plane direction is interpolated.
    """
    source_from_target = np.linalg.solve(volume.affine, np.asarray(affine, np.float64))
    matrix = source_from_target[:3, :3]
    offset = source_from_target[:3, 3]
    diagonal = np.allclose(matrix, np.diag(np.diag(matrix)))
    resampled = ndimage.affine_transform(
        np.asarray(volume.array, np.float32),
        np.diag(matrix) if diagonal else matrix,
        offset=offset,
        output_shape=tuple(int(n) for n in shape),
        order=order,
        mode="nearest",
        prefilter=order > 1,
    )
    return np.asarray(resampled, np.float32)


# -- Q3 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZScoreHarmonizer:
    """Standardise an image on its tissue voxels, then give it the target's statistics.

    ``out = (x - mean_in) / std_in * target_std + target_mean``. Means and standard
    deviations are taken over *tissue* voxels, those above the image's Otsu threshold,
    rather than over a whole foreground mask: the target statistics come from the
    skull-stripped MNI152 brain while the test image is a whole head, and a head mask's
    share of dark skull and background would then shift the mean (on Q3 the whole
    head-mask variant has about 1.7 times the MAE).
    """

    target_mean: float
    target_std: float

    @classmethod
    def fit(cls, images: Sequence[npt.ArrayLike]) -> ZScoreHarmonizer:
        """Pool the tissue voxels of the target scanner's training images."""
        if not images:
            raise InputError("z-score harmonization needs at least one target-scanner image")
        values = np.concatenate([tissue_voxels(image) for image in images])
        return cls(float(values.mean()), float(values.std()))

    def __call__(self, image: npt.ArrayLike) -> FloatArray:
        data = np.asarray(image, np.float32)
        tissue = tissue_voxels(data)
        spread = float(tissue.std()) or 1.0
        standard = (data - float(tissue.mean())) / spread
        return np.asarray(standard * self.target_std + self.target_mean, np.float32)


def tissue_voxels(image: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The voxels of an MR image above its Otsu threshold (tissue, not background/CSF)."""
    data = np.asarray(image, np.float32)
    return data[data > otsu_threshold(data)]


# -- per benchmark ----------------------------------------------------------------------


def baselines_for(dataset: BenchDataset) -> list[Contender]:
    """The baselines of ``dataset``'s benchmark, fitted on its training data."""
    if dataset.task == "q1":
        return _q1_baselines(dataset)
    if dataset.task == "q2":
        return _q2_baselines()
    return _q3_baselines(dataset)


def _q1_baselines(dataset: BenchDataset) -> list[Contender]:
    train = dataset.train_pairs[0]
    mapping = MonotoneMapping.fit(
        mr=train.source.array, ct=train.target.array, mask=train.mask.array
    )
    direction = "increasing" if mapping.increasing else "decreasing"
    return [
        Contender(
            "bulk-water",
            "baseline",
            lambda case: bulk_water(case.mask.array),
            "0 HU inside the body mask, -1000 HU outside",
        ),
        Contender(
            "monotone-mapping",
            "baseline",
            lambda case: np.where(
                case.mask.array > 0, mapping(case.source.array), np.float32(AIR_HU)
            ),
            f"isotonic MR→HU curve ({direction}, {len(mapping.intensities)} knots) fitted on "
            "the training half, -1000 HU outside the body mask",
        ),
    ]


def _q2_baselines() -> list[Contender]:
    def interpolator(order: int) -> Callable[[BenchCase], FloatArray]:
        def predict(case: BenchCase) -> FloatArray:
            target = case.target
            return interpolate_onto(
                case.source, shape=target.array.shape, affine=target.affine, order=order
            )

        return predict

    return [
        Contender("linear", "baseline", interpolator(1), "linear interpolation through-plane"),
        Contender(
            "cubic-bspline",
            "baseline",
            interpolator(3),
            "cubic B-spline interpolation through-plane",
        ),
    ]


def _q3_baselines(dataset: BenchDataset) -> list[Contender]:
    from medi2i.bench.datasets import Q3_TARGET

    targets = [v.image.array for v in dataset.train_domains if v.domain == Q3_TARGET]
    harmonizer = ZScoreHarmonizer.fit(targets)
    return [
        Contender(
            "no-harmonization",
            "baseline",
            lambda case: np.asarray(case.source.array, np.float32),
            "the source scanner's image as is",
        ),
        Contender(
            "z-score",
            "baseline",
            lambda case: harmonizer(case.source.array),
            f"z-score on the input's tissue voxels, onto scanner {Q3_TARGET}'s training "
            f"mean {harmonizer.target_mean:.1f} and std {harmonizer.target_std:.1f}",
        ),
    ]
