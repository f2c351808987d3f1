"""Small methods, one per shape of the Method contract, for tests and as examples.

They are not registered by default; a test registers this module as a plugin::

    plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar, Literal

import numpy as np
import torch
from monai.data.meta_tensor import MetaTensor
from pydantic import BaseModel, ConfigDict

from medi2i.grid import SpatialPlan
from medi2i.hookspecs import hookimpl
from medi2i.method import (
    DataKind,
    Method,
    Options,
    PredictContext,
    StateValue,
    Task,
    Training,
    VolumeSpec,
)
from medi2i.patch_network import PatchNetworkMethod

MR = VolumeSpec(modality="MR", units="arbitrary")
CT = VolumeSpec(modality="CT", units="HU", value_range=(-1024.0, 3071.0))


class PointwiseNetOptions(Options):
    roi_size: tuple[int, int, int] = (16, 16, 16)
    hidden: int = 4


class PointwiseNet(PatchNetworkMethod):
    """Shape 1: a patch network (1×1×1 convolutions) run by sliding window."""

    id = "example-pointwise-net"
    tasks = (Task.TRANSLATION,)
    data = DataKind.PAIRED
    input_spec = MR
    output_spec = CT
    Options = PointwiseNetOptions

    def build_network(self) -> torch.nn.Module:
        hidden = int(getattr(self.options, "hidden", 4))
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Conv3d(1, hidden, 1), torch.nn.Tanh(), torch.nn.Conv3d(hidden, 1, 1)
        )


class FittedStandardization(Method):
    """Shape 2: a whole-volume method with fitted state (target mean and std)."""

    id = "example-fitted-standardization"
    tasks = (Task.HARMONIZATION,)
    data = DataKind.SINGLE_DOMAIN
    training = Training.FIT
    input_spec = MR
    output_spec = MR

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self.mean = 0.0
        self.std = 1.0

    def fit(self, volumes: object) -> None:
        values = np.concatenate([np.asarray(v).ravel() for v in volumes])  # type: ignore[attr-defined]
        self.mean, self.std = float(values.mean()), float(values.std())

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        z = (image - image.mean()) / image.std().clamp_min(1e-6)
        return z * self.std + self.mean

    def state_values(self) -> dict[str, StateValue]:
        return {"mean": self.mean, "std": self.std}

    def load_state_values(self, values: Mapping[str, StateValue]) -> None:
        self.mean, self.std = float(values["mean"]), float(values["std"])  # type: ignore[arg-type]


class ThroughPlaneUpsampler(PatchNetworkMethod):
    """Shape 3: output on a finer grid (×2 along the third axis), by sliding window."""

    id = "example-through-plane-upsampler"
    tasks = (Task.SUPER_RESOLUTION,)
    data = DataKind.PAIRED
    input_spec = MR
    output_spec = MR
    output_scale = (1.0, 1.0, 2.0)
    default_roi_size: ClassVar[tuple[int, int, int]] = (16, 16, 8)

    def build_network(self) -> torch.nn.Module:
        return torch.nn.Upsample(scale_factor=(1.0, 1.0, 2.0), mode="nearest")


class DomainCondition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target_domain: Literal["A", "B", "C"] = "A"


class DomainOffset(Method):
    """Shape 4 and 6: multi-domain data, output conditioned on a target domain."""

    id = "example-domain-offset"
    tasks = (Task.HARMONIZATION,)
    data = DataKind.MULTI_DOMAIN
    input_spec = MR
    output_spec = MR
    Condition = DomainCondition
    offsets: ClassVar[dict[str, float]] = {"A": 0.0, "B": 100.0, "C": -50.0}

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        domain = str(getattr(context.condition, "target_domain", "A"))
        return image + self.offsets[domain]


class SelfRescaling(Method):
    """Shape 5: fits on the input itself at predict time (its own 1st-99th percentiles)."""

    id = "example-self-rescaling"
    tasks = (Task.HARMONIZATION,)
    data = DataKind.NONE
    fits_at_predict = True
    input_spec = MR
    output_spec = MR

    def spatial_plan(self) -> SpatialPlan:
        return SpatialPlan(orientation="RAS")

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        low, high = np.percentile(image.numpy(), [1.0, 99.0])
        return torch.as_tensor((image.numpy() - low) / max(float(high - low), 1e-6))


EXAMPLE_METHODS: Sequence[type[Method]] = (
    PointwiseNet,
    FittedStandardization,
    ThroughPlaneUpsampler,
    DomainOffset,
    SelfRescaling,
)


@hookimpl
def register_methods(register: Callable[[type[Method]], None]) -> None:
    for method in EXAMPLE_METHODS:
        register(method)
