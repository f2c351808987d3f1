"""The baselines every method must beat on the quality benchmarks.

Every baseline but two trivial references is a registered method of a first-party
plugin, fitted and run as any method is (:func:`medi2i_bench.contenders.method_contender`,
the path of ``medi2i predict``), so the benchmark never re-implements a method:

- Q1 and Q1x (MR→CT): bulk water (0 HU in the body mask, -1000 HU outside; a trivial
  reference, computed here) and ``monotone-mapping`` (plugin ``medi2i-regression-unet``)
  fitted on the training pairs (Q1: the training half; Q1x: each split's training
  subjects), on raw MR intensities, with -1000 HU outside the body mask like bulk water.
- Q2 (super-resolution): ``interpolation`` (plugin ``medi2i-super-resolution``), linear
  and cubic B-spline, onto the reference's spacing with the first and last slice
  centres kept (``align: centres``), which is the 1 mm grid the thick slices were taken
  from.
- Q3 (harmonization): no harmonization (the input as is; a trivial reference),
  ``zscore`` and ``nyul`` (plugin ``medi2i-harmonization``), each fitted on scanner A's
  training image (the target scanner's statistics and landmarks).

:func:`baselines_for` builds them for a dataset.

Example:
    >>> import numpy as np
    >>> water = bulk_water(np.array([[[0.0, 1.0]]]))
    >>> water.tolist()
    [[[-1000.0, 0.0]]]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from medi2i import OptionsError
from medi2i_bench.cases import BenchDataset
from medi2i_bench.contenders import (
    Contender,
    FloatArray,
    fit_for,
    method_contender,
    registered_method,
    source_style_pairs,
)
from medi2i_bench.harmonization_data import Q3_TARGET
from medi2i_bench.mr_ct_data import Q4_SOURCE_STYLE
from medi2i_bench.super_resolution_data import Q2C_CASES

if TYPE_CHECKING:
    from medi2i import InferenceSettings, Method, Registry

WATER_HU = 0.0
AIR_HU = -1000.0


@dataclass(frozen=True)
class BaselineMethod:
    """A registered method, with fixed options, that serves as a baseline.

    Attributes:
        name: Row label in the tables.
        method_id: The registered method's id.
        plugin: The distribution under ``plugins/`` that provides it.
        options: Its options (the rest are the method's defaults).
        summary: What it does, for the legend; what it was fitted to is added.
    """

    name: str
    method_id: str
    plugin: str
    options: Mapping[str, object] = field(default_factory=dict)
    summary: str = ""


MONOTONE = BaselineMethod(
    "monotone-mapping",
    "monotone-mapping",
    "medi2i-regression-unet",
    # raw MR intensities (one simulated scanner); the outside is the baseline's rule
    {"mr_normalization": "none", "body_contour": False},
    "isotonic MR→HU curve on raw MR intensities",
)
INTERPOLATION = tuple(
    BaselineMethod(
        name,
        "interpolation",
        "medi2i-super-resolution",
        {"order": order, "align": "centres"},
        f"{text} interpolation through-plane",
    )
    for name, order, text in (
        ("linear", "linear", "linear"),
        ("cubic-bspline", "bspline", "cubic B-spline"),
    )
)
Q3_METHODS = (
    BaselineMethod(
        "z-score",
        "zscore",
        "medi2i-harmonization",
        {"foreground": "otsu"},
        "z-score on the input's foreground (above Otsu's threshold)",
    ),
    BaselineMethod(
        "nyul",
        "nyul",
        "medi2i-harmonization",
        {},
        "Nyúl histogram standardization (deciles of the foreground above Otsu's threshold)",
    ),
)


def bulk_water(mask: npt.ArrayLike) -> FloatArray:
    """Q1's bulk-water synthetic CT: 0 HU where ``mask > 0``, -1000 HU elsewhere."""
    inside = np.asarray(mask) > 0
    return np.where(inside, np.float32(WATER_HU), np.float32(AIR_HU)).astype(np.float32)


def baselines_for(
    dataset: BenchDataset,
    *,
    registry: Registry | None = None,
    settings: InferenceSettings | None = None,
) -> list[Contender]:
    """The baselines of ``dataset``'s benchmark, fitted on its training data.

    Args:
        dataset: The benchmark's data.
        registry: Where the baselines' methods are found; the installed plugins when
            ``None``.
        settings: Inference settings of the baselines' methods (no progress bar when
            ``None``).

    Raises:
        OptionsError: A baseline's plugin is not installed.
    """
    from medi2i import InferenceSettings

    settings = settings or InferenceSettings(progress=False)
    if dataset.task in ("q1", "q1x", "q4"):
        water = Contender(
            "bulk-water",
            "baseline",
            lambda case: bulk_water(case.mask.array),
            "0 HU inside the body mask, -1000 HU outside",
        )
        return [water, _monotone(dataset, registry, settings)]
    if dataset.task == "q2":
        spacing = _reference_spacing(dataset)
        return [
            _method_baseline(
                replace_options(spec, target_spacing=spacing), dataset, registry, settings
            )
            for spec in INTERPOLATION
        ]
    if dataset.task == "q2c":
        # two reference grids (1 mm, 0.8 mm), one through-plane factor: refine the slices
        (factor,) = {step for _, _, step in Q2C_CASES}
        return [
            _method_baseline(
                replace_options(spec, target_spacing=None, slice_factor=float(factor)),
                dataset,
                registry,
                settings,
            )
            for spec in INTERPOLATION
        ]
    identity = Contender(
        "no-harmonization",
        "baseline",
        lambda case: np.asarray(case.source.array, np.float32),
        "the source scanner's image as is",
    )
    return [identity, *(_method_baseline(s, dataset, registry, settings) for s in Q3_METHODS)]


def replace_options(spec: BaselineMethod, **options: object) -> BaselineMethod:
    """``spec`` with ``options`` added to (or replacing) its options."""
    return BaselineMethod(
        spec.name, spec.method_id, spec.plugin, {**spec.options, **options}, spec.summary
    )


def _method_baseline(
    spec: BaselineMethod,
    dataset: BenchDataset,
    registry: Registry | None,
    settings: InferenceSettings,
    *,
    outside_mask: float | None = None,
) -> Contender:
    method = _fitted(spec, dataset, registry)
    description = f"method {method.id} {method.version}{_options_text(spec)}: {spec.summary}"
    fitted = _fitted_text(method, dataset)
    return method_contender(
        spec.name,
        "baseline",
        method,
        dataset,
        settings,
        description=f"{description}{fitted}",
        outside_mask=outside_mask,
    )


def _fitted(spec: BaselineMethod, dataset: BenchDataset, registry: Registry | None) -> Method:
    method = registered_method(registry, spec.method_id, spec.options, plugin=spec.plugin)
    fit_for(method, "baseline", dataset, spec.name)
    return method


def _monotone(
    dataset: BenchDataset, registry: Registry | None, settings: InferenceSettings
) -> Contender:
    # the monotone curve's direction and knots go into the legend, after the summary
    contender = _method_baseline(MONOTONE, dataset, registry, settings, outside_mask=AIR_HU)
    return Contender(
        contender.name,
        contender.kind,
        contender.predict,
        f"{contender.description}, -1000 HU outside the body mask",
    )


def _options_text(spec: BaselineMethod) -> str:
    shown = {k: v for k, v in spec.options.items() if k != "target_spacing"}
    if not shown:
        return ""
    return " (" + ", ".join(f"{k}: {_value(v)}" for k, v in shown.items()) + ")"


def _value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _fitted_text(method: Method, dataset: BenchDataset) -> str:
    """What a fitted baseline learned, in a few words (empty when it learned nothing)."""
    values = method.state_values()
    if "increasing" in values:
        knots = values.get("intensities")
        count = len(knots) if isinstance(knots, list) else 0
        direction = "increasing" if values["increasing"] else "decreasing"
        trained_on = (
            f"split {dataset.split}'s training cases "
            f"({', '.join(c.name for c in dataset.train_pairs)})"
            if dataset.split
            else "the training half"
        )
        if dataset.task == "q4":
            names = ", ".join(c.name for c in source_style_pairs(dataset))
            trained_on = f"the training cases of scanner {Q4_SOURCE_STYLE} ({names})"
        return f" ({direction}, {count} knots) fitted on {trained_on}"
    if "target_mean" in values and "target_std" in values:
        mean, std = (float(str(values[key])) for key in ("target_mean", "target_std"))
        return f", onto scanner {Q3_TARGET}'s training mean {mean:.1f} and std {std:.1f}"
    if values and dataset.task == "q3":
        return f", fitted on scanner {Q3_TARGET}'s training image"
    if dataset.task == "q3m" and method.training.value == "fit":
        return ", fitted on each case's target scanner's training image"
    return ""


def _reference_spacing(dataset: BenchDataset) -> tuple[float, float, float]:
    """The one voxel spacing (mm) of the test references, which interpolation restores."""
    spacings = {tuple(round(s, 6) for s in case.target.spacing_mm) for case in dataset.test}
    if len(spacings) != 1:
        raise OptionsError(
            f"the {dataset.task} test references have several spacings {sorted(spacings)}; "
            "the interpolation baselines restore one"
        )
    (spacing,) = spacings
    return (spacing[0], spacing[1], spacing[2])
