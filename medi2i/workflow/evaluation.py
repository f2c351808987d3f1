"""The evaluate stage: predict the evaluation cases with the trained model and score them.

Predictions go through the same path as ``medi2i predict`` (spatial plan, sliding
window with the workflow's inference settings, inversion onto the input grid), so the
numbers describe what a user of the model gets. Metrics come from the registry
(:mod:`medi2i.evaluation` registers the SynthRAD and MR metrics; plugins add more).

Writes ``metrics/metrics.json`` (per case and summary, the inference settings and the
predict-time condition the predictions were made with, and the cases whose voxel spacing
lies outside the model's training spacings), ``metrics/metrics.md`` and
``metrics/cases.json`` (which files each case used, for the report's figures, and the
same condition and spacing note per case).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medi2i.data.cases import SOURCE, TARGET, Case, case_condition
from medi2i.errors import InputError, Medi2iError
from medi2i.io.atomic import atomic_path
from medi2i.workflow.loader import WorkflowError
from medi2i.workflow.run_folder import Log, RunFolder, RunState, SplitSource
from medi2i.workflow.schema import Workflow
from medi2i.workflow.scored_conditions import SETTINGS_SEED as SETTINGS_SEED
from medi2i.workflow.scored_conditions import VARIES as VARIES
from medi2i.workflow.scored_conditions import card_condition as card_condition
from medi2i.workflow.scored_conditions import condition_text as condition_text
from medi2i.workflow.scored_conditions import scored_condition as scored_condition
from medi2i.workflow.scored_conditions import shared_condition as shared_condition

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.evaluation.tables import MetricSummary
    from medi2i.method import Method
    from medi2i.metrics import Metric
    from medi2i.registry import Registry

CASES_FILE = "cases.json"
INPUT_ON_OUTPUT_GRID = "_input_on_output_grid.nii.gz"
"""Suffix of the saved input of a case whose output lies on another grid."""


@dataclass(frozen=True)
class EvaluatedCase:
    """The files of one evaluated case (paths as strings, for ``cases.json``).

    Attributes:
        id: Case id.
        source: Input volume as the figures show it: the input file, or for a method
            that delivers another grid (super-resolution) the input resampled onto
            that grid, saved next to the prediction.
        reference: Reference volume.
        mask: Mask volume, or ``None`` when the metrics covered the whole volume.
        prediction: Saved prediction (relative to the run folder), or ``None``.
        original_source: The input file when ``source`` is its resampled copy.
        spacing_outside_training_mm: When the input's voxel spacing lies outside the
            spacings the model was trained on (a :class:`~medi2i.SpacingWarning`), what
            was compared (``input``, ``trained_min``, ``trained_max``, in mm, per array
            axis); ``None`` otherwise. The case's metrics are still in the summary.
        condition: The predict-time condition the case was predicted under
            (:func:`scored_condition`: ``{"direction": "b2a", ...}``), or ``None`` for a
            method without one (and in records written before medi2i kept it).
    """

    id: str
    source: str
    reference: str
    mask: str | None
    prediction: str | None
    original_source: str | None = None
    spacing_outside_training_mm: dict[str, list[float]] | None = None
    condition: dict[str, object] | None = None

    def spacing_note(self) -> str | None:
        """``input spacing 2x2x5 mm, outside the training spacings (2x2x2 mm)``, or
        ``None`` when the spacing lay within them."""
        outside = self.spacing_outside_training_mm
        if outside is None:
            return None
        low, high = (_mm(outside[key]) for key in ("trained_min", "trained_max"))
        span = low if low == high else f"{low} to {high}"
        return (
            f"input spacing {_mm(outside['input'])} mm, outside the training spacings ({span} mm)"
        )


def _mm(spacing: Sequence[float]) -> str:
    return "x".join(f"{float(s):.3g}" for s in spacing)


def case_scores(values: Mapping[str, float]) -> str:
    """One case's scores for the log, a metric that could not be measured (NaN, e.g. an
    ``air_mae`` with no air 10 voxels from the mask) as ``n/a``, as in the tables."""
    return ", ".join(f"{k}={'n/a' if math.isnan(v) else f'{v:.4g}'}" for k, v in values.items())


def evaluate_stage(
    workflow: Workflow,
    run: RunFolder,
    registry: Registry,
    model_dir: Path,
    splits: SplitSource,
    log: Log,
) -> Path:
    """Predict and score every evaluation case; return ``metrics/metrics.json``."""
    from medi2i.evaluation import aggregate, per_case_markdown, select_metrics, to_markdown
    from medi2i.model_folder import load_model

    config = workflow.evaluation
    method = load_model(model_dir, registry=registry)
    metrics = select_metrics(",".join(config.metrics), registry.metrics)
    cases = evaluation_cases(workflow, splits)
    count = f"{len(cases)} case{'' if len(cases) == 1 else 's'}"
    log(f"evaluate: {count} with {', '.join(m.name for m in metrics)}")
    per_case: dict[str, dict[str, float]] = {}
    records = []
    report = workflow.report
    montages = report.cases if report.enabled and report.figures else 0
    for index, case in enumerate(cases):
        # the report's montages are drawn from saved predictions
        keep = config.save_predictions or index < montages
        values, record = _evaluate_case(workflow, run, registry, method, case, metrics, keep=keep)
        per_case[case.id] = values
        records.append(record)
        log(f"evaluate: {case.id}: {case_scores(values)}")
        note = record.spacing_note()
        if note is not None:
            log(
                f"evaluate: Warning: case {case.id!r}: {note}; its output may be wrong without "
                "an error, and its metrics are included in the summary (resample it to the "
                "training spacing, or use a model trained at this resolution)"
            )
    earlier = _earlier_predictions(run.predictions, cases)
    if earlier:
        shown = ", ".join(earlier[:3]) + (
            f" and {len(earlier) - 3} more" if len(earlier) > 3 else ""
        )
        log(
            f"evaluate: predictions/ still holds {len(earlier)} file(s) of an earlier evaluation "
            f"of other cases ({shown}); metrics/{CASES_FILE} lists this evaluation's"
        )
    metrics_path = _write_metrics(workflow, per_case, records, run.metrics / "metrics.json")
    units = {metric.name: metric.units for metric in metrics}
    summary = aggregate(per_case)
    tables = f"{to_markdown(summary, units=units)}\n\n{per_case_markdown(per_case, units=units)}\n"
    _write_text(run.metrics / "metrics.md", tables)
    document = {"units": units, "cases": [asdict(record) for record in records]}
    _write_text(run.metrics / CASES_FILE, json.dumps(document, indent=2) + "\n")
    if model_dir.resolve().is_relative_to(run.root.resolve()):
        if workflow.evaluation.split == "test":
            _record_in_card(workflow, model_dir, summary, units, records)
        else:  # a card's metrics are its test metrics, never those of its training data
            log(
                f"evaluate: the {workflow.evaluation.split} split's metrics are in metrics/ "
                "and the report; the model card keeps the metrics of the test split"
            )
    RunState.read(run).finished(run, "evaluate")
    return metrics_path


def inference_record(workflow: Workflow) -> dict[str, object]:
    """The inference settings the predictions were made with, as ``metrics.json`` and
    the model card record them (``progress``, which changes no value, left out).

    ``device`` is the setting (``auto``), ``device_used`` the device the predictions
    ran on (``cpu``, ``cuda:0``), and ``amp`` whether they ran in mixed precision: only
    on CUDA, so ``false`` on the CPU whatever ``inference.amp`` says.
    """
    from medi2i.engine import resolve_device

    record = dict(workflow.inference.model_dump(mode="json", exclude={"progress"}))
    try:
        device = resolve_device(workflow.inference.device)
    except Medi2iError:  # no prediction ran on it: the stage refused the device
        return {**record, "device_used": None, "amp": False}
    used = device.type == "cuda" and workflow.inference.amp
    return {**record, "device_used": str(device), "amp": used}


def _write_metrics(
    workflow: Workflow,
    per_case: Mapping[str, Mapping[str, float]],
    records: Sequence[EvaluatedCase],
    path: Path,
) -> Path:
    """``metrics.json``: :func:`medi2i.evaluation.to_json`'s ``cases`` and ``summary``,
    with ``inference`` (the settings), for a method with a predict-time condition
    ``condition`` (the one every case was predicted under, ``null`` when they differ) and
    ``condition_by_case`` (each case's), and ``spacing_outside_training_mm`` (by case id,
    the cases whose spacing lay outside the training spacings; empty when none did)."""
    from medi2i.evaluation import to_json

    document = json.loads(to_json({k: dict(v) for k, v in per_case.items()}))
    document["inference"] = inference_record(workflow)
    if any(record.condition for record in records):
        document["condition"] = shared_condition(records)
        document["condition_by_case"] = {record.id: record.condition for record in records}
    document["spacing_outside_training_mm"] = {
        record.id: record.spacing_outside_training_mm
        for record in records
        if record.spacing_outside_training_mm is not None
    }
    _write_text(path, json.dumps(document, indent=2) + "\n")
    return path


def _record_in_card(
    workflow: Workflow,
    model_dir: Path,
    summary: Mapping[str, MetricSummary],
    units: Mapping[str, str],
    records: Sequence[EvaluatedCase],
) -> None:
    """Put the mean of every metric, the inference settings and predict-time condition
    they were measured with (:func:`card_condition`) and the evaluation data's cards into
    the card of a model this run trained (a model given to the workflow is left as it
    is). A case whose spacing lay outside the training spacings is named in the card's
    ``limits``."""
    from medi2i.cards import ModelCard, load_card
    from medi2i.model_card_files import attach_card
    from medi2i.model_folder import CARD_YAML

    card_path = model_dir / CARD_YAML
    if not card_path.is_file():
        return
    card = load_card(card_path)
    if not isinstance(card, ModelCard):
        return
    data = workflow.evaluation.data
    cards = list(workflow.data.cards if data is None else data.cards)
    means = {
        _card_metric_name(name, units.get(name, "")): float(values.mean)
        for name, values in summary.items()
        if math.isfinite(values.mean)
    }
    outside = [record for record in records if record.spacing_note() is not None]
    limits = [limit for limit in card.limits if not limit.startswith(_OUTSIDE_LIMIT)]
    if outside:
        shown = "; ".join(f"{record.id!r}: {record.spacing_note()}" for record in outside)
        limits.append(
            f"{_OUTSIDE_LIMIT} {len(outside)} of {len(records)} test case(s) whose voxel "
            f"spacing lies outside the training spacings ({shown})"
        )
    update = {
        "metrics": means,
        "metrics_inference": {**inference_record(workflow), **card_condition(records)},
        "evaluation_data": cards,
        "limits": limits,
    }
    attach_card(model_dir, card.model_copy(update=update))


_OUTSIDE_LIMIT = "The metrics include"
"""How the card's limit on out-of-range cases starts (an evaluation again replaces it)."""


