"""DiscoGAN in 3D (Kim, Cha, Kim, Lee and Kim, ICML 2017).

Two encoder-decoder generators without skips and two five-layer discriminators, learned
from unpaired volumes. Each generator's loss mixes the cross-entropy GAN loss (0.1) with
feature matching on the discriminator's features (0.9), and that adversarial part with
the MSE reconstruction of its input after the round trip: weight 0.01 for a first
curriculum phase, then 0.5. As in the authors' code, a step updates either the
discriminators (every third step) or the generators (the others), with Adam at 2e-4,
betas (0.5, 0.999) and weight decay 1e-5. See :mod:`medi2i_cyclegan.losses`.

What sets it apart from CycleGAN, as in the paper: no residual generator (a bottleneck
encoder-decoder), one logit per image rather than per patch, cross-entropy rather than
least squares plus feature matching, an MSE reconstruction mixed against the GAN terms
rather than an L1 cycle added to them, no image pool and no learning-rate decay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from pydantic import Field, model_validator

from medi2i_cyclegan.disco_networks import (
    DISCRIMINATOR_STAGES,
    DiscoDiscriminator,
    EncoderDecoderGenerator,
    final_kernel,
)
from medi2i_cyclegan.losses import (
    binary_discriminator,
    binary_gan,
    discogan_direction,
    feature_matching,
    reconstruction,
)
from medi2i_cyclegan.resnet import Norm, SpatialDims
from medi2i_cyclegan.two_way import TwoWayOptions, TwoWayTranslation

if TYPE_CHECKING:
    from medi2i import TrainerAPI, UnpairedBatch

PAPER = (
    "Kim T, Cha M, Kim H, Lee JK, Kim J. Learning to discover cross-domain relations with "
    "generative adversarial networks. In: Proceedings of the 34th International Conference "
    "on Machine Learning (ICML), PMLR 70, 2017, pp. 1857-1865. arXiv:1703.05192"
)


class DiscoGANOptions(TwoWayOptions):
    """Options of :class:`DiscoGAN`, with the paper's (and its code's) defaults.

    Attributes:
        generator_filters: Features of the generator's first layer (paper: 64; 3D: 32).
        generator_depth: Stride-2 stages down and up (paper: 4, 64 → 4 pixels);
            ``roi_size`` must be a multiple of ``2**generator_depth``.
        discriminator_filters: Features of the discriminator's first layer (paper: 64;
            3D: 32).
        norm: ``"batch"`` (the paper's) or ``"instance"``.
        feature_matching_weight: Share of feature matching in the adversarial loss; the
            GAN loss gets the rest (paper's code: 0.9 and 0.1).
        reconstruction_weight: Share of the reconstruction loss after the curriculum
            (paper's code: 0.5); the adversarial loss gets the rest.
        curriculum_reconstruction_weight: Share of the reconstruction loss during the
            curriculum (paper's code: 0.01, a strong GAN loss at first).
        curriculum_steps: Steps of the curriculum (paper's code: 10000).
        discriminator_interval: The discriminators are updated on every
            ``discriminator_interval``-th step (the first included), the generators on the
            others (paper's code: 3).
        weight_decay: Adam's weight decay of every network (paper's code: 1e-5).
    """

    roi_size: tuple[int, int, int] = (64, 64, 64)
    generator_filters: int = Field(default=32, ge=1)
    generator_depth: int = Field(default=4, ge=1)
    discriminator_filters: int = Field(default=32, ge=1)
    norm: Norm = "batch"
    feature_matching_weight: float = Field(default=0.9, ge=0.0, le=1.0)
    reconstruction_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    curriculum_reconstruction_weight: float = Field(default=0.01, ge=0.0, le=1.0)
    curriculum_steps: int = Field(default=10000, ge=0)
    discriminator_interval: int = Field(default=3, ge=2)
    weight_decay: float = Field(default=1e-5, ge=0.0)

    def reconstruction_weight_at(self, step: int) -> float:
        """The reconstruction share of step ``step`` (0-based).

        Example:
            >>> options = DiscoGANOptions(curriculum_steps=10)
            >>> options.reconstruction_weight_at(9), options.reconstruction_weight_at(10)
            (0.01, 0.5)
        """
        if step < self.curriculum_steps:
            return self.curriculum_reconstruction_weight
        return self.reconstruction_weight

    def updates_discriminators(self, step: int) -> bool:
        """Whether step ``step`` (0-based) updates the discriminators (else the
        generators)."""
        return step % self.discriminator_interval == 0

    def convolved_axes(self) -> tuple[int, ...]:
        """Window sizes along the axes the networks convolve (all three in 3D)."""
        return self.roi_size

    @model_validator(mode="after")
    def _window_fits_the_networks(self) -> DiscoGANOptions:
        multiple = 2 ** max(self.generator_depth, DISCRIMINATOR_STAGES)
        if any(size % multiple for size in self.convolved_axes()):
            raise ValueError(
                f"roi_size {self.roi_size} must be a multiple of {multiple} in every axis "
                f"(2**generator_depth, and the discriminator's {DISCRIMINATOR_STAGES} "
                "stride-2 stages)"
            )
        return self


class DiscoGAN(TwoWayTranslation[DiscoGANOptions]):
    """DiscoGAN in 3D: encoder-decoder generators, five-layer discriminators, GAN +
    feature matching mixed against an MSE reconstruction.

    Example:
        >>> method = DiscoGAN({"roi_size": (16, 16, 16), "generator_filters": 4,
        ...                    "discriminator_filters": 4})
        >>> method.generator("a2b")(torch.zeros(2, 1, 16, 16, 16)).shape
        torch.Size([2, 1, 16, 16, 16])
    """

    id = "discogan"
    version = "0.1.0"
    paper = PAPER
    Options: ClassVar[type[DiscoGANOptions]] = DiscoGANOptions

    def build_generator(self) -> torch.nn.Module:
        return self.generator_network(in_channels=1, dims=3)

    def build_discriminator(self) -> torch.nn.Module:
        return self.discriminator_network(in_channels=1, dims=3)

    def generator_network(self, *, in_channels: int, dims: SpatialDims) -> torch.nn.Module:
        """The paper's encoder-decoder in ``dims`` dimensions (3, or 2 for 2.5D)."""
        options = self.options
        return EncoderDecoderGenerator(
            in_channels=in_channels,
            out_channels=1,
            filters=options.generator_filters,
            depth=options.generator_depth,
            norm=options.norm,
            dims=dims,
        )

    def discriminator_network(self, *, in_channels: int, dims: SpatialDims) -> torch.nn.Module:
        """The paper's five-layer discriminator in ``dims`` dimensions."""
        options = self.options
        return DiscoDiscriminator(
            in_channels=in_channels,
            filters=options.discriminator_filters,
            kernel=final_kernel(options.roi_size[:dims]),
            norm=options.norm,
            dims=dims,
        )

    # -- training ----------------------------------------------------------------------

    def configure_training(self, trainer: TrainerAPI) -> None:
        """One Adam for both generators, one for both discriminators, with the paper's
        code's settings (lr 2e-4, betas (0.5, 0.999), weight decay 1e-5)."""
        options = self.options
        for name, keys in (
            ("generators", ("generator_a2b", "generator_b2a")),
            ("discriminators", ("discriminator_a", "discriminator_b")),
        ):
            parameters = [p for key in keys for p in trainer.modules[key].parameters()]
            optimizer = torch.optim.Adam(
                parameters,
                lr=options.learning_rate,
                betas=options.betas,
                weight_decay=options.weight_decay,
            )
            trainer.add_optimizer(name, optimizer)

    def training_step(self, batch: UnpairedBatch, trainer: TrainerAPI) -> dict[str, float]:
        """Update the discriminators or the generators (see
        :meth:`DiscoGANOptions.updates_discriminators`)."""
        if self.options.updates_discriminators(trainer.step_index):
            return self._discriminator_step(batch, trainer)
        return self._generator_step(batch, trainer)

    def _discriminator_step(self, batch: UnpairedBatch, trainer: TrainerAPI) -> dict[str, float]:
        real_a, real_b = batch["a"], batch["b"]
        g_ab, g_ba = trainer.modules["generator_a2b"], trainer.modules["generator_b2a"]
        d_a, d_b = trainer.modules["discriminator_a"], trainer.modules["discriminator_b"]
        with torch.no_grad(), trainer.autocast():
            fake_b, fake_a = g_ab(real_a), g_ba(real_b)
        with trainer.autocast():
            loss_a = binary_discriminator(d_a(real_a)[0], d_a(fake_a)[0])
            loss_b = binary_discriminator(d_b(real_b)[0], d_b(fake_b)[0])
        trainer.backward(loss_a + loss_b, "discriminators")
        trainer.step("discriminators")
        return {
            "discriminator_a": float(loss_a.detach()),
            "discriminator_b": float(loss_b.detach()),
        }

    def _generator_step(self, batch: UnpairedBatch, trainer: TrainerAPI) -> dict[str, float]:
        options = self.options
        share = options.reconstruction_weight_at(trainer.step_index)
        real_a, real_b = batch["a"], batch["b"]
        g_ab, g_ba = trainer.modules["generator_a2b"], trainer.modules["generator_b2a"]
        d_a, d_b = trainer.modules["discriminator_a"], trainer.modules["discriminator_b"]
        with trainer.autocast():
            fake_b, fake_a = g_ab(real_a), g_ba(real_b)
            back_a, back_b = g_ba(fake_b), g_ab(fake_a)
            logits_b, fake_features_b = d_b(fake_b)
            logits_a, fake_features_a = d_a(fake_a)
            real_features_b = d_b(real_b)[1]
            real_features_a = d_a(real_a)[1]
        trainer.watch_generated("fake_b", fake_b, real_b)
        trainer.watch_generated("fake_a", fake_a, real_a)
        terms: dict[str, torch.Tensor] = {
            "gan_b": binary_gan(logits_b, real=True),
            "gan_a": binary_gan(logits_a, real=True),
            "feature_matching_b": feature_matching(real_features_b, fake_features_b),
            "feature_matching_a": feature_matching(real_features_a, fake_features_a),
            "reconstruction_a": reconstruction(back_a, real_a),
            "reconstruction_b": reconstruction(back_b, real_b),
        }
        # G: a → b is judged by D_b and must bring a back; F: b → a by D_a and brings b
        total = discogan_direction(
            gan=terms["gan_b"],
            features=terms["feature_matching_b"],
            reconstructed=terms["reconstruction_a"],
            feature_matching_weight=options.feature_matching_weight,
            reconstruction_weight=share,
        ) + discogan_direction(
            gan=terms["gan_a"],
            features=terms["feature_matching_a"],
            reconstructed=terms["reconstruction_b"],
            feature_matching_weight=options.feature_matching_weight,
            reconstruction_weight=share,
        )
        trainer.backward(total, "generators")
        trainer.step("generators")
        return {name: float(value.detach()) for name, value in terms.items()}
