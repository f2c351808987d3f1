"""Which model folder a workflow run's evaluation scores, and the record of what it scored.

A run that trains in steps keeps two model folders: ``model/``, the last step, and,
with validation data and ``training.keep_best``, ``best-model/``, the step with the
lowest validation MAE. The evaluate stage scores one of them
(``evaluation.checkpoint``, :func:`choose_scored_model`): the checkpoint is chosen on
validation and the evaluation data scored once. ``metrics/scored-model.json``
(:class:`ScoredRecord`) records which folder was scored, from which step, why, which
cases, and whether they are the validation data the checkpoint was chosen on (or the
training images of an unpaired or multi-domain method); the report and the cards
(:mod:`medi2i.workflow.model_card`) read it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from medi2i.workflow.run_folder import RunFolder
    from medi2i.workflow.schema import Workflow
    from medi2i.workflow.split_checks import ValidationOverlap

BEST_MODEL = "best-model"
"""The run's model folder of the lowest validation MAE (``training.keep_best``)."""
SCORED_RECORD = "scored-model.json"
"""The record, in the run's ``metrics/``, of the model folder the evaluation scored."""


def stored_metrics(model_dir: Path) -> dict[str, object]:
    """The metrics a model folder keeps (its ``metrics.json``), or ``{}``."""
    from medi2i.model_folder import METRICS

    try:
        values = json.loads((model_dir / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) else {}


def best_of(model_dir: Path) -> tuple[int, float] | None:
    """The validation step and MAE a ``best-model/`` was kept for (its ``metrics.json``)."""
    from medi2i.training.validation import VALIDATION_METRIC

    values = stored_metrics(model_dir)
    step, mae = values.get("validation_step"), values.get(VALIDATION_METRIC)
    if not isinstance(step, int) or isinstance(step, bool) or not isinstance(mae, int | float):
        return None
    return (step, float(mae)) if math.isfinite(float(mae)) else None


# -- which model the evaluation scores -----------------------------------------------------------


Choice = Literal["best", "last", "only", "given", "adapted"]


@dataclass(frozen=True)
class ScoredModel:
    """The model folder an evaluation scores, and why.

    Attributes:
        folder: ``model``, ``best-model`` or ``adapted`` (in the run folder), or the
            absolute path of a trained model the workflow gives.
        choice: ``best`` (chosen on validation), ``last`` (the last training step),
            ``only`` (a fitted or saved method: the run's one model), ``given``
            (``method.model``) or ``adapted`` (the adapt stage's model).
        reason: Why this folder, one clause (``chosen on validation: ...``).
        step: The training step of its weights, if trained in steps.
        last_step: The run's last training step, if trained in steps.
        validation_mae: Its validation MAE (at ``step``), when validated.
        not_scored: The run's other model folder, which was not scored, described
            (``model/ (the last step, 12)``); ``None`` when there is none.
        source: For an adapted model: the folder it was adapted from, described.
    """

    folder: str
    choice: Choice
    reason: str
    step: int | None = None
    last_step: int | None = None
    validation_mae: float | None = None
    not_scored: str | None = None
    source: str | None = None

    @property
    def chosen_on_validation(self) -> bool:
        """Whether the scored weights are (adapted from) the run's ``best-model/``."""
        return self.choice == "best" or (self.source or "").startswith(f"{BEST_MODEL}/")

    def shown(self) -> str:
        """``best-model/ (step 6 of 12)``, ``model/ (step 12, the last)``."""
        name = self.folder if Path(self.folder).is_absolute() else f"{self.folder}/"
        if self.step is not None and self.step == self.last_step:
            return f"{name} (step {self.step}, the last)"
        if self.step is not None and self.last_step is not None:
            return f"{name} (step {self.step} of {self.last_step})"
        return name

    def describe(self) -> str:
        """The folder, its step and why it was scored, and what was not scored."""
        text = f"{self.shown()}: {self.reason}"
        if self.not_scored is not None:
            text += f"; {self.not_scored} was not scored"
        return text


def choose_scored_model(workflow: Workflow, run: RunFolder, model_dir: Path) -> ScoredModel:
    """The model folder the evaluate stage scores, given the run's current model
    ``model_dir`` (``model/``, ``adapted/`` or a given model): ``best-model/`` when the
    run kept one and ``evaluation.checkpoint`` is ``best`` (with
    ``training.keep_best``), else ``model/``; an adapted or given model is scored as it
    is."""
    root = run.root.resolve()
    path = model_dir.resolve()
    if not path.is_relative_to(root):
        return ScoredModel(
            folder=str(model_dir),
            choice="given",
            reason="the trained model the workflow gives (method.model); the run trained none",
        )
    if path == run.adapted.resolve():
        return _adapted_choice(workflow, run, model_dir)
    if path == (run.root / BEST_MODEL).resolve():
        return _best_choice(workflow, run, best_of(model_dir))
    return _trained_choice(workflow, run)


def _trained_choice(workflow: Workflow, run: RunFolder, *, last: bool = False) -> ScoredModel:
    """``best-model/`` or ``model/`` as the settings choose; ``model/`` with ``last`` (the
    folder an adapted model was made from)."""
    from medi2i.workflow.run_folder import checkpoint_step

    last_step = checkpoint_step(run)
    if last_step is None:
        return ScoredModel(
            folder="model",
            choice="only",
            reason="the run's one model (fitted, or saved with its options: no training steps)",
        )
    best_dir = run.root / BEST_MODEL
    best = best_of(best_dir) if _holds_manifest(best_dir) else None
    setting = workflow.evaluation.checkpoint
    if best is not None and setting == "best" and workflow.training.keep_best and not last:
        return _best_choice(workflow, run, best)
    validations = _validations(run)
    if last:
        why = ""
    elif best is not None:
        why = (
            "evaluation.checkpoint is last"
            if setting == "last"
            else "training.keep_best is off; the best-model/ in the folder was kept by an "
            "earlier part of the run"
        )
    elif not validations:
        why = "the run had no validation data, so no step was chosen on validation"
    elif not workflow.training.keep_best:
        why = "training.keep_best is off, so no best-model/ was kept"
    else:
        why = "no validation gave a finite MAE, so no best-model/ was kept"
    mae = validations.get(last_step)
    not_scored = None
    if best is not None:
        not_scored = f"{BEST_MODEL}/ (step {best[0]}, validation MAE {best[1]:.4g}, the lowest)"
    return ScoredModel(
        folder="model",
        choice="last",
        reason=f"the last training step: {why}" if why else "the last training step",
        step=last_step,
        last_step=last_step,
        validation_mae=mae,
        not_scored=not_scored,
    )


def _best_choice(workflow: Workflow, run: RunFolder, best: tuple[int, float] | None) -> ScoredModel:
    from medi2i.workflow.run_folder import checkpoint_step

    last_step = checkpoint_step(run)
    if best is None:  # a best-model/ without its record: say what is known
        return ScoredModel(folder=BEST_MODEL, choice="best", reason="chosen on validation")
    step, mae = best
    count = len(_validations(run))
    among = f" of the run's {count} validations" if count > 1 else ""
    same = ": the same weights" if step == last_step else ""
    return ScoredModel(
        folder=BEST_MODEL,
        choice="best",
        reason=f"chosen on validation: the lowest validation MAE{among}, {mae:.4g} at step {step}",
        step=step,
        last_step=last_step,
        validation_mae=mae,
        not_scored=f"model/ (the last step, {last_step}{same})" if last_step is not None else None,
    )


def _adapted_choice(workflow: Workflow, run: RunFolder, model_dir: Path) -> ScoredModel:
    from medi2i.errors import Medi2iError
    from medi2i.model_folder import read_manifest

    try:
        adapted_from = read_manifest(model_dir).adapted_from
    except Medi2iError:
        adapted_from = None
    source_path = Path(adapted_from.model) if adapted_from is not None else None
    if source_path is None:
        return ScoredModel(folder="adapted", choice="adapted", reason="the adapt stage's model")
    if source_path.resolve() == run.model.resolve():
        source = _trained_choice(workflow, run, last=True)
    else:
        source = choose_scored_model(workflow, run, source_path)
    return ScoredModel(
        folder="adapted",
        choice="adapted",
        reason=f"the adapt stage's model, adapted from {source.shown()}, {source.reason}",
        step=source.step,
        last_step=source.last_step,
        validation_mae=source.validation_mae,
        not_scored=source.not_scored,
        source=source.shown(),
    )


def _holds_manifest(folder: Path) -> bool:
    from medi2i.model_folder import MANIFEST

    return (folder / MANIFEST).is_file()


def _validations(run: RunFolder) -> dict[int, float]:
    """The validation MAE of each validated step in ``logs/train.jsonl``."""
    from medi2i.training.history import read_history
    from medi2i.training.validation import VALIDATION_METRIC

    found: dict[int, float] = {}
    for entry in read_history(run.train_log):
        values = entry.get("validation")
        if isinstance(values, dict) and isinstance(entry.get("step"), int):
            value = values.get(VALIDATION_METRIC)
            found[entry["step"]] = float(value) if isinstance(value, int | float) else math.nan
    return found


# -- what the evaluation scored ------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredRecord:
    """``metrics/scored-model.json``: the model folder an evaluation scored and its cases.

    Attributes:
        model: The scored folder and why (:class:`ScoredModel`).
        checkpoint: ``evaluation.checkpoint`` as the evaluation ran.
        where: ``evaluation.data`` or ``the test split`` (the split scored).
        cases: The evaluated case ids, in order.
        on_validation: The evaluated cases that are validation cases (their source or
            target is a validation case's), when any are.
        on_training: The evaluated cases whose source or target is a training image of
            an unpaired or multi-domain method, when any are.
        condition_by_case: The predict-time condition each case was predicted under
            (:func:`medi2i.workflow.evaluation.scored_condition`), by case id; empty for
            a method without condition. :meth:`write` takes it from the evaluation's
            ``metrics/cases.json`` when it is empty.
    """

    model: ScoredModel
    checkpoint: str
    where: str
    cases: tuple[str, ...] = ()
    on_validation: tuple[str, ...] = field(default=())
    on_training: tuple[str, ...] = field(default=())
    condition_by_case: dict[str, dict[str, object] | None] = field(default_factory=dict)

    @property
    def condition(self) -> dict[str, object] | None:
        """The condition every case was predicted under; ``None`` when they differ or
        the method has none."""
        conditions = list(self.condition_by_case.values())
        first = conditions[0] if conditions else None
        return first if all(condition == first for condition in conditions) else None

    @property
    def all_on_validation(self) -> bool:
        return bool(self.cases) and len(self.on_validation) == len(self.cases)

    @property
    def all_on_training(self) -> bool:
        return bool(self.cases) and len(self.on_training) == len(self.cases)

    def validation_note(self) -> str | None:
        """Says that (some of) the evaluation data is the validation data, or ``None``."""
        if not self.on_validation:
            return None
        shown = named_cases(self.on_validation)
        if self.all_on_validation:
            which = f"the evaluation data ({shown}) is"
        else:
            which = (
                f"{len(self.on_validation)} of the {len(self.cases)} evaluation cases ({shown}) are"
            )
        chosen = (
            f"{self.model.folder}/ was chosen on"
            if self.model.chosen_on_validation
            else "the training validated on"
        )
        return f"{which} the validation data {chosen}, so these metrics are not a held-out test"

    def training_note(self) -> str | None:
        """Says that (some of) the evaluated images were training images of an unpaired
        or multi-domain method, or ``None``."""
        if not self.on_training:
            return None
        return (
            "the evaluated images were training images of an unpaired/multi-domain method "
            f"({self._which_of()}): the pairing was never seen, but the images were, so "
            "these metrics are not a held-out test"
        )

    def _which_of(self) -> str:
        """``the evaluation case a``, ``all 3 evaluation cases: a, b, c``, ``2 of the 5
        evaluation cases: a, b``."""
        shown, total = named_cases(self.on_training), len(self.cases)
        if self.all_on_training:
            return (
                f"the evaluation case {shown}"
                if total == 1
                else f"all {total} evaluation cases: {shown}"
            )
        return f"{len(self.on_training)} of the {total} evaluation cases: {shown}"

    def write(self, run: RunFolder) -> Path:
        """Write ``metrics/scored-model.json``, with ``condition`` (the condition every
        case was predicted under, ``null`` when they differ) and ``condition_by_case``
        for a method with a predict-time condition."""
        from medi2i.io.atomic import atomic_path

        path = run.metrics / SCORED_RECORD
        by_case = self.condition_by_case or evaluated_conditions(run, self.cases)
        document = {**asdict(self), "cases": list(self.cases)}
        document["on_validation"] = list(self.on_validation)
        document["on_training"] = list(self.on_training)
        document.pop("condition_by_case")
        if any(by_case.values()):
            document["condition"] = replace(self, condition_by_case=by_case).condition
            document["condition_by_case"] = by_case
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        return path


def read_scored_record(run: RunFolder) -> ScoredRecord | None:
    """The run's :class:`ScoredRecord`, or ``None`` (no evaluation, or one made before
    medi2i recorded it)."""
    try:
        document = json.loads((run.metrics / SCORED_RECORD).read_text(encoding="utf-8"))
        return ScoredRecord(
            model=ScoredModel(**document["model"]),
            checkpoint=str(document["checkpoint"]),
            where=str(document["where"]),
            cases=tuple(str(case) for case in document.get("cases", ())),
            on_validation=tuple(str(case) for case in document.get("on_validation", ())),
            on_training=tuple(str(case) for case in document.get("on_training", ())),
            condition_by_case=dict(document.get("condition_by_case", {})),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def named_cases(cases: Sequence[str], shown: int = 5) -> str:
    """``a, b, c``: the first ``shown`` case ids, then ``and N more``."""
    more = len(cases) - shown
    return ", ".join(cases[:shown]) + (f" and {more} more" if more > 0 else "")


def evaluated_conditions(
    run: RunFolder, cases: Sequence[str]
) -> dict[str, dict[str, object] | None]:
    """The condition each of ``cases`` was predicted under, from the evaluation's
    ``metrics/cases.json``; empty when it holds none (a method without condition, or an
    evaluation made before medi2i recorded it)."""
    from medi2i.workflow.evaluation import read_evaluation

    evaluation = read_evaluation(run)
    if evaluation is None:
        return {}
    recorded = {case.id: case.condition for case in evaluation.cases}
    if not any(recorded.values()):
        return {}
    return {case: recorded.get(case) for case in cases}


def validated_files(run: RunFolder) -> set[str] | None:
    """The resolved paths of the sources and targets the run's training validated on
    (its ``checkpoints/validation-data.json``); ``None`` when it holds no record."""
    from medi2i.training.records import CHECKPOINTS, VALIDATION_RECORD
    from medi2i.workflow.split_checks import SCORED_ROLES

    try:
        record = json.loads((run.root / CHECKPOINTS / VALIDATION_RECORD).read_text("utf-8"))
        files = record["files"]
        return {
            os.path.realpath(str(value[0]))
            for key, value in files.items()
            if key.rpartition("/")[2] in SCORED_ROLES and value
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def on_validation(
    evaluated: Sequence[tuple[str, Mapping[str, object]]], validated: set[str] | None
) -> ValidationOverlap | None:
    """The evaluated cases whose source or target the training validated on."""
    from medi2i.workflow.split_checks import shared_cases

    if not validated:
        return None
    return shared_cases(evaluated, validated)
