"""Validation during training: whole volumes through the same predict path as users.

Every validation case is predicted by :func:`medi2i.prediction.predict_tensor` (spatial
plan, preprocessing, sliding window, postprocessing, back onto the input grid) and
compared with its reference in the reference's own units (e.g. HU) inside its mask:
the masked MAE, which is the validation metric, and the PSNR, computed by the metric
objects ``medi2i evaluate`` uses for the output's units
(:func:`medi2i.evaluation.metric_objects.validation_metrics`): for a CT in HU the
``synthrad`` preset's ``synthrad_mae`` and ``synthrad_psnr`` (peak 4095 HU, both clipped
to [-1024, 3071] HU), otherwise the ``mr`` preset's ``mae`` and ``psnr``. They are
reported as ``mae`` and ``psnr``, the names checkpoint selection, ``metrics.json`` and
the cards' ``validation_*`` use. (Before, ``psnr`` was always the generic PSNR over the
reference's own range, which for a CT differs from the evaluate stage's
``synthrad_psnr``; models and cards saved then keep their values.) Validation needs paired
cases (``source`` and ``target``), whatever data the method trains on: an unpaired
harmonization method is validated on travelling subjects, for example.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from medi2i.data.cases import MASK, SOURCE, TARGET, Case, CaseSet, case_condition
from medi2i.errors import InputError, OptionsError

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.grid import Grid
    from medi2i.method import Method
    from medi2i.metrics import Metric
    from medi2i.settings import InferenceSettings
    from medi2i.training.history import ValidationProgress

VALIDATION_METRIC = "mae"
"""The metric that ranks validations (lower is better)."""


@dataclass(frozen=True)
class ValidationCase:
    """One validation case in memory.

    Attributes:
        id: The case's id.
        source: The input volume as read (channel first, with its affine).
        target: The reference ``(X, Y, Z)`` in its own units.
        mask: Where to compare, ``(X, Y, Z)`` boolean, or ``None`` for everywhere.
        condition: The case's own predict-time condition (its manifest's
            ``condition`` column), on top of the workflow's.
    """

    id: str
    source: MetaTensor
    target: np.ndarray
    mask: np.ndarray | None
    condition: Mapping[str, object] = field(default_factory=dict)
    target_grid: Grid | None = None
    """The reference's grid, which every prediction must lie on (as in evaluation)."""


def check_validation_cases(cases: CaseSet) -> None:
    """Fail early when ``cases`` cannot validate.

    Raises:
        OptionsError: There are no cases, or one lacks a source or a target.
    """
    if not cases.cases:
        raise OptionsError("the validation set has no cases; give some or no validation set")
    for case in cases.cases:
        missing = [role for role in (SOURCE, TARGET) if role not in case.images]
        if missing:
            raise OptionsError(
                f"validation case {case.id!r} has no {' or '.join(missing)} volume; validation "
                "compares predictions of the source with the target, so it needs both"
            )


def load_validation_cases(cases: CaseSet) -> list[ValidationCase]:
    """Read every validation case (sources, references and masks).

    Raises:
        InputError: A mask selects no voxel, or a reference has NaN or infinite voxels.
        GeometryError: A mask is not on its reference's grid, or a reference of its
            source's shape is not on the source's grid (so that validation, like
            evaluation, never scores voxels of different places against each other).
    """
    from medi2i.grid import Grid, require_same_grid
    from medi2i.io import read_volume
    from medi2i.voxel_checks import require_finite_values

    loaded = []
    for case in cases.cases:
        reference = read_volume(case.images[TARGET])
        source = read_volume(case.images[SOURCE])
        grid, name = Grid.of(reference), f"reference {case.images[TARGET]}"
        if Grid.of(source).shape == grid.shape:  # another shape: super-resolution
            require_same_grid(
                Grid.of(source),
                grid,
                what=f"validation case {case.id!r}: source {case.images[SOURCE]}",
                reference_name=name,
                hint="resample the reference onto the source (a pair must share one grid)",
            )
        mask = None
        if MASK in case.images:
            read = read_volume(case.images[MASK])
            require_validation_mask_grid(case, Grid.of(read), grid)
            mask = np.asarray(read[0].numpy()) > 0
            if not mask.any():
                raise InputError(
                    f"validation case {case.id!r}: the mask {case.images[MASK]} selects no "
                    "voxel (mask > 0 nowhere); check that it is this case's mask"
                )
        target = np.asarray(reference[0].numpy())
        require_finite_values(
            target,
            f"validation case {case.id!r}: reference {case.images[TARGET]}",
            hint="validation would score NaN; fix the file or leave the case out",
        )
        loaded.append(
            ValidationCase(case.id, source, target, mask, dict(case.condition), target_grid=grid)
        )
    return loaded


