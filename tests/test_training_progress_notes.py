"""What a training run says as it goes, beyond its progress bar: one line before and
after each validation (which predicts whole volumes, tens of seconds with no step
advancing), and one when a resumed run's ``training.steps`` differs from the
checkpoint's; a resume below the checkpoint's step is refused in one line."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from medi2i.data.cases import CaseSet
from medi2i.testing.trainable_examples import TinyRegression, write_paired_cases
from medi2i.training import CheckpointError, train
from tests.training_helpers import quick


def _notes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "medi2i.training"]


def test_each_validation_is_announced_and_summed_up_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = write_paired_cases(tmp_path / "data", count=3, shape=(12, 12, 12))
    train_cases = CaseSet(cases.kind, cases.cases[:2])
    validation = CaseSet(cases.kind, cases.cases[2:])
    config = quick(steps=4, validate_every=2, checkpoint_every=4, patch_size=(8, 8, 8))
    with caplog.at_level(logging.INFO, logger="medi2i.training"):
        train(
            TinyRegression(),
            train_cases,
            config=config,
            run_dir=tmp_path / "run",
            validation=validation,
        )
    notes = _notes(caplog)
    assert "validating 1 case (case-2) at step 2" in notes
    done = [n for n in notes if n.startswith("validation at step ")]
    assert len(done) == 2
    pattern = r"validation at step 2: mae \S+, psnr \S+ \(mean over 1 case, \d+\.\d s\)"
    assert re.fullmatch(pattern + r"; best so far: model kept in .*best-model", done[0])
    assert all("\n" not in n for n in notes)
    assert "validating 1 case (case-2) at step 4" in capsys.readouterr().out


def test_a_resume_with_other_steps_says_so_and_one_below_the_checkpoint_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cases = write_paired_cases(tmp_path / "data", count=2, shape=(12, 12, 12))
    run = tmp_path / "run"
    train(
        TinyRegression(),
        cases,
        config=quick(steps=3, checkpoint_every=3, patch_size=(8, 8, 8)),
        run_dir=run,
    )
    with caplog.at_level(logging.INFO, logger="medi2i.training"):
        train(
            TinyRegression(),
            cases,
            config=quick(steps=5, checkpoint_every=3, patch_size=(8, 8, 8)),
            run_dir=run,
        )
    changed = [n for n in _notes(caplog) if n.startswith("training.steps changed")]
    assert len(changed) == 1
    assert changed[0].startswith(
        f"training.steps changed from 3 to 5 since the checkpoint of step 3 in {run}"
    )
    assert "learning-rate schedule follows 5 steps" in changed[0]
    with pytest.raises(CheckpointError, match=r"is of step 5, past training.steps 4;") as caught:
        train(
            TinyRegression(),
            cases,
            config=quick(steps=4, checkpoint_every=3, patch_size=(8, 8, 8)),
            run_dir=run,
        )
    assert "\n" not in str(caught.value)
