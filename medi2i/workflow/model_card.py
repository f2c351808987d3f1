"""The model cards a workflow run writes.

The card of every model folder says how it was trained (:class:`TrainingRecord`: steps
trained and planned, a resume, the training, validation and unlabelled cases) and the
limits that follow from the run alone (:func:`training_limits`). The evaluate stage
puts its metrics into the card of the folder it scored
(:mod:`medi2i.workflow.scored_model`) only (:func:`record_evaluation_in_cards`), with
the evaluated cases, and marks the run's other model folders as not scored.

The card schema (:class:`medi2i.cards.ModelCard`) has no fields for these facts: they
are sentences of its ``summary`` and lines of its ``limits``, which ``medi2i cards
check`` accepts and the folder's ``README.md`` shows.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from medi2i.workflow.scored_model import (
    BEST_MODEL,
    ScoredRecord,
    best_of,
    evaluated_conditions,
    stored_metrics,
)

if TYPE_CHECKING:
    from medi2i.cards import ModelCard
    from medi2i.data.discovery import DataSplits
    from medi2i.method import Method
    from medi2i.workflow.run_folder import RunFolder
    from medi2i.workflow.schema import Workflow

SHORT_BUDGET_STEPS = 1000
"""A model trained for fewer steps (medi2i's default ``training.steps``) gets a limit
line: a budget for checking that a workflow runs, not for a usable model."""
FEW_CASES = 10
"""Fewer training, or evaluation, cases than this give the card a limit line."""
SHOWN_CASE_IDS = 50
"""How many evaluated case ids a card names (the run's ``metrics/`` lists them all)."""

Route = Literal["gradient", "fit", "save"]

_EVALUATED = " Scored by the evaluation of the workflow run "
_NOT_SCORED = " Not scored by the evaluation of the workflow run "
_ADAPTED = " Adapted from "
"""Where :func:`medi2i.adaptation.adapted_card` continues a card's summary."""
_EVALUATION_LIMITS = (
    "Its metrics come from ",
    "Its metrics were measured on the validation data ",
    "Its metrics were measured on training images",
)
"""How the limits an evaluation adds to the scored card start (redone each time)."""
_OUTSIDE_LIMIT = "The metrics include"
"""How the evaluate stage's limit on cases outside the training spacings starts."""


# -- how a model was trained ---------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingRecord:
    """How the run made its model, as its cards say.

    Attributes:
        route: ``gradient`` (trained in steps), ``fit`` (fitted on whole volumes) or
            ``save`` (nothing to learn: saved with its options).
        planned_steps: ``training.steps`` (trained in steps only).
        resumed_from: The checkpoint step the training continued from, or ``None``
            when it started at step 0.
        earlier_plan: The ``training.steps`` of the training that was resumed, when it
            differs from ``planned_steps`` (a run continued with more steps).
        kind: The training data's kind (``paired``, ``multi-domain``, ...).
        cases: Training cases (of unpaired or multi-domain data: volumes).
        domains: Training cases per domain, in label order (unpaired and multi-domain
            data only).
        unlabelled: Unlabelled target-domain cases (``data.unlabelled_data``), if any.
        validation: Validation cases (``data.validation_data``, else the split's).
        data_cards: The training data's cards (``data.cards``).
    """

    route: Route
    planned_steps: int | None = None
    resumed_from: int | None = None
    earlier_plan: int | None = None
    kind: str = "paired"
    cases: int = 0
    domains: tuple[tuple[str, int], ...] = ()
    unlabelled: int | None = None
    validation: int = 0
    data_cards: tuple[str, ...] = ()


def training_record(
    workflow: Workflow,
    splits: DataSplits | None,
    *,
    route: Route,
    resumed_from: int | None = None,
    earlier_plan: int | None = None,
) -> TrainingRecord:
    """The :class:`TrainingRecord` of a train stage on ``splits`` (``None`` for a method
    with nothing to learn, whose data is not read)."""
    cards = tuple(workflow.data.cards)
    if splits is None:
        return TrainingRecord(route=route, kind=workflow.data.kind, data_cards=cards)
    train = splits.train
    domains: tuple[tuple[str, int], ...] = ()
    if workflow.data.kind in ("unpaired", "multi-domain") and train.domains:
        counts = Counter(case.domain for case in train.cases)
        domains = tuple((name, counts.get(name, 0)) for name in train.domains)
    planned = workflow.training.steps if route == "gradient" else None
    resumed = resumed_from if resumed_from else None
    return TrainingRecord(
        route=route,
        planned_steps=planned,
        resumed_from=resumed,
        earlier_plan=earlier_plan if resumed and earlier_plan != planned else None,
        kind=workflow.data.kind,
        cases=len(train.cases),
        domains=domains,
        unlabelled=None if splits.unlabelled is None else len(splits.unlabelled.cases),
        validation=len(splits.validation.cases),
        data_cards=cards,
    )


def planned_steps_of(run: RunFolder) -> int | None:
    """``training.steps`` of the run folder's ``config.resolved.yaml`` as it stands (read
    before a resumed training replaces it), or ``None``."""
    import yaml

    try:
        config = yaml.safe_load(run.config.read_text(encoding="utf-8")) or {}
        steps = config["training"]["steps"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _data_clause(record: TrainingRecord) -> str:
    """``on 4 paired training cases; validated on 1 case``."""
    text = f"on {_plural(record.cases, f'{record.kind} training case')}"
    if record.domains:
        text += " (" + ", ".join(f"{name} {count}" for name, count in record.domains) + ")"
    if record.unlabelled:
        text += f" and {_plural(record.unlabelled, 'unlabelled case')}"
    if record.route != "gradient":
        if record.validation:  # set aside, but a method fitted once validates nothing
            cases = _plural(record.validation, "case")
            return f"{text}; validation: not used ({cases}: a fitted method is not validated)"
        return text
    if record.validation:
        return f"{text}; validated on {_plural(record.validation, 'case')}"
    return f"{text}; no validation data"


def _resume_clause(record: TrainingRecord) -> str:
    if record.resumed_from is None:
        return ""
    if record.planned_steps is not None and record.resumed_from >= record.planned_steps:
        return f" (a finished training, reloaded from its checkpoint of step {record.resumed_from})"
    text = f" (resumed from the checkpoint of step {record.resumed_from}"
    if record.earlier_plan is not None:
        text += f"; the training it continued was planned for {record.earlier_plan} steps"
    return text + ")"


def training_sentence(
    record: TrainingRecord, run_name: str, *, best: tuple[int, float] | None = None
) -> str:
    """How the run made the model, for the card's summary; ``best`` (step, validation
    MAE) for the ``best-model/`` kept at that step."""
    if record.route == "save":
        return f"Saved by the workflow run {run_name} with its options (nothing to learn)."
    if record.route == "fit":
        return f"Fitted by the workflow run {run_name} (no training steps) {_data_clause(record)}."
    planned = record.planned_steps
    if best is not None:
        step, mae = best
        made = (
            f"the model at step {step}, kept in {BEST_MODEL}/ for the lowest validation MAE "
            f"({mae:.4g}) of the validations up to that step, of a training planned then for "
            f"{planned} steps"
        )
    else:
        made = f"the model after the last of {planned} planned training steps"
    return (
        f"Trained by the workflow run {run_name}: {made}{_resume_clause(record)}, "
        f"{_data_clause(record)}."
    )


def training_limits(record: TrainingRecord) -> list[str]:
    """The limits the run alone shows: a short budget (training planned for fewer than
    :data:`SHORT_BUDGET_STEPS` steps), few training cases (fewer than
    :data:`FEW_CASES`), and training data no data card describes."""
    limits = []
    steps = record.planned_steps
    if record.route == "gradient" and steps is not None and steps < SHORT_BUDGET_STEPS:
        limits.append(
            f"Its training was planned for {_plural(steps, 'step')}, fewer than "
            f"{SHORT_BUDGET_STEPS} (medi2i's rule for a short budget: fewer than the default "
            "training.steps): enough to check that the workflow runs; the model is likely "
            "far from what the method reaches."
        )
    if record.route != "save" and record.cases < FEW_CASES:
        limits.append(
            f"{'Fitted' if record.route == 'fit' else 'Trained'} on "
            f"{_plural(record.cases, 'case')}, fewer than {FEW_CASES} (medi2i's rule "
            "for few cases): it has seen little of the variety of the data it may meet."
        )
    if record.route != "save" and not record.data_cards:
        limits.append(
            "No data card names its training data (the workflow's data.cards is empty): "
            "what it was trained on is recorded only in the run's config.resolved.yaml."
        )
    return limits


def write_model_card(
    workflow: Workflow,
    run: RunFolder,
    method: Method,
    model_dir: Path,
    *,
    validation_metrics: bool = False,
    command: str = "medi2i run",
    training: TrainingRecord | None = None,
) -> None:
    """The trained model's card: its data cards, the run that made it and how.

    With ``validation_metrics`` (the ``best-model/`` a run keeps) the card also records
    the validation metrics of that model's ``metrics.json`` as ``validation_<name>``
    (the evaluate stage records its metrics in the card of the folder it scores).
    ``command`` is the command that trained it (``medi2i train`` or ``medi2i run``);
    ``training`` what the summary and limits say of the training.
    """
    from medi2i import __version__
    from medi2i.cards import IntendedUse, MethodReference, ModelCard, RunProvenance
    from medi2i.model_card_files import attach_card

    summary = f"{method.summary()} Trained by the workflow run {run.root.name}."
    limits: list[str] = []
    if training is not None:
        best = best_of(model_dir) if validation_metrics else None
        summary = f"{method.summary()} {training_sentence(training, run.root.name, best=best)}"
        limits = training_limits(training)
    card = ModelCard(
        card="model",
        name=card_name(run.root.name),
        method=MethodReference(id=method.id, version=method.version),
        summary=summary,
        training_data=list(workflow.data.cards),
        provenance=RunProvenance(
            medi2i_version=__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            command=f"{command} (resolved config: {run.config.name} in the run folder)",
            seed=workflow.training.seed,
            hardware=hardware_name(workflow.training.device) + _processes(model_dir),
        ),
        intended_use=IntendedUse(
            primary="research on data like the training data its cards describe",
            out_of_scope="clinical use; data unlike the training data",
        ),
        limits=limits,
    )
    if validation_metrics:
        card = card.model_copy(
            update={
                "metrics": _validation_metrics(model_dir),
                "evaluation_data": card.training_data,
            }
        )
    attach_card(model_dir, card)


def _processes(model_dir: Path) -> str:
    """What the model folder's ``training.json`` says of a training in several
    processes (``, 2 processes (torchrun), 4 patches per step``), or nothing."""
    import json

    from medi2i.training.outputs import TRAINING_FACTS

    try:
        facts = json.loads((model_dir / TRAINING_FACTS).read_text(encoding="utf-8"))
        world, patches = int(facts["world_size"]), int(facts["patches_per_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return f", {world} processes (torchrun), {patches} patches per step" if world > 1 else ""


def card_name(run_name: str) -> str:
    """A model card's ``name`` (lower-case letters, digits, ``_.-``) from a run folder's
    name, which follows the workflow file's name: ``My study é 2`` → ``my-study-e-2``."""
    import re
    import unicodedata

    plain = unicodedata.normalize("NFKD", run_name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9_.-]+", "-", plain.lower())
    slug = re.sub(r"^[^a-z0-9]+", "", slug)
    return slug or "run"


def _validation_metrics(model_dir: Path) -> dict[str, float]:
    return {
        f"validation_{name}": float(value)
        for name, value in stored_metrics(model_dir).items()
        if name != "validation_step"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    }


def hardware_name(setting: str) -> str:
    """The device a run's ``device`` setting stands for, as a card records it: ``auto``
    resolved to ``cpu`` or the CUDA device's name (``cuda:0 (NVIDIA H100 80GB HBM3)``)."""
    import torch

    from medi2i.engine import resolve_device
    from medi2i.errors import Medi2iError

    try:
        device = resolve_device(setting)
    except Medi2iError:
        return setting
    if device.type != "cuda":
        return device.type
    return f"{device} ({torch.cuda.get_device_name(device)})"


# -- the cards after an evaluation ---------------------------------------------------------------


def record_evaluation_in_cards(run: RunFolder, record: ScoredRecord) -> None:
    """Complete the scored folder's card, into which the evaluate stage put its metrics:
    the evaluated cases, why this folder was scored, its validation metrics (a
    ``best-model/``), and limits on few or validation cases. The run's other model
    folders' cards lose any metrics of an earlier evaluation and say they were not
    scored. A model the workflow gives is left as it is."""
    scored = _in_run(run, record.model.folder)
    if scored is None:
        return
    _complete_scored_card(run, scored, record)
    for other in (run.model, run.root / BEST_MODEL, run.adapted):
        if other.resolve() != scored.resolve() and other.is_dir():
            _mark_not_scored(run, other, record)


def _in_run(run: RunFolder, folder: str) -> Path | None:
    path = Path(folder)
    if path.is_absolute():
        return path if path.resolve().is_relative_to(run.root.resolve()) else None
    return run.root / path


def _card(folder: Path) -> ModelCard | None:
    from medi2i.cards import ModelCard, load_card
    from medi2i.errors import Medi2iError
    from medi2i.model_folder import CARD_YAML

    try:
        card = load_card(folder / CARD_YAML)
    except Medi2iError:
        return None
    return card if isinstance(card, ModelCard) else None


def _complete_scored_card(run: RunFolder, folder: Path, record: ScoredRecord) -> None:
    from medi2i.model_card_files import attach_card

    card = _card(folder)
    if card is None:
        return
    metrics = dict(card.metrics)
    if folder.name == BEST_MODEL:  # what it was chosen on, beside what was measured
        metrics.update(_validation_metrics(folder))
    limits = [limit for limit in card.limits if not limit.startswith(_EVALUATION_LIMITS)]
    count = len(record.cases)
    if count < FEW_CASES:
        limits.append(
            f"Its metrics come from {_plural(count, 'evaluation case')}, fewer than "
            f"{FEW_CASES} (medi2i's rule for few cases): they say little about other "
            "patients, and their spread is not measured."
        )
    note = record.validation_note()
    if note is not None:
        limits.append(f"Its metrics were measured on the validation data: {note}.")
    seen = record.training_note()
    if seen is not None:
        limits.append(f"Its metrics were measured on training images: {seen}.")
    summary = _without_run_sentences(card.summary) + _evaluated_sentence(run, record)
    update = {"metrics": metrics, "summary": summary, "limits": limits}
    attach_card(folder, card.model_copy(update=update))


def _evaluated_sentence(run: RunFolder, record: ScoredRecord) -> str:
    ids = list(record.cases[:SHOWN_CASE_IDS])
    more = len(record.cases) - len(ids)
    shown = ", ".join(ids) + (
        f" and {more} more (the run's metrics/cases.json lists them)" if more else ""
    )
    text = (
        f"{_EVALUATED}{run.root.name}: this folder, {record.model.shown()}, on "
        f"{_plural(len(record.cases), 'case')} of {record.where}: {shown}."
        f"{_condition_sentence(run, record)} Why this folder: {record.model.reason}."
    )
    for note in (record.validation_note(), record.training_note()):
        if note is not None:
            text += f" Note: {note}."
    return text


def _condition_sentence(run: RunFolder, record: ScoredRecord) -> str:
    """`` Predicted under the condition direction=b2a, from=B, to=A.`` (the one its
    metrics were measured under, as ``metrics_inference`` holds it), or nothing for a
    method without condition."""
    from medi2i.workflow.evaluation import condition_text

    by_case = record.condition_by_case or evaluated_conditions(run, record.cases)
    if not any(by_case.values()):
        return ""
    shared = replace(record, condition_by_case=by_case).condition
    if shared is not None:
        return f" Predicted under the condition {condition_text(shared)}."
    each = [f"{case}: {condition_text(c or {}) or 'none'}" for case, c in by_case.items()]
    more = f"; and {len(each) - 5} more (the run's metrics/metrics.json lists them)"
    return f" Predicted under each case's own condition: {'; '.join(each[:5])}" + (
        f"{more}." if len(each) > 5 else "."
    )


def _mark_not_scored(run: RunFolder, folder: Path, record: ScoredRecord) -> None:
    from medi2i.model_card_files import attach_card

    card = _card(folder)
    if card is None:
        return
    summary = _without_run_sentences(card.summary) + (
        f"{_NOT_SCORED}{run.root.name}, which scored {record.model.shown()} instead (why: "
        f"{record.model.reason}); the evaluation's metrics are in that folder's card and "
        "the run's metrics/."
    )
    update: dict[str, object] = {"summary": summary}
    kept = {name: v for name, v in card.metrics.items() if name.startswith("validation_")}
    if len(kept) < len(card.metrics):  # an earlier evaluation scored this folder
        update.update(
            metrics=kept,
            metrics_inference={},
            # a best-model/'s validation metrics are of the training data's cards
            evaluation_data=card.training_data if kept else [],
            limits=[
                limit
                for limit in card.limits
                if not limit.startswith((*_EVALUATION_LIMITS, _OUTSIDE_LIMIT))
            ],
        )
    attach_card(folder, card.model_copy(update=update))


def _without_run_sentences(summary: str) -> str:
    """The summary without the sentences an earlier evaluation added (up to where an
    adaptation continued it)."""
    for mark in (_EVALUATED, _NOT_SCORED):
        while (start := summary.find(mark)) >= 0:
            end = summary.find(_ADAPTED, start)
            summary = summary[:start] + (summary[end:] if end >= 0 else "")
    return summary