def _card_metric_name(name: str, unit: str) -> str:
    """``synthrad_mae`` in ``HU`` → ``synthrad_mae_hu``: the card's names carry units."""
    slug = "".join(c if c.isalnum() else "_" for c in unit.lower()).strip("_")
    return f"{name}_{slug}" if slug else name


def evaluation_cases(workflow: Workflow, splits: SplitSource) -> list[Case]:
    """The cases to evaluate: all of ``evaluation.data``, else the chosen split of ``data``.

    Raises:
        WorkflowError: There is none (e.g. no test split was asked for).
    """
    config = workflow.evaluation
    if config.data is not None:
        from medi2i.data.discovery import discover_cases

        cases = list(discover_cases(config.data).cases)
    else:
        cases = list(splits().get(config.split).cases)
    if not cases:
        raise WorkflowError(
            f"the {config.split} split has no cases to evaluate: set data.split.{config.split} "
            f"(a fraction or case list), choose another evaluation.split, or give evaluation.data"
        )
    require_evaluation_masks(workflow, cases)
    return cases


def require_evaluation_masks(workflow: Workflow, cases: Sequence[Case]) -> None:
    """Refuse evaluation cases that would be scored in different regions, or not in the
    region the workflow names.

    With ``evaluation.mask`` set in the file, every case needs that volume; with the
    default (``mask``), either every case has one or none has (then whole volumes are
    scored). A case without the mask was otherwise scored over its whole volume without
    a word: a misspelt role gave whole-volume numbers under a masked metric's name.

    Raises:
        WorkflowError: Some cases lack the mask; the message names them.
    """
    config = workflow.evaluation
    role = config.mask
    if role is None:
        return
    without = [case.id for case in cases if role not in case.images]
    if not without or (len(without) == len(cases) and "mask" not in config.model_fields_set):
        return
    shown = ", ".join(repr(name) for name in without[:5])
    more = f" and {len(without) - 5} more" if len(without) > 5 else ""
    if len(without) == len(cases):
        found = sorted({role for case in cases for role in case.images})
        problem = (
            f"evaluation.mask is {role!r}, but no evaluation case has a {role} volume (they "
            f"have {', '.join(found)})"
        )
    else:
        problem = (
            f"evaluation case {shown}{more} has no {role} volume, which the other "
            f"evaluation cases have, so its metrics would cover its whole volume"
        )
    raise WorkflowError(
        f"{problem}: give every evaluation case its {role}, name the mask the cases have, "
        "or set evaluation.mask: null to score whole volumes"
    )


