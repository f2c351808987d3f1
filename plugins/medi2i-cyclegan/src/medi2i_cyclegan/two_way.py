"""What CycleGAN and DiscoGAN share: two generators, a direction, per-domain intensities.

Both learn a generator ``a2b`` from domain a (the first of the workflow's
``data.domains``) to domain b, and a generator ``b2a`` back, from unpaired volumes. The
user chooses the direction at predict time (``-c direction=a2b`` or ``b2a``); it decides
the input's domain (and so its intensity scaling), the generator, and the output's
modality (a CT→MR prediction is written as MR). The model folder keeps both generators
and the domains; the discriminators live only in training checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from medi2i import (
    DataKind,
    MRForeground,
    Options,
    OptionsError,
    Output,
    PatchNetworkMethod,
    ScaledDomainIntensities,
    SpatialPlan,
    Task,
    Training,
    VolumeSpec,
    check_betas,
    check_percentiles,
)

DirectionName = Literal["a2b", "b2a"]
DIRECTIONS: tuple[DirectionName, DirectionName] = ("a2b", "b2a")


class Direction(BaseModel):
    """The predict-time condition of the two-way methods.

    Attributes:
        direction: ``"a2b"`` translates the first domain of the training data
            (``data.domains``) into the second, ``"b2a"`` the second into the first.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    direction: DirectionName = "a2b"


