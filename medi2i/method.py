"""The Method contract: what a translation, harmonization or super-resolution method is.

One contract covers six shapes of method:

1. patch networks run by sliding window (:class:`PatchNetworkMethod`);
2. whole-volume methods with fitted state (override :meth:`Method.fit` and
   :meth:`Method.predict`, keep the state in :meth:`Method.state_values` /
   :meth:`Method.state_tensors`);
3. outputs on another grid (override :meth:`Method.output_grid`; patch networks set
   :attr:`PatchNetworkMethod.output_scale`);
4. outputs conditioned at predict time (declare a ``Condition`` model, read
   ``context.condition``);
5. fitting on the input itself at predict time (``fits_at_predict = True``; do it in
   :meth:`Method.predict`);
6. paired, unpaired and multi-domain training data (:attr:`Method.data`).

The core owns reading, orientation and resampling (:meth:`Method.spatial_plan`), the
sliding window, the inversion back to the input grid, writing and provenance. A method
owns its intensity pre- and postprocessing (whole-volume statistics live there, never
per patch), its network or fitted state, and its training steps.

Keep method modules importable without side effects; heavy imports (``torch``) may sit
at their top level, but the module holding the hook implementations should import the
method module inside the hook (see :mod:`medi2i.hookspecs`).
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from medi2i.errors import Medi2iError, ModelFormatError, OptionsError
from medi2i.grid import Grid as Grid  # moved to medi2i.grid; still importable here
from medi2i.grid import SpatialPlan as SpatialPlan

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import torch
    from monai.data.meta_tensor import MetaTensor

    from medi2i.engine import SlidingWindowEngine

JSONScalar = float | int | str | bool
StateValue = JSONScalar | list[float] | list[int] | list[str]
"""A fitted value a method keeps in its model folder's JSON (not a tensor)."""

_ID = re.compile(r"^[a-z][a-z0-9]*(?:[-.][a-z0-9]+)*$")


class Task(str, Enum):
    """What a method is for."""

    TRANSLATION = "translation"
    """One modality to another, e.g. MR to synthetic CT."""
    HARMONIZATION = "harmonization"
    """One scanner's images to look like another's, same modality."""
    SUPER_RESOLUTION = "super-resolution"
    """Low to high resolution, usually onto a finer grid."""


class DataKind(str, Enum):
    """The training data a method needs."""

    NONE = "none"
    """Nothing to train: a fixed function, or one fitted on the input at predict time."""
    PAIRED = "paired"
    """Aligned source and target volumes of the same subject."""
    UNPAIRED = "unpaired"
    """Two domains, volumes of different subjects."""
    MULTI_DOMAIN = "multi-domain"
    """Several labelled domains (e.g. N scanners)."""
    SINGLE_DOMAIN = "single-domain"
    """Volumes of one domain, e.g. to fit an intensity standardization."""


class VolumeSpec(BaseModel):
    """The contract of a method's input or output volume (as in MONAI bundles).

    Attributes:
        modality: ``"MR"``, ``"CT"`` or ``"any"``.
        units: ``"HU"`` for CT, ``"arbitrary"`` for MR intensities.
        channels: Number of channels.
        value_range: Expected range of values, if there is one (e.g. ``(-1024, 3071)``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    modality: str = "any"
    units: str = "arbitrary"
    channels: int = 1
    value_range: tuple[float, float] | None = None


class Options(BaseModel):
    """Base class of a method's typed options; defaults come from the method's paper.

    Unknown keys are rejected, and so are NaN and infinite numbers (a ``.nan`` learning
    rate is a typo, not a setting).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


OptionsModel = Options
"""Alias of :class:`Options` for annotations inside :class:`Method`, whose ``Options``
class attribute shadows the name."""


