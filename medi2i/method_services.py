"""What the core hands a method and what a method hands back while it predicts, adapts and
trains: the contexts, the trainer's API, batch types and the declaration of frozen
auxiliary networks.

Part of the Method contract (:mod:`medi2i.method` re-exports every name; plugins import
them from ``medi2i``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NotRequired, Protocol, TypedDict

from pydantic import BaseModel
from typing_extensions import TypeVar

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import torch
    from monai.data.meta_tensor import MetaTensor

    from medi2i.engine import SlidingWindowEngine

ConditionT = TypeVar("ConditionT", bound=BaseModel, default=Any)
"""A method's predict-time condition model (second type parameter of :class:`Method`)."""

Progress = Callable[..., Iterable[Any]]
"""``progress(iterable, description=..., total=...)``: the iterable, with a progress bar
when the user asked for one."""


def no_progress(iterable: Iterable[Any], description: str = "", total: int | None = None) -> Any:
    """A :data:`Progress` that shows nothing."""
    del description, total
    return iterable


@dataclass(frozen=True)
class PredictContext(Generic[ConditionT]):
    """What the core hands a method at predict time.

    Attributes:
        engine: The sliding-window engine configured by the user's inference settings
            (one per batch: what it learns, e.g. an out-of-memory back-off, is kept).
        condition: The validated predict-time condition (the method's ``Condition``).
        device: The torch device windows run on.
        seed: The seed of anything random at predict time (style codes, fitting on the
            input), recorded in the provenance: the same seed gives the same output.
        progress: Wraps a loop in a progress bar when the user asked for one.
        log: Where to log what the method does (goes to the run log in workflows).
        facts: What happened in this run that the options do not say, reported by the
            method for the provenance sidecar (its ``"run"`` entry), e.g.
            ``context.facts["steps_run"] = 170`` when a time budget ended fitting at
            the input early; values must be JSON (numbers, strings, lists, dicts).
    """

    engine: SlidingWindowEngine
    condition: ConditionT
    device: torch.device
    seed: int = 0
    progress: Progress = no_progress
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("medi2i.method"))
    facts: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class AdaptContext:
    """What the core hands :meth:`Method.adapt`.

    Attributes:
        engine: A sliding-window engine on the adaptation device.
        device: The torch device.
        seed: The adaptation's seed.
        progress: Wraps a loop in a progress bar.
        log: Where to log.
    """

    engine: SlidingWindowEngine
    device: torch.device
    seed: int = 0
    progress: Progress = no_progress
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("medi2i.method"))


@dataclass(frozen=True)
class AuxiliaryNetwork:
    """A frozen network a method uses in training only (e.g. a perceptual-loss network).

    The trainer builds it, loads ``weights`` after checking ``sha256``, moves it to the
    device, puts it in eval mode with gradients off, never wraps it for DDP and never
    checkpoints it; the model folder records its SHA-256. Nothing is downloaded: the
    weights ship with the plugin (package data) or were trained by the project.

    Attributes:
        build: Makes the (untrained) network.
        weights: A safetensors file with its weights, or ``None`` for a fixed network
            with no weights (e.g. a Sobel filter bank).
        sha256: The weights file's SHA-256 (required with ``weights``).
    """

    build: Callable[[], torch.nn.Module]
    weights: Path | None = None
    sha256: str | None = None


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
        auxiliary: The method's :meth:`Method.auxiliary_networks`, built, loaded, on
            ``device``, frozen and in eval mode.
        step_index: Number of completed training steps (0 on the first).
        total_steps: The number of steps the run trains for (for schedules).
    """

    device: torch.device
    modules: Mapping[str, torch.nn.Module]
    auxiliary: Mapping[str, torch.nn.Module]
    step_index: int
    total_steps: int

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

    def watch_generated(self, name: str, generated: torch.Tensor, real: torch.Tensor) -> None:
        """Show the trainer's collapse check a generated batch (e.g. ``"fake_b"``) and a
        real batch of the same domain: a generator whose output stays nearly constant
        while the real images vary is reported (:mod:`medi2i.training.health`). Cheap:
        nothing is read back from the device until a logged step."""
        ...


@dataclass(frozen=True)
class FitPair:
    """One paired training case, as :meth:`Method.fit_pairs` receives it.

    Everything is on the method's working grid (:meth:`Method.spatial_plan`), channel
    first.

    Attributes:
        case_id: The case's id.
        source: The source volume, preprocessed as a whole as predict preprocesses its
            input (:meth:`Method.preprocess`, without a condition).
        target: The target volume through :meth:`Method.preprocess_target`.
        mask: The case's mask (``mask > 0`` before resampling, then ``>= 0.5``) as a
            boolean tensor ``(1, X, Y, Z)``, or ``None`` when the case has none.
    """

    case_id: str
    source: MetaTensor
    target: MetaTensor
    mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        """Refuse what is not a volume tensor, in one line (a numpy array given as a
        source failed later inside the method's fit with an ``AttributeError``)."""
        import torch

        from medi2i.errors import InputError
        from medi2i.text import described

        for role in ("source", "target", "mask"):
            value = getattr(self, role)
            if value is None and role == "mask":
                continue
            if not isinstance(value, torch.Tensor) or value.ndim != 4:
                raise InputError(
                    f"FitPair {self.case_id!r}: {role} must be a channel-first (1, X, Y, Z) "
                    f"tensor, e.g. method.preprocess(medi2i.read_volume(path)) or "
                    f"medi2i.volume_from_array(array, affine); got {described(value)}"
                )


class PairedBatch(TypedDict):
    """A batch of paired data: aligned patches ``(N, C, X, Y, Z)``.

    ``unlabelled`` is there only for a method whose :meth:`Method.learns_from_unlabelled`
    is true and a run given unlabelled data (a workflow's ``data.unlabelled_data``):
    ``N`` input patches of the target domain without targets (e.g. another scanner's
    MR, for domain-adversarial training), preprocessed as inputs are.
    """

    source: torch.Tensor
    target: torch.Tensor
    unlabelled: NotRequired[torch.Tensor]


class UnpairedBatch(TypedDict):
    """A batch of unpaired data: patches of domain 0 (``a``) and domain 1 (``b``) of
    :attr:`Method.domains`, from different subjects and places."""

    a: torch.Tensor
    b: torch.Tensor


class MultiDomainBatch(TypedDict):
    """A batch of multi-domain data: patches and their integer domain labels (indices
    into :attr:`Method.domains`)."""

    image: torch.Tensor
    domain: torch.Tensor


class SingleDomainBatch(TypedDict):
    """A batch of single-domain data."""

    image: torch.Tensor


TrainingBatch = PairedBatch | UnpairedBatch | MultiDomainBatch | SingleDomainBatch
"""What :meth:`Method.training_step` receives; its keys follow the data kind."""

TrainingStateValue = Any
"""Method state kept in checkpoints (:meth:`Method.training_state`): tensors, numbers,
strings, and lists or string-keyed dicts of these (what ``torch.load(weights_only=True)``
reads back)."""
