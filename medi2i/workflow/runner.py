"""Running a workflow: the run folder and the train, evaluate and report stages.

Each run lives in one folder, ``<output.root>/<output.name>-<run_id>/``::

    config.resolved.yaml  the workflow with every default filled in and paths absolute:
                          ``medi2i run config.resolved.yaml --run-dir .`` reruns it
    run.json              which stages finished, when, and where the model is
    logs/                 run.log (stages), train.jsonl (the trainer's step records)
    checkpoints/          the trainer's checkpoints (a rerun resumes from the last)
    prepared/             training sources made by ``data.prepare_source``
    model/                the trained (fitted, or saved) model folder
    predictions/          predicted volumes of the evaluated cases
    metrics/              metrics.json (per case and summary), metrics.md
    figures/              PNG montages and training curves
    report.md | report.html

Running again in an existing folder continues it: training resumes from its last
checkpoint, evaluation and report are redone. A folder made from a workflow with other
data or another method is refused, since mixing them would make the results meaningless.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml

from medi2i.io.atomic import atomic_path
from medi2i.workflow.loader import WorkflowError, dump_workflow
from medi2i.workflow.schema import Workflow

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.data.cases import Case, CaseSet
    from medi2i.method import Method
    from medi2i.registry import Registry
    from medi2i.workflow.discovery import DataSplits

Stage = Literal["train", "evaluate", "report"]
STAGES: tuple[Stage, ...] = ("train", "evaluate", "report")
Echo = Callable[[str], None]
_FIXED_SECTIONS = ("data", "method")


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (see the module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.resolved.yaml"

    @property
    def state(self) -> Path:
        return self.root / "run.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def train_log(self) -> Path:
        return self.logs / "train.jsonl"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def figures(self) -> Path:
        return self.root / "figures"


@dataclass(frozen=True)
class RunResult:
    """What a run produced.

    Attributes:
        run_dir: The run folder.
        model_dir: The trained-model folder (or the workflow's given model), if any.
        metrics_path: ``metrics/metrics.json`` when the evaluate stage ran.
        report_path: The report file when the report stage ran.
    """

    run_dir: Path
    model_dir: Path | None
    metrics_path: Path | None
    report_path: Path | None


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
        stages: Any of ``"train"``, ``"evaluate"``, ``"report"`` (run in that order).
            Evaluation and report are skipped when disabled in the workflow.
        run_dir: The run folder to create or continue; by default a new folder
            ``<output.root>/<output.name>-<run_id or timestamp>``.
        echo: Receives one line per stage event (the CLI prints them).

    Returns:
        Where the model, metrics and report are.

    Raises:
        WorkflowError: The run folder belongs to a workflow with other data or method,
            or a stage needs what an earlier one did not produce.
    """
    from medi2i.workflow.loader import workflow_registry

    registry = workflow_registry(workflow, registry=registry)
    run = open_run(workflow, run_dir=Path(run_dir).resolve() if run_dir is not None else None)
    state = RunState.read(run)
    result = RunResult(run.root, state.model_dir(run), None, None)
    with run_logging(run, echo) as log:
        log(f"run folder {run.root}")
        splits = _SplitsOnDemand(workflow)
        if "train" in stages:
            result = replace(result, model_dir=train_stage(workflow, run, registry, splits, log))
        if "evaluate" in stages and workflow.evaluation.enabled:
            from medi2i.workflow.evaluation import evaluate_stage

            model_dir = _require_model(result, run)
            metrics = evaluate_stage(workflow, run, registry, model_dir, splits, log)
            result = replace(result, metrics_path=metrics)
        if "report" in stages and workflow.report.enabled:
            from medi2i.workflow.reporting import report_stage

            result = replace(result, report_path=report_stage(workflow, run, log))
    return result


def _require_model(result: RunResult, run: RunFolder) -> Path:
    if result.model_dir is None:
        raise WorkflowError(
            f"run folder {run.root} has no trained model yet; train it first "
            "(`medi2i train WORKFLOW --run-dir ...` or `medi2i run`)"
        )
    return result.model_dir


class _SplitsOnDemand:
    """Discover the cases once, on first use (a report-only run needs none)."""

    def __init__(self, workflow: Workflow) -> None:
        self._workflow = workflow
        self._splits: DataSplits | None = None

    def __call__(self) -> DataSplits:
        from medi2i.workflow.discovery import discover_splits

        if self._splits is None:
            self._splits = discover_splits(self._workflow.data)
        return self._splits


SplitSource = Callable[[], "DataSplits"]


# -- the run folder -----------------------------------------------------------------------------


def run_folder_for(workflow: Workflow, *, now: datetime | None = None) -> RunFolder:
    """The folder a new run of ``workflow`` goes to.

    ``output.run_id`` gives a fixed name (reruns continue it); otherwise a UTC
    timestamp, with ``-2``, ``-3``, ... appended if that folder already exists.
    """
    output = workflow.output
    base = f"{output.name or 'run'}-"
    if output.run_id is not None:
        return RunFolder(output.root / f"{base}{output.run_id}")
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    candidate, count = output.root / f"{base}{stamp}", 1
    while candidate.exists():
        count += 1
        candidate = output.root / f"{base}{stamp}-{count}"
    return RunFolder(candidate)


def latest_run_folder(workflow: Workflow) -> RunFolder | None:
    """The most recently updated run folder of ``workflow`` (by its ``output`` section)."""
    output = workflow.output
    if output.run_id is not None:
        fixed = run_folder_for(workflow)
        return fixed if fixed.config.is_file() else None
    if not output.root.is_dir():
        return None
    runs = [
        RunFolder(path)
        for path in output.root.glob(f"{output.name or 'run'}-*")
        if (path / "config.resolved.yaml").is_file()
    ]
    if not runs:
        return None
    return max(runs, key=lambda run: run.config.stat().st_mtime)


def open_run(workflow: Workflow, *, run_dir: Path | None = None) -> RunFolder:
    """Create the run folder (or check an existing one) and write the resolved config.

    Raises:
        WorkflowError: The folder holds a run of other data or another method.
    """
    run = RunFolder(run_dir) if run_dir is not None else run_folder_for(workflow)
    if run.config.is_file():
        _check_same_experiment(workflow, run)
    for folder in (run.root, run.logs):
        folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(run.config) as tmp:
        tmp.write_text(dump_workflow(workflow), encoding="utf-8")
    return run


def _check_same_experiment(workflow: Workflow, run: RunFolder) -> None:
    try:
        previous = yaml.safe_load(run.config.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise WorkflowError(f"{run.config} is damaged ({exc}); use a new run folder") from None
    current = workflow.model_dump(mode="json")
    for sections in (previous, current):
        # the predict-time condition may change between evaluations of one model
        method = sections.get("method")
        if isinstance(method, dict):
            method.pop("condition", None)
    changed = [name for name in _FIXED_SECTIONS if previous.get(name) != current.get(name)]
    if changed:
        raise WorkflowError(
            f"run folder {run.root} was made with different {' and '.join(changed)} sections; "
            "a run continues only with the same data and method: start a new run "
            "(leave out --run-dir, or set another output.run_id)"
        )


# -- run state and log ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunState:
    """``run.json``: finished stages and the model folder (relative to the run folder)."""

    model: str | None
    stages: dict[str, str]

    @classmethod
    def read(cls, run: RunFolder) -> RunState:
        if not run.state.is_file():
            return cls(None, {})
        try:
            raw = json.loads(run.state.read_text(encoding="utf-8"))
            return cls(raw.get("model"), dict(raw.get("stages", {})))
        except (json.JSONDecodeError, AttributeError):
            return cls(None, {})  # a damaged record is rebuilt by the next stage

    def model_dir(self, run: RunFolder) -> Path | None:
        if self.model is None:
            return None
        path = Path(self.model)
        return path if path.is_absolute() else run.root / path

    def finished(self, run: RunFolder, stage: Stage, *, model: Path | None = None) -> RunState:
        """Record ``stage`` as finished now (and the model folder) in ``run.json``."""
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        kept = self.model
        if model is not None:
            kept = (
                str(model.relative_to(run.root)) if model.is_relative_to(run.root) else str(model)
            )
        state = RunState(kept, {**self.stages, stage: stamp})
        with atomic_path(run.state) as tmp:
            tmp.write_text(
                json.dumps({"model": state.model, "stages": state.stages}, indent=2) + "\n"
            )
        return state


Log = Callable[[str], None]


@contextmanager
def run_logging(run: RunFolder, echo: Echo | None) -> Iterator[Log]:
    """Log lines to ``logs/run.log`` (and ``echo``); medi2i's logging goes there too."""
    handler = logging.FileHandler(run.logs / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("medi2i")
    previous_level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    stage_logger = logging.getLogger("medi2i.workflow")

    def log(message: str) -> None:
        stage_logger.info(message)
        if echo is not None:
            echo(message)

    try:
        yield log
    except Exception as exc:
        stage_logger.error("stopped: %s", exc)
        raise
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        handler.close()


# -- train ---------------------------------------------------------------------------------------

TrainingRoute = Literal["gradient", "fit", "save"]
"""How the train stage handles a method: the trainer, ``fit`` on volumes, or neither."""
PREPARED = "prepared"
"""Folder of a run holding the training sources made by ``data.prepare_source``."""


def training_route(method: Method, *, fit: bool = True) -> TrainingRoute:
    """How the train stage handles ``method``, from its declared ``training``.

    ``"gradient"`` for :attr:`~medi2i.Training.GRADIENT`; ``"fit"`` for
    :attr:`~medi2i.Training.FIT` when the method needs data (its data kind is not
    ``none``, e.g. Nyul) or ``fit`` is on (z-score onto a target's statistics);
    ``"save"`` for a method with nothing to learn.

    Raises:
        WorkflowError: The method needs data but declares ``Training.NONE``.
    """
    from medi2i.method import DataKind, Training

    if method.training is Training.GRADIENT:
        return "gradient"
    if method.training is Training.FIT and (fit or method.data is not DataKind.NONE):
        return "fit"
    if method.data is DataKind.NONE:
        return "save"
    raise WorkflowError(
        f"method {method.id!r} learns from {method.data.value} data but declares no way to "
        "learn (training = Training.NONE); declare Training.GRADIENT or Training.FIT"
    )


def train_stage(
    workflow: Workflow, run: RunFolder, registry: Registry, splits: SplitSource, log: Log
) -> Path:
    """Train, fit or save the method (see :func:`training_route`); return its model folder.

    A workflow naming a trained ``model`` skips training; a method with nothing to learn
    is saved with its options, so later stages find a model folder either way.
    """
    from medi2i.model_folder import save_model

    config = workflow.method
    state = RunState.read(run)
    if config.model is not None:
        log(f"train: skipped, the workflow gives the trained model {config.model}")
        state.finished(run, "train", model=config.model)
        return config.model
    method = registry.method(str(config.id))(config.options)
    route = training_route(method, fit=config.fit)
    if route == "gradient":
        model_dir = _train(workflow, run, registry, method, splits, log)
    elif route == "fit":
        model_dir = _fit(workflow, run, registry, method, splits, log)
    else:
        log(f"train: method {method.id!r} has nothing to train; saving it with its options")
        model_dir = save_model(method, run.model, overwrite=True)
    _write_model_card(workflow, run, method, model_dir)
    state.finished(run, "train", model=model_dir)
    return model_dir


def _write_model_card(workflow: Workflow, run: RunFolder, method: Method, model_dir: Path) -> None:
    """The trained model's card: its data cards and the run that made it."""
    from medi2i import __version__
    from medi2i.cards import IntendedUse, MethodReference, ModelCard, RunProvenance
    from medi2i.model_folder import attach_card

    card = ModelCard(
        card="model",
        name=run.root.name.lower(),
        method=MethodReference(id=method.id, version=method.version),
        summary=f"{method.summary()} Trained by the workflow run {run.root.name}.",
        training_data=list(workflow.data.cards),
        provenance=RunProvenance(
            medi2i_version=__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            command=f"medi2i run (resolved config: {run.config.name} in the run folder)",
            seed=workflow.training.seed,
            hardware=workflow.training.device,
        ),
        intended_use=IntendedUse(
            primary="research on data like the training data its cards describe",
            out_of_scope="clinical use; data unlike the training data",
        ),
    )
    attach_card(model_dir, card)


def _fit(
    workflow: Workflow,
    run: RunFolder,
    registry: Registry,
    method: Method,
    splits: SplitSource,
    log: Log,
) -> Path:
    """Fit on the training split's target-domain volumes, as predict would see them."""
    from medi2i.model_folder import save_model
    from medi2i.workflow.discovery import target_domain_images

    paths = target_domain_images(splits().train, domain=workflow.method.fit_domain)
    count = f"{len(paths)} target-domain volume{'' if len(paths) == 1 else 's'}"
    log(f"train: fitting method {method.id!r} on {count} of the training split")
    method.fit([_as_predict_sees_it(method, path, registry) for path in paths])
    model_dir = save_model(method, run.model, overwrite=True)
    fitted = ", ".join(sorted(method.state_values())) or "no stored values"
    log(f"train: fitted ({fitted}); model in {model_dir}")
    return model_dir


def _as_predict_sees_it(method: Method, path: Path, registry: Registry) -> MetaTensor:
    # the working grid and whole-volume preprocessing of predict, so fit measures alike
    from medi2i.io import read_volume
    from medi2i.resample import apply_spatial_plan

    volume = read_volume(path, readers=list(registry.readers.values()))
    return method.preprocess(apply_spatial_plan(volume, method.spatial_plan()))


def _train(
    workflow: Workflow,
    run: RunFolder,
    registry: Registry,
    method: Method,
    splits: SplitSource,
    log: Log,
) -> Path:
    from medi2i.training import train

    data = splits()
    validation = data.validation if data.validation.cases else None
    log(
        f"train: method {method.id!r} on {len(data.train.cases)} {workflow.data.kind} cases"
        f" ({len(data.validation.cases)} for validation), {workflow.training.steps} steps"
    )
    result = train(
        method,
        prepared_sources(workflow, run, registry, data.train, log),
        config=workflow.training,
        run_dir=run.root,
        validation=validation,
        resume=True,
        inference=workflow.inference,
        validation_condition=workflow.method.condition,
    )
    if result.first_step > 0:
        log(f"train: resumed from the checkpoint of step {result.first_step}")
    log(f"train: finished at step {result.steps}; model in {result.model_dir}")
    return Path(result.model_dir)


def prepared_sources(
    workflow: Workflow, run: RunFolder, registry: Registry, cases: CaseSet, log: Log
) -> CaseSet:
    """``cases`` with each source replaced by ``data.prepare_source``'s output on it.

    Outputs are written to ``<run>/prepared/`` under a name that changes with the
    source file and the preparation, so a rerun reuses them and a change redoes them.

    Raises:
        WorkflowError: The preparing method learns from data.
        GeometryError: A prepared source is not on its target's grid.
    """
    from medi2i.method import DataKind

    spec = workflow.data.prepare_source
    if spec is None:
        return cases
    preparer = registry.method(spec.method)(spec.options)
    if preparer.data is not DataKind.NONE:
        raise WorkflowError(
            f"data.prepare_source: method {spec.method!r} learns from {preparer.data.value} "
            "data; sources are prepared only by methods with nothing to train (interpolation)"
        )
    log(f"train: preparing the sources of {len(cases.cases)} training cases with {spec.method!r}")
    prepared = tuple(
        _prepared_case(case, preparer, spec.model_dump_json(), workflow, run, registry)
        for case in cases.cases
    )
    return replace(cases, cases=prepared)


def _prepared_case(
    case: Case, preparer: Method, spec: str, workflow: Workflow, run: RunFolder, registry: Registry
) -> Case:
    from medi2i.data.cases import SOURCE, TARGET, Case
    from medi2i.io import read_volume, write_volume
    from medi2i.prediction import predict_tensor
    from medi2i.workflow.evaluation import prediction_stem, require_same_grid

    source = case.images[SOURCE]
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{spec}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    path = run.root / PREPARED / f"{prediction_stem(case.id)}-{digest}.nii.gz"
    if not path.is_file():
        readers = list(registry.readers.values())
        output = predict_tensor(
            preparer, read_volume(source, readers=readers), settings=workflow.inference
        )
        reference = read_volume(case.images[TARGET], readers=readers)
        require_same_grid(
            output,
            reference,
            what=f"the prepared source of case {case.id!r}",
            hint="set data.prepare_source's options so that it delivers the target's grid "
            "(for slices kept from the target: its spacing and align: centres)",
        )
        write_volume(output, path, writers=list(registry.writers.values()))
    return Case(case.id, {**case.images, SOURCE: path}, case.domain)
