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

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field

from medi2i.intensity import DomainIntensities
from medi2i.method import (
    DataKind,
    MultiDomainBatch,
    Options,
    Task,
    TrainerAPI,
    Training,
    VolumeSpec,
)
from medi2i.multi_domain import TargetDomain, TargetDomainOutputs
from medi2i.patch_network import PatchNetworkMethod
from medi2i.testing.tiny_networks import (
    ClassifyingDiscriminator,
    ConditionedGenerator,
    least_squares,
)

if TYPE_CHECKING:
    pass


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


class ExampleStar(
    TargetDomainOutputs, DomainIntensities, PatchNetworkMethod[StarOptions, TargetDomain]
):
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
        return ConditionedGenerator(1, self.require_domains(), self.options.hidden)

    @property
    def discriminator(self) -> ClassifyingDiscriminator:
        """Real/fake scores and domain logits (training only)."""
        if self._discriminator is None:
            count = self.require_domains()
            self._discriminator = ClassifyingDiscriminator(1, count, self.options.hidden)
        return self._discriminator

    def state_tensors(self) -> dict[str, torch.Tensor]:
        # without domains there is no network yet (the model folder sizes a method
        # before it learns its domains)
        return super().state_tensors() if self.domains else {}

    def forward(self, windows: torch.Tensor, condition: TargetDomain) -> torch.Tensor:
        output: torch.Tensor = self.network(windows, self.target_labels(windows, condition))
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
