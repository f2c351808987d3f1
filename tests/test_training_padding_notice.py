"""Training volumes smaller than the patch: padded, and said so once per run."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from medi2i.testing.trainable_examples import TinyRegression, write_paired_cases
from medi2i.training import train
from tests.training_helpers import quick


def padding_notices(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "padded" in r.getMessage()]


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_a_patch_larger_than_the_volumes_is_noted_once_naming_case_and_sizes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, cache: str
) -> None:
    cases = write_paired_cases(tmp_path / "cases", count=2, shape=(16, 16, 16))
    config = quick(steps=3, patch_size=(24, 16, 20), cache=cache)
    with caplog.at_level(logging.INFO, logger="medi2i.training"):
        train(TinyRegression(), cases, config=config, run_dir=tmp_path / "run")
    notices = padding_notices(caplog)
    assert len(notices) == 1
    assert any(f"case {case.id!r}:" in notices[0] for case in cases.cases)
    assert "(16, 16, 16) voxels" in notices[0]
    assert "(24, 16, 20)" in notices[0]
    assert "training.patch_size" in notices[0]


def test_volumes_as_large_as_the_patch_are_not_noted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cases = write_paired_cases(tmp_path / "cases", count=2, shape=(16, 16, 16))
    with caplog.at_level(logging.INFO, logger="medi2i.training"):
        train(TinyRegression(), cases, config=quick(steps=2), run_dir=tmp_path / "run")
    assert padding_notices(caplog) == []
