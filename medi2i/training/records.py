"""What a training run keeps in its folder besides checkpoints and models: the names of
its folders, and the record of what its last validation depended on, so that a rerun
of a finished run validates again only when that changed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.training.history import HISTORY, json_line, read_history

if TYPE_CHECKING:
    from medi2i.data.cases import CaseSet
    from medi2i.settings import InferenceSettings

CHECKPOINTS = "checkpoints"
LOGS = "logs"
MODEL = "model"
BEST_MODEL = "best-model"
"""The run's model at its best validation (``TrainingConfig.keep_best``)."""
VALIDATION_RECORD = "validation-data.json"
"""What the run's last validation depended on (in ``checkpoints/``): a rerun of a
finished run validates again only when it changed."""
VALIDATION_STEP = "validation_step"
"""Key of the validated step in the best model's ``metrics.json``."""


def validation_record(
    validation: CaseSet | None,
    inference: InferenceSettings | None,
    condition: Mapping[str, object] | None,
) -> dict[str, object] | None:
    """What the last validation of a run depends on: its cases' files (sizes and
    times), conditions and the inference settings (``None`` without validation)."""
    if validation is None:
        return None
    files: dict[str, object] = {}
    for case in validation.cases:
        for role, path in sorted(case.images.items()):
            try:
                stat = Path(path).stat()
            except OSError:  # a missing file fails with its own error
                continue
            files[f"{case.id}/{role}"] = [str(path), stat.st_size, stat.st_mtime_ns]
        files[f"{case.id}/condition"] = [list(pair) for pair in case.condition]
    settings = inference.model_dump(mode="json", exclude={"progress"}) if inference else None
    record = {"files": files, "condition": dict(condition or {}), "inference": settings}
    return dict(json.loads(json.dumps(record, default=str)))


def validation_changed(run_dir: Path, record: dict[str, object] | None, step: int) -> bool:
    """Whether a finished run must validate its model again: it has validation cases
    and they (or the settings) changed since its last validation, or the log holds no
    validation of its last step."""
    if record is None:
        return False
    logged = read_history(run_dir / LOGS / HISTORY)
    if not any(e.get("step") == step and "validation" in e for e in logged):
        return True
    try:
        before = json.loads((run_dir / CHECKPOINTS / VALIDATION_RECORD).read_text("utf-8"))
    except (OSError, ValueError):
        return True  # a run from before the record
    return bool(before != record)


def drop_validation(history: Path, step: int) -> None:
    """Remove the validation records of ``step`` from the log (a new validation of the
    finished model replaces them: one point per step in the curves)."""
    from medi2i.io.atomic import atomic_path

    kept = [e for e in read_history(history) if not (e.get("step") == step and "validation" in e)]
    with atomic_path(history) as tmp:
        tmp.write_text("".join(json_line(entry) for entry in kept), encoding="utf-8")


def write_json(path: Path, record: Mapping[str, object]) -> None:
    from medi2i.io.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