def require_validation_mask_grid(case: Case, mask: Grid, reference: Grid) -> None:
    """Refuse a validation case's mask that is not on its reference's grid, as stored:
    validation scores the prediction on the reference's grid inside it (``medi2i
    validate --check-data`` and the run's checks give the same message before training).

    Raises:
        GeometryError: Naming the case, both files and how the grids differ.
    """
    from medi2i.grid import require_same_grid

    require_same_grid(
        mask,
        reference,
        what=f"validation case {case.id!r}: mask {case.images[MASK]}",
        reference_name=f"reference {case.images[TARGET]}",
        hint="resample the mask onto the reference",
    )


def validate(
    method: Method,
    cases: list[ValidationCase],
    *,
    settings: InferenceSettings,
    condition: Mapping[str, object] | None = None,
    progress: ValidationProgress | None = None,
) -> dict[str, float]:
    """Predict every case and average the metrics over cases.

    Inside a training run this is a phase of its own (the run passes the ``progress`` of
    :meth:`medi2i.training.history.RunLog.paused`): its time is left out of the step
    bar's rate and ETA, and where that bar is drawn, transient bars count the cases and
    each case's windows.

    Args:
        method: The method in its current training state.
        cases: The validation cases.
        settings: Sliding-window settings (device, AMP, window size).
        condition: The predict-time condition to validate under (e.g. the direction
            ``{to: ct}`` of a two-way unpaired method), the workflow's
            ``method.condition``; a case's own condition overrides it key by key (one
            model validated on every pair of its domains, for example).
        progress: Where each validated case is counted, and whether bars are drawn;
            ``None``: nothing is drawn.

    Returns:
        ``{"mae": ..., "psnr": ...}``, each the mean over cases, in the target's units
        (MAE) and dB (PSNR), computed by the metrics of
        :func:`~medi2i.evaluation.metric_objects.validation_metrics` for the units of
        the output under each case's condition.
    """
    from medi2i.training.history import UNSHOWN

    progress = progress or UNSHOWN
    if progress.shown:  # the windows' transient bar, below the cases' bar
        settings = settings.model_copy(update={"progress": True})
    values: dict[str, list[float]] = {"mae": [], "psnr": []}
    for case in cases:
        for name, value in _case_metrics(method, case, settings, condition).items():
            values[name].append(value)
        progress.case_done()
    return {name: float(np.mean(scores)) for name, scores in values.items()}


def _case_metrics(
    method: Method,
    case: ValidationCase,
    settings: InferenceSettings,
    condition: Mapping[str, object] | None,
) -> dict[str, float]:
    """Predict ``case`` and score the prediction with the metrics of its output's units."""
    from medi2i.grid import Grid, require_same_grid
    from medi2i.prediction import predict_tensor

    merged = case_condition(condition, case.condition)
    metrics = _metrics_for(method, merged)
    prediction = predict_tensor(  # a collapsed network scores badly; the run watches it
        method, case.source, settings=settings, condition=merged, allow_constant=True
    )
    if case.target_grid is not None:
        require_same_grid(
            Grid.of(prediction),
            case.target_grid,
            what=f"the prediction of validation case {case.id!r}",
            reference_name="its reference",
            hint=output_grid_hint(method),
        )
    predicted = np.asarray(prediction.as_tensor()[0].numpy())
    return {name: metric(case.target, predicted, case.mask) for name, metric in metrics.items()}


def _metrics_for(method: Method, condition: Mapping[str, object] | None) -> dict[str, Metric]:
    """Validation's metrics for the units of ``method``'s (first) output under
    ``condition``: a two-way MR↔CT model is scored in HU towards CT only."""
    from medi2i.evaluation.metric_objects import validation_metrics

    outputs = method.outputs(method.parse_condition(condition))
    return validation_metrics(outputs[0].spec.units if outputs else "arbitrary")


def output_grid_hint(method: Method) -> str:
    """What to do about a reference that is not on the grid ``method`` delivers, naming
    only options the method has (``align`` where it has one)."""
    if "align" in type(method.options).model_fields:
        return (
            "the reference must lie on the grid the method delivers: set the method's align "
            "option to the references' grid (centres for slices kept from a thin volume, "
            "edges for a finer grid of the same extent), or resample the references"
        )
    return (
        f"the reference must lie on the grid method {method.id!r} delivers: resample the "
        "references onto it (for super-resolution of thick slices, the grid whose every "
        "kept slice centre is a thin slice's)"
    )
