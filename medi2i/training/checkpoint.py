"""Checkpoints: everything needed to continue a run exactly where it stopped.

Layout of ``<run>/checkpoints/``::

    last.json                     the commit record: step, files, hashes, settings, RNG
    step-00000600.safetensors     module weights (every training module, e.g. G and D)
    step-00000600.optim.pt        optimizer and gradient-scaler states, torch RNG states,
                                  the method's own training state (image pools, EMA)

The tensor and state files carry their step in their name and are written first, each
under a temporary name and then renamed; ``last.json`` is replaced last, which commits
the checkpoint. A run killed at any moment therefore leaves the previous checkpoint
intact and usable. Files of older checkpoints are deleted after the commit.

Loading never unpickles arbitrary objects: weights come from safetensors, optimizer
states through ``torch.load(weights_only=True)``, the rest from JSON. NumPy's and
Python's RNG states are stored as JSON for that reason.
"""

from __future__ import annotations

import json
import pickle
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from medi2i.errors import Medi2iError
from medi2i.hashing import file_sha256
from medi2i.io.atomic import atomic_path
from medi2i.method import Method, StateValue

FORMAT = "medi2i-checkpoint/1"
POINTER = "last.json"
START_AFRESH = (
    "start afresh in a new run folder (`medi2i run WORKFLOW` with a new --run-dir or another "
    "--set output.run_id=...; resume=False in Python)"
)
"""How to train again from step 0 without the run folder's checkpoints, command line first."""


class CheckpointError(Medi2iError):
    """A checkpoint is damaged, or does not belong to the run being resumed."""


@dataclass(frozen=True)
class TrainingState:
    """The trainer's state: weights per module, optimizer and gradient-scaler states.

    Attributes:
        modules: State dict of each training module, by module name.
        optimizers: State dict of each optimizer, by optimizer name.
        scalers: State dict of each optimizer's gradient scaler (empty without AMP).
    """

    modules: Mapping[str, Mapping[str, torch.Tensor]]
    optimizers: Mapping[str, dict[str, Any]]
    scalers: Mapping[str, dict[str, Any]]


class _FileRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    sha256: str


class CheckpointRecord(BaseModel):
    """The contents of ``last.json``.

    Attributes:
        format: ``"medi2i-checkpoint/1"``.
        step: Completed training steps.
        method: Method id and version.
        fingerprint: Settings a resumed run must share (see
            :data:`medi2i.training.config.RESUME_INVARIANTS`).
        tensors: The weights file and its SHA-256.
        optimizer_state: The optimizer-state file and its SHA-256.
        state_values: The method's fitted JSON values.
        numpy_rng: NumPy's global RNG state.
        python_rng: Python's ``random`` state.
        created: UTC time of writing.
        total_steps: The run's ``training.steps`` when it was written (``None`` in
            checkpoints from before it was recorded), so that a resume with another
            value says so.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str
    step: int
    method: dict[str, str]
    fingerprint: dict[str, JsonValue]
    tensors: _FileRecord
    optimizer_state: _FileRecord
    state_values: dict[str, StateValue]
    numpy_rng: dict[str, JsonValue]
    python_rng: list[JsonValue]
    created: str
    total_steps: int | None = None


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back from disk.

    Attributes:
        record: Its ``last.json``.
        state: Weights, optimizer and scaler states.
        torch_rng: torch's CPU RNG state.
        cuda_rng: torch's RNG state of every CUDA device (empty without CUDA).
        method_state: What :meth:`medi2i.Method.training_state` returned (image pools,
            EMA weights, extra schedulers).
    """

    record: CheckpointRecord
    state: TrainingState
    torch_rng: torch.Tensor
    cuda_rng: list[torch.Tensor]
    method_state: dict[str, Any]

    @property
    def step(self) -> int:
        """Completed training steps."""
        return self.record.step


