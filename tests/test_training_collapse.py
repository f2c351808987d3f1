"""A GAN that collapses while every number stays finite is reported: discriminators that
win outright, or a generator whose output stays constant, for ``collapse_patience``
steps (a warning in the log, the history and the result, or an error that stops)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from medi2i.data.cases import CaseSet
from medi2i.errors import TrainingError
from medi2i.testing.trainable_examples import TinyAdversarial, write_paired_cases
from medi2i.training import TrainingConfig, train
from medi2i.training.health import (
    DISCRIMINATOR_LOSS_FLOOR,
    SPREAD_FLOOR,
    CollapseWatch,
    spread_ratio,
)
from medi2i.training.history import read_history


def quick(**overrides: object) -> TrainingConfig:
    settings: dict[str, object] = {
        "steps": 6,
        "batch_size": 1,
        "patch_size": (16, 16, 16),
        "log_every": 2,
        "checkpoint_every": 3,
        "device": "cpu",
        "progress": False,
    }
    return TrainingConfig.model_validate({**settings, **overrides})


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> CaseSet:
    return write_paired_cases(tmp_path_factory.mktemp("cases"), count=2, shape=(20, 20, 20))


class _Constant(torch.nn.Module):
    """A generator that collapsed: one learnable value, whatever the input."""

    def __init__(self) -> None:
        super().__init__()
        self.value = torch.nn.Parameter(torch.zeros(1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image[:, :1] * 0.0 + self.value


class Collapsed(TinyAdversarial):
    def build_network(self) -> torch.nn.Module:
        return _Constant()


WON = {"discriminator_a": DISCRIMINATOR_LOSS_FLOOR / 10, "discriminator_b": 1e-5}


def test_discriminators_below_the_floor_are_reported_after_the_patience() -> None:
    watch = CollapseWatch(patience=100)
    assert watch.observe(100, WON, {}) == []
    assert watch.observe(150, WON, {}) == []
    found = watch.observe(200, WON, {})
    assert len(found) == 1
    assert "discriminators win outright" in found[0]
    assert "since step 100" in found[0]
    assert "at step 200" in found[0]
    assert watch.observe(250, WON, {}) == []  # reported once
    assert watch.findings == found


def test_one_discriminator_still_learning_is_no_collapse() -> None:
    watch = CollapseWatch(patience=0)
    assert watch.observe(10, {"discriminator_a": 1e-6, "discriminator_b": 0.3}, {}) == []


def test_a_symptom_that_goes_away_starts_its_clock_again() -> None:
    watch = CollapseWatch(patience=100)
    watch.observe(100, WON, {})
    watch.observe(150, {"discriminator_a": 0.4, "discriminator_b": 0.4}, {})
    assert watch.observe(200, WON, {}) == []
    assert watch.observe(250, WON, {}) == []
    assert len(watch.observe(300, WON, {})) == 1


def test_a_step_without_discriminator_losses_keeps_the_clock() -> None:
    """DiscoGAN updates its discriminators every third step: a logged generator step
    says nothing about them."""
    watch = CollapseWatch(patience=100)
    watch.observe(100, WON, {})
    assert watch.observe(150, {"gan_a": 2.0}, {}) == []
    assert len(watch.observe(200, {"gan_a": 2.0}, {})) == 1


def test_a_constant_generator_output_is_reported_and_nan_ignored() -> None:
    watch = CollapseWatch(patience=0)
    found = watch.observe(10, {"l1": 0.1}, {"fake_b": SPREAD_FLOOR / 2, "fake_a": math.nan})
    assert len(found) == 1
    assert "'fake_b' is nearly constant" in found[0]
    assert watch.observe(20, {}, {"fake_a": 0.9}) == []


def test_stop_raises_one_training_error(tmp_path: Path) -> None:
    watch = CollapseWatch(patience=0, stop=True, checkpoints=tmp_path)
    with pytest.raises(TrainingError, match=r"training collapsed at step 5: .*collapse_check"):
        watch.observe(5, WON, {})


def test_spread_ratio() -> None:
    real = torch.arange(64.0).reshape(1, 1, 4, 4, 4)
    assert float(spread_ratio(real * 2, real)) == pytest.approx(2.0)  # type: ignore[arg-type]
    assert float(spread_ratio(torch.ones_like(real), real)) == 0.0  # type: ignore[arg-type]
    assert math.isnan(float(spread_ratio(real, torch.ones_like(real))))  # type: ignore[arg-type]
    assert spread_ratio(torch.ones(1), torch.ones(1)) is None


def test_a_collapsed_generator_is_reported_in_the_history_and_result(
    cases: CaseSet, tmp_path: Path
) -> None:
    result = train(Collapsed(), cases, config=quick(collapse_patience=2), run_dir=tmp_path)
    assert len(result.health) == 1
    assert "generator output 'fake' is nearly constant" in result.health[0]
    assert "at step 4" in result.health[0]
    assert "since step 2" in result.health[0]
    records = read_history(result.history)
    assert [r["health"] for r in records if "health" in r] == list(result.health)
    spreads = [r["generated_spread"]["fake"] for r in records if "generated_spread" in r]
    assert spreads
    assert all(value < SPREAD_FLOOR for value in spreads)
    assert result.model_dir.is_dir()  # "warn" keeps the run going


def test_collapse_check_stop_ends_the_run_without_a_model(cases: CaseSet, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="generator output 'fake' is nearly constant"):
        train(
            Collapsed(),
            cases,
            config=quick(collapse_patience=2, collapse_check="stop"),
            run_dir=tmp_path,
        )
    assert not (tmp_path / "model").exists()


def test_collapse_check_off_and_a_healthy_gan_report_nothing(
    cases: CaseSet, tmp_path: Path
) -> None:
    off = train(
        Collapsed(),
        cases,
        config=quick(collapse_patience=0, collapse_check="off"),
        run_dir=tmp_path / "off",
    )
    assert off.health == ()
    healthy = train(
        TinyAdversarial(), cases, config=quick(collapse_patience=0), run_dir=tmp_path / "ok"
    )
    assert healthy.health == ()
    spreads = [
        r["generated_spread"]["fake"] for r in read_history(healthy.history) if "losses" in r
    ]
    assert len(spreads) == 3
    assert min(spreads) > SPREAD_FLOOR
