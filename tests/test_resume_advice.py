"""What a refused resume advises: the command line's way to a new run folder first, and
for a run that already trained all its steps, that it is finished."""

from __future__ import annotations

from pathlib import Path

import pytest

from medi2i.testing.trainable_examples import TinyRegression, write_paired_cases
from medi2i.training import CheckpointError, TrainingConfig, train
from medi2i.training.health import DivergenceGuard

CONFIG = TrainingConfig(
    steps=2,
    batch_size=2,
    patch_size=(16, 16, 16),
    checkpoint_every=2,
    log_every=1,
    device="cpu",
    progress=False,
)
COMMAND_LINE = "(`medi2i run WORKFLOW` with a new --run-dir or another --set output.run_id="


def _refused(tmp_path: Path, **changed: object) -> str:
    """The refusal of a rerun of a finished 2-step run with ``changed`` settings."""
    cases = write_paired_cases(tmp_path / "cases", count=1, shape=(16, 16, 16))
    run_dir = tmp_path / "run"
    train(TinyRegression(), cases, config=CONFIG, run_dir=run_dir)
    with pytest.raises(CheckpointError) as refused:
        train(TinyRegression(), cases, config=CONFIG.model_copy(update=changed), run_dir=run_dir)
    return str(refused.value)


def test_a_finished_run_is_said_to_be_finished(tmp_path: Path) -> None:
    message = _refused(tmp_path, seed=5)
    assert message.count("\n") == 0
    assert f"the run of {tmp_path / 'run'} is finished: it trained all 2 of its steps" in message
    assert f"nothing to resume (its model is in {tmp_path / 'run' / 'model'})" in message
    assert "seed: 0 → 5" in message
    assert COMMAND_LINE in message
    assert message.index("--run-dir") < message.index("resume=False in Python")


def test_a_run_asked_for_more_steps_is_told_how_to_resume(tmp_path: Path) -> None:
    message = _refused(tmp_path, seed=5, steps=4)
    assert "is finished" not in message
    assert "(step 2) was written with other settings" in message
    assert "resume with the same settings, or start afresh in a new run folder" in message
    assert COMMAND_LINE in message


def test_a_diverged_run_gets_command_line_advice() -> None:
    guard = DivergenceGuard(checkpoints=Path("run/checkpoints"), skips_allowed=0)
    message = guard.message(3, "loss NaN")
    assert COMMAND_LINE in message
    assert message.endswith("resume=False in Python)")