def _outside(fact: object) -> dict[str, list[float]] | None:
    """``predict``'s ``spacing_outside_training_mm`` fact, typed (``None`` if absent)."""
    if not isinstance(fact, Mapping):
        return None
    return {str(key): [float(v) for v in values] for key, values in fact.items()}


def _evaluate_case(
    workflow: Workflow,
    run: RunFolder,
    registry: Registry,
    method: Method,
    case: Case,
    metrics: Sequence[Metric],
    *,
    keep: bool,
) -> tuple[dict[str, float], EvaluatedCase]:
    from medi2i.evaluation import evaluate_case
    from medi2i.io import read_volume
    from medi2i.prediction import predict_tensor
    from medi2i.training.validation import output_grid_hint
    from medi2i.training_spacing import SpacingWarning
    from medi2i.workflow.data_checks import in_workflow_words

    readers = list(registry.readers.values())
    source = read_volume(case.images[SOURCE], readers=readers)
    condition = case_condition(workflow.method.condition, case.condition)
    facts: dict[str, object] = {}
    try:
        # the run's log, report, metrics and card say it; the warning itself would
        # reach the terminal alone (and twice with the log's line)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SpacingWarning)
            output = predict_tensor(
                method, source, settings=workflow.inference, condition=condition, run_facts=facts
            )
    except InputError as exc:  # NaN voxels: the workflow's key, not predict's option
        raise in_workflow_words(exc) from None
    reference = read_volume(case.images[TARGET], readers=readers)
    require_same_grid(
        output,
        reference,
        what=f"the prediction of case {case.id!r}",
        hint=output_grid_hint(method),
    )
    mask_role = workflow.evaluation.mask
    mask_path = case.images.get(mask_role) if mask_role is not None else None
    mask = None
    if mask_path is not None:
        mask = read_volume(mask_path, readers=readers)
        require_same_grid(
            mask,
            reference,
            what=f"mask {mask_path}",
            hint="resample the mask onto the reference (a case's volumes must share one grid)",
        )
    record = EvaluatedCase(
        id=case.id,
        source=str(case.images[SOURCE]),
        reference=str(case.images[TARGET]),
        mask=None if mask_path is None else str(mask_path),
        prediction=None,
        spacing_outside_training_mm=_outside(facts.get("spacing_outside_training_mm")),
        condition=scored_condition(method, condition, seed=workflow.inference.seed),
    )
    if keep:
        record = _kept(record, run, registry, output=output, source=source)
    try:
        values = evaluate_case(
            _array(reference), _array(output), None if mask is None else _array(mask), metrics
        )
    except Medi2iError as exc:  # "the mask selects no voxel": say which case and files
        files = f"reference {case.images[TARGET]}" + (f", mask {mask_path}" if mask_path else "")
        raise type(exc)(f"evaluation case {case.id!r} ({files}): {exc}") from exc
    return values, record


