"""Resuming a run: the settings a checkpoint must share with the run that resumes it,
the record of the training files it started on, and the checks made before a step.

A refused resume changes nothing in the run folder: every check here runs before the
run writes anything (its log, a checkpoint, the data record).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from pathlib import Path

from pydantic import JsonValue

from medi2i.data.cases import CaseSet
from medi2i.method import Method
from medi2i.trained_state import mark_trained
from medi2i.training.auxiliary import auxiliary_hashes
from medi2i.training.checkpoint import (
    POINTER,
    START_AFRESH,
    CheckpointError,
    CheckpointRecord,
    clear_checkpoints,
    fingerprint_differences,
    read_checkpoint,
    restore_rng,
)
from medi2i.training.config import RESUME_INVARIANTS, TrainingConfig
from medi2i.training.distributed import DistributedContext, same_in_every_process
from medi2i.training.records import MODEL
from medi2i.training.trainer import Trainer

DATA_RECORD = "training-data.json"
"""Size and modification time of every training file, kept beside the checkpoints."""


class TrainingDataWarning(UserWarning):
    """A run resumed on training files that changed since it started."""


def resume_from_checkpoint(
    trainer: Trainer,
    method: Method,
    folder: Path,
    fingerprint: dict[str, JsonValue],
    resume: bool,
    context: DistributedContext,
) -> int:
    """Load the committed checkpoint in ``folder`` into ``trainer`` and ``method``;
    return its step (0 without one, or without ``resume``, which clears the folder).

    A changed ``training.steps`` is allowed and said in the log; one below the
    checkpoint's step is refused.

    Raises:
        CheckpointError: The checkpoint was written with other settings, is damaged,
            its commit record ``last.json`` is gone while its step files are there, or
            its step is past ``training.steps``.
    """
    if not resume:
        if context.is_main:
            clear_checkpoints(folder)
        context.barrier()
        return 0
    require_commit_record(folder)
    checkpoint = read_checkpoint(folder)
    if not same_in_every_process(checkpoint.step if checkpoint else 0, context):
        raise CheckpointError(
            f"the processes found different checkpoints in {folder}; the run folder must be "
            "on a file system that every process (every node) shares"
        )
    if checkpoint is None:
        return 0
    differences = fingerprint_differences(checkpoint.record.fingerprint, fingerprint)
    if differences:
        raise CheckpointError(
            _other_settings(folder, checkpoint.step, differences, trainer, checkpoint.record)
            + f"{_processes_hint(checkpoint.record.fingerprint, fingerprint)}, or "
            + START_AFRESH
        )
    _check_total_steps(folder, checkpoint.step, checkpoint.record.total_steps, trainer, context)
    trainer.load_state(checkpoint.state, step=checkpoint.step)
    mark_trained(method)  # a checkpoint is written after a step
    if checkpoint.record.state_values:
        method.load_state_values(checkpoint.record.state_values)
    method.load_training_state(checkpoint.method_state)
    restore_rng(checkpoint)
    return checkpoint.step


def _other_settings(
    folder: Path, step: int, differences: list[str], trainer: Trainer, record: CheckpointRecord
) -> str:
    """The start of the refusal of a checkpoint written with other settings; for a run
    that already trained every step it was planned for (and is not asked for more), that
    it is finished, so there is nothing to resume."""
    written = f"was written with other settings ({'; '.join(differences)})"
    planned = record.total_steps
    if planned is None or step < planned or trainer.total_steps > step:
        return f"the checkpoint in {folder} (step {step}) {written}; resume with the same settings"
    model = folder.parent / MODEL
    kept = f"its model is in {model}" if model.is_dir() else "its last checkpoint is kept"
    return (
        f"the run of {folder.parent} is finished: it trained all {planned} of its steps, so "
        f"there is nothing to resume ({kept}); its checkpoint {written}: to train it "
        "longer (a higher training.steps), use the same settings"
    )


def _processes_hint(saved: dict[str, JsonValue], current: dict[str, JsonValue]) -> str:
    """How to resume a checkpoint written by another number of processes (each step of
    a run in N processes trains on N times the patches), or ``""`` when it was not."""
    before = saved.get("world_size", 1)
    if before == current.get("world_size", 1):
        return ""
    launch = f"torchrun --nproc_per_node {before}" if before != 1 else "no torchrun"
    return f" ({before} process{'' if before == 1 else 'es'}: {launch})"


def _check_total_steps(
    folder: Path, step: int, planned: int | None, trainer: Trainer, context: DistributedContext
) -> None:
    """Refuse ``training.steps`` below the checkpoint's step (the model would keep steps
    the run says it did not train); say so when it differs from the steps the
    checkpoint's run was planned for (allowed: the run trains on, or stops, at the new
    value, and the learning-rate schedule follows it).

    Raises:
        CheckpointError: The checkpoint is past ``training.steps``.
    """
    steps = trainer.total_steps
    if steps < step:
        raise CheckpointError(
            f"the checkpoint in {folder} is of step {step}, past training.steps {steps}; "
            f"resume with training.steps {step} or more (the model keeps the steps it "
            f"trained), or {START_AFRESH}"
        )
    if planned is not None and planned != steps and context.is_main:
        from medi2i.training.history import training_note

        training_note(
            f"training.steps changed from {planned} to {steps} since the checkpoint of step "
            f"{step} in {folder}: training ends at step {steps}, and the learning-rate "
            f"schedule follows {steps} steps from now on, not the {planned} it began with"
        )


def require_commit_record(folder: Path) -> None:
    """Refuse a checkpoints folder holding step files but no ``last.json``: the record
    was deleted (or lost), and training would silently start again from step 0 over the
    earlier run's log.

    Raises:
        CheckpointError: Naming the folder, the newest step file and what to do.
    """
    if (folder / POINTER).is_file():
        return
    steps = sorted(path.name for path in folder.glob("step-*.safetensors"))
    if not steps:
        return
    raise CheckpointError(
        f"{folder} holds checkpoint files ({steps[-1]}{' and more' if len(steps) > 1 else ''}) "
        f"but no {POINTER}, the record that commits one, so the run cannot resume from them; "
        f"delete {folder} to train again from step 0 (a run stopped while committing its "
        "first checkpoint leaves them too), or train in a new run folder"
    )


def check_data_record(
    folder: Path, data: CaseSet, unlabelled: CaseSet | None, *, resumed: bool
) -> None:
    """Warn when a resumed run's training files changed (the checkpoint's fingerprint
    holds settings, not data: a model half trained on other volumes would pass), then
    record the files as they are now. The warning goes to the run's log too."""
    from medi2i.io.atomic import atomic_path

    now: dict[str, list[object]] = {}
    for cases in (data, unlabelled):
        for case in cases.cases if cases is not None else ():
            for role, path in sorted(case.images.items()):
                with contextlib.suppress(OSError):  # a missing file fails with its own error
                    stat = Path(path).stat()
                    now[f"{case.id}/{role}"] = [str(path), stat.st_size, stat.st_mtime_ns]
    record = folder / DATA_RECORD
    try:
        before = json.loads(record.read_text(encoding="utf-8")) if resumed else None
    except (OSError, ValueError):
        before = None  # a run from before the record, or none: nothing to compare
    if isinstance(before, dict) and before != now:
        _warn_changed(sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k)))
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(record) as temporary:
        temporary.write_text(json.dumps(now, indent=1), encoding="utf-8")