def save_checkpoint(
    folder: Path,
    *,
    step: int,
    state: TrainingState,
    method: Method,
    fingerprint: Mapping[str, JsonValue],
    total_steps: int | None = None,
) -> Path:
    """Write a checkpoint of ``step`` and commit it (see the module docstring).

    Args:
        folder: The run's ``checkpoints`` folder (created when missing).
        step: Completed training steps.
        state: The trainer's state.
        method: The method being trained (for its id, version and fitted values).
        fingerprint: Settings a resumed run must share.
        total_steps: The steps the run trains for (``training.steps``), recorded.

    Returns:
        The path of ``last.json``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"step-{step:08d}"
    try:
        _write_checkpoint(
            folder,
            stem,
            step=step,
            state=state,
            method=method,
            fingerprint=fingerprint,
            total_steps=total_steps,
        )
    except BaseException:
        _remove_uncommitted(folder, stem)  # a full disk leaves no stray step file
        raise
    _remove_stale(folder, keep=stem)
    return folder / POINTER


def _write_checkpoint(
    folder: Path,
    stem: str,
    *,
    step: int,
    state: TrainingState,
    method: Method,
    fingerprint: Mapping[str, JsonValue],
    total_steps: int | None,
) -> None:
    """Write the files of one checkpoint, ``last.json`` last (the commit)."""
    from safetensors.torch import save_file

    tensors = {
        f"{module}.{key}": value.detach().cpu().clone().contiguous()
        for module, values in state.modules.items()
        for key, value in values.items()
    }
    with atomic_path(folder / f"{stem}.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"step": str(step)})
    extra = {
        "optimizers": dict(state.optimizers),
        "scalers": dict(state.scalers),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "method_state": method.training_state(),
    }
    with atomic_path(folder / f"{stem}.optim.pt") as tmp:
        torch.save(extra, tmp)
    record = CheckpointRecord(
        format=FORMAT,
        step=step,
        method={"id": method.id, "version": method.version},
        fingerprint=dict(fingerprint),
        tensors=_file_record(folder / f"{stem}.safetensors"),
        optimizer_state=_file_record(folder / f"{stem}.optim.pt"),
        state_values=method.state_values(),
        numpy_rng=_numpy_rng_state(),
        python_rng=_python_rng_state(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        total_steps=total_steps,
    )
    with atomic_path(folder / POINTER) as tmp:
        tmp.write_text(record.model_dump_json(indent=2) + "\n")


def read_checkpoint(folder: Path) -> Checkpoint | None:
    """The committed checkpoint in ``folder``, or ``None`` when there is none.

    Raises:
        CheckpointError: The record is unreadable, or a file is missing or damaged.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    pointer = folder / POINTER
    if not pointer.is_file():
        return None
    record = _read_record(pointer)
    weights = _checked(folder, record.tensors)
    optimizer_state = _checked(folder, record.optimizer_state)
    try:
        tensors = load_file(str(weights))
        extra = torch.load(optimizer_state, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint file {optimizer_state} holds Python objects that medi2i does not "
            f"unpickle ({_unpickling_reason(exc)}), so the run cannot resume from it; delete "
            f"{folder} to train this run folder again from step 0, or {START_AFRESH}"
        ) from None
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"checkpoint {pointer} cannot be read: {exc}") from None
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        module, _, name = key.partition(".")
        modules.setdefault(module, {})[name] = value
    state = TrainingState(modules, extra["optimizers"], extra["scalers"])
    return Checkpoint(
        record,
        state,
        extra["torch_rng"],
        list(extra["cuda_rng"]),
        dict(extra.get("method_state", {})),
    )


def checkpoint_step(folder: Path) -> int | None:
    """The step of the committed checkpoint in ``folder`` (its record only, no weights
    read), or ``None`` when there is none or its record is unreadable."""
    pointer = folder / POINTER
    if not pointer.is_file():
        return None
    try:
        return _read_record(pointer).step
    except CheckpointError:
        return None


