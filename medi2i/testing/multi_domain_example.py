"""A tiny multi-domain method in the StarGAN pattern: one generator for every domain.

StarGAN (Choi, Choi, Kim, Ha, Kim and Choo, "StarGAN: Unified Generative Adversarial
Networks for Multi-Domain Image-to-Image Translation", CVPR 2018) trains one generator
that takes the target domain as a one-hot code beside the image, and a discriminator
that also classifies the domain of what it sees. The generator learns to fool the
discriminator, to make images the classifier assigns to the target domain, and to give
the input back when translated to its own domain again (reconstruction). This example
keeps that structure at test size, with least-squares GAN losses where the paper uses
WGAN-GP.

It shows what a multi-domain method owes the core: its networks are sized from its
domains (:attr:`medi2i.Method.domains`, set before training and restored from the model
folder), its condition names a target domain, and without one it yields a named output
per domain (``out.nii.gz`` is written as ``out_<domain>.nii.gz``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, cast

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from medi2i.errors import OptionsError
from medi2i.intensity import DomainIntensities
from medi2i.method import (
    DataKind,
    MultiDomainBatch,
    Options,
    Output,
    PatchNetworkMethod,
    PredictContext,
    Task,
    TrainerAPI,
    Training,
    VolumeSpec,
)
from medi2i.testing.tiny_networks import (
    ClassifyingDiscriminator,
    ConditionedGenerator,
    least_squares,
)

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor


class StarOptions(Options):
    """Options of :class:`ExampleStar` (the paper's loss weights and learning rate).

    Attributes:
        roi_size: Window and default training patch size, in voxels.
        hidden: Feature channels of both networks.
        learning_rate: Adam's learning rate (1e-4 in the paper).
        classification_weight: Weight of the domain-classification losses (λ_cls = 1).
        reconstruction_weight: Weight of the reconstruction loss (λ_rec = 10).
        percentiles: Foreground percentiles mapped to -1 and +1 for MR images.
    """

    roi_size: tuple[int, int, int] = (16, 16, 16)
    hidden: int = Field(default=8, ge=1)
    learning_rate: float = Field(default=1e-4, gt=0.0)
    classification_weight: float = Field(default=1.0, ge=0.0)
    reconstruction_weight: float = Field(default=10.0, ge=0.0)
    percentiles: tuple[float, float] = (1.0, 99.0)


class TargetDomain(BaseModel):
    """The predict-time condition of :class:`ExampleStar`.

    Attributes:
        target_domain: The domain to translate to; ``None`` for every domain, each as
            an output named after it.
        source_domain: The input's domain, which decides its intensity preprocessing
            (CT in HU, or by percentiles); ``None`` for an image of no absolute unit.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_domain: str | None = None
    source_domain: str | None = None


class ExampleStar(DomainIntensities, PatchNetworkMethod[StarOptions, TargetDomain]):
    """Translation among several domains with one conditioned generator (StarGAN
    pattern, Choi et al. 2018), at test size."""

    id = "example-star"
    tasks = (Task.HARMONIZATION,)
    data = DataKind.MULTI_DOMAIN
    training = Training.GRADIENT
    input_spec = VolumeSpec()
    output_spec = VolumeSpec()
    paper = (
        "Choi, Choi, Kim, Ha, Kim, Choo. StarGAN: Unified Generative Adversarial Networks "
        "for Multi-Domain Image-to-Image Translation. CVPR 2018"
    )
    default_roi_size: ClassVar[tuple[int, int, int]] = (16, 16, 16)

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self._discriminator: ClassifyingDiscriminator | None = None

    # -- networks, sized from the domains ----------------------------------------------

    def build_network(self) -> torch.nn.Module:
        return ConditionedGenerator(1, self._domain_count(), self.options.hidden)

    @property
    def discriminator(self) -> ClassifyingDiscriminator:
        """Real/fake scores and domain logits (training only)."""
        if self._discriminator is None:
            count = self._domain_count()
            self._discriminator = ClassifyingDiscriminator(1, count, self.options.hidden)
        return self._discriminator

    def _domain_count(self) -> int:
        if not self.domains:
            raise OptionsError(
                f"method {self.id!r} has no domains: train it, or load a trained model"
            )
        return len(self.domains)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        # without domains there is no network yet (the model folder sizes a method
        # before it learns its domains)
        return super().state_tensors() if self.domains else {}

    # -- the condition -----------------------------------------------------------------

    def check_condition(self, condition: TargetDomain) -> None:
        for field in ("target_domain", "source_domain"):
            name = getattr(condition, field)
            if name is not None and name not in self.domain_names:
                known = list(self.domain_names) or "none: the method has not been trained"
                raise OptionsError(
                    f"method {self.id!r} has no domain {name!r}; {field} must be one of "
                    f"its domains: {known}"
                )

    def input_domain(self, condition: TargetDomain) -> str | None:
        return condition.source_domain

    def outputs(self, condition: TargetDomain) -> tuple[Output, ...]:
        if condition.target_domain is not None:
            return (self._output("", condition.target_domain),)
        self._domain_count()
        return tuple(self._output(name, name) for name in self.domain_names)

    def _output(self, name: str, domain: str) -> Output:
        spec = self.domain(domain).volume_spec()
        return Output(name, spec, domain=domain, condition={"target_domain": domain})

    def predict(
        self, image: MetaTensor, context: PredictContext[TargetDomain]
    ) -> torch.Tensor | Mapping[str, torch.Tensor]:
        if context.condition.target_domain is not None:
            return super().predict(image, context)
        outputs = {}
        for name in self.domain_names:
            condition = context.condition.model_copy(update={"target_domain": name})
            one = super().predict(image, dataclasses.replace(context, condition=condition))
            outputs[name] = cast("torch.Tensor", one)
        return outputs

    def forward(self, windows: torch.Tensor, condition: TargetDomain) -> torch.Tensor:
        index = self.domain_names.index(str(condition.target_domain))
        labels = torch.full((windows.shape[0],), index, dtype=torch.int64, device=windows.device)
        output: torch.Tensor = self.network(windows, labels)
        return output

    # -- training ----------------------------------------------------------------------

    def training_modules(self) -> dict[str, torch.nn.Module]:
        return {"generator": self.network, "discriminator": self.discriminator}

    def configure_training(self, trainer: TrainerAPI) -> None:
        rate = self.options.learning_rate
        for name in ("generator", "discriminator"):
            parameters = trainer.modules[name].parameters()
            trainer.add_optimizer(name, torch.optim.Adam(parameters, lr=rate, betas=(0.5, 0.999)))

    def training_step(self, batch: MultiDomainBatch, trainer: TrainerAPI) -> dict[str, float]:
        real, labels = batch["image"], batch["domain"]
        generator, discriminator = trainer.modules["generator"], trainer.modules["discriminator"]
        # a random other domain per patch (torch's generator is reseeded every step)
        shift = torch.randint(1, len(self.domains), labels.shape, device=labels.device)
        target = (labels + shift) % len(self.domains)
        weights = self.options
        # discriminator: real patches are real and of their domain, translations are fake
        with trainer.autocast():
            fake = generator(real, target)
            real_scores, real_logits = discriminator(real)
            fake_scores, _ = discriminator(fake.detach())
        loss_d = (
            least_squares(real_scores, 1.0)
            + least_squares(fake_scores, 0.0)
            + weights.classification_weight * F.cross_entropy(real_logits.float(), labels)
        )
        trainer.backward(loss_d, "discriminator")
        trainer.step("discriminator")
        # generator: fool the critic, be classified as the target, and come back
        with trainer.autocast():
            fooled, fake_logits = discriminator(fake)
            back = generator(fake, labels)
        adversarial = least_squares(fooled, 1.0)
        classification = F.cross_entropy(fake_logits.float(), target)
        reconstruction = F.l1_loss(back.float(), real)
        loss_g = (
            adversarial
            + weights.classification_weight * classification
            + weights.reconstruction_weight * reconstruction
        )
        trainer.backward(loss_g, "generator")
        trainer.step("generator")
        return {
            "d": float(loss_d.detach()),
            "g_adversarial": float(adversarial.detach()),
            "g_classification": float(classification.detach()),
            "g_reconstruction": float(reconstruction.detach()),
        }
