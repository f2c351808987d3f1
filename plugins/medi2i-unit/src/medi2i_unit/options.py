"""Options and predict-time conditions of the UNIT and MUNIT methods.

Defaults are the papers' where 3D on a CPU allows them; where it does not (features,
discriminator depth and scales, MLP width), the paper's value is named beside the 3D
default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medi2i import MRForeground, Options, check_betas, check_percentiles, check_spacing
from medi2i_unit.discriminator import smallest_input

Direction = Literal["a2b", "b2a"]
"""``a2b``: from the first domain of ``data.domains`` to the second; ``b2a`` back."""


class TranslationOptions(Options):
    """Options common to UNIT and MUNIT.

    Attributes:
        roi_size: Training patch and sliding-window size in voxels; each side a multiple
            of ``2**downsamples``.
        filters: Features of the first convolution, doubled per stride-2 stage (papers:
            64; 3D default 16).
        downsamples: Stride-2 stages of the encoders (papers: 2).
        discriminator_filters: Features of each discriminator's first stage (papers: 64;
            3D default 16).
        discriminator_layers: Stride-2 stages per discriminator scale (papers: 4; 3D
            default 3).
        discriminator_scales: Scales of the multi-scale discriminator (papers: 3; 3D
            default 2). Patches need ``2**(layers + scales - 1)`` voxels per side.
        gan_weight: Weight of the least-squares GAN loss (papers: 1).
        reconstruction_weight: Weight of the within-domain image reconstruction L1
            (papers: 10).
        learning_rate: Adam learning rate of generators and discriminators (1e-4).
        betas: Adam's moment decay rates (0.5, 0.999), each in [0, 1).
        weight_decay: Adam's weight decay (1e-4).
        lr_decay_every: Steps between halvings of the learning rate (the papers' step
            decay: 100000 iterations, which runs at this scale never reach).
        lr_decay: Factor of each step decay (0.5).
        spacing: Voxel spacing in mm to resample every volume to (three positive,
            finite numbers), or ``None`` to keep each volume's own.
        percentiles: Foreground percentiles of an MR volume mapped to -1 and +1 (CT goes
            through the fixed Hounsfield scale), with ``0 <= low < high <= 100``.
        foreground: Which voxels of an MR volume the percentiles are taken over:
            ``"body"``, the input's body (:func:`medi2i.body_mask`), so the air around
            the body does not move them; ``"above-mean"``, those brighter than the
            volume's mean, which move with the field of view (the rule of models saved
            before this option existed).
        body_contour: A CT output translated from a non-CT input is air (-1000 HU)
            outside the input's body (:func:`medi2i.body_mask` of the raw input), as the
            paired MR → CT methods do (not in the papers).
    """

    roi_size: tuple[int, int, int] = (32, 32, 32)
    filters: int = Field(default=16, ge=1)
    downsamples: int = Field(default=2, ge=1, le=4)
    discriminator_filters: int = Field(default=16, ge=1)
    discriminator_layers: int = Field(default=3, ge=1)
    discriminator_scales: int = Field(default=2, ge=1)
    gan_weight: float = Field(default=1.0, ge=0.0)
    reconstruction_weight: float = Field(default=10.0, ge=0.0)
    learning_rate: float = Field(default=1e-4, gt=0.0)
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = Field(default=1e-4, ge=0.0)
    lr_decay_every: int = Field(default=100_000, ge=1)
    lr_decay: float = Field(default=0.5, gt=0.0, le=1.0)
    spacing: tuple[float, float, float] | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    foreground: MRForeground = "body"
    body_contour: bool = True

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

    @field_validator("percentiles")
    @classmethod
    def _percentiles_ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        return check_percentiles(value)

    @model_validator(mode="after")
    def _sizes_fit(self) -> TranslationOptions:
        step = 2**self.downsamples
        if any(side % step for side in self.roi_size):
            raise ValueError(
                f"roi_size {self.roi_size} must be a multiple of {step} (2**downsamples) "
                "along every axis"
            )
        needed = smallest_input(self.discriminator_layers, self.discriminator_scales)
        if min(self.roi_size) < needed:
            raise ValueError(
                f"roi_size {self.roi_size} is too small for the discriminator: "
                f"{self.discriminator_layers} layers at {self.discriminator_scales} scales "
                f"need {needed} voxels per side"
            )
        return self


class UnitOptions(TranslationOptions):
    """Options of :class:`~medi2i_unit.unit.Unit`.

    Attributes:
        blocks: Residual blocks of each domain's own encoder and decoder (paper: 3).
        shared_blocks: Residual blocks shared by both encoders, and as many by both
            decoders: the shared latent space (paper: 1).
        kl_weight: Weight of the KL term ``mean(μ²)`` of each domain (0.01).
        cycle_weight: Weight of the cycle reconstruction L1 (10).
        cycle_kl_weight: Weight of the KL term of the translations' latents (0.01).
    """

    blocks: int = Field(default=3, ge=0)
    shared_blocks: int = Field(default=1, ge=1)
    kl_weight: float = Field(default=0.01, ge=0.0)
    cycle_weight: float = Field(default=10.0, ge=0.0)
    cycle_kl_weight: float = Field(default=0.01, ge=0.0)


class MunitOptions(TranslationOptions):
    """Options of :class:`~medi2i_unit.munit.Munit`.

    Attributes:
        blocks: Residual blocks of the content encoder and of the decoder (paper: 4).
        style_dim: Length of a style code (paper: 8).
        style_downsamples: Stride-2 stages of the style encoder (paper: 4); a style
            reference volume, and so ``roi_size``, needs ``2**style_downsamples`` voxels
            per side.
        mlp_features: Hidden features of the style-to-AdaIN MLP (paper: 256; 3D default
            64, enough for the decoder's fewer AdaIN channels).
        style_weight: Weight of the style reconstruction L1 (1).
        content_weight: Weight of the content reconstruction L1 (1).
        cycle_weight: Weight of the optional cycle reconstruction L1 (paper: 10 when on;
            0, off, by default as in the paper's main experiments).
    """

    blocks: int = Field(default=4, ge=0)
    style_dim: int = Field(default=8, ge=1)
    style_downsamples: int = Field(default=4, ge=0)
    mlp_features: int = Field(default=64, ge=1)
    style_weight: float = Field(default=1.0, ge=0.0)
    content_weight: float = Field(default=1.0, ge=0.0)
    cycle_weight: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _style_encoder_fits(self) -> MunitOptions:
        needed = 2**self.style_downsamples
        if min(self.roi_size) < needed:
            raise ValueError(
                f"roi_size {self.roi_size} is too small for {self.style_downsamples} "
                f"style_downsamples (needs {needed} voxels per side); lower them or "
                "enlarge the window"
            )
        return self


class UnitCondition(BaseModel):
    """What a user chooses when predicting with UNIT.

    Attributes:
        direction: ``a2b`` (first domain of ``data.domains`` to the second) or ``b2a``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    direction: Direction = "a2b"


class MunitCondition(UnitCondition):
    """What a user chooses when predicting with MUNIT.

    Attributes:
        direction: ``a2b`` or ``b2a``.
        styles: How many styles to draw from the prior; above 1, each is a named output
            ``style-0``, ``style-1``, …
        style_seed: Seed of the drawn styles, 0 to 2**32 - 1; ``None``: the prediction's seed
            (``InferenceSettings.seed``). Style ``i`` is the ``i``-th of successive
            ``N(0, I)`` draws from a generator seeded with it, so ``styles=4`` starts
            with the style of ``styles=1``.
        style_reference: A volume of the target domain (any file or folder medi2i's
            readers read) whose encoded style replaces the drawn one; kept as an
            absolute path (``~`` expanded, resolved from the working folder), so the
            provenance names it as it names the input.
    """

    styles: int = Field(default=1, ge=1, le=64)
    style_seed: int | None = Field(default=None, ge=0, le=2**32 - 1)  # medi2i's seed bound
    style_reference: str | None = None

    @field_validator("style_reference")
    @classmethod
    def _absolute_reference(cls, value: str | None) -> str | None:
        return None if value is None else str(Path(value).expanduser().resolve())

    def input_paths(self) -> tuple[str, ...]:
        """The style reference, read as an input: medi2i refuses an output that would
        replace it (:func:`medi2i.io.destinations.condition_inputs`)."""
        return () if self.style_reference is None else (self.style_reference,)

    @model_validator(mode="after")
    def _one_source_of_style(self) -> MunitCondition:
        if self.style_reference is not None and (self.styles != 1 or self.style_seed is not None):
            raise ValueError(
                "style_reference gives the style itself: do not combine it with styles or "
                "style_seed"
            )
        return self
