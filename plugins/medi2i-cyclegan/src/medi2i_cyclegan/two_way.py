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
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from medi2i import (
    AIR_HU,
    DataKind,
    DomainIntensities,
    DomainScales,
    HounsfieldScale,
    Options,
    OptionsError,
    Output,
    PatchNetworkMethod,
    SpatialPlan,
    StateValue,
    Task,
    Training,
    VolumeSpec,
    body_mask,
    check_percentiles,
    is_hounsfield,
)
from medi2i_cyclegan.intensities import BODY_MASK_KEY

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i import DomainSpec

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
        body_contour: For a direction from a non-CT domain into CT, set every output
            voxel outside the input's body to air (-1000 HU), the body found by
            :func:`medi2i.body_mask` on the raw input (not in the papers).
    """

    roi_size: tuple[int, int, int] = (64, 64, 64)
    learning_rate: float = Field(default=2e-4, gt=0.0)
    betas: tuple[float, float] = (0.5, 0.999)
    percentiles: tuple[float, float] = (0.5, 99.5)
    body_contour: bool = True

    @field_validator("percentiles")
    @classmethod
    def _percentiles_ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        return check_percentiles(value)

    @field_validator("betas")
    @classmethod
    def _decay_rates(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= beta < 1.0 for beta in value):
            raise ValueError(f"betas {value} must lie in [0, 1)")
        return value

    @field_validator("roi_size")
    @classmethod
    def _positive_window(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(value) < 1:
            raise ValueError(f"roi_size {value} must be positive in every axis")
        return value


OptionsT = TypeVar("OptionsT", bound=TwoWayOptions)


class TwoWayTranslation(DomainIntensities, PatchNetworkMethod[OptionsT, Direction]):
    """Base of two-way methods learned from unpaired volumes of two domains.

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
        self.scales = DomainScales()

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

    # -- intensities -------------------------------------------------------------------

    def _spec(self, domain: str | None) -> DomainSpec | None:
        return self.domain(domain) if domain is not None and self.domains else None

    def preprocess(
        self, image: MetaTensor, *, domain: str | None = None, condition: object = None
    ) -> MetaTensor:
        """The whole volume of ``domain`` in [-1, 1] (:class:`medi2i.DomainIntensities`).

        In training (no condition) a non-CT volume's scale is recorded
        (:class:`medi2i.DomainScales`); at predict time, for a
        direction into CT from another domain with ``body_contour`` on, the raw input's
        body mask is kept in the returned volume's meta.
        """
        network = super().preprocess(image, domain=domain, condition=condition)
        source = self._spec(domain)
        if condition is None:
            if domain is not None and source is not None and not is_hounsfield(source):
                self.scales.record(domain, image, self.options.percentiles)
            return network
        if not (self.options.body_contour and isinstance(condition, Direction)):
            return network
        target = self._spec(self.endpoints(condition)[1])
        if is_hounsfield(target) and not is_hounsfield(source) and hasattr(network, "meta"):
            mask = body_mask(image.detach().cpu().numpy())
            network.meta[BODY_MASK_KEY] = torch.from_numpy(mask)
        return network

    def postprocess(
        self,
        output: MetaTensor,
        image: MetaTensor,
        *,
        domain: str | None = None,
        condition: object = None,
    ) -> MetaTensor:
        """CT outputs in HU (air outside the input's body when its mask was kept), other
        outputs on their domain's training scale."""
        spec = self._spec(domain)
        if domain is None or spec is None:
            return output
        if not is_hounsfield(spec):
            scaled = self.scales.to_scale(domain, output)
            return output if scaled is None else scaled  # type: ignore[return-value]
        hounsfield = HounsfieldScale().to_hounsfield(output)
        inside = getattr(image, "meta", {}).get(BODY_MASK_KEY)
        if isinstance(inside, torch.Tensor) and tuple(inside.shape) == tuple(output.shape[-3:]):
            hounsfield = hounsfield.masked_fill(~inside.bool().to(output.device), AIR_HU)
        return hounsfield  # type: ignore[return-value]

    # -- state -------------------------------------------------------------------------

    def state_values(self) -> dict[str, StateValue]:
        """The training scale of every non-CT domain (``scale.<domain>``: low, high)."""
        return dict(self.scales.state())

    def load_state_values(self, values: Mapping[str, StateValue]) -> None:
        self.scales.load_state(values)

    # -- training helpers --------------------------------------------------------------

    @staticmethod
    def set_learning_rate(optimizers: list[torch.optim.Optimizer], rate: float) -> None:
        """Set every parameter group's learning rate (schedules set it before each step,
        from the trainer's step count, so a resumed run follows them exactly)."""
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = rate
