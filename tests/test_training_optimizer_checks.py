"""Mistakes in a method's optimizers that would train silently without changing some
weights: a gradient never stepped, an optimizer over parameters outside the training
modules, an optimizer holding another module's parameters."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from medi2i.errors import TrainingError
from medi2i.method import TrainerAPI
from medi2i.testing import check_training_contract
from medi2i.testing.trainable_examples import TinyAdversarial
from medi2i.training import Trainer

CPU = torch.device("cpu")
SMALL = {"hidden": 4}
PATCH = (12, 12, 12)


def _least_squares(scores: torch.Tensor, label: float) -> torch.Tensor:
    return ((scores - label) ** 2).mean()


class ForgetsTheDiscriminatorStep(TinyAdversarial):
    """Backpropagates the discriminator's loss but never steps its optimizer."""

    id = "forgets-the-discriminator-step"

    def training_step(
        self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
    ) -> dict[str, float]:
        source, target = batch["source"], batch["target"]
        generator, discriminator = trainer.modules["generator"], trainer.modules["discriminator"]
        fake = generator(source)
        real_score = discriminator(torch.cat([source, target], dim=1))
        fake_score = discriminator(torch.cat([source, fake.detach()], dim=1))
        loss_d = 0.5 * (_least_squares(real_score, 1.0) + _least_squares(fake_score, 0.0))
        trainer.backward(loss_d, "discriminator")
        loss_g = F.l1_loss(fake, target)
        trainer.backward(loss_g, "generator")
        trainer.step("generator")
        return {"d": float(loss_d.detach()), "g": float(loss_g.detach())}


class StepsLate(TinyAdversarial):
    """Steps the discriminator before its backward only: the gradient waits a step."""

    id = "steps-late"

    def training_step(
        self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
    ) -> dict[str, float]:
        trainer.step("discriminator")
        source = batch["source"]
        discriminator = trainer.modules["discriminator"]
        loss_d = _least_squares(discriminator(torch.cat([source, source], dim=1)), 1.0)
        trainer.backward(loss_d, "discriminator")
        loss_g = F.l1_loss(trainer.modules["generator"](source), batch["target"])
        trainer.backward(loss_g, "generator")
        trainer.step("generator")
        return {"d": float(loss_d.detach()), "g": float(loss_g.detach())}


class DiscriminatorOutsideTheModules(TinyAdversarial):
    """Trains a discriminator it keeps out of ``training_modules()`` (never checkpointed)."""

    id = "discriminator-outside-the-modules"

    def training_modules(self) -> dict[str, torch.nn.Module]:
        return {"generator": self.network}

    def configure_training(self, trainer: TrainerAPI) -> None:
        trainer.add_optimizer("generator", torch.optim.Adam(self.network.parameters(), 1e-3))
        trainer.add_optimizer("discriminator", torch.optim.Adam(self.discriminator.parameters()))


class OptimizesTheWrongModule(TinyAdversarial):
    """The generator's optimizer holds the discriminator's parameters (a copy-paste slip)."""

    id = "optimizes-the-wrong-module"

    def configure_training(self, trainer: TrainerAPI) -> None:
        for name in ("generator", "discriminator"):
            parameters = trainer.modules["discriminator"].parameters()
            trainer.add_optimizer(name, torch.optim.Adam(parameters, lr=1e-3))


def _batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {key: torch.rand(2, 1, 8, 8, 8, generator=generator) for key in ("source", "target")}


def _trainer(method: TinyAdversarial, accumulation: int = 1) -> Trainer:
    trainer = Trainer(method.training_modules(), device=CPU, accumulation_steps=accumulation)
    method.configure_training(trainer)
    return trainer


def test_an_optimizer_given_a_gradient_but_never_stepped_stops_the_run() -> None:
    method = ForgetsTheDiscriminatorStep(SMALL)
    trainer = _trainer(method)
    pattern = (
        r"'forgets-the-discriminator-step': training_step returned without calling "
        r"trainer.step\(name\) after trainer.backward\(loss, name\) for the optimizer\(s\) "
        "'discriminator'"
    )
    with pytest.raises(TrainingError, match=pattern):
        trainer.run_step(method, [_batch()])


def test_a_backward_after_the_optimizers_step_stops_the_run() -> None:
    method = StepsLate(SMALL)
    trainer = _trainer(method)
    with pytest.raises(TrainingError, match=r"for the optimizer\(s\) 'discriminator', so"):
        trainer.run_step(method, [_batch()])


def test_steps_deferred_by_gradient_accumulation_are_steps() -> None:
    method = TinyAdversarial(SMALL)
    trainer = _trainer(method, accumulation=2)
    losses = trainer.run_step(method, [_batch(), _batch()])
    assert set(losses) == {"d", "g_l1", "g_adv"}


def test_an_optimizer_over_parameters_outside_the_training_modules_is_refused() -> None:
    method = DiscriminatorOutsideTheModules(SMALL)
    trainer = _trainer(method)
    pattern = r"optimizer 'discriminator' holds \d+ parameter\(s\) that belong to none of"
    with pytest.raises(TrainingError, match=pattern):
        trainer.run_step(method, [_batch()])


def test_the_training_contract_catches_an_optimizer_never_stepped(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"for the optimizer\(s\) 'discriminator', so"):
        check_training_contract(
            ForgetsTheDiscriminatorStep, tmp_path, options=SMALL, patch_size=PATCH
        )


def test_the_training_contract_names_a_module_training_left_unchanged(tmp_path: Path) -> None:
    pattern = (
        r"optimizes-the-wrong-module: training changed no weight of the training module\(s\) "
        r"\['generator'\] \(the others changed\): its optimizer holds other parameters, or "
        "the module is never stepped"
    )
    with pytest.raises(AssertionError, match=pattern):
        check_training_contract(OptimizesTheWrongModule, tmp_path, options=SMALL, patch_size=PATCH)
