"""The run folder of a workflow run: its paths, its state (``run.json``) and its log.

Each run lives in one folder, ``<output.root>/<output.name>-<run_id>/``::

    config.resolved.yaml  the workflow with every default filled in and paths absolute:
                          ``medi2i run config.resolved.yaml --run-dir .`` reruns it
    run.json              which stages finished, when, and where the model is; ``stale``
                          lists the stages whose results describe an earlier model;
                          ``world_size`` and ``patches_per_step`` how it was trained
    .medi2i-run.lock      held by the process working in the folder (one at a time)
    logs/                 run.log (stages), train.jsonl (the trainer's step records)
    checkpoints/          the trainer's checkpoints (a rerun resumes from the last; it warns
                          when training-data.json, the files' sizes and times, changed;
                          without one a rerun starts at step 0 and its log line names the
                          settings that changed: :class:`EarlierAttempt`)
    prepared/             training sources made by ``data.prepare_source``
    model/                the trained (fitted, or saved) model folder
    adapted/              the model adapted to target data (the adapt stage)
    predictions/          predicted volumes of the evaluated cases
    metrics/              metrics.json (per case and summary), metrics.md, cases.json
    figures/              PNG montages and training curves
    report.md | report.html

Every stage module (training, adaptation, evaluation, reporting) works on a
:class:`RunFolder` and records itself in :class:`RunState`; none imports the
orchestrator (:mod:`medi2i.workflow.runner`).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml

from medi2i.errors import Medi2iError
from medi2i.io.atomic import atomic_path
from medi2i.workflow.earlier_attempt import EarlierAttempt as EarlierAttempt
from medi2i.workflow.loader import WorkflowError, dump_workflow
from medi2i.workflow.run_log import Log as Log
from medi2i.workflow.run_log import run_logging as run_logging
from medi2i.workflow.schema import Workflow

if TYPE_CHECKING:
    from medi2i.data.discovery import DataSplits

Stage = Literal["train", "adapt", "evaluate", "report"]
STAGES: tuple[Stage, ...] = ("train", "adapt", "evaluate", "report")
Echo = Callable[[str], None]
_FIXED_SECTIONS = ("data", "method")
LOCK = ".medi2i-run.lock"
"""The lock file of the process working in a run folder."""


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
    def adapted(self) -> Path:
        return self.root / "adapted"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def figures(self) -> Path:
        return self.root / "figures"


SplitSource = Callable[[], "DataSplits"]
"""Discovers the data's splits on first use."""


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
    """The most recently updated run folder of ``workflow`` (by its ``output`` section)
    that holds a trained model, else the most recently updated one: a run that stopped
    before training (a device it did not find) is not taken for the trained run."""
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
    trained = [run for run in runs if holds_model(run)]
    if not runs:
        return None
    return max(trained or runs, key=lambda run: run.config.stat().st_mtime)


def holds_model(run: RunFolder) -> bool:
    """Whether ``run`` holds the trained model its state records."""
    model = RunState.read(run).model_dir(run)
    return model is not None and model.exists()


def open_run(
    workflow: Workflow,
    *,
    run_dir: Path | None = None,
    defer_config: bool = False,
    main: bool = True,
    option_defaults: Callable[[], Mapping[str, object]] | None = None,
) -> RunFolder:
    """Create the run folder (or check an existing one) and write the resolved config.

    With ``defer_config`` an existing folder's config is left as it is: the train stage
    writes it once the checkpoint accepted the settings (:func:`write_config`), so a
    refused resume leaves the folder's ``config.resolved.yaml`` describing its model.
    Outside rank 0 of a ``torchrun`` launch (``main`` false) the folder is only checked.
    ``option_defaults`` gives the method's option defaults, which a refusal shows for an
    option one of the two configs leaves out (``null (the default: 1000)``).

    Raises:
        WorkflowError: The folder cannot be made or written (a path under a file, a
            read-only disk), or it holds results of a run of other data or another
            method (a folder holding only the config and log of a run that stopped
            before its first result takes the new config), or it is no run folder
            but holds files.
    """
    run = RunFolder(run_dir) if run_dir is not None else run_folder_for(workflow)
    if run.config.is_file():
        if _holds_results(run):
            _check_same_experiment(workflow, run, option_defaults)
    elif run.root.is_dir():
        _require_no_foreign_files(run)
    if not main:
        return run
    keep = defer_config and run.config.is_file()
    try:
        for folder in (run.root, run.logs):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # under a file, on a read-only disk, in /proc
        raise _unwritable(run, error) from error
    if not keep:
        write_config(run, workflow if defer_config else _with_trained_settings(workflow, run))
    return run


