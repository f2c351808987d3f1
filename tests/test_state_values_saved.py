"""Fitted values that the model folder's JSON cannot keep and give back are refused when
the model is saved, naming the key, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.data.meta_tensor import MetaTensor

import medi2i
from medi2i.errors import ModelFormatError
from medi2i.method import Method, PredictContext, StateValue, Task, VolumeSpec


def _method(values: dict[str, object]) -> Method:
    class Fitted(Method):
        id = "test-fitted-values"
        tasks = (Task.TRANSLATION,)
        input_spec = VolumeSpec(modality="MR")
        output_spec = VolumeSpec(modality="MR")

        def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
            return image.as_tensor()

        def state_values(self) -> dict[str, StateValue]:
            return values  # type: ignore[return-value]

        def load_state_values(self, loaded: object) -> None:
            pass

    return Fitted()


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"landmarks": {"a": 1.0}}, "'landmarks'] is a dict"),
        ({"scale": float("nan")}, "'scale'] is not finite"),
        ({"edges": [0.0, float("inf")]}, "'edges'] holds a value that is not finite"),
        ({"edges": [0.0, [1.0]]}, "'edges'] holds a list"),
        ({"labels": ["a", 1.0]}, "'labels'] mixes strings and numbers"),
    ],
)
def test_a_value_json_cannot_keep_is_refused_by_key(
    tmp_path: Path, values: dict[str, object], problem: str
) -> None:
    with pytest.raises(ModelFormatError, match=problem):
        medi2i.save_model(_method(values), tmp_path / "model")
    assert not (tmp_path / "model").exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left either


def test_numbers_strings_booleans_and_their_lists_are_saved(tmp_path: Path) -> None:
    values = {"scale": 2.5, "count": 3, "name": "a", "on": True, "edges": [0.0, 1, 2.5]}
    folder = medi2i.save_model(_method(values), tmp_path / "model")
    assert (folder / "medi2i-model.json").is_file()


def test_the_contract_check_reports_values_that_cannot_be_saved() -> None:
    from medi2i.testing import check_method_contract

    method = _method({"landmarks": {"a": 1.0}})
    with pytest.raises(AssertionError, match=r"its model folder cannot be saved: .*'landmarks'"):
        check_method_contract(type(method))
