"""The Python API used as a library: results refused as the command line refuses them,
no global state left changed, the caller's data never changed, and one-line errors for
wrong arguments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data.meta_tensor import MetaTensor

import medi2i
from medi2i.data.cases import CaseSet
from medi2i.errors import GeometryError, InputError, OptionsError, OutputError
from medi2i.method import DataKind, Training
from medi2i.model_folder import weights_sha256
from medi2i.testing.example_methods import SelfRescaling
from medi2i.testing.trainable_examples import TinyRegression, write_paired_cases
from medi2i.training import TrainingConfig, train

QUIET = medi2i.InferenceSettings(device="cpu", progress=False)


def varying(shape: tuple[int, int, int] = (12, 10, 8)) -> MetaTensor:
    values = np.random.default_rng(0).gamma(4.0, 25.0, shape).astype(np.float32)
    return medi2i.volume_from_array(values, np.eye(4), path="varying")


class _Constant(SelfRescaling):
    """A method that collapsed: one value whatever the input."""

    id = "example-constant"
    fits_at_predict = False

    def predict(self, image: MetaTensor, context: object) -> torch.Tensor:
        return torch.full_like(image.as_tensor(), 3.0)


# -- a collapsed output is refused on every path -------------------------------------------


def test_predict_tensor_refuses_a_constant_output_as_predict_does() -> None:
    with pytest.raises(OutputError, match=r"every voxel is 3, a constant volume.*collapsed"):
        medi2i.predict_tensor(_Constant(), varying(), settings=QUIET)
    with pytest.raises(OutputError, match="a constant volume"):
        medi2i.predict_outputs(_Constant(), varying(), settings=QUIET)


def test_a_caller_that_scores_outputs_may_take_a_constant_one() -> None:
    output = medi2i.predict_tensor(_Constant(), varying(), settings=QUIET, allow_constant=True)
    assert float(output.min()) == float(output.max()) == 3.0


def test_predict_refuses_a_constant_output_once_and_writes_nothing(tmp_path: Path) -> None:
    from medi2i.registry import Registry

    values = np.zeros((20, 18, 12), np.float32)
    values[5:8, 5:8, 5:8] = 5.0  # intensity-inversion's percentile window has no width
    source = medi2i.write_volume(MetaTensor(torch.from_numpy(values)[None]), tmp_path / "in.nii")
    with pytest.raises(OutputError, match="a constant volume") as error:
        medi2i.predict(
            source, tmp_path / "out.nii", method="intensity-inversion", settings=QUIET,
            registry=Registry(),
        )  # fmt: skip
    assert str(error.value).count("constant volume") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii"]


# -- training leaves the caller's random generators alone -----------------------------------


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> CaseSet:
    return write_paired_cases(tmp_path_factory.mktemp("cases"), count=2, shape=(16, 16, 16))


def _quick() -> TrainingConfig:
    return TrainingConfig(
        steps=2, batch_size=1, patch_size=(16, 16, 16), device="cpu", progress=False
    )


def test_train_puts_the_callers_torch_generator_back(cases: CaseSet, tmp_path: Path) -> None:
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    first = train(TinyRegression(), cases, config=_quick(), run_dir=tmp_path / "a")
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(99)  # another caller seed: the same training all the same
    second = train(TinyRegression(), cases, config=_quick(), run_dir=tmp_path / "b")
    hashes = {weights_sha256(result.model_dir) for result in (first, second)}
    assert len(hashes) == 1
    assert None not in hashes


def test_train_puts_the_generator_back_when_it_raises(cases: CaseSet, tmp_path: Path) -> None:
    class Broken(TinyRegression):
        def training_step(self, batch: object, trainer: object) -> dict[str, float]:
            raise RuntimeError("broken step")

    torch.manual_seed(7)
    before = torch.get_rng_state()
    with pytest.raises(Exception, match="broken step"):
        train(Broken(), cases, config=_quick(), run_dir=tmp_path / "run")
    assert torch.equal(torch.get_rng_state(), before)


def test_train_says_how_to_fit_a_method_not_trained_by_steps(
    cases: CaseSet, tmp_path: Path
) -> None:
    class Fitted(SelfRescaling):
        id = "example-fitted-on-pairs"
        data = DataKind.PAIRED
        training = Training.FIT
        fits_at_predict = False

    with pytest.raises(OptionsError, match=r"not trained by gradient steps.*fit_pairs"):
        train(Fitted(), cases, config=_quick(), run_dir=tmp_path / "run")


# -- volume_from_array copies and takes what users hold ----------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize("order", ["C", "F"])
def test_the_volume_never_shares_the_callers_array(dtype: type, order: str) -> None:
    values: np.ndarray = (np.arange(24).reshape(2, 3, 4) + 1).astype(dtype)
    array: np.ndarray = np.asfortranarray(values) if order == "F" else values
    volume = medi2i.volume_from_array(array, np.eye(4), path="x")
    volume[0, 0, 0, 0] = -5.0
    assert array[0, 0, 0] == 1
    array[1, 1, 1] = 100
    assert float(volume[0, 1, 1, 1]) != 100.0


@pytest.mark.parametrize(
    "given",
    [
        lambda a: torch.from_numpy(a),
        lambda a: a.tolist(),
        lambda a: a[None],  # channel first, as read_volume returns volumes
        lambda a: MetaTensor(torch.from_numpy(a)),
    ],
    ids=["torch", "list", "channel-first", "metatensor"],
)
def test_volume_from_array_takes_tensors_lists_and_a_channel_axis(given: object) -> None:
    array = np.arange(60, dtype=np.float32).reshape(5, 4, 3)
    volume = medi2i.volume_from_array(given(array), np.eye(4), path="x")  # type: ignore[operator]
    assert tuple(volume.shape) == (1, 5, 4, 3)
    assert np.array_equal(volume[0].numpy(), array)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ([[1.0, 2.0], [3.0]], "ragged"),
        ("volume.nii", r"3D numpy array of real numbers .* not a str"),
        (np.zeros((2, 2, 2), np.complex64), "magnitude"),
    ],
)
def test_volume_from_array_refuses_other_values_in_one_line(given: object, message: str) -> None:
    with pytest.raises(InputError, match=message) as error:
        medi2i.volume_from_array(given, np.eye(4), path="x")  # type: ignore[arg-type]
    assert "\n" not in str(error.value)


# -- save_model and unfitted methods ------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("intensity-inversion", r"not the str 'intensity-inversion'; make one with"),
        (TinyRegression, r"not the class .*TinyRegression; make one with TinyRegression"),
        (3, r"not a int object"),
    ],
)
def test_save_model_says_to_pass_a_method_object(
    tmp_path: Path, given: object, message: str
) -> None:
    with pytest.raises(OptionsError, match=message):
        medi2i.save_model(given, tmp_path / "model")  # type: ignore[arg-type]
    assert not (tmp_path / "model").exists()


def test_messages_name_an_array_given_for_a_path_without_pasting_it() -> None:
    big = np.arange(100_000, dtype=np.float32)
    with pytest.raises(OptionsError) as raised:
        medi2i.read_volume(big)  # type: ignore[arg-type]
    assert "a ndarray object of shape (100000,), float32" in str(raised.value)
    assert len(str(raised.value)) < 300
    with pytest.raises(OptionsError) as swapped:
        medi2i.predict_tensor(big, SelfRescaling({}))  # type: ignore[arg-type]
    assert "a ndarray object of shape (100000,)" in str(swapped.value)
    assert len(str(swapped.value)) < 400


def test_wrong_values_in_path_and_method_slots_are_one_short_line(tmp_path: Path) -> None:
    big = np.zeros((40, 40, 40), np.float32)
    volume = medi2i.volume_from_array(big + np.arange(40.0), np.eye(4), path="v")
    with pytest.raises(OptionsError) as output_slot:
        medi2i.write_volume(volume, big)  # type: ignore[arg-type]
    assert "a ndarray object of shape (40, 40, 40)" in str(output_slot.value)
    assert len(str(output_slot.value)) < 300
    with pytest.raises(OptionsError, match="save_model takes the model folder's path second"):
        medi2i.save_model(SelfRescaling({}), big)  # type: ignore[arg-type]
    with pytest.raises(OptionsError, match="mark_trained takes a method object, not a ndarray"):
        medi2i.mark_trained(big)  # type: ignore[arg-type]
    with pytest.raises(GeometryError) as affine:
        medi2i.volume_from_array(big, np.zeros((300, 300)), path="x")
    assert len(str(affine.value)) < 400
    with pytest.raises(GeometryError, match=r"2 channels first: give one channel"):
        medi2i.volume_from_array(np.zeros((2, 4, 4, 4)), np.eye(4), path="x")


def test_fit_pairs_take_volume_tensors_in_fit_pairs_only() -> None:
    with pytest.raises(InputError, match=r"FitPair 'c': source must be a channel-first"):
        medi2i.FitPair("c", np.zeros((1, 4, 4, 4)), np.zeros((1, 4, 4, 4)))  # type: ignore[arg-type]