def _kept(
    record: EvaluatedCase,
    run: RunFolder,
    registry: Registry,
    *,
    output: MetaTensor,
    source: MetaTensor,
) -> EvaluatedCase:
    """Write the prediction and, when the method changed the grid, the input on its grid.

    The report's montages draw input and output voxel by voxel on one grid; a
    super-resolution input is shown resampled onto the output grid by nearest neighbour,
    so that thick slices appear as the slabs they are.
    """
    from medi2i.grid import Grid
    from medi2i.io import write_volume
    from medi2i.resample import resample_to_grid

    writers = list(registry.writers.values())
    stem = prediction_stem(record.id)
    # the run folder's own files: evaluating again replaces them
    prediction = write_volume(
        output, run.predictions / f"{stem}.nii.gz", writers=writers, overwrite=True
    )
    record = replace(record, prediction=str(prediction.relative_to(run.root)))
    grid = Grid.of(output)
    if Grid.of(source).same_as(grid):
        return record
    shown = resample_to_grid(source, grid, mode="nearest")
    path = write_volume(
        shown, run.predictions / f"{stem}{INPUT_ON_OUTPUT_GRID}", writers=writers, overwrite=True
    )
    return replace(record, source=str(path), original_source=record.source)


def _earlier_predictions(folder: Path, cases: Sequence[Case]) -> list[str]:
    """Files in ``predictions/`` of none of ``cases`` (an earlier evaluation of other
    cases); kept, since nothing in a run folder is deleted, but named in the log."""
    if not folder.is_dir():
        return []
    stems = [prediction_stem(case.id) for case in cases]
    prefixes = tuple(p for stem in stems for p in (f"{stem}.", f"{stem}{INPUT_ON_OUTPUT_GRID}"))
    return sorted(entry.name for entry in folder.iterdir() if not entry.name.startswith(prefixes))


