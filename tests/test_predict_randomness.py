"""A method that draws from torch's global generators at predict time gives the same
output for the same settings' seed, and leaves the caller's random state alone; outputs
carry no autograd graph."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from monai.data.meta_tensor import MetaTensor

import medi2i
from medi2i.method import Method, PredictContext, Task, VolumeSpec


class NoisyCopy(Method):
    """The input plus noise from torch's global generator."""

    id = "test-noisy-copy"
    tasks = (Task.TRANSLATION,)
    input_spec = VolumeSpec(modality="MR")
    output_spec = VolumeSpec(modality="MR")

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        return image.as_tensor() + torch.rand_like(image.as_tensor())


class ScaledByParameter(Method):
    """The input times a learnable-looking parameter (no network, no windows)."""

    id = "test-parameter-scale"
    tasks = (Task.TRANSLATION,)
    input_spec = VolumeSpec(modality="MR")
    output_spec = VolumeSpec(modality="MR")

    def __init__(self, options: object = None) -> None:
        super().__init__(options)  # type: ignore[arg-type]
        self.scale = torch.nn.Parameter(torch.tensor(2.0))

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        return image.as_tensor() * self.scale


def _image() -> MetaTensor:
    values = torch.linspace(0.0, 500.0, 8 * 9 * 10, dtype=torch.float32).reshape(1, 8, 9, 10)
    return MetaTensor(values, affine=torch.eye(4, dtype=torch.float64))


def _predict(method: Method, seed: int = 0) -> torch.Tensor:
    settings = {"device": "cpu", "progress": False, "seed": seed}
    return medi2i.predict_tensor(method, _image(), settings=settings).as_tensor()


def test_the_settings_seed_makes_a_random_prediction_repeatable() -> None:
    first = _predict(NoisyCopy())
    torch.rand(5)  # the caller's own draws in between change nothing
    assert torch.equal(_predict(NoisyCopy()), first)
    assert not torch.equal(_predict(NoisyCopy(), seed=1), first)


def test_prediction_leaves_the_callers_random_state_as_it_was() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _predict(NoisyCopy())
    assert torch.equal(torch.rand(3), expected)


def test_an_output_computed_with_parameters_carries_no_graph() -> None:
    output = _predict(ScaledByParameter())
    assert not output.requires_grad
    assert output.grad_fn is None


def test_a_seed_beyond_the_bound_is_refused_before_predicting() -> None:
    from medi2i.cli.options import MAX_SEED as OPTION_BOUND
    from medi2i.settings import MAX_SEED

    assert OPTION_BOUND == MAX_SEED == 2**32 - 1
    assert _predict(NoisyCopy(), seed=MAX_SEED).shape == (1, 8, 9, 10)
    with pytest.raises(medi2i.OptionsError, match="seed: Input should be less than or equal"):
        _predict(NoisyCopy(), seed=2**64)


def test_predict_refuses_a_seed_beyond_the_bound_in_one_line(tmp_path: Path) -> None:
    from medi2i.cli.main import build_cli
    from medi2i.plugins import load_plugins

    args = ["predict", str(tmp_path / "in.nii.gz"), str(tmp_path / "out.nii.gz")]
    args += ["--method", "intensity-inversion", "--seed", str(2**64)]
    result = CliRunner().invoke(build_cli(load_plugins()), args)
    assert result.exit_code == 2
    assert "0<=x<=4294967295" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