def _with_trained_settings(workflow: Workflow, run: RunFolder) -> Workflow:
    """``workflow`` with the ``training`` section of the folder's existing config: a
    later stage (``medi2i evaluate WORKFLOW --run-dir``) run without the training's
    ``--set`` overrides must not rewrite how the model was trained (the cards and a
    later resume read it there)."""
    if not run.config.is_file():
        return workflow
    try:
        raw = yaml.safe_load(run.config.read_text(encoding="utf-8"))
        trained = type(workflow.training).model_validate(raw["training"])
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError):
        return workflow
    return workflow.model_copy(update={"training": trained})


def write_config(run: RunFolder, workflow: Workflow) -> None:
    """Write ``config.resolved.yaml`` (atomically).

    Raises:
        WorkflowError: The folder cannot be written (a read-only or full disk).
    """
    try:
        with atomic_path(run.config) as tmp:
            tmp.write_text(dump_workflow(workflow), encoding="utf-8")
    except (OSError, Medi2iError) as error:
        raise _unwritable(run, error) from error


def _unwritable(run: RunFolder, error: BaseException) -> WorkflowError:
    from medi2i.io.atomic import os_reason

    filename = getattr(error, "filename", None)
    where = f" ({filename})" if filename else ""
    return WorkflowError(
        f"cannot write the run folder {run.root}: {os_reason(error)}{where}; choose a folder "
        "you can write (--run-dir, or output.root and output.run_id)"
    )


