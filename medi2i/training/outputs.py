"""What a run writes beside its checkpoints: its model folders, and the one-line error
of a write that fails (a full disk, a folder that became read-only).

A model folder (``model/``, ``best-model/``) appears complete, with the card its caller
writes into it, or not at all: it is made under a temporary name and renamed. Beside the
model it holds ``training.json``, how it was trained: the number of processes
(``world_size``) and the patches one step trained on (``patches_per_step``), which the
card written into it may quote. A failed
write of a checkpoint or a model folder leaves nothing under its final name and is
reported as one :class:`~medi2i.errors.OutputError` naming the run folder, not as the
traceback of the library that wrote the file (safetensors, ``torch.save``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from medi2i.errors import OutputError
from medi2i.method import Method
from medi2i.training.distributed import TrainingScale
from medi2i.training_spacing import TrainingSpacing

ModelFinisher = Callable[[Path, bool], None]
"""Completes a model folder before it is put in place (its card): called with the
folder under its temporary name, and whether it is the best validated model."""

_TORCH_WRITE_FAILURES = (
    "inline_container",
    "unexpected pos",
    "PytorchStreamWriter",
    "file write failed",
    "No space left",
)
"""Words of torch's RuntimeErrors for a file it could not write in full."""
TRAINING_FACTS = "training.json"
"""How a model folder's model was trained (:meth:`TrainingScale.record`)."""


@contextmanager
def run_output(what: str, run_dir: Path, *, kept: str) -> Iterator[None]:
    """Report a write that fails inside the block as one :class:`OutputError`.

    Args:
        what: What was being written (``"the checkpoint of step 40"``).
        run_dir: The run folder, named in the message with how to continue.
        kept: What the run folder still holds to resume from, for the message.

    Raises:
        OutputError: The write failed for lack of space or permission.
    """
    try:
        yield
    except Exception as exc:
        reason = write_failure(exc)
        if reason is None:
            raise
        raise OutputError(
            f"cannot write {what} in the run folder {run_dir}: {reason}; nothing of it was "
            f"kept. Free space on its disk (or make the folder writable), then resume with "
            f"--run-dir {run_dir} ({kept})"
        ) from exc


def write_failure(exc: BaseException) -> str | None:
    """The reason when ``exc`` is a failed file write, else ``None`` (a bug)."""
    from safetensors import SafetensorError

    from medi2i.io.atomic import os_reason

    if isinstance(exc, OSError) or (isinstance(exc, OutputError) and exc.__cause__):
        return os_reason(exc)
    if isinstance(exc, SafetensorError):
        text = str(exc)
        return "No space left on device" if "No space left" in text else text.splitlines()[0]
    if isinstance(exc, RuntimeError) and any(word in str(exc) for word in _TORCH_WRITE_FAILURES):
        return "the file could not be written in full (is the disk full?)"
    return None


def write_model_folder(
    method: Method,
    folder: Path,
    *,
    metrics: Mapping[str, float] | None,
    finish: ModelFinisher | None,
    best: bool = False,
    spacing: TrainingSpacing | None = None,
    scale: TrainingScale | None = None,
) -> Path:
    """Save ``method`` as the model folder ``folder``, completed by ``finish``, all under
    a temporary name renamed at the end (an earlier folder there is replaced); its
    manifest records ``spacing``, the voxel spacings of the training inputs, and its
    :data:`TRAINING_FACTS` the ``scale`` it was trained at (written before ``finish``)."""
    from medi2i.io.atomic import atomic_path
    from medi2i.model_folder import MANIFEST, save_model

    empty = folder.is_dir() and not any(folder.iterdir())
    if folder.exists() and not empty and not (folder / MANIFEST).is_file():
        raise OutputError(
            f"{folder} is in the way of the run's model folder and is not a medi2i model "
            "folder, so it was not replaced; move it, or train in another run folder"
        )
    with atomic_path(folder) as staging:
        save_model(method, staging, metrics=metrics, training_spacing=spacing)
        if scale is not None:
            facts = json.dumps(scale.record(), indent=2) + "\n"
            (staging / TRAINING_FACTS).write_text(facts, encoding="utf-8")
        if finish is not None:
            finish(staging, best)
    return folder
