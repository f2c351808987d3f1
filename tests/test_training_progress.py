"""A validation is a phase of its own: the step bar's rate and ETA, and the records'
patches per second, leave its time out; a transient bar counts its cases where the step
bar is drawn, and nothing is drawn where it is not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from medi2i.settings import InferenceSettings
from medi2i.training import history, validation
from medi2i.training.history import RunLog


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(history, "_clock", fake)
    return fake


def run_log(folder: Path, *, progress: bool) -> RunLog:
    return RunLog(
        folder,
        first_step=0,
        total_steps=10,
        patches_per_step=4,
        tensorboard=False,
        progress=progress,
        main=True,
    )


@pytest.fixture
def shown_log(tmp_path: Path, clock: Clock) -> Iterator[RunLog]:
    with run_log(tmp_path, progress=True) as log:
        bar = log._bar
        bar._time = clock  # tqdm's own clock, as its tests replace it
        bar.start_t = bar.last_print_t = clock()
        yield log


def test_a_long_validation_leaves_the_step_rate_and_eta_alone(
    shown_log: RunLog, clock: Clock
) -> None:
    for step in (1, 2, 3):
        clock.now += 1.0  # one second a step
        shown_log.step_done()
        shown_log.record(step, {"l1": 0.5}, {"network": 1e-3})
    with shown_log.paused(1) as progress:
        clock.now += 300.0  # a whole-volume validation
        progress.case_done()
    clock.now += 1.0
    shown_log.step_done()
    shown_log.record(4, {"l1": 0.5}, {"network": 1e-3})
    meter = shown_log._bar.format_dict
    assert meter["rate"] == pytest.approx(1.0)  # steps per second, not 4 / 304
    assert meter["elapsed"] == pytest.approx(4.0)
    records = [json.loads(line) for line in shown_log.history.read_text().splitlines()]
    assert records[-1]["patches_per_s"] == pytest.approx(4.0)
    assert records[-1]["elapsed_s"] == pytest.approx(304.0)  # wall time keeps it


def test_a_shown_validation_draws_transient_bars_and_counts_its_windows(
    shown_log: RunLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool | None] = []

    def case_metrics(
        method: object, case: object, settings: InferenceSettings, _: object
    ) -> dict[str, float]:
        seen.append(settings.progress)
        return {"mae": 1.0, "psnr": 30.0}

    monkeypatch.setattr(validation, "_case_metrics", case_metrics)
    settings = InferenceSettings(device="cpu", progress=False)
    with shown_log.paused(2) as progress:
        metrics = validation.validate(
            None, [object(), object()], settings=settings, progress=progress
        )  # type: ignore[arg-type, list-item]
    assert metrics == {"mae": 1.0, "psnr": 30.0}
    assert seen == [True, True]  # the sliding window's own bar over the windows


def test_nothing_is_drawn_where_the_step_bar_is_not(
    tmp_path: Path, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    with run_log(tmp_path, progress=False) as log, log.paused(3) as progress:
        clock.now += 60.0
        progress.case_done()
        assert not progress.shown
    assert capsys.readouterr().err == ""


def test_a_validation_outside_training_shows_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool | None] = []

    def case_metrics(
        method: object, case: object, settings: InferenceSettings, _: object
    ) -> dict[str, float]:
        seen.append(settings.progress)
        return {"mae": 1.0, "psnr": 30.0}

    monkeypatch.setattr(validation, "_case_metrics", case_metrics)
    settings = InferenceSettings(device="cpu", progress=False)
    validation.validate(None, [object()], settings=settings)  # type: ignore[arg-type, list-item]
    assert seen == [False]
