"""Options of the Pix2Pix methods, with the paper's defaults (Isola et al. 2017).

Where 3D forces a change from the paper (2D, 256² images, 64 first-stage features,
eight stages), the 3D defaults halve the features and use six stages on 64³ windows;
the 2.5D variant keeps the paper's 2D networks unchanged.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medi2i import (
    MRForeground,
    MRNormalization,
    Options,
    check_betas,
    check_percentiles,
    check_spacing,
)
from medi2i_pix2pix.adversarial import GanLoss
from medi2i_pix2pix.discriminator import smallest_input
from medi2i_pix2pix.layers import Norm


class Pix2PixOptions(Options):
    """Options of the 3D :class:`~medi2i_pix2pix.method.Pix2Pix`.

    Attributes:
        roi_size: Training patch size and sliding-window size in voxels (x, y, z).
        generator_filters: Features of the generator's first stage (paper: 64; 3D: 32).
        generator_depth: Stride-2 stages of the generator U-Net (paper: 8 for 256²
            images, a 1-pixel bottleneck; 3D: 6 for 64³ windows). ``2**depth`` may not
            exceed the window along the axes the generator convolves.
        generator: ``"paper"`` (the paper's U-Net) or ``"residual-unet"`` (nnU-Net's
            residual encoder U-Net, see :mod:`medi2i_pix2pix.residual`; not in the paper).
            For ``residual-unet``, ``generator_filters`` are the full-resolution level's
            features and ``generator_depth`` the stride-2 levels below it.
        generator_full_resolution: Add a full-resolution level to the generator (a
            3-wide convolution of ``generator_filters`` features before the first stride-2
            stage, skipped to a 3-wide output convolution), so the output is not made
            from half-resolution features by one transposed convolution (not in the
            paper; off by default).
        discriminator_filters: Features of the discriminator's first stage (paper: 64;
            3D: 32).
        discriminator_layers: Stride-2 stages of the PatchGAN discriminator (paper: 3,
            the 70×70 PatchGAN); patches must be at least ``3 · 2**layers`` voxels wide.
        norm: ``"instance"`` normalization (what the paper's batch normalization with
            batch size 1 amounts to) or ``"batch"`` normalization.
        dropout: Dropout probability in the generator's first three decoder stages
            (paper: 0.5), in [0, 1). Only active in training; prediction is
            deterministic (the paper also kept dropout on at test time).
        gan_loss: ``"vanilla"`` (the paper's cross-entropy GAN) or ``"lsgan"``
            (least squares).
        l1_weight: λ, the weight of the L1 term against the GAN term (paper: 100).
        learning_rate: Adam learning rate of both networks (paper: 2e-4).
        lr_schedule: ``"linear"`` (the paper's: constant for the first half of
            ``schedule_steps``, then a linear decay to zero over the second half) or
            ``"constant"``.
        schedule_steps: Training steps the schedule spans; ``None`` (the default): the
            run's ``training.steps`` (the paper: 200 epochs, decaying over the last
            100). A value below ``training.steps`` leaves the rest of the run at rate 0
            (a warning says so).
        betas: Adam's moment decay rates (paper: 0.5, 0.999).
        spacing: Voxel spacing in mm to resample every volume to, or ``None`` to keep
            each volume's own spacing.
        mr_normalization: ``"percentile"`` (the foreground's ``mr_percentiles`` mapped
            to [-1, 1], clipped, like the paper's images scaled to [-1, 1]) or
            ``"zscore"`` (foreground mean and standard deviation).
        mr_percentiles: Lower and upper percentile (0-100) of the ``"percentile"``
            scheme.
        mr_foreground: Which voxels the normalization's statistics come from:
            ``"body"``, the input's body (:func:`medi2i.body_mask`), so the air around
            the body does not move them; ``"above-mean"``, those brighter than the
            volume's mean, which move with the field of view (the rule of models saved
            before this option existed).
        body_contour: Set every output voxel outside the input MR's body to air
            (-1000 HU, :data:`medi2i.intensity.AIR_HU`), with the body found by
            :func:`medi2i.body_mask` on the raw input (not in the paper). Models saved
            before this option existed get it on.
    """

    roi_size: tuple[int, int, int] = (64, 64, 64)
    generator_filters: int = Field(default=32, ge=1)
    generator_depth: int = Field(default=6, ge=2)
    generator: Literal["paper", "residual-unet"] = "paper"
    generator_full_resolution: bool = False
    discriminator_filters: int = Field(default=32, ge=1)
    discriminator_layers: int = Field(default=3, ge=1)
    norm: Norm = "instance"
    dropout: float = Field(default=0.5, ge=0.0, lt=1.0)
    gan_loss: GanLoss = "vanilla"
    l1_weight: float = Field(default=100.0, ge=0.0)
    learning_rate: float = Field(default=2e-4, gt=0.0)
    lr_schedule: Literal["linear", "constant"] = "linear"
    schedule_steps: int | None = Field(default=None, ge=1)
    betas: tuple[float, float] = (0.5, 0.999)
    spacing: tuple[float, float, float] | None = None
    mr_normalization: MRNormalization = "percentile"
    mr_percentiles: tuple[float, float] = (0.5, 99.5)
    mr_foreground: MRForeground = "body"
    body_contour: bool = True

    def learning_rate_at(self, step: int, total_steps: int) -> float:
        """The learning rate of step ``step`` (0-based) of a run of ``total_steps``
        under ``lr_schedule``.

        Example:
            >>> options = Pix2PixOptions(schedule_steps=100)
            >>> [options.learning_rate_at(k, 7) for k in (0, 49, 50, 75, 100)]
            [0.0002, 0.0002, 0.0002, 0.0001, 0.0]
            >>> [Pix2PixOptions().learning_rate_at(k, 1000) for k in (0, 500, 750)]
            [0.0002, 0.0002, 0.0001]
        """
        if self.lr_schedule == "constant":
            return self.learning_rate
        steps = self.schedule_steps or total_steps
        half = steps // 2
        remaining = (steps - step) / max(1, steps - half)
        return self.learning_rate * min(1.0, max(0.0, remaining))

    def convolved_axes(self) -> tuple[int, ...]:
        """Window sizes along the axes the networks convolve (all three in 3D)."""
        return self.roi_size

    @field_validator("betas")
    @classmethod
    def _decay_rates(cls, value: tuple[float, float]) -> tuple[float, float]:
        return check_betas(value)

    @field_validator("spacing")
    @classmethod
    def _positive_spacing(
        cls, value: tuple[float, float, float] | None
    ) -> tuple[float, float, float] | None:
        return check_spacing(value)

    @field_validator("mr_percentiles")
    @classmethod
    def _percentiles_ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        return check_percentiles(value)

    @model_validator(mode="after")
    def _full_resolution_needs_the_paper_generator(self) -> Pix2PixOptions:
        if self.generator_full_resolution and self.generator != "paper":
            raise ValueError(
                "generator_full_resolution adds a level to the paper's generator; the "
                f"{self.generator!r} generator already works at full resolution"
            )
        return self

    @model_validator(mode="after")
    def _window_fits_the_networks(self) -> Pix2PixOptions:
        if min(self.roi_size) < 1:
            raise ValueError(f"roi_size {self.roi_size} must be positive in every axis")
        window = min(self.convolved_axes())
        if 2**self.generator_depth > window:
            raise ValueError(
                f"generator_depth {self.generator_depth} halves the window 2**"
                f"{self.generator_depth} = {2**self.generator_depth} times, more than roi_size "
                f"{self.roi_size} allows; lower it or enlarge the window"
            )
        needed = smallest_input(self.discriminator_layers)
        if window < needed:
            raise ValueError(
                f"roi_size {self.roi_size} is too small for {self.discriminator_layers} "
                f"discriminator_layers (needs {needed} voxels); lower them or enlarge the window"
            )
        return self


class Pix2Pix25DOptions(Pix2PixOptions):
    """Options of :class:`~medi2i_pix2pix.method.Pix2Pix25D`: the paper's 2D networks
    on axial slices, with neighbouring slices as input channels.

    Attributes:
        context_slices: Axial slices per 2D input, odd: the slice translated and
            ``context_slices // 2`` neighbours on each side (replicated past the ends).
        roi_size: Window size in voxels; x and y are the 2D image size (paper: 256²),
            z is the number of slices translated per window.
        generator_filters: Features of the generator's first stage (paper: 64).
        generator_depth: Stride-2 stages of the 2D generator (paper: 8).
        discriminator_filters: Features of the discriminator's first stage (paper: 64).

    The other options are those of :class:`Pix2PixOptions`.
    """

    context_slices: int = Field(default=3, ge=1)
    roi_size: tuple[int, int, int] = (256, 256, 16)
    generator_filters: int = Field(default=64, ge=1)
    generator_depth: int = Field(default=8, ge=2)
    discriminator_filters: int = Field(default=64, ge=1)

    def convolved_axes(self) -> tuple[int, ...]:
        """Window sizes along x and y: the 2D networks never convolve along z."""
        return self.roi_size[:2]

    @field_validator("context_slices")
    @classmethod
    def _odd_context(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"context_slices must be odd (centred on a slice), got {value}")
        return value