class NoCondition(BaseModel):
    """The condition of methods that take none at predict time."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class PredictContext:
    """What the core hands a method at predict time.

    Attributes:
        engine: The sliding-window engine configured by the user's inference settings.
        condition: The validated predict-time condition (the method's ``Condition``).
        device: The torch device windows run on.
    """

    engine: SlidingWindowEngine
    condition: BaseModel
    device: torch.device


class TrainerAPI(Protocol):
    """What the trainer offers a method inside :meth:`Method.training_step`.

    Methods own their updates (a GAN alternates its generator and discriminator
    steps); the trainer owns devices, mixed precision, gradient accumulation,
    distribution (DDP) and checkpoints.

    Attributes:
        device: Where batches and modules live.
        modules: The method's :meth:`Method.training_modules`, moved to ``device`` and
            wrapped for distributed training when it is on: call these, not the
            method's own attributes, in the training step.
        step_index: Number of completed training steps (0 on the first).
    """

    device: torch.device
    modules: Mapping[str, torch.nn.Module]
    step_index: int

    def add_optimizer(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        """Register an optimizer (checkpointed and stepped by name)."""
        ...

    def autocast(self) -> AbstractContextManager[None]:
        """Mixed-precision context for forward passes (a no-op off CUDA or without AMP)."""
        ...

    def backward(self, loss: torch.Tensor, optimizer: str) -> None:
        """Backpropagate ``loss`` for the parameters of ``optimizer`` (scaled for AMP and
        divided by the number of accumulation steps)."""
        ...

    def step(self, optimizer: str) -> None:
        """Step and zero ``optimizer`` when an accumulation cycle is complete."""
        ...


class MethodDescription(BaseModel):
    """A method's public description, as ``medi2i methods --json`` prints it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    version: str
    summary: str
    tasks: list[Task]
    data: DataKind
    input: VolumeSpec
    output: VolumeSpec
    fits_at_predict: bool
    paper: str
    options: dict[str, Any]
    condition: dict[str, Any]


class Method(abc.ABC):
    """Base class of every method. Subclass it, fill in the class attributes, and
    register the class from a plugin's ``register_methods`` hook.

    Class attributes:
        id: Unique lowercase id, e.g. ``"pix2pix"`` (``name.tag`` for variants).
        version: The method implementation's version, stored in model folders.
        tasks: The tasks it serves.
        data: The training data it needs.
        input_spec, output_spec: Modality, units and channels in and out.
        Options: Its pydantic options model (defaults from the paper).
        Condition: Its predict-time condition model (default: none).
        paper: Reference of the paper it implements.
        fits_at_predict: Whether it fits itself on the input at predict time.

    Example:
        >>> class Negate(Method):
        ...     '''Negate intensities.'''
        ...     id = "negate"
        ...     tasks = (Task.TRANSLATION,)
        ...     input_spec = output_spec = VolumeSpec()
        ...     def predict(self, image, context):
        ...         return -image
        >>> Negate().options
        Options()
    """

    id: ClassVar[str]
    version: ClassVar[str] = "0.1.0"
    tasks: ClassVar[tuple[Task, ...]]
    data: ClassVar[DataKind] = DataKind.NONE
    input_spec: ClassVar[VolumeSpec]
    output_spec: ClassVar[VolumeSpec]
    Options: ClassVar[type[Options]] = Options
    Condition: ClassVar[type[BaseModel]] = NoCondition
    paper: ClassVar[str] = ""
    fits_at_predict: ClassVar[bool] = False

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        self.options = self.parse_options(options)

    # -- description -----------------------------------------------------------------

    @classmethod
    def validate_class(cls) -> None:
        """Check the class attributes a registered method must have."""
        for attr in ("id", "tasks", "input_spec", "output_spec"):
            if not hasattr(cls, attr):
                raise TypeError(f"method class {cls.__qualname__} does not set {attr!r}")
        if not _ID.match(cls.id):
            raise TypeError(
                f"method id {cls.id!r} of {cls.__qualname__} must be lowercase letters, digits, "
                "'-' and '.', starting with a letter"
            )
        if not cls.tasks:
            raise TypeError(f"method {cls.id!r} declares no task")

    @classmethod
    def summary(cls) -> str:
        """First line of the class docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    @classmethod
    def describe(cls) -> MethodDescription:
        """The method's description for listings and model folders."""
        return MethodDescription(
            id=cls.id,
            version=cls.version,
            summary=cls.summary(),
            tasks=list(cls.tasks),
            data=cls.data,
            input=cls.input_spec,
            output=cls.output_spec,
            fits_at_predict=cls.fits_at_predict,
            paper=cls.paper,
            options=cls.Options.model_json_schema(),
            condition=cls.Condition.model_json_schema(),
        )

    @classmethod
    def parse_options(cls, options: BaseModel | Mapping[str, object] | None) -> OptionsModel:
        """Validate ``options`` against the method's ``Options`` model."""
        if isinstance(options, cls.Options):
            return options
        raw = options.model_dump() if isinstance(options, BaseModel) else dict(options or {})
        parsed: OptionsModel = _validated(cls.Options, raw, f"options of method {cls.id!r}")
        return parsed

    @classmethod
    def parse_condition(cls, condition: BaseModel | Mapping[str, object] | None) -> BaseModel:
        """Validate a predict-time condition against the method's ``Condition`` model."""
        if isinstance(condition, cls.Condition):
            return condition
        raw = condition.model_dump() if isinstance(condition, BaseModel) else dict(condition or {})
        parsed: BaseModel = _validated(cls.Condition, raw, f"condition of method {cls.id!r}")
        return parsed

    # -- prediction --------------------------------------------------------------------

    def spatial_plan(self) -> SpatialPlan:
        """The working grid; the core resamples the input to it and the output back."""
        return SpatialPlan()

    def output_grid(self, input_grid: Grid) -> Grid:
        """The grid the final output is delivered on (the input grid unless overridden)."""
        return input_grid

    def preprocess(self, image: MetaTensor) -> MetaTensor:
        """Intensity preprocessing of the whole (channel-first) volume."""
        return image

    @abc.abstractmethod
    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        """Translate a preprocessed channel-first volume.

        Returns a channel-first tensor on the working grid, or on another grid when it
        is a ``MetaTensor`` carrying that grid's affine (or when
        :attr:`PatchNetworkMethod.output_scale` says so).
        """

    def postprocess(self, output: MetaTensor, image: MetaTensor) -> MetaTensor:
        """Intensity postprocessing of the output (e.g. back to HU); ``image`` is the
        preprocessed input."""
        return output

    def preprocess_target(self, target: MetaTensor) -> MetaTensor:
        """Intensity preprocessing of a whole paired training target (e.g. HU to the
        network's range): the inverse of :meth:`postprocess`. Identity by default."""
        return target

    # -- fitted state ------------------------------------------------------------------

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors (network weights, histograms) stored in ``weights.safetensors``."""
        return {}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_tensors` returned."""
        if tensors:
            raise ModelFormatError(
                f"method {self.id!r} keeps no tensors but the model folder has {sorted(tensors)}"
            )

    def state_values(self) -> dict[str, StateValue]:
        """Fitted values kept as JSON in the model folder (e.g. normalization statistics)."""
        return {}

    def load_state_values(self, values: Mapping[str, StateValue]) -> None:
        """Restore what :meth:`state_values` returned."""
        if values:
            raise ModelFormatError(
                f"method {self.id!r} keeps no fitted values, "
                f"but the model folder has {sorted(values)}"
            )

    # -- training ----------------------------------------------------------------------

    def fit(self, volumes: object) -> None:
        """Fit whole-volume state (classical methods). Trainable networks use the
        trainer's step API instead."""
        raise Medi2iError(
            f"method {self.id!r} has nothing to fit (its data kind is {self.data.value})"
        )

    def training_modules(self) -> dict[str, torch.nn.Module]:
        """Modules the trainer moves to the device, puts in train mode, wraps for DDP
        and checkpoints (e.g. ``{"generator": ..., "discriminator": ...}``)."""
        return {}

    def configure_training(self, trainer: TrainerAPI) -> None:
        """Create optimizers with ``trainer.add_optimizer`` (called once before training)."""
        raise Medi2iError(f"method {self.id!r} is not trained by gradient steps")

    def training_step(
        self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
    ) -> dict[str, float]:
        """One optimisation step on a batch; returns the losses to log.

        Batches hold channel-first patches stacked along dimension 0: ``source`` and
        ``target`` for paired data; ``a`` and ``b`` for unpaired data; ``image`` and
        ``domain`` (integer labels) for multi-domain data.
        """
        raise Medi2iError(f"method {self.id!r} is not trained by gradient steps")


class PatchNetworkMethod(Method):
    """A method whose prediction is a network run by sliding window.

    Subclasses build the network in :meth:`build_network`; the core runs it window
    by window on the device with the user's inference settings. A network that
    outputs more voxels than it is given (super-resolution) sets ``output_scale``.
    """

    output_scale: ClassVar[tuple[float, float, float]] = (1.0, 1.0, 1.0)
    default_roi_size: ClassVar[tuple[int, int, int]] = (96, 96, 96)

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self._network: torch.nn.Module | None = None

    @abc.abstractmethod
    def build_network(self) -> torch.nn.Module:
        """A new, untrained network for the current options."""

    @property
    def network(self) -> torch.nn.Module:
        """The network, built on first use."""
        if self._network is None:
            self._network = self.build_network()
        return self._network

    def forward(self, windows: torch.Tensor, condition: BaseModel) -> torch.Tensor:
        """Run the network on a batch of windows (override to use the condition)."""
        output: torch.Tensor = self.network(windows)
        return output

    def roi_size(self) -> tuple[int, int, int]:
        """Window size the network was trained with (``options.roi_size`` if present)."""
        size = getattr(self.options, "roi_size", None)
        if size is None:
            return self.default_roi_size
        return (int(size[0]), int(size[1]), int(size[2]))

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        def predictor(windows: torch.Tensor) -> torch.Tensor:
            return self.forward(windows, context.condition)

        return context.engine.run(
            image,
            predictor,
            modules=[self.network],
            default_roi_size=self.roi_size(),
            output_scale=self.output_scale,
        )

    def output_grid(self, input_grid: Grid) -> Grid:
        if self.output_scale == (1.0, 1.0, 1.0):
            return input_grid
        return input_grid.scaled(self.output_scale)

    def training_modules(self) -> dict[str, torch.nn.Module]:
        return {"network": self.network}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"network.{k}": v for k, v in self.network.state_dict().items()}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        weights = {k.removeprefix("network."): v for k, v in tensors.items()}
        try:
            self.network.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise ModelFormatError(
                f"weights do not fit method {self.id!r} with these options: {exc}"
            ) from exc


def _validated(model: type[BaseModel], raw: dict[str, object], what: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise OptionsError(f"invalid {what}: {problems}") from None
