"""SRGAN in 3D: an SRResNet generator trained against a discriminator, slice axis refined.

Ledig et al. (2017), "Photo-realistic single image super-resolution using a generative
adversarial network" (CVPR). The generator (SRResNet) is a first convolution with PReLU,
``B`` residual blocks (convolution, batch normalization, PReLU, convolution, batch
normalization, added to the block's input), a convolution with batch normalization
closing the body with a long skip from the first, a sub-pixel upsampler with PReLU and a
last convolution. The discriminator is a stack of 3×3 convolutions with leaky ReLU
(slope 0.2) and batch normalization (not on the first), the feature maps doubling every
second layer while a stride of 2 halves the size, then two dense layers with a leaky
ReLU between them and one logit. The generator minimizes a content loss plus
``adversarial_weight`` (the paper's 1e-3) times ``-log D(G(x))``; the discriminator the
binary cross-entropy of real (the thin-slice truth) against generated patches.

As in :mod:`~medi2i_super_resolution.edsr`, only the slice axis is refined: thick slices
in, ``factor`` times as many thin ones out (a sub-pixel shuffle along the slice axis),
on the ``"centres"`` grid; the grids, intensity scaling and clipping are EDSR's.

**The content loss.** The paper's perceptual loss compares feature maps of VGG19
trained on ImageNet photographs. medi2i downloads nothing at run time, ships no
ImageNet weights, and a 2D photograph network has no 3D MR counterpart, so the
perceptual option uses a network the project trains itself: the discriminator being
trained beside the generator. ``content_loss="features"`` is the mean L1 distance of the
discriminator's feature maps (after each of its convolution pairs) between the generated
and the true patches, plus ``pixel_weight`` times the pixel L1 that keeps intensities in
place (feature matching, Salimans et al. 2016, as pix2pixHD uses it). ``"l1"`` is the
plain pixel L1 content loss, the comparison the benchmark makes.

**Steps without the adversary.** The paper starts the generator from an SRResNet trained
with a pixel loss alone; ``content_only_steps`` does that within one run: for the first
steps the generator learns from the pixel L1 only and the discriminator is not trained.

Options beyond the paper, for the CPU budget and MR: 3×3×3 kernels throughout (the paper
opens and closes with 9×9), and the interpolation skip of EDSR (the generator adds the
linear interpolation between slices and learns the missing detail).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, field_validator

from medi2i import check_betas
from medi2i_super_resolution.edsr import (
    Edsr,
    SliceUpsamplingNetwork,
    SliceUpsamplingOptions,
    checked_pair,
)

if TYPE_CHECKING:
    from medi2i import TrainerAPI

GENERATOR = "network"
DISCRIMINATOR = "discriminator"
ContentLoss = Literal["l1", "features"]
LEAKY_SLOPE = 0.2


class SrganOptions(SliceUpsamplingOptions):
    """Options of :class:`Srgan` (the paper's generator has 64 features and 16 blocks,
    its discriminator 64 to 512 feature maps in 8 layers; the defaults are smaller, for a
    CPU): the generator's of :class:`~medi2i_super_resolution.edsr.SliceUpsamplingOptions`
    (``learning_rate`` serving both networks) and

    Attributes:
        batch_norm: Batch normalization in the generator (the paper's); ``False`` drops
            it, as EDSR does.
        content_loss: ``"l1"``: pixel L1; ``"features"``: L1 between the discriminator's
            feature maps of the generated and the true patches, plus ``pixel_weight``
            times the pixel L1 (the module docstring says why not VGG).
        pixel_weight: Weight of the pixel L1 in the ``"features"`` content loss.
        adversarial_weight: Weight of the generator's adversarial loss (the paper's 1e-3).
        content_only_steps: First steps trained on the pixel L1 alone, the discriminator
            untouched (the paper's SRResNet initialisation).
        discriminator_filters: Feature maps of the discriminator's first layers.
        discriminator_layers: Pairs of discriminator convolutions after the first (each
            pair: stride 1, then stride 2 with twice the feature maps); the paper has 3
            pairs after its first two layers.
        betas: Adam's betas (the paper's 0.9 and 0.999), each in [0, 1).
    """

    batch_norm: bool = True
    content_loss: ContentLoss = "l1"
    pixel_weight: float = Field(default=1.0, ge=0.0)
    adversarial_weight: float = Field(default=1e-3, ge=0.0)
    content_only_steps: int = Field(default=0, ge=0)
    discriminator_filters: int = Field(default=16, ge=1)
    discriminator_layers: int = Field(default=3, ge=1, le=5)
    betas: tuple[float, float] = (0.9, 0.999)

    @field_validator("betas")
    @classmethod
    def _decay_rates(cls, value: tuple[float, float]) -> tuple[float, float]:
        return check_betas(value)


def _conv(inputs: int, outputs: int, stride: int = 1) -> torch.nn.Conv3d:
    return torch.nn.Conv3d(inputs, outputs, 3, stride=stride, padding=1, padding_mode="replicate")


def _norm(features: int, enabled: bool) -> torch.nn.Module:
    return torch.nn.BatchNorm3d(features) if enabled else torch.nn.Identity()


class SrResidualBlock(torch.nn.Module):
    """Convolution, batch norm, PReLU, convolution, batch norm; added to the input."""

    def __init__(self, features: int, batch_norm: bool) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            _conv(features, features),
            _norm(features, batch_norm),
            torch.nn.PReLU(features),
            _conv(features, features),
            _norm(features, batch_norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual: torch.Tensor = self.body(x)
        return x + residual


class SrResNet(SliceUpsamplingNetwork):
    """The SRGAN generator in 3D with a slice-axis sub-pixel upsampler.

    Example:
        >>> net = SrResNet(factor=2, features=4, blocks=1, batch_norm=True, skip=True)
        >>> net(torch.zeros(2, 1, 6, 6, 3)).shape
        torch.Size([2, 1, 6, 6, 6])
    """

    def __init__(
        self, *, factor: int, features: int, blocks: int, batch_norm: bool, skip: bool
    ) -> None:
        super().__init__(
            factor=factor,
            features=features,
            head=torch.nn.Sequential(_conv(1, features), torch.nn.PReLU(features)),
            body=torch.nn.Sequential(
                *(SrResidualBlock(features, batch_norm) for _ in range(blocks)),
                _conv(features, features),
                _norm(features, batch_norm),
            ),
            after_shuffle=torch.nn.PReLU(features),
            skip=skip,
        )


class SrDiscriminator(torch.nn.Module):
    """The SRGAN discriminator in 3D: one logit per patch, and on request the feature
    maps after the first layer and after each pair of layers.

    Example:
        >>> net = SrDiscriminator(filters=4, layers=2)
        >>> logits, maps = net(torch.zeros(2, 1, 16, 16, 16), with_features=True)
        >>> logits.shape, len(maps)
        (torch.Size([2, 1]), 3)
    """

    def __init__(self, *, filters: int, layers: int) -> None:
        super().__init__()
        self.first = torch.nn.Sequential(
            _conv(1, filters), torch.nn.LeakyReLU(LEAKY_SLOPE, inplace=False)
        )
        pairs = []
        width = filters
        for _ in range(layers):
            wider = width * 2
            pairs.append(
                torch.nn.Sequential(
                    _conv(width, width),
                    torch.nn.BatchNorm3d(width),
                    torch.nn.LeakyReLU(LEAKY_SLOPE),
                    _conv(width, wider, stride=2),
                    torch.nn.BatchNorm3d(wider),
                    torch.nn.LeakyReLU(LEAKY_SLOPE),
                )
            )
            width = wider
        self.pairs = torch.nn.ModuleList(pairs)
        self.classifier = torch.nn.Sequential(
            torch.nn.AdaptiveAvgPool3d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(width, width * 2),
            torch.nn.LeakyReLU(LEAKY_SLOPE),
            torch.nn.Linear(width * 2, 1),
        )

    def forward(
        self, x: torch.Tensor, with_features: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        maps = [self.first(x)]
        for pair in self.pairs:
            maps.append(pair(maps[-1]))
        logits: torch.Tensor = self.classifier(maps[-1])
        return logits, maps if with_features else []


def real_or_fake(logits: torch.Tensor, *, real: bool) -> torch.Tensor:
    """Binary cross-entropy of the sigmoid of ``logits`` against one label (float32)."""
    values = logits.float()
    labels = torch.ones_like(values) if real else torch.zeros_like(values)
    return F.binary_cross_entropy_with_logits(values, labels)


class Srgan(Edsr):
    """SRGAN in 3D: thick slices in, ``factor`` times as many thin slices out, the
    generator trained against a discriminator.

    Example:
        >>> method = Srgan({"factor": 4, "features": 4, "blocks": 1})
        >>> method.output_scale
        (1.0, 1.0, 4.0)
    """

    id = "srgan"
    version = "0.1.0"
    Options = SrganOptions  # type: ignore[assignment]
    paper = (
        "Ledig C, Theis L, Huszár F, et al. Photo-realistic single image super-resolution "
        "using a generative adversarial network. CVPR 2017; feature matching: Salimans T "
        "et al. NeurIPS 2016"
    )

    options: SrganOptions  # type: ignore[assignment]

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self._discriminator: SrDiscriminator | None = None

    def build_network(self) -> torch.nn.Module:
        options = self.options
        return SrResNet(
            factor=options.factor,
            features=options.features,
            blocks=options.blocks,
            batch_norm=options.batch_norm,
            skip=options.interpolation_skip,
        )

    @property
    def discriminator(self) -> SrDiscriminator:
        """The discriminator, built on first use (prediction never builds it)."""
        if self._discriminator is None:
            self._discriminator = SrDiscriminator(
                filters=self.options.discriminator_filters,
                layers=self.options.discriminator_layers,
            )
        return self._discriminator

    # -- training ----------------------------------------------------------------------

    def training_modules(self) -> dict[str, torch.nn.Module]:
        """The generator (saved in the model) and the discriminator (checkpoints only)."""
        return {GENERATOR: self.network, DISCRIMINATOR: self.discriminator}

    def configure_training(self, trainer: TrainerAPI) -> None:
        """One Adam optimizer per network, with ``learning_rate`` and ``betas``."""
        for name in (GENERATOR, DISCRIMINATOR):
            optimizer = torch.optim.Adam(
                trainer.modules[name].parameters(),
                lr=self.options.learning_rate,
                betas=self.options.betas,
            )
            trainer.add_optimizer(name, optimizer)

    def training_step(
        self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
    ) -> dict[str, float]:
        """Update the discriminator, then the generator (after ``content_only_steps``;
        before, the generator alone on the pixel L1).

        Raises:
            InputError: The target patch is not the source patch with ``factor`` times
                as many slices (array axis 2).
        """
        options = self.options
        source, target = checked_pair(self.id, batch, options.factor)
        generator = trainer.modules[GENERATOR]
        discriminator = trainer.modules[DISCRIMINATOR]
        with trainer.autocast():
            fake = generator(source)
        trainer.watch_generated("fake", fake, target)
        pixel = F.l1_loss(fake.float(), target.float())
        if trainer.step_index < options.content_only_steps:
            trainer.backward(pixel, GENERATOR)
            trainer.step(GENERATOR)
            return {"pixel_l1": float(pixel.detach())}

        with trainer.autocast():
            judged_real, _ = discriminator(target)
            judged_fake, _ = discriminator(fake.detach())
        discriminator_loss = real_or_fake(judged_real, real=True) + real_or_fake(
            judged_fake, real=False
        )
        trainer.backward(discriminator_loss, DISCRIMINATOR)
        trainer.step(DISCRIMINATOR)

        features_wanted = options.content_loss == "features"
        with trainer.autocast():
            judged, fake_maps = discriminator(fake, with_features=features_wanted)
            if features_wanted:
                with torch.no_grad():
                    _, real_maps = discriminator(target, with_features=True)
        adversarial = real_or_fake(judged, real=True)
        losses = {
            "discriminator": float(discriminator_loss.detach()),
            "pixel_l1": float(pixel.detach()),
        }
        if features_wanted:
            matching = torch.stack(
                [F.l1_loss(f.float(), r.float()) for f, r in zip(fake_maps, real_maps, strict=True)]
            ).mean()
            content = matching + options.pixel_weight * pixel
            losses["feature_l1"] = float(matching.detach())
        else:
            content = pixel
        trainer.backward(content + options.adversarial_weight * adversarial, GENERATOR)
        trainer.step(GENERATOR)
        losses["generator_adversarial"] = float(adversarial.detach())
        return losses
