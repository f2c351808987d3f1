"""The baselines every method must beat on the quality benchmarks.

- Q1 and Q1x (MR→CT): bulk water (0 HU in the body mask, -1000 HU outside) and a
  monotone MR→HU mapping fitted on the training data (Q1: the training half; Q1x: each
  split's training subjects): the registered method ``monotone-mapping`` (plugin
  ``medi2i-regression-unet``) on raw MR intensities, with -1000 HU outside the body
  mask like bulk water.
- Q2 (super-resolution): linear and cubic B-spline interpolation through-plane
  (:func:`interpolate_onto`).
- Q3 (harmonization): no harmonization (the input as is) and z-score standardisation
  onto the target scanner's statistics (:class:`ZScoreHarmonizer`).

Each baseline is a :class:`Contender`: a name and a function from a test case to a
prediction on the reference's grid; :func:`baselines_for` builds them for a dataset.

Example:
    >>> import numpy as np
    >>> water = bulk_water(np.array([[[0.0, 1.0]]]))
    >>> water.tolist()
    [[[-1000.0, 0.0]]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from medi2i.bench.datasets import BenchCase, BenchDataset, Volume
from medi2i.errors import InputError, OptionsError, UnknownMethodError
from medi2i.synth.scanner_styles import otsu_threshold

if TYPE_CHECKING:
    from medi2i.method import FitPair, Method
    from medi2i.registry import Registry

FloatArray = npt.NDArray[np.float32]
ContenderKind = Literal["baseline", "method", "model"]

WATER_HU = 0.0
AIR_HU = -1000.0
MONOTONE_METHOD = "monotone-mapping"
"""The registered method behind Q1's monotone-mapping baseline."""
MONOTONE_OPTIONS = {"mr_normalization": "none", "body_contour": False}
"""Its options here: raw MR intensities (one simulated scanner), and the outside left
to the baseline's rule (-1000 HU outside the body mask)."""


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


def paired_fit(method: Method, dataset: BenchDataset) -> None:
    """Fit a method that learns from paired data by fitting (:meth:`~medi2i.Method.fit_pairs`)
    on the benchmark's training pairs, as a workflow's train stage would."""
    method.fit_pairs([_fit_pair(method, case) for case in dataset.train_pairs])


def _fit_pair(method: Method, case: BenchCase) -> FitPair:
    from medi2i.training.routes import fit_pair

    return fit_pair(
        method,
        case.name,
        source=case.source.metatensor(),
        target=case.target.metatensor(),
        mask=case.mask.metatensor(),
    )


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


def baselines_for(dataset: BenchDataset, *, registry: Registry | None = None) -> list[Contender]:
    """The baselines of ``dataset``'s benchmark, fitted on its training data.

    Args:
        dataset: The benchmark's data.
        registry: Where Q1's ``monotone-mapping`` method is found; the installed
            plugins when ``None``.

    Raises:
        OptionsError: Q1's ``monotone-mapping`` method is not installed.
    """
    if dataset.task in ("q1", "q1x"):
        return _q1_baselines(dataset, registry)
    if dataset.task == "q2":
        return _q2_baselines()
    return _q3_baselines(dataset)


def _q1_baselines(dataset: BenchDataset, registry: Registry | None) -> list[Contender]:
    method = _monotone_method(registry)
    paired_fit(method, dataset)
    fitted = method.state_values()
    direction = "increasing" if fitted["increasing"] else "decreasing"
    knots = fitted["intensities"]
    knot_count = len(knots) if isinstance(knots, list) else 0
    trained_on = (
        f"split {dataset.split}'s training cases ({', '.join(c.name for c in dataset.train_pairs)})"
        if dataset.split
        else "the training half"
    )

    def monotone(case: BenchCase) -> FloatArray:
        from medi2i.prediction import predict_tensor
        from medi2i.settings import InferenceSettings

        output = predict_tensor(
            method, case.source.metatensor(), settings=InferenceSettings(progress=False)
        )
        mapped = np.asarray(output[0].detach().cpu().numpy(), np.float32)
        return np.where(case.mask.array > 0, mapped, np.float32(AIR_HU)).astype(np.float32)

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
            monotone,
            f"method {method.id} {method.version} on raw MR intensities: isotonic MR→HU "
            f"curve ({direction}, {knot_count} knots) fitted on {trained_on}, "
            "-1000 HU outside the body mask",
        ),
    ]


def _monotone_method(registry: Registry | None) -> Method:
    from medi2i.registry import Registry

    registry = registry if registry is not None else Registry()
    try:
        method_cls = registry.method(MONOTONE_METHOD)
    except UnknownMethodError:
        raise OptionsError(
            f"Q1's monotone-mapping baseline is the method {MONOTONE_METHOD!r} of the "
            "medi2i-regression-unet plugin, which is not installed: "
            "pip install -e plugins/medi2i-regression-unet (make setup installs it)"
        ) from None
    return method_cls(MONOTONE_OPTIONS)


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