def prediction_stem(case_id: str) -> str:
    """A file name for a case id, unique per id and the same in every run.

    An id of letters, digits and ``._-`` is its own name (``"sub-01"`` → ``"sub-01"``).
    Any other id has the other characters replaced (``/`` by ``__``, the rest by ``_``)
    and the first 8 hex digits of its SHA-256 appended (``"x y"`` → ``"x_y-<hash>"``),
    so that ids that differ only there (``"x y"`` and ``"x_y"``) never share a
    prediction or a figure; the name depends on the id alone, so ``medi2i evaluate
    --run-dir`` and a rerun find the same files.
    """
    import hashlib

    plain = "".join(c if _plain(c) else "_" for c in case_id.replace("/", "__"))
    if plain == case_id and case_id not in {"", ".", ".."}:
        return plain
    digest = hashlib.sha256(case_id.encode("utf-8")).hexdigest()[:8]
    return f"{plain}-{digest}"


def _plain(character: str) -> bool:
    # ASCII only: "é" written as one code point or two (NFC, NFD) would be two names
    return character.isascii() and (character.isalnum() or character in "._-")


@dataclass(frozen=True)
class EvaluationRecord:
    """What the evaluate stage left for the report.

    Attributes:
        units: Units of each metric, by metric name.
        cases: The evaluated cases, in order.
        per_case: Metric values by metric name, by case id.
    """

    units: dict[str, str]
    cases: list[EvaluatedCase]
    per_case: dict[str, dict[str, float]]


def read_evaluation(run: RunFolder) -> EvaluationRecord | None:
    """The evaluate stage's records, or ``None`` when it has not run in ``run``."""
    cases_path, metrics_path = run.metrics / CASES_FILE, run.metrics / "metrics.json"
    if not (cases_path.is_file() and metrics_path.is_file()):
        return None
    document = json.loads(cases_path.read_text(encoding="utf-8"))
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    per_case = {
        case_id: {name: _number(value) for name, value in values.items()}
        for case_id, values in metrics["cases"].items()
    }
    cases = [EvaluatedCase(**record) for record in document["cases"]]
    return EvaluationRecord(units=dict(document["units"]), cases=cases, per_case=per_case)


def _number(value: float | str | None) -> float:
    # metrics.json writes NaN as null and infinities as "inf" / "-inf"
    return math.nan if value is None else float(value)


def _array(volume: MetaTensor) -> np.ndarray:
    return np.asarray(volume.as_tensor().detach().cpu().numpy()[0])


def require_same_grid(
    volume: MetaTensor,
    reference: MetaTensor,
    *,
    what: str,
    hint: str = "paired data must share one grid (resample the reference onto the source)",
) -> None:
    """Check that ``volume`` lies on the grid of ``reference``
    (:func:`medi2i.grid.require_same_grid`, on the volumes' grids).

    Raises:
        GeometryError: It does not; the message names ``what``, the reference file and
            what to do (``hint``).
    """
    from medi2i.grid import Grid
    from medi2i.grid import require_same_grid as require_grid

    name = f"reference {reference.meta.get('filename_or_obj')}"
    require_grid(Grid.of(volume), Grid.of(reference), what=what, reference_name=name, hint=hint)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
