"""The kit plugin authors test with, from ``medi2i.testing``.

The method contract check accepts every shape of example method and catches each kind
of broken one; ``make_volume`` and ``write_volume_file`` make small, seeded, oblique
volumes; the pytest fixtures give a volume, its file and a registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.data.meta_tensor import MetaTensor

import medi2i
from medi2i import Method, Task, VolumeSpec
from medi2i.grid import Grid
from medi2i.method import MethodClass, Options
from medi2i.registry import Registry
from medi2i.testing import check_method_contract, make_volume, write_volume_file
from medi2i.testing.example_methods import (
    EXAMPLE_METHODS,
    DomainOffset,
    FittedStandardization,
    PointwiseNet,
)


def fit_if_needed(method: Method) -> None:
    if isinstance(method, FittedStandardization):
        method.fit([make_volume(seed=7).numpy()])


@pytest.mark.parametrize("method_cls", EXAMPLE_METHODS, ids=lambda cls: cls.id)
def test_the_contract_check_accepts_every_shape_of_method(method_cls: MethodClass) -> None:
    check_method_contract(method_cls, prepare=fit_if_needed)


class DeclaresTwoChannels(PointwiseNet):
    """Declares two output channels and predicts one."""

    id = "declares-two-channels"
    output_spec = VolumeSpec(channels=2)


class PredictsNaN(DomainOffset):
    """Predicts NaN everywhere."""

    id = "predicts-nan"

    def predict(self, image: Any, context: Any) -> torch.Tensor:
        return image * float("nan")  # type: ignore[no-any-return]


class ForgetsItsWeights(PointwiseNet):
    """Keeps its (randomly initialized) weights out of the model folder."""

    id = "forgets-its-weights"

    def build_network(self) -> torch.nn.Module:
        return torch.nn.Conv3d(1, 1, 1)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_tensors(self, tensors: Any) -> None:
        pass


class ModifiesItsInput(DomainOffset):
    """Scales the caller's volume in place."""

    id = "modifies-its-input"

    def preprocess(self, image: Any, **_: Any) -> Any:
        return image.mul_(2.0)


class Smooths(PointwiseNet):
    """Declares itself pointwise but averages each voxel's neighbourhood."""

    id = "smooths-but-says-pointwise"
    pointwise = True

    def build_network(self) -> torch.nn.Module:
        return torch.nn.AvgPool3d(3, stride=1, padding=1)


class HasNoId(Method):
    """Forgot to name itself."""

    tasks = (Task.TRANSLATION,)
    input_spec = output_spec = VolumeSpec()

    def predict(self, image: Any, context: Any) -> torch.Tensor:
        return image  # type: ignore[no-any-return]


class PredictsAConstant(DomainOffset):
    """Returns one value everywhere, which the command line refuses to write."""

    id = "predicts-a-constant"

    def predict(self, image: Any, context: Any) -> torch.Tensor:
        return torch.full_like(image.as_tensor(), 50000.0)


class Raises(DomainOffset):
    """Its own code fails."""

    id = "raises"

    def predict(self, image: Any, context: Any) -> torch.Tensor:
        raise RuntimeError("boom")


class ReturnsBooleans(DomainOffset):
    """Returns a mask, which the core would write as 0 and 1 in float32."""

    id = "returns-booleans"

    def predict(self, image: Any, context: Any) -> torch.Tensor:
        return image.as_tensor() > float(image.as_tensor().median())


class ReturnsIntegers(DomainOffset):
    """Rounds to whole numbers in int64, which the core would write as float32."""

    id = "returns-integers"

    def predict(self, image: Any, context: Any) -> torch.Tensor:
        return (image.as_tensor() * 10).to(torch.int64)


class HasNoPredict(Method):
    """Leaves the abstract predict unimplemented."""

    id = "has-no-predict"
    tasks = (Task.TRANSLATION,)
    input_spec = output_spec = VolumeSpec()


class HasAWordForAVersion(DomainOffset):
    """Its version is no MAJOR.MINOR.PATCH, so saved models could not be compared."""

    id = "has-a-word-for-a-version"
    version = "one"


class NeedsStrength(Options):
    strength: float


