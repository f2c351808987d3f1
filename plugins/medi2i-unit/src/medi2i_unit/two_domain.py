"""What UNIT and MUNIT share: two unpaired domains, a direction, two multi-scale
discriminators, the optimizers and the step decay of the learning rate.

The domains are the workflow's ``data.domains`` in label order (``a`` is the first,
``b`` the second), stored in the model folder. Each volume is scaled by its domain
(:class:`medi2i.DomainIntensities`: CT by the fixed Hounsfield scale, MR by its own
foreground percentiles), and each output is written as its target domain's modality,
CT in HU.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel
from typing_extensions import TypeVar

from medi2i import (
    DataKind,
    OptionsError,
    Output,
    PatchNetworkMethod,
    ScaledDomainIntensities,
    SpatialPlan,
    Task,
    Training,
    VolumeSpec,
)
from medi2i_unit.discriminator import MultiScaleDiscriminator
from medi2i_unit.options import TranslationOptions, UnitCondition

if TYPE_CHECKING:
    from medi2i import TrainerAPI, UnpairedBatch

OptionsT = TypeVar("OptionsT", bound=TranslationOptions)
ConditionT = TypeVar("ConditionT", bound=UnitCondition)

GENERATORS = "generators"
"""Training module (the whole network) and optimizer of the generator side."""
DISCRIMINATORS = ("discriminator_a", "discriminator_b")
"""Training modules of the two discriminators (optimizer ``discriminators``)."""


class TwoDomainTranslation(ScaledDomainIntensities, PatchNetworkMethod[OptionsT, ConditionT]):
    """Base class of the two methods (not registered); intensities as
    :class:`medi2i.ScaledDomainIntensities` (MR outputs on their domain's training scale,
    CT in HU with air outside the input's body under ``body_contour``)."""

    tasks = (Task.TRANSLATION, Task.HARMONIZATION)
    data = DataKind.UNPAIRED
    training = Training.GRADIENT
    input_spec = VolumeSpec()
    output_spec = VolumeSpec()
    default_roi_size: ClassVar[tuple[int, int, int]] = (32, 32, 32)

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self._discriminators: dict[str, torch.nn.Module] = {}
        self._optimizers: list[torch.optim.Optimizer] = []

    # -- domains and the direction -----------------------------------------------------

    def endpoints(self, condition: ConditionT) -> tuple[str, str]:
        """The (input, output) domain names of ``condition.direction``.

        Raises:
            OptionsError: The method has no domains (it was not trained).
        """
        if len(self.domains) != 2:
            raise OptionsError(
                f"method {self.id!r} has no domains: train it, or load a trained model"
            )
        first, second = self.domain_names
        return (first, second) if condition.direction == "a2b" else (second, first)

    @staticmethod
    def keys(condition: UnitCondition) -> tuple[str, str]:
        """The network keys (``"a"``/``"b"``) of the direction's input and output."""
        return ("a", "b") if condition.direction == "a2b" else ("b", "a")

    def check_condition(self, condition: ConditionT) -> None:
        self.endpoints(condition)

    def input_domain(self, condition: ConditionT) -> str | None:
        return self.endpoints(condition)[0]

    def outputs(self, condition: ConditionT) -> tuple[Output, ...]:
        source, target = self.endpoints(condition)
        record = {"direction": condition.direction, "from": source, "to": target}
        return (Output("", self.domain(target).volume_spec(), domain=target, condition=record),)

    def spatial_plan(self) -> SpatialPlan:
        """RAS, so the networks see anatomy the same way round whatever the file's
        orientation, and ``options.spacing`` when set."""
        return SpatialPlan(orientation="RAS", spacing=self.options.spacing)

    # -- training ----------------------------------------------------------------------

    def discriminator(self, key: str) -> torch.nn.Module:
        """The discriminator of domain ``key`` (``"a"`` or ``"b"``), built on first use
        (prediction never builds it; the trained model does not keep it)."""
        if key not in self._discriminators:
            options = self.options
            self._discriminators[key] = MultiScaleDiscriminator(
                filters=options.discriminator_filters,
                layers=options.discriminator_layers,
                scales=options.discriminator_scales,
            )
        return self._discriminators[key]

    def training_modules(self) -> dict[str, torch.nn.Module]:
        return {
            GENERATORS: self.network,
            DISCRIMINATORS[0]: self.discriminator("a"),
            DISCRIMINATORS[1]: self.discriminator("b"),
        }

    def augments_intensity(self, role: str) -> bool:
        """Never: intensity augmentation of a domain's real images would teach the
        generators to produce the augmented intensities."""
        return False

    def configure_training(self, trainer: TrainerAPI) -> None:
        """Adam for the generators and for both discriminators (lr 1e-4, betas 0.5 and
        0.999, weight decay 1e-4 by default)."""
        options = self.options
        self._optimizers = []
        groups = {GENERATORS: (GENERATORS,), "discriminators": DISCRIMINATORS}
        for name, modules in groups.items():
            parameters = [p for key in modules for p in trainer.modules[key].parameters()]
            optimizer = torch.optim.Adam(
                parameters,
                lr=options.learning_rate,
                betas=options.betas,
                weight_decay=options.weight_decay,
            )
            trainer.add_optimizer(name, optimizer)
            self._optimizers.append(optimizer)

    def decay_learning_rate(self, trainer: TrainerAPI) -> None:
        """Set the papers' step decay for this step: the rate times ``lr_decay`` for
        every ``lr_decay_every`` steps done. A function of the step index alone, so a
        resumed run needs no scheduler state."""
        options = self.options
        rate = options.learning_rate * options.lr_decay ** (
            trainer.step_index // options.lr_decay_every
        )
        for optimizer in self._optimizers:
            for group in optimizer.param_groups:
                group["lr"] = rate

    def training_step(self, batch: UnpairedBatch, trainer: TrainerAPI) -> dict[str, float]:
        """One step: both generators on the method's objective
        (:meth:`generator_passes`, :meth:`loss_terms`, :meth:`weighted_terms`) plus the
        adversarial term, then both discriminators."""
        self.decay_learning_rate(trainer)
        real_a, real_b = batch["a"], batch["b"]
        with trainer.autocast():
            passes = self.generator_passes(trainer, real_a, real_b)
        fakes = {"a": passes["fake_ba"], "b": passes["fake_ab"]}
        trainer.watch_generated("fake_a", fakes["a"], real_a)
        trainer.watch_generated("fake_b", fakes["b"], real_b)
        terms = self.loss_terms(passes, real_a, real_b)
        adversarial = self.fooling_loss(trainer, fakes)
        loss = self.options.gan_weight * adversarial + self.weighted_terms(terms)
        trainer.backward(loss, GENERATORS)
        trainer.step(GENERATORS)
        discriminators = self.discriminator_step(trainer, {"a": real_a, "b": real_b}, fakes)
        logged = {name: float(value.detach()) for name, value in terms.items()}
        return {
            **logged,
            "generator_gan": float(adversarial.detach()),
            "discriminators": float(discriminators.detach()),
        }

    def generator_passes(
        self, trainer: TrainerAPI, real_a: torch.Tensor, real_b: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The generators' forward passes of a step; must hold ``fake_ab`` (a
        translated to b) and ``fake_ba``."""
        raise NotImplementedError

    def loss_terms(
        self, passes: Mapping[str, torch.Tensor], real_a: torch.Tensor, real_b: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The method's unweighted non-adversarial terms (logged by name)."""
        raise NotImplementedError

    def weighted_terms(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum of :meth:`loss_terms` the generators minimize besides the
        adversarial term."""
        raise NotImplementedError

    def discriminator_step(
        self, trainer: TrainerAPI, reals: Mapping[str, torch.Tensor], fakes: Mapping[str, Any]
    ) -> torch.Tensor:
        """Update both discriminators: real patches of each domain against the
        generators' (detached) translations into it. Returns the loss."""
        from medi2i_unit.discriminator import lsgan_loss

        loss = torch.zeros((), device=trainer.device)
        for key, name in zip(("a", "b"), DISCRIMINATORS, strict=True):
            judge = trainer.modules[name]
            with trainer.autocast():
                real_scores, fake_scores = judge(reals[key]), judge(fakes[key].detach())
            loss = loss + lsgan_loss(real_scores, 1.0) + lsgan_loss(fake_scores, 0.0)
        trainer.backward(self.options.gan_weight * loss, "discriminators")
        trainer.step("discriminators")
        return loss

    def fooling_loss(self, trainer: TrainerAPI, fakes: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The generators' least-squares GAN loss: translations into each domain judged
        by that domain's discriminator, labelled real."""
        from medi2i_unit.discriminator import lsgan_loss

        total = torch.zeros((), device=trainer.device)
        for key, name in zip(("a", "b"), DISCRIMINATORS, strict=True):
            with trainer.autocast():
                scores = trainer.modules[name](fakes[key])
            total = total + lsgan_loss(scores, 1.0)
        return total
