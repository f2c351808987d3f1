"""What a run folder held before its training started (:class:`EarlierAttempt`).

A training that finds no checkpoint in its folder starts at step 0; the log line it
writes then names the settings that changed since the earlier attempt and that the
attempt's records in ``logs/train.jsonl`` are replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml
from pydantic import JsonValue

if TYPE_CHECKING:
    from medi2i.workflow.run_folder import RunFolder
    from medi2i.workflow.schema import Workflow


@dataclass(frozen=True)
class EarlierAttempt:
    """What a run folder held before its training started: its ``config.resolved.yaml``
    and the last step ``logs/train.jsonl`` recorded (read before training replaces them).

    Attributes:
        config: The folder's resolved config, or ``None`` when it had none (or a damaged one).
        logged_step: The last step the earlier attempt logged, or ``None``.
    """

    config: Mapping[str, JsonValue] | None
    logged_step: int | None

    @classmethod
    def read(cls, run: RunFolder) -> EarlierAttempt:
        from medi2i.training.history import read_history

        try:
            raw = yaml.safe_load(run.config.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            raw = None
        steps = [e["step"] for e in read_history(run.train_log) if isinstance(e.get("step"), int)]
        return cls(raw if isinstance(raw, dict) else None, max(steps, default=None))

    def restart_note(self, run: RunFolder, workflow: Workflow) -> str | None:
        """The log line of a training that starts at step 0 in a folder an earlier
        attempt left without a checkpoint: the settings that changed (old → new), and
        that the attempt's records in ``logs/train.jsonl`` are replaced. ``None`` when
        there is nothing to say (a new folder, or the same settings and no record)."""
        from medi2i.training.checkpoint import fingerprint_differences

        current = workflow.model_dump(mode="json")
        changed = fingerprint_differences(self.config, current) if self.config else []
        if not changed and self.logged_step is None:
            return None
        logged = f" (it logged steps up to {self.logged_step})" if self.logged_step else ""
        text = (
            f"train: run folder {run.root} holds no checkpoint of an earlier attempt{logged}, "
            "so training starts again from step 0"
        )
        if changed:
            shown = "; ".join(changed[:4]) + ("; ..." if len(changed) > 4 else "")
            text += (
                f" with this run's settings, which differ from the folder's {run.config.name} "
                f"({shown}); {run.config.name} now holds them"
            )
        return text + (
            "; the earlier attempt's records in logs/train.jsonl are replaced (logs/run.log "
            "keeps its lines)"
        )
