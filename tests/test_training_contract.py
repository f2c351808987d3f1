"""check_training_contract: it passes the trainable examples of every data kind, and it
catches methods that break training, resume or the trained-model folder."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medi2i.method import (
    DataKind,
    MethodClass,
    PairedBatch,
    Task,
    TrainerAPI,
    Training,
    TrainingStateValue,
    VolumeSpec,
)
from medi2i.patch_network import PatchNetworkMethod
from medi2i.testing import (
    check_training_contract,
    synthetic_training_cases,
    write_scaled_paired_cases,
)
from medi2i.testing.cycle_example import ExampleCycle
from medi2i.testing.example_methods import FittedStandardization
from medi2i.testing.multi_domain_example import ExampleStar
from medi2i.testing.trainable_examples import TinyAdversarial, TinyOptions, TinyRegression

SMALL_GAN = {"hidden": 4}
SMALL_CYCLE = {"hidden": 4, "pool_size": 2}  # a pool that fills in one step, then swaps
SMALL_TINY = {"hidden": 4}
PATCH = (12, 12, 12)


@pytest.mark.parametrize(
    ("method_cls", "options"),
    [
        (TinyRegression, SMALL_TINY),
        (TinyAdversarial, SMALL_TINY),
        (ExampleCycle, SMALL_CYCLE),
        (ExampleStar, SMALL_GAN),
    ],
    ids=lambda value: getattr(value, "id", ""),
)
def test_the_trainable_examples_keep_the_training_contract(
    method_cls: MethodClass, options: dict[str, object], tmp_path: Path
) -> None:
    check_training_contract(method_cls, tmp_path, options=options, patch_size=PATCH)


class ThroughPlaneNet(PatchNetworkMethod[TinyOptions]):
    """Doubles the slices: nearest upsampling along the third axis, then a convolution."""

    id = "through-plane-net"
    tasks = (Task.SUPER_RESOLUTION,)
    data = DataKind.PAIRED
    training = Training.GRADIENT
    input_spec = output_spec = VolumeSpec(modality="MR")
    output_scale = (1.0, 1.0, 2.0)

    def build_network(self) -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Upsample(scale_factor=(1.0, 1.0, 2.0), mode="nearest"),
            torch.nn.Conv3d(1, 1, 3, padding=1),
        )

    def preprocess(self, image: Any, *, domain: object = None, condition: object = None) -> Any:
        return image / 1000.0

    def preprocess_target(self, target: Any) -> Any:
        return target / 1000.0

    def configure_training(self, trainer: TrainerAPI) -> None:
        parameters = trainer.modules["network"].parameters()
        trainer.add_optimizer("network", torch.optim.Adam(parameters, lr=1e-2))

    def training_step(self, batch: PairedBatch, trainer: TrainerAPI) -> dict[str, float]:
        loss = F.l1_loss(trainer.modules["network"](batch["source"]), batch["target"])
        trainer.backward(loss, "network")
        trainer.step("network")
        return {"l1": float(loss.detach())}


def test_a_super_resolution_method_trains_on_targets_of_a_finer_grid(tmp_path: Path) -> None:
    check_training_contract(ThroughPlaneNet, tmp_path, options=SMALL_TINY, patch_size=(8, 8, 4))


class Denoiser(PatchNetworkMethod[TinyOptions]):
    """Learns from images of one domain alone: noisy patch in, clean patch out."""

    id = "denoiser"
    tasks = (Task.HARMONIZATION,)
    data = DataKind.SINGLE_DOMAIN
    training = Training.GRADIENT
    input_spec = output_spec = VolumeSpec(modality="MR")

    def build_network(self) -> torch.nn.Module:
        return torch.nn.Conv3d(1, 1, 3, padding=1)

    def preprocess(self, image: Any, *, domain: object = None, condition: object = None) -> Any:
        return image / 1000.0

    def postprocess(self, output: Any, image: Any, **_: object) -> Any:
        return output * 1000.0

    def configure_training(self, trainer: TrainerAPI) -> None:
        trainer.add_optimizer("network", torch.optim.Adam(trainer.modules["network"].parameters()))

    def training_step(self, batch: Any, trainer: TrainerAPI) -> dict[str, float]:
        clean = batch["image"]
        noisy = clean + 0.05 * torch.randn_like(clean)  # torch's generator: reseeded per step
        loss = F.mse_loss(trainer.modules["network"](noisy), clean)
        trainer.backward(loss, "network")
        trainer.step("network")
        return {"mse": float(loss.detach())}


def test_a_single_domain_method_trains_on_images_of_one_domain(tmp_path: Path) -> None:
    check_training_contract(Denoiser, tmp_path, patch_size=(8, 8, 8))


def test_scaled_pairs_have_targets_on_the_finer_grid(tmp_path: Path) -> None:
    from medi2i.io import read_volume

    cases = write_scaled_paired_cases(tmp_path, factors=(1, 1, 2), count=1, shape=(8, 8, 6))
    source = read_volume(cases.cases[0].images["source"])
    target = read_volume(cases.cases[0].images["target"])

    assert tuple(target.shape) == (1, 8, 8, 12)
    assert float(target.mean()) == pytest.approx(float(source.mean()), rel=0.05)


@pytest.mark.parametrize(
    ("method_cls", "kind"),
    [
        (TinyRegression, DataKind.PAIRED),
        (ExampleCycle, DataKind.UNPAIRED),
        (ExampleStar, DataKind.MULTI_DOMAIN),
        (FittedStandardization, DataKind.SINGLE_DOMAIN),
    ],
)
def test_synthetic_cases_are_of_the_method_s_data_kind(
    method_cls: MethodClass, kind: DataKind, tmp_path: Path
) -> None:
    cases = synthetic_training_cases(method_cls(), tmp_path)

    assert cases.kind is kind
    assert all(path.is_file() for case in cases.cases for path in case.images.values())


# -- broken methods are caught ---------------------------------------------------------------


class ForgetsItsPool(ExampleCycle):
    """Keeps its image pools out of the checkpoint: a resumed run starts with empty pools."""

    id = "forgets-its-pool"

    def training_state(self) -> dict[str, TrainingStateValue]:
        return {}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        pass


class DrawsFromItsOwnGenerator(ExampleStar):
    """Picks target domains with a generator of its own, which no checkpoint restores."""

    id = "draws-from-its-own-generator"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.rng = np.random.default_rng(0)

    def training_step(self, batch: Any, trainer: TrainerAPI) -> dict[str, float]:
        torch.manual_seed(int(self.rng.integers(1 << 30)))  # replaces the trainer's seeding
        return super().training_step(batch, trainer)


class NeverSteps(TinyRegression):
    """Backpropagates but never updates its weights."""

    id = "never-steps"

    def training_step(self, batch: Any, trainer: TrainerAPI) -> dict[str, float]:
        loss = F.l1_loss(trainer.modules["network"](batch["source"]), batch["target"])
        trainer.backward(loss, "network")
        return {"l1": float(loss.detach())}


class NeverBackpropagates(TinyRegression):
    """Steps, but never gives its optimizer a gradient."""

    id = "never-backpropagates"

    def training_step(self, batch: Any, trainer: TrainerAPI) -> dict[str, float]:
        with torch.no_grad():
            loss = F.l1_loss(trainer.modules["network"](batch["source"]), batch["target"])
        trainer.step("network")
        return {"l1": float(loss)}


class ForgetsToReturn(TinyRegression):
    """Steps, but its ``return`` of the losses is forgotten."""

    id = "forgets-to-return"

    def training_step(self, batch: Any, trainer: TrainerAPI) -> dict[str, float]:
        super().training_step(batch, trainer)
        return None  # type: ignore[return-value]


class Diverges(TinyRegression):
    """Reports a NaN loss."""

    id = "diverges"

    def training_step(self, batch: Any, trainer: TrainerAPI) -> dict[str, float]:
        super().training_step(batch, trainer)
        return {"l1": float("nan")}


class ForgetsItsGenerator(ExampleStar):
    """Keeps its trained generator out of the model folder."""

    id = "forgets-its-generator"

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        pass


@pytest.mark.parametrize(
    ("method_cls", "options", "problem"),
    [
        (ForgetsItsPool, SMALL_CYCLE, "does not end as the run that was not interrupted"),
        (DrawsFromItsOwnGenerator, SMALL_GAN, "does not end as the run that was not interrupted"),
        (NeverSteps, SMALL_TINY, "training_step returned without calling trainer.step"),
        (NeverBackpropagates, SMALL_TINY, "trainer.step was called for network with no grad"),
        (ForgetsToReturn, SMALL_TINY, "training_step returned a NoneType; it returns its"),
        (Diverges, SMALL_TINY, "training failed"),
        (ForgetsItsGenerator, SMALL_GAN, "predicts output 'scanner-a' differently"),
        (FittedStandardization, None, "not by gradient steps"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_the_check_catches_a_broken_method(
    method_cls: MethodClass,
    options: dict[str, object] | None,
    problem: str,
    tmp_path: Path,
) -> None:
    with pytest.raises(AssertionError, match=problem):
        check_training_contract(method_cls, tmp_path, options=options, patch_size=PATCH)


def test_the_message_names_the_training_state_that_differs(tmp_path: Path) -> None:
    class PoolOnlyDiffers(ForgetsItsPool):
        """Forgets its pools, but they never reach the discriminators."""

        id = "pool-only-differs"

        def training_state(self) -> dict[str, TrainingStateValue]:
            return ExampleCycle.training_state(self)

    # a pool larger than every patch the run makes only fills: the weights agree, the
    # state does not
    options = {"hidden": 4, "pool_size": 50}
    with pytest.raises(AssertionError, match=r"training_state\(\).*differ at \['pool_a'\]"):
        check_training_contract(PoolOnlyDiffers, tmp_path, options=options, patch_size=PATCH)


def test_the_check_needs_two_steps(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="steps >= 2"):
        check_training_contract(TinyRegression, tmp_path, steps=1)


def test_the_check_leaves_the_callers_generators_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    np.random.seed(7)
    random.seed(9)
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    numpy_state = np.random.get_state(legacy=False)["state"]["key"].copy()

    check_training_contract(TinyRegression, tmp_path, options=SMALL_TINY, patch_size=PATCH)

    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state(legacy=False)["state"]["key"], numpy_state)
    assert random.getstate() == python_state
