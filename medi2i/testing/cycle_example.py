"""A tiny two-way MR↔CT method learned from unpaired data, in the CycleGAN pattern.

CycleGAN (Zhu, Park, Isola and Efros, "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks", ICCV 2017) learns two generators, domain a to b
and b to a, each against a discriminator of its output domain, and asks that translating
there and back returns the input (the cycle loss). This example keeps that structure at
test size: two three-layer generators, two patch discriminators, least-squares GAN
losses, an image pool per domain, and alternating generator and discriminator updates
through the trainer's named optimizers. It omits the paper's identity loss, residual
generators and learning-rate decay.

It shows what a two-way method owes the core:

- per-domain intensities: MR by whole-volume percentiles, CT by a fixed Hounsfield
  scale, each chosen from the domain's :class:`~medi2i.DomainSpec` in ``preprocess`` and
  ``postprocess``;
- a direction condition (``to``) that decides the input domain, the generator and the
  output's spec, so a CT→MR prediction is written as MR;
- training state beyond the weights (the image pools), saved in checkpoints so that a
  resumed run is bitwise the run that was not interrupted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from medi2i.errors import Medi2iError, OptionsError
from medi2i.intensity import DomainIntensities
from medi2i.method import (
    DataKind,
    Options,
    Output,
    Task,
    TrainerAPI,
    Training,
    TrainingStateValue,
    UnpairedBatch,
    VolumeSpec,
)
from medi2i.patch_network import PatchNetworkMethod
from medi2i.testing.tiny_networks import least_squares, small_discriminator, small_generator
from medi2i.training.image_pool import ImagePool

if TYPE_CHECKING:
    pass

GENERATORS = ("a_to_b", "b_to_a")
"""Keys of the two generators in the network (and prefixes of their weights)."""


class CycleOptions(Options):
    """Options of :class:`ExampleCycle` (defaults of the paper where it has them).

    Attributes:
        roi_size: Window and default training patch size, in voxels.
        hidden: Feature channels of every network.
        learning_rate: Adam's learning rate (2e-4 in the paper).
        cycle_weight: Weight of the cycle loss against the adversarial loss (λ = 10).
        pool_size: Generated patches kept per domain for the discriminators (50).
        percentiles: Foreground percentiles mapped to -1 and +1 for MR images.
    """

    roi_size: tuple[int, int, int] = (16, 16, 16)
    hidden: int = Field(default=8, ge=1)
    learning_rate: float = Field(default=2e-4, gt=0.0)
    cycle_weight: float = Field(default=10.0, ge=0.0)
    pool_size: int = Field(default=50, ge=0)
    percentiles: tuple[float, float] = (1.0, 99.0)


class CycleDirection(BaseModel):
    """The predict-time condition of :class:`ExampleCycle`.

    Attributes:
        to: The target domain's name; ``None`` for the second domain (domain 1, ``b``),
            so the default translates domain a to domain b.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: str | None = None


