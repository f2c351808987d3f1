"""Pix2Pix for MR to synthetic CT, in 3D (``pix2pix``) and 2.5D (``pix2pix-2.5d``).

Both methods share everything but their networks:

* :meth:`Pix2Pix.preprocess` normalizes each MR volume as a whole (its foreground's
  0.5 and 99.5 percentiles to [-1, 1] by default);
* :meth:`Pix2Pix.preprocess_target` maps training CT from HU to [-1, 1], the range of
  the generator's tanh;
* the generator runs through the core's sliding window; the discriminator is only
  used in training;
* :meth:`Pix2Pix.postprocess` maps the output back to HU, clipped to [-1024, 3071],
  and sets air outside the input's body (``body_contour``).

A trained model keeps the generator only: prediction needs nothing else, and the
trainer's checkpoints keep the discriminator (with both optimizers) for resuming.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import torch
from pydantic import BaseModel

from medi2i import (
    HU_MAX,
    HU_MIN,
    DataKind,
    ModelFormatError,
    MRToCTIntensities,
    NoCondition,
    PatchNetworkMethod,
    SpatialPlan,
    Task,
    Training,
    VolumeSpec,
)
from medi2i_pix2pix.adversarial import DISCRIMINATOR, GENERATOR, adversarial_step
from medi2i_pix2pix.discriminator import PatchDiscriminator
from medi2i_pix2pix.generator import UNetGenerator
from medi2i_pix2pix.layers import SpatialDims
from medi2i_pix2pix.options import Pix2Pix25DOptions, Pix2PixOptions
from medi2i_pix2pix.residual import ResidualUNetGenerator
from medi2i_pix2pix.slices import SliceStackDiscriminator, SliceStackGenerator

if TYPE_CHECKING:
    from medi2i import TrainerAPI

PAPER = (
    "Isola P, Zhu J-Y, Zhou T, Efros AA. Image-to-image translation with conditional "
    "adversarial networks. In: Proceedings of the IEEE Conference on Computer Vision and "
    "Pattern Recognition (CVPR), 2017, pp. 1125-1134. arXiv:1611.07004"
)


def build_generator(
    options: Pix2PixOptions, *, dims: SpatialDims, in_channels: int, out_channels: int
) -> torch.nn.Module:
    """The generator ``options.generator`` names, in ``dims`` dimensions."""
    if options.generator == "residual-unet":
        return ResidualUNetGenerator(
            dims=dims,
            in_channels=in_channels,
            out_channels=out_channels,
            filters=options.generator_filters,
            depth=options.generator_depth,
            norm=options.norm,
        )
    return UNetGenerator(
        dims=dims,
        in_channels=in_channels,
        out_channels=out_channels,
        filters=options.generator_filters,
        depth=options.generator_depth,
        norm=options.norm,
        dropout=options.dropout,
        full_resolution=options.generator_full_resolution,
    )


class Pix2Pix(MRToCTIntensities, PatchNetworkMethod[Pix2PixOptions, NoCondition]):
    """Pix2Pix in 3D: U-Net generator and PatchGAN discriminator, GAN + 100·L1 loss.

    Example:
        >>> method = Pix2Pix({"roi_size": (16, 16, 16), "generator_filters": 4,
        ...                   "generator_depth": 3, "discriminator_filters": 4,
        ...                   "discriminator_layers": 2})
        >>> sorted(method.training_modules())
        ['discriminator', 'generator']
    """

    id = "pix2pix"
    version = "0.1.0"
    tasks = (Task.TRANSLATION,)
    data = DataKind.PAIRED
    training = Training.GRADIENT
    input_spec = VolumeSpec(modality="MR", units="arbitrary")
    output_spec = VolumeSpec(modality="CT", units="HU", value_range=(HU_MIN, HU_MAX))
    paper = PAPER
    default_roi_size: ClassVar[tuple[int, int, int]] = (64, 64, 64)

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self._discriminator: torch.nn.Module | None = None
        self._optimizers: list[torch.optim.Optimizer] = []

    # -- networks ----------------------------------------------------------------------

    def build_network(self) -> torch.nn.Module:
        """The 3D U-Net generator."""
        return build_generator(
            self.options,
            dims=3,
            in_channels=self.input_spec.channels,
            out_channels=self.output_spec.channels,
        )

    def build_discriminator(self) -> torch.nn.Module:
        """The 3D conditional PatchGAN, judging (MR, CT) pairs."""
        options = self.options
        return PatchDiscriminator(
            dims=3,
            in_channels=self.input_spec.channels + self.output_spec.channels,
            filters=options.discriminator_filters,
            layers=options.discriminator_layers,
            norm=options.norm,
        )

    @property
    def discriminator(self) -> torch.nn.Module:
        """The discriminator, built on first use (prediction never builds it)."""
        if self._discriminator is None:
            self._discriminator = self.build_discriminator()
        return self._discriminator

    def spatial_plan(self) -> SpatialPlan:
        """RAS orientation, so the networks always see anatomy the same way round (and
        the 2.5D variant's last axis is axial), and ``options.spacing`` when set."""
        return SpatialPlan(orientation="RAS", spacing=self.options.spacing)

    # -- state -------------------------------------------------------------------------

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The generator's weights (the discriminator is not needed to predict)."""
        return {f"{GENERATOR}.{k}": v for k, v in self.network.state_dict().items()}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore the generator from what :meth:`state_tensors` returned."""
        weights = {k.removeprefix(f"{GENERATOR}."): v for k, v in tensors.items()}
        try:
            self.network.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise ModelFormatError(
                f"weights do not fit method {self.id!r} with these options: {exc}"
            ) from exc

    # -- training ----------------------------------------------------------------------

    def training_modules(self) -> dict[str, torch.nn.Module]:
        return {GENERATOR: self.network, DISCRIMINATOR: self.discriminator}

    def configure_training(self, trainer: TrainerAPI) -> None:
        """One Adam optimizer per network (paper: lr 2e-4, betas 0.5 and 0.999); the
        rate follows ``options.lr_schedule``, set before every step from the trainer's
        step count (so a resumed run follows it exactly). Warns when an explicit
        ``options.schedule_steps`` ends the schedule before the run ends."""
        self._warn_if_the_schedule_ends_early(trainer.total_steps)
        self._optimizers = []
        for name in (GENERATOR, DISCRIMINATOR):
            optimizer = torch.optim.Adam(
                trainer.modules[name].parameters(),
                lr=self.options.learning_rate,
                betas=self.options.betas,
            )
            trainer.add_optimizer(name, optimizer)
            self._optimizers.append(optimizer)

    def _warn_if_the_schedule_ends_early(self, total_steps: int) -> None:
        options = self.options
        if options.lr_schedule != "linear" or options.schedule_steps is None:
            return
        if options.schedule_steps < total_steps:
            logging.getLogger("medi2i.training").warning(
                "method option schedule_steps %d is below training.steps %d: the "
                "learning rate is 0 for the last %d steps; leave schedule_steps unset "
                "(null) to span the run",
                options.schedule_steps,
                total_steps,
                total_steps - options.schedule_steps,
            )

    def training_step(
        self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
    ) -> dict[str, float]:
        """Update the discriminator, then the generator (see
        :func:`medi2i_pix2pix.adversarial.adversarial_step`)."""
        rate = self.options.learning_rate_at(trainer.step_index, trainer.total_steps)
        for optimizer in self._optimizers:
            for group in optimizer.param_groups:
                group["lr"] = rate
        return adversarial_step(
            batch, trainer, l1_weight=self.options.l1_weight, kind=self.options.gan_loss
        )


class Pix2Pix25D(Pix2Pix):
    """Pix2Pix in 2.5D: the paper's 2D networks on axial slices with neighbouring slices.

    Example:
        >>> method = Pix2Pix25D({"roi_size": (16, 16, 4), "generator_filters": 4,
        ...                     "generator_depth": 3, "discriminator_filters": 4,
        ...                     "discriminator_layers": 2})
        >>> method.network(torch.zeros(1, 1, 16, 16, 4)).shape
        torch.Size([1, 1, 16, 16, 4])
    """

    id = "pix2pix-2.5d"
    Options: ClassVar[type[Pix2PixOptions]] = Pix2Pix25DOptions
    default_roi_size: ClassVar[tuple[int, int, int]] = (256, 256, 16)

    options: Pix2Pix25DOptions

    def build_network(self) -> torch.nn.Module:
        """The 2D generator ``options.generator`` names, slice by slice with context
        slices."""
        options = self.options
        generator = build_generator(
            options,
            dims=2,
            in_channels=options.context_slices,
            out_channels=self.output_spec.channels,
        )
        return SliceStackGenerator(generator, slices=options.context_slices)

    def build_discriminator(self) -> torch.nn.Module:
        """The paper's 2D PatchGAN, judging each CT slice with its MR context slices."""
        options = self.options
        discriminator = PatchDiscriminator(
            dims=2,
            in_channels=options.context_slices + self.output_spec.channels,
            filters=options.discriminator_filters,
            layers=options.discriminator_layers,
            norm=options.norm,
        )
        return SliceStackDiscriminator(discriminator, slices=options.context_slices)
