"""Running a workflow: the train, adapt, evaluate and report stages in one run folder.

The run folder's layout is described in :mod:`medi2i.workflow.run_folder`. Running
again in an existing folder continues it: training resumes from its last checkpoint,
adaptation, evaluation and report are redone. A folder made from a workflow with other
data or another method is refused, since mixing them would make the results
meaningless. When training changes the model of a folder that was evaluated, the
earlier adaptation, metrics and report are marked stale in ``run.json`` until they are
redone. One process works in a folder at a time (its lock file); under ``torchrun``
every process trains and only rank 0 writes the folder, logs and runs the later stages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.workflow.loader import WorkflowError
from medi2i.workflow.run_folder import (
    STAGES,
    Echo,
    Log,
    RunFolder,
    RunState,
    SplitSource,
    Stage,
    checkpoint_step,
    holds_model,
    is_main_process,
    latest_run_folder,
    open_run,
    run_folder_for,
    run_lock,
    run_logging,
)
from medi2i.workflow.schema import Workflow
from medi2i.workflow.stages import adapt_stage, train_stage

if TYPE_CHECKING:
    from medi2i.data.discovery import DataSplits
    from medi2i.registry import Registry
    from medi2i.workflow.split_checks import ValidationOverlap

__all__ = [
    "STAGES",
    "RunFolder",
    "RunResult",
    "RunState",
    "Stage",
    "adapt_stage",
    "latest_run_folder",
    "open_run",
    "run_folder_for",
    "run_workflow",
    "train_stage",
]


@dataclass(frozen=True)
class RunResult:
    """What a run produced.

    Attributes:
        run_dir: The run folder.
        model_dir: The trained-model folder (or the workflow's given model), if any.
        metrics_path: ``metrics/metrics.json`` when the evaluate stage ran.
        report_path: The report file when the report stage ran.
        scored_dir: The model folder the evaluate stage scored (``best-model/``,
            ``model/``, ``adapted/`` or the given model; see ``evaluation.checkpoint``),
            when it ran.
    """

    run_dir: Path
    model_dir: Path | None
    metrics_path: Path | None
    report_path: Path | None
    scored_dir: Path | None = None


def run_workflow(
    workflow: Workflow,
    *,
    registry: Registry,
    stages: Sequence[Stage] = STAGES,
    run_dir: str | Path | None = None,
    echo: Echo | None = None,
) -> RunResult:
    """Run the given stages of a workflow in a new or existing run folder.

    Args:
        workflow: The validated workflow (see :func:`medi2i.workflow.load_workflow`).
        registry: The plugins to find the method and metrics in; the workflow's extra
            ``plugins`` are loaded into it.
        stages: Any of ``"train"``, ``"adapt"``, ``"evaluate"``, ``"report"`` (run in
            that order). Adaptation runs only with an ``adaptation`` section; evaluation
            and report are skipped when disabled in the workflow.
        run_dir: The run folder to create or continue; by default a new folder
            ``<output.root>/<output.name>-<run_id or timestamp>``.
        echo: Receives one line per stage event (the CLI prints them).

    Returns:
        Where the model, metrics and report are.

    Raises:
        WorkflowError: The run folder belongs to a workflow with other data or method,
            lies inside a folder the workflow reads (its data, an input model), or a
            stage needs what an earlier one did not produce.
    """
    from medi2i.workflow.checks import check_condition, check_devices, check_training
    from medi2i.workflow.loader import workflow_registry

    registry = workflow_registry(workflow, registry=registry)
    if {"train", "evaluate"} & set(stages) and workflow.method.model is None:
        check_condition(workflow, registry)  # before hours of training, not after
    if "train" in stages:
        check_training(workflow, registry)  # before the run folder is made
    check_devices(workflow, registry, stages=stages)  # likewise
    main = is_main_process()
    _require_shared_folder(workflow, run_dir)
    if run_dir is not None:
        _require_outside_data(workflow, Path(run_dir))
    target = Path(run_dir).resolve() if run_dir is not None else None
    if target is None and main:
        # normalised as --run-dir is: output.root "../runs" names no folder "wf/../runs"
        target = run_folder_for(workflow).root.resolve()
    if target is not None:
        _require_trained(workflow, RunFolder(target), stages)
    training = "train" in stages and workflow.method.model is None
    with run_lock(target) if main and target is not None else nullcontext():
        run = open_run(
            workflow,
            run_dir=target,
            defer_config=training,
            main=main,
            option_defaults=lambda: _option_defaults(workflow, registry),
        )
        entered: list[Stage] = []  # the stages begun, the last one running
        try:
            return _run_stages(workflow, run, registry, stages, echo if main else None, entered)
        except KeyboardInterrupt as exc:
            # the command line prints this instead of its general "no partial output"
            # line: a run keeps its checkpoints and finished stages, to be continued
            kept = _kept(run, stages, entered[-1] if entered else None)
            raise type(exc)(f"Interrupted; the run folder {run.root} keeps {kept}") from None


def _option_defaults(workflow: Workflow, registry: Registry) -> dict[str, object]:
    """The defaults of the workflow's method options (none for a given trained model)."""
    if workflow.method.id is None:
        return {}
    options = registry.method(str(workflow.method.id)).Options
    return {
        name: field.get_default(call_default_factory=True)
        for name, field in options.model_fields.items()
        if not field.is_required()
    }


def _require_trained(workflow: Workflow, run: RunFolder, stages: Sequence[Stage]) -> None:
    """Refuse stages that need a trained model in a folder without one, when no stage
    of this command trains it, before the folder is made or written (``medi2i evaluate
    WORKFLOW --run-dir new`` makes no folder)."""
    if "train" in stages or workflow.method.model is not None:
        return
    adapts = "adapt" in stages and workflow.adaptation is not None
    evaluates = "evaluate" in stages and workflow.evaluation.enabled
    if not (adapts or evaluates):
        return
    if not run.root.is_dir():
        raise WorkflowError(
            f"run folder {run.root} does not exist; give the --run-dir of a trained run, "
            "or train one first (`medi2i train WORKFLOW` or `medi2i run`)"
        )
    if not holds_model(run):
        _require_model(RunResult(run.root, None, None, None), run)


def _require_outside_data(workflow: Workflow, run_dir: Path) -> None:
    """Refuse a ``--run-dir`` inside a folder the workflow reads (its data, an input
    model), before the folder is made."""
    from medi2i.workflow.folder_checks import run_dir_problem

    problem = run_dir_problem(workflow, run_dir)
    if problem is not None:
        raise WorkflowError(problem)


def _require_shared_folder(workflow: Workflow, run_dir: Path | str | None) -> None:
    """Under ``torchrun`` (more than one process), refuse a run whose folder would be
    named by each process's own clock: a timestamped name can differ between them."""
    import os

    try:
        processes = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        processes = 1  # torchrun's own check of its variables reports it
    if processes > 1 and run_dir is None and workflow.output.run_id is None:
        raise WorkflowError(
            f"under torchrun ({processes} processes) give --run-dir DIR or output.run_id: "
            "every process must use one run folder, and a timestamped name is taken from "
            "each process's clock"
        )


def _kept(run: RunFolder, stages: Sequence[Stage], running: Stage | None) -> str:
    """What an interrupted run keeps and how to continue it, for the message: whether
    training will resume, or (interrupted after training, as in ``medi2i evaluate``)
    what a rerun redoes."""
    again = f"--run-dir {run.root}"
    if running is not None and running != "train" and holds_model(run):
        command = "medi2i run WORKFLOW" if "train" in stages else "medi2i evaluate WORKFLOW"
        return (
            f"its trained model and finished stages (training had finished); `{command} "
            f"{again}` redoes the {running} stage and those after it from their start, "
            "with the trained model (no training step is redone)"
        )
    step = checkpoint_step(run)
    if step is None:
        return (
            "its finished stages, but no training checkpoint yet (training.checkpoint_every "
            f"steps had not passed): training would start again from step 0; continue it "
            f"with {again}"
        )
    return (
        f"its finished stages and the checkpoint of step {step}, where training resumes: "
        f"continue it with {again}"
    )


def _run_stages(
    workflow: Workflow,
    run: RunFolder,
    registry: Registry,
    stages: Sequence[Stage],
    echo: Echo | None,
    entered: list[Stage],
) -> RunResult:
    state = RunState.read(run)
    result = RunResult(run.root, state.model_dir(run), None, None)
    main = is_main_process()
    with run_logging(run, echo, main=main) as log:
        log(f"run folder {run.root}")
        splits = _SplitsOnDemand(workflow, registry)
        if "evaluate" in stages and _work_before_evaluation(workflow, stages):
            from medi2i.engine import resolve_device
            from medi2i.workflow.checks import check_adaptation, check_evaluation

            check_evaluation(workflow, splits(), registry)  # before training or adapting
            check_adaptation(workflow)
            resolve_device(workflow.inference.device)  # e.g. cuda asked for, none here
        warned = (False, False)  # the evaluation data is validation, training data: a line
        if "train" in stages and _work_before_evaluation(workflow, ("train",)):
            _note_unused_validation(workflow, registry, splits, log)
            warned = (
                _warn_evaluation_on_validation(workflow, registry, splits, log),
                _warn_evaluation_on_training(workflow, registry, splits, log),
            )
        if "train" in stages:
            entered.append("train")
            trained = checkpoint_step(run)
            command = "medi2i train" if tuple(stages) == ("train",) else "medi2i run"
            model_dir = train_stage(workflow, run, registry, splits, log, command=command)
            result = replace(result, model_dir=model_dir)
            if not main:  # rank 0 alone adapts, evaluates and reports
                return result
            if checkpoint_step(run) != trained:
                _mark_stale(workflow, run, stages, log)
        if "adapt" in stages and workflow.adaptation is not None:
            from medi2i.workflow.scored_model import choose_scored_model

            # the checkpoint the evaluation would score is the one adapted
            chosen = choose_scored_model(workflow, run, _require_model(result, run))
            model_dir = _scored_path(run, chosen.folder)
            entered.append("adapt")
            result = replace(result, model_dir=adapt_stage(workflow, run, registry, model_dir, log))
        if "evaluate" in stages and workflow.evaluation.enabled:
            model_dir = _require_model(result, run)
            entered.append("evaluate")
            metrics, scored = _evaluate(
                workflow, run, registry, model_dir, splits, log, warned=warned
            )
            result = replace(result, metrics_path=metrics, scored_dir=scored)
        if "report" in stages and workflow.report.enabled:
            from medi2i.workflow.reporting import report_stage

            entered.append("report")
            result = replace(result, report_path=report_stage(workflow, run, log, registry))
    return result


def _evaluate(
    workflow: Workflow,
    run: RunFolder,
    registry: Registry,
    model_dir: Path,
    splits: SplitSource,
    log: Log,
    *,
    warned: tuple[bool, bool] = (False, False),
) -> tuple[Path, Path]:
    """Score the model ``evaluation.checkpoint`` chooses among the run's model folders
    (:func:`~medi2i.workflow.scored_model.choose_scored_model`); record which one, why and
    on which cases in ``metrics/scored-model.json``, and put the metrics in its card
    alone. Log a line when the evaluated cases are validation cases, or training images
    of an unpaired or multi-domain method, unless ``warned`` says it was said before
    training (of each). Returns ``metrics/metrics.json`` and the scored folder."""
    from medi2i.workflow.evaluation import evaluate_stage, read_evaluation
    from medi2i.workflow.model_card import record_evaluation_in_cards
    from medi2i.workflow.scored_model import ScoredRecord, choose_scored_model, on_validation

    scored = choose_scored_model(workflow, run, model_dir)
    log(f"evaluate: scoring {scored.describe()}")
    scored_dir = _scored_path(run, scored.folder)
    metrics = evaluate_stage(workflow, run, registry, scored_dir, splits, log)
    evaluation = read_evaluation(run)
    cases = evaluation.cases if evaluation is not None else []
    evaluated = [
        (case.id, {"source": case.original_source or case.source, "target": case.reference})
        for case in cases
    ]
    overlap = on_validation(evaluated, _validated(workflow, run, scored.choice, splits))
    trained = _on_training(workflow, registry, scored.choice, evaluated, splits)
    config = workflow.evaluation
    record = ScoredRecord(
        model=scored,
        checkpoint=config.checkpoint,
        where="evaluation.data" if config.data is not None else f"the {config.split} split",
        cases=tuple(case.id for case in cases),
        on_validation=overlap.cases if overlap is not None else (),
        on_training=trained,
    )
    record.write(run)
    notes = (record.validation_note(), record.training_note())
    for note, said in zip(notes, warned, strict=True):
        if note is not None and not said:
            log(f"evaluate: Warning: {note}")
    if config.split == "test":  # the evaluate stage recorded its metrics in the card
        record_evaluation_in_cards(run, record)
    return metrics, scored_dir


def _validated(
    workflow: Workflow, run: RunFolder, choice: str, splits: SplitSource
) -> set[str] | None:
    """The sources and targets the scored model's training validated on: the run's
    record of its last validation, or for a run from before that record, the
    workflow's validation cases; ``None`` for a given model."""
    from medi2i.errors import Medi2iError
    from medi2i.workflow.scored_model import validated_files
    from medi2i.workflow.split_checks import scored_files

    if choice == "given":
        return None
    recorded = validated_files(run)
    if recorded is not None or checkpoint_step(run) is None:
        return recorded
    try:  # a run whose validation was not recorded
        cases = splits().validation.cases
    except Medi2iError:
        return None
    return set().union(*(scored_files(case.images) for case in cases)) if cases else None


def _on_training(
    workflow: Workflow,
    registry: Registry,
    choice: str,
    evaluated: Sequence[tuple[str, Mapping[str, object]]],
    splits: SplitSource,
) -> tuple[str, ...]:
    """The evaluated cases whose source or target is a training image of the run's
    unpaired or multi-domain method (by path or content); none for a given model, one
    with nothing to learn, or paired data (whose shared files are refused)."""
    from medi2i.errors import Medi2iError
    from medi2i.workflow.checks import workflow_training_route
    from medi2i.workflow.split_checks import UNPAIRED_KINDS, cases_on_training, training_images

    if choice == "given" or workflow.data.kind not in UNPAIRED_KINDS:
        return ()
    if workflow_training_route(workflow, registry) not in ("gradient", "fit"):
        return ()
    try:
        trained = training_images(splits().train.cases)
    except Medi2iError:  # the training data has gone since: nothing to compare with
        return ()
    overlap = cases_on_training(evaluated, trained)
    return overlap.cases if overlap is not None else ()


def _scored_path(run: RunFolder, folder: str) -> Path:
    path = Path(folder)
    return path if path.is_absolute() else run.root / path


def _warn_evaluation_on_validation(
    workflow: Workflow, registry: Registry, splits: SplitSource, log: Log
) -> bool:
    """Say, before training, that the evaluation will score the validation data the
    checkpoint is chosen on (allowed: some workflows mean it; the report says it too);
    return whether it was said."""
    from medi2i.workflow.split_checks import evaluation_on_validation

    if not workflow.evaluation.enabled:
        return False
    return _warn_overlap(evaluation_on_validation, ("gradient",), workflow, registry, splits, log)


def _warn_evaluation_on_training(
    workflow: Workflow, registry: Registry, splits: SplitSource, log: Log
) -> bool:
    """Say, before training, that the evaluation will score training images of an
    unpaired or multi-domain method (allowed: it never sees how they pair; the report
    says it too); return whether it was said."""
    from medi2i.workflow.split_checks import evaluation_on_training

    return _warn_overlap(
        evaluation_on_training, ("gradient", "fit"), workflow, registry, splits, log
    )


def _warn_overlap(
    find: Callable[[Workflow, DataSplits], ValidationOverlap | None],
    routes: tuple[str, ...],
    workflow: Workflow,
    registry: Registry,
    splits: SplitSource,
    log: Log,
) -> bool:
    """Log ``find``'s warning for a method trained by one of ``routes``; return whether
    it was said (not when the data is missing: the train stage or evaluation says it)."""
    from medi2i.errors import Medi2iError
    from medi2i.workflow.checks import workflow_training_route

    if workflow_training_route(workflow, registry) not in routes:
        return False
    try:
        overlap = find(workflow, splits())
    except Medi2iError:
        return False
    if overlap is not None:
        log(f"train: {overlap.warning()}")
    return overlap is not None


def _note_unused_validation(
    workflow: Workflow, registry: Registry, splits: SplitSource, log: Log
) -> None:
    """Say, before training, that a method fitted once (or with nothing to learn) does
    not use the validation cases."""
    from medi2i.errors import Medi2iError
    from medi2i.workflow.checks import unused_validation

    if unused_validation(workflow, registry) is None:
        return  # no validation data configured, or a method trained in steps
    try:
        count: int | None = len(splits().validation.cases)
    except Medi2iError:  # data not found: the train stage says what
        count = None
    note = unused_validation(workflow, registry, cases=count)
    if note is not None:
        log(f"train: {note}")


def _work_before_evaluation(workflow: Workflow, stages: Sequence[Stage]) -> bool:
    """Whether a stage before evaluation does work that an evaluation which cannot run
    would waste: training (a workflow given no trained model) or adapting."""
    trains = "train" in stages and workflow.method.model is None
    adapts = "adapt" in stages and workflow.adaptation is not None
    return trains or adapts


def _mark_stale(workflow: Workflow, run: RunFolder, stages: Sequence[Stage], log: Log) -> None:
    """Training changed the model: mark the stages that described the earlier one stale
    in ``run.json``, and say how to refresh those this command does not redo."""
    state = RunState.read(run)
    stale = [stage for stage in STAGES[1:] if stage in state.stages]
    if not stale:
        return
    state.mark_stale(run, stale)
    enabled = {
        "adapt": workflow.adaptation is not None,
        "evaluate": workflow.evaluation.enabled,
        "report": workflow.report.enabled,
    }
    left = [stage for stage in stale if stage not in stages or not enabled[stage]]
    if left:
        results = {"adapt": "adapted/", "evaluate": "metrics/, predictions/", "report": "report"}
        shown = ", ".join(results[stage] for stage in left)
        log(
            f"train: the model changed; {shown} still describe the earlier model (marked "
            f"stale in {run.state.name}): refresh them with `medi2i run {run.config} "
            f"--run-dir {run.root}`, or the metrics and report alone with `medi2i evaluate "
            f"{run.config} --run-dir {run.root}`"
        )


def _require_model(result: RunResult, run: RunFolder) -> Path:
    if result.model_dir is None:
        raise WorkflowError(
            f"run folder {run.root} has no trained model yet; train it first "
            "(`medi2i train WORKFLOW --run-dir ...` or `medi2i run`)"
        )
    return result.model_dir


class _SplitsOnDemand:
    """Discover the cases once, on first use (a report-only run needs none)."""

    def __init__(self, workflow: Workflow, registry: Registry) -> None:
        self._workflow = workflow
        self._registry = registry
        self._splits: DataSplits | None = None

    def __call__(self) -> DataSplits:
        from medi2i.workflow.stages import workflow_splits

        if self._splits is None:
            self._splits = workflow_splits(self._workflow, self._registry)
        return self._splits