class TwoWayOptions(Options):
    """Options every two-way method has.

    Attributes:
        roi_size: Training patch size and sliding-window size in voxels (x, y, z).
        learning_rate: Adam's learning rate of every network (both papers: 2e-4).
        betas: Adam's moment decay rates (both papers: 0.5, 0.999).
        percentiles: Foreground percentiles (0-100) of a non-CT volume mapped to -1 and
            +1 (clipped beyond); CT is mapped from [-1024, 3071] HU.
        foreground: Which voxels of a non-CT volume the percentiles are taken over:
            ``"body"``, the input's body (:func:`medi2i.body_mask`), so the air around
            the body does not move them; ``"above-mean"``, those brighter than the
            volume's mean, which move with the field of view (the rule of models saved
            before this option existed).
        body_contour: For a direction from a non-CT domain into CT, set every output
            voxel outside the input's body to air (-1000 HU), the body found by
            :func:`medi2i.body_mask` on the raw input (not in the papers).
        clip_intensities: Clip the scaled MR intensities to [-1, 1]. Off, tissue brighter
            than the training volumes' ``percentiles`` (scalp fat on a whole head, when
            training saw brains only) keeps its contrast instead of being flattened;
            pair it with a generator without tanh (``output_activation: linear``).
        input_scale: How a predicted MR volume is scaled: ``"volume"`` by its own
            foreground percentiles (for MR of arbitrary units), ``"domain"`` by its
            domain's training scale (for scanners whose units are stable: a field of
            view unlike the training volumes' then shifts no intensity).
    """

    roi_size: tuple[int, int, int] = (64, 64, 64)
    learning_rate: float = Field(default=2e-4, gt=0.0)
    betas: tuple[float, float] = (0.5, 0.999)
    percentiles: tuple[float, float] = (0.5, 99.5)
    foreground: MRForeground = "body"
    body_contour: bool = True
    clip_intensities: bool = True
    input_scale: Literal["volume", "domain"] = "volume"

    @field_validator("percentiles")
    @classmethod
    def _percentiles_ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        return check_percentiles(value)

    @field_validator("betas")
    @classmethod
    def _decay_rates(cls, value: tuple[float, float]) -> tuple[float, float]:
        return check_betas(value)

    @field_validator("roi_size")
    @classmethod
    def _positive_window(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(value) < 1:
            raise ValueError(f"roi_size {value} must be positive in every axis")
        return value


OptionsT = TypeVar("OptionsT", bound=TwoWayOptions)


class TwoWayTranslation(ScaledDomainIntensities, PatchNetworkMethod[OptionsT, Direction]):
    """Base of two-way methods learned from unpaired volumes of two domains.

    Intensities (:class:`medi2i.ScaledDomainIntensities`): each domain is scaled by what
    it is, CT outputs are written in HU (air outside the input's body with
    ``body_contour``), MR outputs on their domain's training scale.

    Subclasses build one generator (:meth:`build_generator`) and one discriminator
    (:meth:`build_discriminator`) per direction and domain, and own the training step.
    """

    tasks = (Task.TRANSLATION, Task.HARMONIZATION)
    data = DataKind.UNPAIRED
    training = Training.GRADIENT
    input_spec = VolumeSpec()
    output_spec = VolumeSpec()
    default_roi_size: ClassVar[tuple[int, int, int]] = (64, 64, 64)

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self._discriminators: torch.nn.ModuleDict | None = None

    # -- networks ----------------------------------------------------------------------

    def build_generator(self) -> torch.nn.Module:
        """A new generator (either direction)."""
        raise NotImplementedError

    def build_discriminator(self) -> torch.nn.Module:
        """A new discriminator (either domain)."""
        raise NotImplementedError

    def build_network(self) -> torch.nn.Module:
        """Both generators, ``a2b`` and ``b2a``, in one module (the saved model)."""
        return torch.nn.ModuleDict({key: self.build_generator() for key in DIRECTIONS})

    @property
    def discriminators(self) -> torch.nn.ModuleDict:
        """``a`` judges images of domain a, ``b`` of domain b; built on first use
        (prediction never builds them)."""
        if self._discriminators is None:
            self._discriminators = torch.nn.ModuleDict(
                {key: self.build_discriminator() for key in ("a", "b")}
            )
        return self._discriminators

    def generator(self, direction: DirectionName) -> torch.nn.Module:
        """The generator of ``direction``."""
        module: torch.nn.Module = self.network[direction]  # type: ignore[index]
        return module

    def training_modules(self) -> dict[str, torch.nn.Module]:
        return {
            "generator_a2b": self.generator("a2b"),
            "generator_b2a": self.generator("b2a"),
            "discriminator_a": self.discriminators["a"],
            "discriminator_b": self.discriminators["b"],
        }

    def spatial_plan(self) -> SpatialPlan:
        """RAS orientation: the networks see both domains' anatomy the same way round
        (and the 2.5D variants' last axis is axial)."""
        return SpatialPlan(orientation="RAS")

    # -- the direction -----------------------------------------------------------------

    def endpoints(self, condition: Direction) -> tuple[str, str]:
        """The (input, output) domain names of ``condition``'s direction.

        Raises:
            OptionsError: The method has no domains (it was not trained).
        """
        if len(self.domains) != 2:
            raise OptionsError(
                f"method {self.id!r} has no domains: train it on unpaired data, or load a "
                "trained model"
            )
        first, second = self.domain_names
        return (first, second) if condition.direction == "a2b" else (second, first)

    def check_condition(self, condition: Direction) -> None:
        self.endpoints(condition)

    def input_domain(self, condition: Direction) -> str | None:
        return self.endpoints(condition)[0]

    def outputs(self, condition: Direction) -> tuple[Output, ...]:
        target = self.endpoints(condition)[1]
        spec = self.domain(target).volume_spec()
        return (Output("", spec, domain=target, condition={"direction": condition.direction}),)

    def forward(self, windows: torch.Tensor, condition: Direction) -> torch.Tensor:
        output: torch.Tensor = self.generator(condition.direction)(windows)
        return output

    # -- training helpers --------------------------------------------------------------

    @staticmethod
    def set_learning_rate(optimizers: list[torch.optim.Optimizer], rate: float) -> None:
        """Set every parameter group's learning rate (schedules set it before each step,
        from the trainer's step count, so a resumed run follows them exactly)."""
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = rate