def is_main_process() -> bool:
    """Whether this process is rank 0 of a ``torchrun`` launch, or was not launched by
    it: only rank 0 writes the run folder and runs the stages after training."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


@contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold the run folder's lock file (``fcntl.flock``) for the block: a second
    ``medi2i train`` or ``run`` in the same folder is refused, not run beside the first.

    A folder that cannot be made or written is not locked: :func:`open_run` reports it.

    Raises:
        WorkflowError: Another process holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no lock
        yield
        return
    made = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = (root / LOCK).open("a")
    except OSError:
        handle = None
    try:
        if handle is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    # a file system without locks (some NFS mounts: ENOLCK): run unlocked
                    # rather than refuse every run there
                    handle.close()
                    handle = None
                    yield
                    return
                raise WorkflowError(
                    f"run folder {root} is in use by another medi2i process (train, run or "
                    "evaluate); nothing was changed: wait for it to finish, or choose another "
                    "--run-dir"
                ) from None
        yield
    finally:
        if handle is not None:
            handle.close()
        if handle is not None and not RunFolder(root).config.is_file():
            with suppress(OSError):  # refused before it became a run folder: leave no trace
                (root / LOCK).unlink()
                if made:
                    root.rmdir()  # only when empty


def _require_no_foreign_files(run: RunFolder) -> None:
    """Refuse a folder that is not a run folder but holds files (``--run-dir`` given a
    data or project folder): the run would write its model, predictions and report
    among them. What another process starting the same run makes first (``logs/``, the
    config's temporary file) is allowed."""
    foreign = sorted(
        entry.name
        for entry in run.root.iterdir()
        if entry.name not in (run.logs.name, LOCK) and "medi2i-tmp" not in entry.name
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise WorkflowError(
            f"{run.root} is not a run folder (it holds {shown} but no "
            f"{run.config.name}); nothing was written: choose a new or empty folder "
            "(--run-dir, or output.run_id), or a run folder of this workflow"
        )


def _holds_results(run: RunFolder) -> bool:
    """Whether the folder holds anything made from its data and method: a run that
    stopped before its first result (a data folder not found) left only its config and
    ``logs/run.log``, and may be continued with the mistake corrected."""
    kept = {run.config.name, run.logs.name, LOCK}
    if any(entry.name not in kept for entry in run.root.iterdir()):
        return True
    return run.logs.is_dir() and any(e.name != "run.log" for e in run.logs.iterdir())


def _check_same_experiment(
    workflow: Workflow,
    run: RunFolder,
    option_defaults: Callable[[], Mapping[str, object]] | None = None,
) -> None:
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
        from medi2i.training.checkpoint import fingerprint_differences

        differences = fingerprint_differences(
            {name: previous.get(name) for name in changed},
            {name: current.get(name) for name in changed},
        )
        if "method" in changed and option_defaults is not None:
            differences = _with_defaults(differences, previous, current, option_defaults)
        shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
        raise WorkflowError(
            f"run folder {run.root} was made with different {' and '.join(changed)} sections "
            f"({shown}); a run continues only with the same data and method: give the "
            f"--set options it was made with (or use its own {run.config.name}), or start "
            "a new run (another --run-dir or output.run_id)"
        )
    trained = checkpoint_step(run)
    steps = workflow.training.steps
    if trained is not None and trained > steps:
        # the model keeps its steps; config.resolved.yaml and the report would say fewer
        raise WorkflowError(
            f"run folder {run.root} trained {trained} steps, more than training.steps "
            f"{steps}; continue it with --set training.steps={trained} (or more, to train "
            f"on), or with its own {run.config.name}"
        )


def _with_defaults(
    differences: list[str],
    previous: Mapping[str, object],
    current: Mapping[str, object],
    option_defaults: Callable[[], Mapping[str, object]],
) -> list[str]:
    """``method.options.schedule_steps: 60 → null`` as ``60 → null (the default:
    1000)`` where a config leaves the option out: the value that run would use."""
    prefix = "method.options."
    if not any(d.startswith(prefix) for d in differences):
        return differences
    try:
        defaults = option_defaults()
    except Medi2iError:
        return differences  # the method's own refusal is reported elsewhere

    def given(sections: Mapping[str, object]) -> Mapping[str, object]:
        method = sections.get("method")
        options = method.get("options") if isinstance(method, Mapping) else None
        return options if isinstance(options, Mapping) else {}

    before_given, after_given = given(previous), given(current)
    shown = []
    for difference in differences:
        key, _, change = difference.removeprefix(prefix).partition(": ")
        before, _, after = change.partition(" → ")
        if not difference.startswith(prefix) or key not in defaults:
            shown.append(difference)
            continue
        default = f"null (the default: {json.dumps(defaults[key], default=str)})"
        before = default if key not in before_given else before
        after = default if key not in after_given else after
        shown.append(f"{prefix}{key}: {before} → {after}")
    return shown


def checkpoint_step(run: RunFolder) -> int | None:
    """The step of the run's last training checkpoint, or ``None``."""
    from medi2i.training import checkpoint
    from medi2i.training.records import CHECKPOINTS

    return checkpoint.checkpoint_step(run.root / CHECKPOINTS)


# -- run state (its log: medi2i.workflow.run_log) ------------------------------------------------


@dataclass(frozen=True)
class RunState:
    """``run.json``: finished stages and the model folder (relative to the run folder),
    and the finished stages whose results describe an earlier model (``stale``).

    The train stage also records the ``--set`` overrides the model was trained with
    (``train_overrides``; ``None`` in folders written before medi2i recorded them), and
    the checkpoint step its last training resumed from (``resumed_from``; ``None`` when
    it started at step 0), which the report shows. A training in gradient steps records
    the processes it ran in (``world_size``: 2 under ``torchrun --nproc_per_node 2``)
    and the patches one step trained on over all of them (``patches_per_step``): the
    model depends on both, and only the same number of processes reproduces it
    (``None`` for a fitted or given model, and in folders written before medi2i
    recorded them).
    """

    model: str | None
    stages: dict[str, str]
    stale: tuple[str, ...] = ()
    train_overrides: tuple[str, ...] | None = None
    resumed_from: int | None = None
    world_size: int | None = None
    patches_per_step: int | None = None

    @classmethod
    def read(cls, run: RunFolder) -> RunState:
        if not run.state.is_file():
            return cls(None, {})
        try:
            raw = json.loads(run.state.read_text(encoding="utf-8"))
            stale = tuple(str(stage) for stage in raw.get("stale", ()))
            overrides = raw.get("train_overrides")
            trained = None if overrides is None else tuple(str(o) for o in overrides)
            resumed = raw.get("resumed_from")
            resumed_from = resumed if isinstance(resumed, int) and resumed > 0 else None
            return cls(
                raw.get("model"),
                dict(raw.get("stages", {})),
                stale,
                trained,
                resumed_from,
                world_size=_count(raw.get("world_size")),
                patches_per_step=_count(raw.get("patches_per_step")),
            )
        except (json.JSONDecodeError, AttributeError, TypeError):
            return cls(None, {})  # a damaged record is rebuilt by the next stage

    def model_dir(self, run: RunFolder) -> Path | None:
        if self.model is None:
            return None
        path = Path(self.model)
        return path if path.is_absolute() else run.root / path

    def finished(
        self,
        run: RunFolder,
        stage: Stage,
        *,
        model: Path | None = None,
        overrides: Sequence[str] | None = None,
        resumed_from: int | None = None,
        scale: Mapping[str, int] | None = None,
    ) -> RunState:
        """Record ``stage`` as finished now (and the model folder) in ``run.json``; a
        train stage also records its ``overrides``, the step it ``resumed_from`` and
        the ``world_size`` and ``patches_per_step`` of its ``scale`` (a training in
        gradient steps: :meth:`medi2i.training.distributed.TrainingScale.record`)."""
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        kept = self.model
        if model is not None:
            kept = (
                str(model.relative_to(run.root)) if model.is_relative_to(run.root) else str(model)
            )
        stale = tuple(name for name in self.stale if name != stage)
        trained, resumed = self.train_overrides, self.resumed_from
        world, patches = self.world_size, self.patches_per_step
        if stage == "train":
            trained = tuple(overrides) if overrides is not None else None
            resumed = resumed_from if resumed_from else None
            world = _count(scale.get("world_size")) if scale else None
            patches = _count(scale.get("patches_per_step")) if scale else None
        stages = {**self.stages, stage: stamp}
        state = RunState(kept, stages, stale, trained, resumed, world, patches)
        return state.write(run)

    def mark_stale(self, run: RunFolder, stages: Sequence[str]) -> RunState:
        """Record that the results of ``stages`` describe an earlier model (training
        changed it since); the next run of such a stage clears its mark."""
        stale = tuple(dict.fromkeys((*self.stale, *stages)))
        return replace(self, stale=stale).write(run)

    def write(self, run: RunFolder) -> RunState:
        """Write ``run.json`` (atomically); return this state."""
        record: dict[str, object] = {"model": self.model, "stages": self.stages}
        if self.stale:
            record["stale"] = list(self.stale)
        if self.train_overrides is not None:
            record["train_overrides"] = list(self.train_overrides)
        if self.resumed_from is not None:
            record["resumed_from"] = self.resumed_from
        if self.world_size is not None:
            record["world_size"] = self.world_size
        if self.patches_per_step is not None:
            record["patches_per_step"] = self.patches_per_step
        with atomic_path(run.state) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")
        return self


def _count(value: object) -> int | None:
    """``value`` when it is a positive count (not a bool), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
