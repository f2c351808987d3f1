"""The contract checks tell apart why a reloaded model predicts otherwise: state not
saved, a predict that is not deterministic, or a predict that changes the method's state."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.data.meta_tensor import MetaTensor
from pydantic import BaseModel

from medi2i.method import Method, NoCondition, Options, PredictContext, StateValue, Task, VolumeSpec
from medi2i.testing import check_method_contract, check_training_contract
from medi2i.testing.trainable_examples import TinyRegression


class Scaled(Method[Options, NoCondition]):
    """Multiplies by a level it keeps in its state."""

    id = "scaled"
    tasks = (Task.HARMONIZATION,)
    input_spec = output_spec = VolumeSpec(modality="MR")

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self.level = 2.0

    def predict(self, image: MetaTensor, context: PredictContext[NoCondition]) -> torch.Tensor:
        return image * self.level + 1.0

    def state_values(self) -> dict[str, StateValue]:
        return {"level": self.level}

    def load_state_values(self, values: Mapping[str, StateValue]) -> None:
        self.level = float(values["level"])  # type: ignore[arg-type]


class RunningLevel(Scaled):
    """Moves its saved level towards each input's mean: one volume leaks into the next."""

    id = "running-level"

    def predict(self, image: MetaTensor, context: PredictContext[NoCondition]) -> torch.Tensor:
        self.level = 0.5 * self.level + 0.5 * float(image.mean()) / 100.0
        return super().predict(image, context)


class RestoredRunningLevel(RunningLevel):
    id = "restored-running-level"
    restores_state = True


class Counts(Scaled):
    """Counts its calls in an attribute it does not save."""

    id = "counts"

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self.calls = 0

    def predict(self, image: MetaTensor, context: PredictContext[NoCondition]) -> torch.Tensor:
        self.calls += 1
        return image * float(self.calls) + 1.0


class OwnGenerator(Scaled):
    """Adds noise from an unseeded generator of its own."""

    id = "own-generator"

    def predict(self, image: MetaTensor, context: PredictContext[NoCondition]) -> torch.Tensor:
        noise = np.random.default_rng().normal(size=image.shape).astype(np.float32)
        return image * self.level + torch.as_tensor(noise)


class SeededNoise(Scaled):
    """Adds noise drawn from ``context.seed``: the same for the same settings."""

    id = "seeded-noise"

    def predict(self, image: MetaTensor, context: PredictContext[NoCondition]) -> torch.Tensor:
        generator = torch.Generator().manual_seed(context.seed)
        noise = torch.rand(image.shape, generator=generator)
        return image * self.level + noise + torch.rand(image.shape)  # the core seeds torch


class UnsavedLevel(Scaled):
    """Keeps its level out of the model folder."""

    id = "unsaved-level"

    def state_values(self) -> dict[str, StateValue]:
        return {}

    def load_state_values(self, values: Mapping[str, StateValue]) -> None:
        pass


def _doubled(method: Method[Any, Any]) -> None:
    method.level = 3.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("method_cls", "problem"),
    [
        (RunningLevel, r"changes the method's state \(state_values\(\)/state_tensors\(\) differ"),
        (RunningLevel, "set restores_state = True"),
        (Counts, "predicts differently the second time it is given the same volume"),
        (Counts, "not deterministic, or it changes the method's state"),
        (OwnGenerator, r"randomness from context.seed \(e.g. torch.Generator\(\).manual_seed"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_an_instance_that_predicts_otherwise_the_second_time_is_told_why(
    method_cls: type[Scaled], problem: str
) -> None:
    with pytest.raises(AssertionError, match=problem):
        check_method_contract(method_cls)


def test_state_that_is_not_saved_is_blamed_only_when_the_instance_repeats_itself() -> None:
    pattern = (
        r"unsaved-level: the method loaded from its model folder predicts differently from "
        r"the instance it was saved from, which predicts the same twice \(so neither "
        r"randomness nor a predict that changes the method's state explains it\); "
        "state_values/state_tensors do not hold all of its state"
    )
    with pytest.raises(AssertionError, match=pattern):
        check_method_contract(UnsavedLevel, prepare=_doubled)


@pytest.mark.parametrize("method_cls", [RestoredRunningLevel, SeededNoise])
def test_restored_state_and_seeded_randomness_keep_the_contract(method_cls: type[Scaled]) -> None:
    check_method_contract(method_cls)


class NoisyRegression(TinyRegression):
    """Adds noise from an unseeded generator of its own to what it predicts."""

    id = "noisy-regression"

    def predict(self, image: MetaTensor, context: PredictContext[Any]) -> Any:
        output = super().predict(image, context)
        noise = np.random.default_rng().normal(size=output.shape).astype(np.float32)
        return output + torch.as_tensor(noise)


def test_the_training_contract_tells_randomness_from_unsaved_state(tmp_path: Path) -> None:
    pattern = (
        r"noisy-regression: the method loaded from its model folder predicts differently "
        r"from the trained one, and the same instance predicts differently the second time.*"
        r"context.seed"
    )
    with pytest.raises(AssertionError, match=pattern):
        check_training_contract(
            NoisyRegression, tmp_path, options={"hidden": 4}, patch_size=(12, 12, 12)
        )
