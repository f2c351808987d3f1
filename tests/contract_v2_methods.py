"""Toy methods of the Method contract's v2 shapes, for the ``test_contract_v2_*`` tests.

``TwoWay`` is an unpaired two-domain translator whose condition picks the direction,
``Sampler`` yields several named outputs, ``SelfAdapting`` keeps per-volume state and
adapts; ``registry_with`` makes a registry that knows some of them.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data.meta_tensor import MetaTensor
from pydantic import BaseModel, ConfigDict

from medi2i import (
    AdaptContext,
    DataKind,
    DomainSpec,
    Method,
    NoCondition,
    Options,
    Output,
    PredictContext,
    Task,
    Training,
    VolumeSpec,
    hookimpl,
)
from medi2i.io.base import volume_from_array
from medi2i.plugins import load_plugins
from medi2i.registry import Registry
from medi2i.settings import InferenceSettings

QUIET = InferenceSettings(device="cpu", progress=False)


def image(values: np.ndarray | None = None) -> MetaTensor:
    data = values if values is not None else np.linspace(0, 1, 8 * 8 * 8).reshape(8, 8, 8)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    return volume_from_array(np.asarray(data, np.float32), affine, path=Path("test.nii.gz"))


class Direction(BaseModel):
    """Which domain to translate into."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: str | None = None


class TwoWay(Method[Options, Direction]):
    """A two-way MR↔CT toy: records the domains it was given, scales per domain."""

    id = "two-way-toy"
    tasks = (Task.TRANSLATION,)
    data = DataKind.UNPAIRED
    training = Training.FIT
    input_spec = VolumeSpec()
    output_spec = VolumeSpec()

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.seen: list[tuple[str, str | None]] = []

    def fit_domains(self, volumes: Mapping[str, Sequence[MetaTensor]]) -> None:
        """Its per-domain scales are fixed; fitting only records that it happened."""
        self.seen.append(("fit", None))

    def target(self, condition: Direction) -> str:
        return condition.to or self.domain_names[1]

    def check_condition(self, condition: Direction) -> None:
        if condition.to is not None:
            self.domain(condition.to)  # raises with the known names

    def input_domain(self, condition: Direction) -> str | None:
        (other,) = [n for n in self.domain_names if n != self.target(condition)]
        return other

    def outputs(self, condition: Direction) -> tuple[Output, ...]:
        target = self.target(condition)
        return (Output("", self.domain(target).volume_spec(), target),)

    def preprocess(
        self, image: MetaTensor, *, domain: str | None = None, condition: object = None
    ) -> MetaTensor:
        self.seen.append(("pre", domain))
        return image * (0.001 if domain and self.domain(domain).modality == "CT" else 1.0)

    def predict(self, image: MetaTensor, context: PredictContext[Direction]) -> torch.Tensor:
        return image

    def postprocess(
        self,
        output: MetaTensor,
        image: MetaTensor,
        *,
        domain: str | None = None,
        condition: object = None,
    ) -> MetaTensor:
        self.seen.append(("post", domain))
        return output * (1000.0 if domain and self.domain(domain).modality == "CT" else 1.0)


DOMAINS = (DomainSpec(name="ct", modality="CT", units="HU"), DomainSpec(name="mr", modality="MR"))


class Styles(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    styles: int = 2


class Sampler(Method[Options, Styles]):
    """Yields ``styles`` named outputs, each scaled by its index plus one."""

    id = "style-sampler"
    tasks = (Task.TRANSLATION,)
    input_spec = output_spec = VolumeSpec(modality="MR")

    def outputs(self, condition: Styles) -> tuple[Output, ...]:
        return tuple(
            Output(f"style-{k}", self.output_spec, condition={"style": k})
            for k in range(condition.styles)
        )

    def predict(
        self, image: MetaTensor, context: PredictContext[Styles]
    ) -> Mapping[str, torch.Tensor]:
        return {f"style-{k}": image * (k + 1) for k in range(context.condition.styles)}


class SelfAdapting(Method):
    """Keeps a running offset it changes while predicting (restored after each volume)."""

    id = "self-adapting"
    tasks = (Task.HARMONIZATION,)
    input_spec = output_spec = VolumeSpec()
    restores_state = True
    adapts = True

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.offset = 0.0

    def predict(self, image: MetaTensor, context: PredictContext[NoCondition]) -> torch.Tensor:
        self.offset += 1.0
        return image + self.offset

    def state_values(self) -> dict[str, float]:  # type: ignore[override]
        return {"offset": self.offset}

    def load_state_values(self, values: Mapping[str, Any]) -> None:
        self.offset = float(values.get("offset", 0.0))

    def adapt(self, volumes: Any, context: AdaptContext) -> None:
        self.offset = float(np.mean([float(v.mean()) for v in volumes]))


def registry_with(*methods: type[Method[Any, Any]]) -> Registry:
    plugin = types.ModuleType("contract_v2_methods")

    @hookimpl
    def register_methods(register: Any) -> None:
        for method in methods:
            register(method)

    plugin.register_methods = register_methods  # type: ignore[attr-defined]
    plugins = load_plugins()
    plugins.manager.register(plugin, name="contract-v2")
    return Registry(plugins)