class HasNoDefaultOptions(DomainOffset):
    """Has an option without a default."""

    id = "has-no-default-options"
    Options = NeedsStrength


@pytest.mark.parametrize(
    ("method_cls", "problem"),
    [
        (DeclaresTwoChannels, r"returned 1 channel\(s\) for its output but declares 2"),
        (PredictsNaN, "NaN or infinite"),
        (ForgetsItsWeights, "loaded from its model folder predicts differently"),
        (ModifiesItsInput, "modified its input volume in place"),
        (HasNoDefaultOptions, "does not construct with its default options"),
        (HasNoId, "does not set 'id'"),
        (Smooths, "declares pointwise = True, but its network's output at a voxel depends"),
        (PredictsAConstant, r"every voxel is 50000, a constant volume"),
        (Raises, "predicting raised RuntimeError: boom"),
        (ReturnsIntegers, r"returns-integers: its output has dtype torch\.int64, not a floating"),
        (ReturnsBooleans, r"its output has dtype torch\.bool, not a floating-point type"),
        (HasNoPredict, r"does not implement the abstract method\(s\) predict; define it in"),
        (HasAWordForAVersion, r"version 'one' is not MAJOR\.MINOR\.PATCH"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_the_contract_check_catches_a_broken_method(method_cls: MethodClass, problem: str) -> None:
    with pytest.raises(AssertionError, match=problem):
        check_method_contract(method_cls)


def test_make_volume_is_a_smooth_float_volume_on_an_oblique_grid() -> None:
    volume = make_volume((24, 20, 16), spacing=(0.9, 1.1, 2.0), origin=(-10.0, 5.0, 30.0))
    grid = Grid.of(volume)

    assert volume.shape == (1, 24, 20, 16)
    assert volume.dtype == torch.float32
    assert grid.spacing == pytest.approx((0.9, 1.1, 2.0))
    assert grid.affine[:3, 3].tolist() == [-10.0, 5.0, 30.0]
    rotation = grid.affine[:3, :3] / np.asarray(grid.spacing)
    assert not np.allclose(rotation, np.eye(3), atol=0.05), "the grid should be oblique"
    steps = volume.diff(dim=1).abs().max() / (volume.max() - volume.min())
    assert float(steps) < 0.3, "neighbouring voxels should be close: the volume is smooth"


def test_make_volume_depends_only_on_its_seed() -> None:
    assert torch.equal(make_volume(seed=1), make_volume(seed=1))
    assert not torch.equal(make_volume(seed=1), make_volume(seed=2))
    assert float(make_volume(kind="constant").std()) == 0.0


def test_an_unknown_volume_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown volume kind"):
        make_volume(kind="noise")  # type: ignore[arg-type]


def test_write_volume_file_round_trips_through_the_reader(tmp_path: Path) -> None:
    path = write_volume_file(tmp_path, "oblique.nii.gz", shape=(12, 10, 8), seed=4)
    written = medi2i.read_volume(path)
    expected = make_volume((12, 10, 8), seed=4)

    assert path == tmp_path / "oblique.nii.gz"
    assert torch.allclose(written.as_tensor(), expected.as_tensor())
    assert np.allclose(Grid.of(written).affine, Grid.of(expected).affine, atol=1e-5)


def test_the_fixtures_give_a_volume_its_file_and_a_registry(
    medi2i_volume: MetaTensor, medi2i_volume_file: Path, medi2i_registry: Registry
) -> None:
    assert medi2i_volume.shape == (1, 24, 20, 16)
    assert torch.allclose(medi2i.read_volume(medi2i_volume_file).as_tensor(), medi2i_volume)
    assert "nifti" in medi2i_registry.readers


def test_the_case_writers_can_write_into_the_same_folder_again(tmp_path: Path) -> None:
    """Test data, regenerated into a folder of a run before: replaced, not refused."""
    from medi2i.testing import (
        write_paired_cases,
        write_single_domain_cases,
        write_unpaired_cases,
        write_volume_file,
    )

    for write in (write_paired_cases, write_unpaired_cases, write_single_domain_cases):
        folder = tmp_path / write.__name__
        first = write(folder)
        again = write(folder)
        assert len(first.cases) == len(again.cases)
    assert write_volume_file(tmp_path) == write_volume_file(tmp_path)