def restore_rng(checkpoint: Checkpoint) -> None:
    """Put torch's, NumPy's and Python's global RNGs back where the checkpoint left them."""
    torch.set_rng_state(checkpoint.torch_rng)
    if checkpoint.cuda_rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint.cuda_rng)
    numpy_state: dict[str, Any] = dict(checkpoint.record.numpy_rng)
    inner = dict(numpy_state["state"])
    inner["key"] = np.asarray(inner["key"], dtype=np.uint32)
    np.random.set_state({**numpy_state, "state": inner})
    version, internal, gauss = checkpoint.record.python_rng
    random.setstate((version, tuple(internal), gauss))  # type: ignore[arg-type]


def fingerprint_differences(
    saved: Mapping[str, JsonValue], current: Mapping[str, JsonValue]
) -> list[str]:
    """The settings that differ between a checkpoint and the run resuming it, as text;
    nested settings by their dotted key (``augmentation.affine_probability: 0.0 → 0.5``)."""
    differences: list[str] = []
    for key in sorted(set(saved) | set(current)):
        before, after = saved.get(key), current.get(key)
        if before == after:
            continue
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            nested = fingerprint_differences(before, after)
            differences.extend(f"{key}.{difference}" for difference in nested)
        else:
            differences.append(f"{key}: {json.dumps(before)} → {json.dumps(after)}")
    return differences


def clear_checkpoints(folder: Path) -> None:
    """Remove every checkpoint file in ``folder`` (a run started afresh)."""
    (folder / POINTER).unlink(missing_ok=True)
    _remove_stale(folder, keep=None)


def _unpickling_reason(error: pickle.UnpicklingError) -> str:
    # torch's message spans many lines of advice; its one line of substance names the type
    text = str(error)
    found = re.search(r"WeightsUnpickler error: (.*?)(?: Please |$)", text, re.MULTILINE)
    reason = found.group(1) if found else text.strip().splitlines()[0] if text.strip() else ""
    return reason.strip().rstrip(".") or type(error).__name__


def _file_record(path: Path) -> _FileRecord:
    return _FileRecord(file=path.name, sha256=file_sha256(path))


def _read_record(pointer: Path) -> CheckpointRecord:
    try:
        record = CheckpointRecord.model_validate_json(pointer.read_text())
    except (ValidationError, OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint record {pointer} is unreadable ({_reason(exc)}); the checkpoint was "
            "damaged: delete the checkpoints folder to start afresh"
        ) from None
    if record.format != FORMAT:
        raise CheckpointError(
            f"checkpoint {pointer} has format {record.format!r}, this medi2i reads {FORMAT!r}; "
            "resume it with the medi2i version that wrote it, or start afresh"
        )
    return record


def _reason(exc: Exception) -> str:
    """One line of why a checkpoint record did not read (pydantic's own text spans
    several lines and ends in a link)."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where + ': ' if where else ''}{first['msg']}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return "not UTF-8 text"


def _checked(folder: Path, entry: _FileRecord) -> Path:
    path = folder / entry.file
    if not path.is_file() or file_sha256(path) != entry.sha256:
        raise CheckpointError(
            f"checkpoint file {path} is missing or does not match its SHA-256 in {POINTER}; "
            "the checkpoint was damaged: delete the checkpoints folder to start afresh"
        )
    return path


def _remove_uncommitted(folder: Path, stem: str) -> None:
    """Remove the files of checkpoint ``stem`` unless ``last.json`` commits them (a write
    that failed before its commit, or a commit that failed)."""
    try:
        committed = _read_record(folder / POINTER).tensors.file.startswith(stem + ".")
    except CheckpointError:
        committed = False
    if not committed:
        for path in folder.glob(f"{stem}.*"):
            path.unlink(missing_ok=True)


def _remove_stale(folder: Path, *, keep: str | None) -> None:
    for path in folder.glob("step-*"):
        if keep is None or not path.name.startswith(keep + "."):
            path.unlink(missing_ok=True)


def _numpy_rng_state() -> dict[str, JsonValue]:
    state = np.random.get_state(legacy=False)
    inner: dict[str, JsonValue] = dict(state["state"])
    inner["key"] = np.asarray(state["state"]["key"]).tolist()
    return {**state, "state": inner}


def _python_rng_state() -> list[JsonValue]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]