def _warn_changed(changed: list[str]) -> None:
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    message = (
        f"training resumes on data that changed since the run started ({shown}: "
        "other files, sizes or modification times); the model will have trained on "
        "both. Start a new run folder if that was not meant"
    )
    logger = logging.getLogger("medi2i.training")
    if logger.hasHandlers():  # a run's log (logs/run.log); else Python's last resort prints it
        logger.warning(message)
    warnings.warn(TrainingDataWarning(message), stacklevel=3)


def run_fingerprint(
    method: Method,
    config: TrainingConfig,
    patch_size: tuple[int, int, int],
    context: DistributedContext,
) -> dict[str, JsonValue]:
    """The settings a checkpoint records and a resumed run must share."""
    settings = config.model_dump(mode="json")
    fingerprint: dict[str, JsonValue] = {key: settings[key] for key in RESUME_INVARIANTS}
    fingerprint["patch_size"] = list(patch_size)
    fingerprint["world_size"] = context.world_size
    fingerprint["method"] = method.id
    fingerprint["options"] = method.options.model_dump(mode="json")
    if method.domains:
        fingerprint["domains"] = [d.model_dump(mode="json") for d in method.domains]
    auxiliary = auxiliary_hashes(method)
    if auxiliary:
        fingerprint["auxiliary"] = dict(auxiliary)
    return fingerprint