class ExampleCycle(DomainIntensities, PatchNetworkMethod[CycleOptions, CycleDirection]):
    """Two-way translation between two domains learned from unpaired volumes (CycleGAN
    pattern, Zhu et al. 2017), at test size."""

    id = "example-cycle"
    tasks = (Task.TRANSLATION,)
    data = DataKind.UNPAIRED
    training = Training.GRADIENT
    input_spec = VolumeSpec()
    output_spec = VolumeSpec()
    paper = (
        "Zhu, Park, Isola, Efros. Unpaired Image-to-Image Translation using "
        "Cycle-Consistent Adversarial Networks. ICCV 2017"
    )
    default_roi_size: ClassVar[tuple[int, int, int]] = (16, 16, 16)

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self._discriminators: torch.nn.ModuleDict | None = None
        self.pools = {key: ImagePool(self.options.pool_size) for key in ("a", "b")}

    # -- networks ----------------------------------------------------------------------

    def build_network(self) -> torch.nn.Module:
        hidden = self.options.hidden
        return torch.nn.ModuleDict({key: small_generator(1, hidden) for key in GENERATORS})

    @property
    def discriminators(self) -> torch.nn.ModuleDict:
        """``a`` scores images of domain a, ``b`` images of domain b (training only)."""
        if self._discriminators is None:
            hidden = self.options.hidden
            self._discriminators = torch.nn.ModuleDict(
                {key: small_discriminator(1, hidden) for key in ("a", "b")}
            )
        return self._discriminators

    def generator(self, key: str) -> torch.nn.Module:
        """The generator ``"a_to_b"`` or ``"b_to_a"``."""
        module: torch.nn.Module = self.network[key]  # type: ignore[index]
        return module

    # -- domains and the direction -----------------------------------------------------

    def direction(self, condition: CycleDirection) -> tuple[str, str]:
        """The (input, output) domain names ``condition`` asks for.

        Raises:
            OptionsError: The method has no domains yet (it was not trained).
        """
        if len(self.domains) != 2:
            raise OptionsError(
                f"method {self.id!r} has no domains: train it, or load a trained model"
            )
        first, second = self.domain_names
        target = condition.to or second
        return (first if target == second else second), target

    def check_condition(self, condition: CycleDirection) -> None:
        if condition.to is not None and condition.to not in self.domain_names:
            known = list(self.domain_names) or "none: the method has not been trained"
            raise OptionsError(
                f"method {self.id!r} cannot translate to {condition.to!r}; "
                f"'to' must be one of its domains: {known}"
            )

    def input_domain(self, condition: CycleDirection) -> str | None:
        return self.direction(condition)[0]

    def outputs(self, condition: CycleDirection) -> tuple[Output, ...]:
        target = self.direction(condition)[1]
        spec = self.domain(target).volume_spec()
        return (Output("", spec, domain=target, condition={"to": target}),)

    def forward(self, windows: torch.Tensor, condition: CycleDirection) -> torch.Tensor:
        source, _ = self.direction(condition)
        key = "a_to_b" if source == self.domain_names[0] else "b_to_a"
        output: torch.Tensor = self.generator(key)(windows)
        return output

    # -- training ----------------------------------------------------------------------

    def training_modules(self) -> dict[str, torch.nn.Module]:
        return {
            "generator_a_to_b": self.generator("a_to_b"),
            "generator_b_to_a": self.generator("b_to_a"),
            "discriminator_a": self.discriminators["a"],
            "discriminator_b": self.discriminators["b"],
        }

    def configure_training(self, trainer: TrainerAPI) -> None:
        rate = self.options.learning_rate
        for name, modules in (
            ("generators", ("generator_a_to_b", "generator_b_to_a")),
            ("discriminators", ("discriminator_a", "discriminator_b")),
        ):
            parameters = [p for key in modules for p in trainer.modules[key].parameters()]
            trainer.add_optimizer(name, torch.optim.Adam(parameters, lr=rate, betas=(0.5, 0.999)))

    def training_step(self, batch: UnpairedBatch, trainer: TrainerAPI) -> dict[str, float]:
        real_a, real_b = batch["a"], batch["b"]
        g_ab, g_ba = trainer.modules["generator_a_to_b"], trainer.modules["generator_b_to_a"]
        d_a, d_b = trainer.modules["discriminator_a"], trainer.modules["discriminator_b"]
        # generators: fool both discriminators and come back where they started
        with trainer.autocast():
            fake_b, fake_a = g_ab(real_a), g_ba(real_b)
            back_a, back_b = g_ba(fake_b), g_ab(fake_a)
            adversarial = least_squares(d_b(fake_b), 1.0) + least_squares(d_a(fake_a), 1.0)
        cycle = F.l1_loss(back_a.float(), real_a) + F.l1_loss(back_b.float(), real_b)
        trainer.backward(adversarial + self.options.cycle_weight * cycle, "generators")
        trainer.step("generators")
        # discriminators: real images against pooled earlier generator outputs
        pooled_a = self.pools["a"].query(fake_a.detach())
        pooled_b = self.pools["b"].query(fake_b.detach())
        with trainer.autocast():
            loss_a = least_squares(d_a(real_a), 1.0) + least_squares(d_a(pooled_a), 0.0)
            loss_b = least_squares(d_b(real_b), 1.0) + least_squares(d_b(pooled_b), 0.0)
        trainer.backward(0.5 * (loss_a + loss_b), "discriminators")
        trainer.step("discriminators")
        return {
            "g_adversarial": float(adversarial.detach()),
            "g_cycle": float(cycle.detach()),
            "d_a": float(loss_a.detach()),
            "d_b": float(loss_b.detach()),
        }

    def training_state(self) -> dict[str, TrainingStateValue]:
        return {f"pool_{key}": pool.state() for key, pool in self.pools.items()}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        missing = sorted({f"pool_{key}" for key in self.pools} - set(state))
        if missing:
            raise Medi2iError(
                f"method {self.id!r}: the checkpoint has no {missing}; resume with the "
                "method that wrote it"
            )
        for key, pool in self.pools.items():
            pool.load_state(state[f"pool_{key}"])
