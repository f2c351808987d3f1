"""Failures of a method's own training code: one line naming the method, the step and
where, with the run's resume point; a patch network whose output prediction would
refuse is stopped before its first step."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

from medi2i.errors import TrainingError
from medi2i.method import TrainerAPI
from medi2i.testing import check_training_contract
from medi2i.testing.domain_cases import synthetic_training_cases
from medi2i.testing.trainable_examples import TinyRegression
from medi2i.training import TrainingConfig, train
from medi2i.training.network_check import check_network_output


class RaisesAtStep3(TinyRegression):
    id = "raises-at-step-3"

    def training_step(
        self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
    ) -> dict[str, float]:
        if trainer.step_index == 2:
            raise ValueError("boom in my step")
        return super().training_step(batch, trainer)


class TwoChannels(TinyRegression):
    id = "two-channels"

    def build_network(self) -> torch.nn.Module:
        return torch.nn.Conv3d(1, 2, 3, padding=1)


class Unpadded(TinyRegression):
    id = "unpadded"

    def build_network(self) -> torch.nn.Module:
        return torch.nn.Conv3d(1, 1, 3)  # shrinks each patch by 2 voxels


class Normalised(TinyRegression):
    id = "normalised"

    def build_network(self) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.BatchNorm3d(2))

    def training_step(
        self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
    ) -> dict[str, float]:
        raise AssertionError("not trained here")


def _train(method: TinyRegression, tmp_path: Path, steps: int = 4) -> None:
    data = synthetic_training_cases(method, tmp_path / "data")
    config = TrainingConfig(
        steps=steps,
        batch_size=2,
        patch_size=(8, 8, 8),
        device="cpu",
        checkpoint_every=2,
        cache="memory",
        num_workers=0,
        progress=False,
    )
    train(method, data, config=config, run_dir=tmp_path / "run", resume=False)


def test_a_step_that_raises_is_named_with_its_step_and_resume_point(tmp_path: Path) -> None:
    with pytest.raises(TrainingError) as caught:
        _train(RaisesAtStep3({"hidden": 2}), tmp_path)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(
        "training_step of 'raises-at-step-3' raised ValueError at step 3: boom in my step "
        "(in tests/test_training_step_errors.py line "
    )
    assert "checkpoint of step 2" in message
    assert str(tmp_path / "run") in message
    assert isinstance(caught.value.__cause__, ValueError)  # the traceback stays available


def test_the_training_contract_prefixes_a_raising_step(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"^raises-at-step-3: training failed .*at step 3"):
        check_training_contract(
            RaisesAtStep3, tmp_path, options={"hidden": 2}, steps=4, patch_size=(8, 8, 8)
        )


@pytest.mark.parametrize(
    ("method_cls", "expected"),
    [
        (TwoChannels, "returned 2 channel\\(s\\) for a training patch but the method declares 1"),
        (Unpadded, "turned a training patch of \\(8, 8, 8\\) voxels into \\(6, 6, 6\\)"),
    ],
)
def test_a_network_that_prediction_would_refuse_stops_before_training(
    tmp_path: Path, method_cls: type[TinyRegression], expected: str
) -> None:
    with pytest.raises(TrainingError, match=expected):
        _train(method_cls({"hidden": 2}), tmp_path, steps=2)


def test_the_network_check_leaves_modes_and_statistics_alone() -> None:
    method = Normalised({"hidden": 2})
    network = method.network.train()
    norm = next(m for m in network.modules() if isinstance(m, torch.nn.BatchNorm3d))
    before = {name: value.clone() for name, value in norm.state_dict().items()}
    batch = {"source": torch.randn(2, 1, 8, 8, 8), "target": torch.randn(2, 1, 8, 8, 8)}
    state = torch.random.get_rng_state()
    with pytest.raises(TrainingError, match="returned 2 channel"):
        check_network_output(method, batch)
    assert all(module.training for module in network.modules())
    assert all(torch.equal(value, before[name]) for name, value in norm.state_dict().items())
    assert torch.equal(torch.random.get_rng_state(), state)
