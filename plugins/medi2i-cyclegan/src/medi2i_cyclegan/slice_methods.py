"""CycleGAN and DiscoGAN in 2.5D: the papers' 2D networks on axial slices.

``cyclegan-2.5d`` and ``discogan-2.5d`` train and predict exactly as their 3D
counterparts (same losses, pools, schedules, directions and intensities); only the
networks differ: the paper's 2D generator and discriminator run on every axial slice of
a patch, with ``context_slices`` neighbouring slices as input channels
(:mod:`medi2i_cyclegan.slices`). The defaults are the papers' widths and image sizes
(64 first-layer features; 256² for CycleGAN with 9 residual blocks, 64² for DiscoGAN).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from pydantic import Field, field_validator

from medi2i_cyclegan.cyclegan import CycleGAN, CycleGANOptions
from medi2i_cyclegan.discogan import DiscoGAN, DiscoGANOptions
from medi2i_cyclegan.resnet import SpatialDims
from medi2i_cyclegan.slices import SliceDiscriminator, SliceGenerator


def _odd(value: int) -> int:
    if value % 2 == 0:
        raise ValueError(f"context_slices must be odd (centred on a slice), got {value}")
    return value


class CycleGAN25DOptions(CycleGANOptions):
    """Options of :class:`CycleGAN25D`; the others are those of
    :class:`~medi2i_cyclegan.cyclegan.CycleGANOptions`.

    Attributes:
        context_slices: Axial slices per 2D input, odd: the slice translated and
            ``context_slices // 2`` neighbours on each side.
        roi_size: Window size; x and y are the 2D image size (paper: 256²), z the
            slices translated per window.
        generator_filters: Features of the generator's first layer (paper: 64).
        residual_blocks: Residual blocks (paper: 9 at 256²).
        discriminator_filters: Features of the PatchGAN's first layer (paper: 64).
        outer_kernel: Width of the 2D generator's first and last convolution (paper: 7);
            of a per-axis value, the first two are used.
    """

    context_slices: int = Field(default=3, ge=1)
    roi_size: tuple[int, int, int] = (256, 256, 16)
    generator_filters: int = Field(default=64, ge=1)
    residual_blocks: int = Field(default=9, ge=0)
    discriminator_filters: int = Field(default=64, ge=1)

    def convolved_axes(self) -> tuple[int, ...]:
        """x and y: the 2D networks never convolve along z."""
        return self.roi_size[:2]

    @field_validator("context_slices")
    @classmethod
    def _odd_context(cls, value: int) -> int:
        return _odd(value)


class _OnSlices:
    """The 2.5D builders: the 3D method's networks in 2D, taking ``context_slices``
    slices as channels, applied slice by slice."""

    options: CycleGAN25DOptions | DiscoGAN25DOptions

    if TYPE_CHECKING:  # the 3D method's, next in the MRO

        def generator_network(self, *, in_channels: int, dims: SpatialDims) -> torch.nn.Module: ...

        def discriminator_network(
            self, *, in_channels: int, dims: SpatialDims
        ) -> torch.nn.Module: ...

    def build_generator(self) -> torch.nn.Module:
        count = self.options.context_slices
        return SliceGenerator(self.generator_network(in_channels=count, dims=2), count=count)

    def build_discriminator(self) -> torch.nn.Module:
        count = self.options.context_slices
        network = self.discriminator_network(in_channels=count, dims=2)
        return SliceDiscriminator(network, count=count)


class CycleGAN25D(_OnSlices, CycleGAN):
    """CycleGAN with the paper's 2D networks on axial slices and their neighbours.

    Example:
        >>> method = CycleGAN25D({"roi_size": (16, 16, 4), "generator_filters": 2,
        ...                       "residual_blocks": 1, "discriminator_filters": 2,
        ...                       "discriminator_layers": 2})
        >>> method.generator("a2b")(torch.zeros(1, 1, 16, 16, 4)).shape
        torch.Size([1, 1, 16, 16, 4])
    """

    id = "cyclegan-2.5d"
    Options: ClassVar[type[CycleGANOptions]] = CycleGAN25DOptions
    default_roi_size: ClassVar[tuple[int, int, int]] = (256, 256, 16)

    options: CycleGAN25DOptions


class DiscoGAN25DOptions(DiscoGANOptions):
    """Options of :class:`DiscoGAN25D`; the others are those of
    :class:`~medi2i_cyclegan.discogan.DiscoGANOptions`.

    Attributes:
        context_slices: Axial slices per 2D input, odd.
        roi_size: Window size; x and y are the 2D image size (paper: 64²), z the slices
            translated per window.
        generator_filters: Features of the generator's first layer (paper: 64).
        discriminator_filters: Features of the discriminator's first layer (paper: 64).
    """

    context_slices: int = Field(default=3, ge=1)
    roi_size: tuple[int, int, int] = (64, 64, 16)
    generator_filters: int = Field(default=64, ge=1)
    discriminator_filters: int = Field(default=64, ge=1)

    def convolved_axes(self) -> tuple[int, ...]:
        """x and y: the 2D networks never convolve along z."""
        return self.roi_size[:2]

    @field_validator("context_slices")
    @classmethod
    def _odd_context(cls, value: int) -> int:
        return _odd(value)


class DiscoGAN25D(_OnSlices, DiscoGAN):
    """DiscoGAN with the paper's 2D networks on axial slices and their neighbours.

    Example:
        >>> method = DiscoGAN25D({"roi_size": (16, 16, 4), "generator_filters": 2,
        ...                       "discriminator_filters": 2})
        >>> method.generator("b2a")(torch.zeros(1, 1, 16, 16, 4)).shape
        torch.Size([1, 1, 16, 16, 4])
    """

    id = "discogan-2.5d"
    Options: ClassVar[type[DiscoGANOptions]] = DiscoGAN25DOptions
    default_roi_size: ClassVar[tuple[int, int, int]] = (64, 64, 16)

    options: DiscoGAN25DOptions
