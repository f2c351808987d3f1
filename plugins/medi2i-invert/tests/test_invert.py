"""Tests of the intensity-inversion reference plugin."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from medi2i_invert.method import RANGE_KEY, IntensityInversion
from monai.data import MetaTensor

import medi2i
from medi2i import InferenceSettings, OptionsError, Registry, predict_tensor
from medi2i.testing import check_method_contract, make_volume

SETTINGS = InferenceSettings(roi_size=(16, 16, 16), device="cpu", amp=False, progress=False)
FULL_RANGE = {"lower_percentile": 0.0, "upper_percentile": 100.0}


def invert(image: MetaTensor, **options: object) -> MetaTensor:
    return predict_tensor(IntensityInversion(options), image, settings=SETTINGS)


def test_keeps_the_method_contract() -> None:
    check_method_contract(IntensityInversion, options={"roi_size": (16, 16, 16)})


def test_inverting_twice_gives_back_the_input(medi2i_volume: MetaTensor) -> None:
    twice = invert(invert(medi2i_volume, **FULL_RANGE), **FULL_RANGE)

    np.testing.assert_allclose(twice.numpy(), medi2i_volume.numpy(), rtol=1e-5, atol=1e-3)


def test_bright_becomes_dark_in_input_units(medi2i_volume: MetaTensor) -> None:
    inverted = invert(medi2i_volume, **FULL_RANGE)
    low, high = float(medi2i_volume.min()), float(medi2i_volume.max())

    expected = low + high - medi2i_volume.numpy()
    np.testing.assert_allclose(inverted.numpy(), expected, rtol=1e-5, atol=1e-3)
    assert int(inverted.argmin()) == int(medi2i_volume.argmax())


def test_values_beyond_the_percentiles_are_clipped() -> None:
    image = make_volume((16, 16, 16), kind="ramp")
    image[0, 0, 0, 0] = -5000.0  # outliers far outside the percentile range
    image[0, -1, -1, -1] = 9000.0
    method = IntensityInversion({"lower_percentile": 5.0, "upper_percentile": 95.0})
    low, high = method.intensity_range(image)

    inverted = predict_tensor(method, image, settings=SETTINGS)

    assert float(inverted.min()) == pytest.approx(low, abs=1e-3)
    assert float(inverted.max()) == pytest.approx(high, abs=1e-3)
    assert float(inverted[0, 0, 0, 0]) == pytest.approx(high, abs=1e-3)
    assert float(inverted[0, -1, -1, -1]) == pytest.approx(low, abs=1e-3)


def test_statistics_are_taken_over_the_whole_volume() -> None:
    image = make_volume((24, 20, 16))
    prepared = IntensityInversion(FULL_RANGE).preprocess(image)

    assert prepared.meta[RANGE_KEY] == (float(image.min()), float(image.max()))
    assert float(prepared.min()) == 0.0
    assert float(prepared.max()) == pytest.approx(1.0)
    assert RANGE_KEY not in image.meta


def test_a_constant_volume_is_refused_as_holding_nothing() -> None:
    image = make_volume((16, 16, 16), kind="constant")

    with pytest.raises(medi2i.InputError, match="constant volume holds nothing"):
        invert(image)


def test_the_output_keeps_the_input_grid(medi2i_volume: MetaTensor) -> None:
    inverted = invert(medi2i_volume)

    assert inverted.shape == medi2i_volume.shape
    assert torch.allclose(inverted.affine, medi2i_volume.affine, atol=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        {"lower_percentile": 60.0, "upper_percentile": 40.0},
        {"lower_percentile": 50.0, "upper_percentile": 50.0},
        {"lower_percentile": -1.0},
        {"upper_percentile": 101.0},
        {"roi_size": (16, 0, 16)},
        {"percentile": 5.0},
    ],
)
def test_invalid_options_are_an_options_error(options: dict[str, object]) -> None:
    with pytest.raises(OptionsError, match="intensity-inversion"):
        IntensityInversion(options)


def test_predicts_a_file_through_the_public_api(medi2i_volume_file: Path, tmp_path: Path) -> None:
    written = medi2i.predict(
        medi2i_volume_file,
        tmp_path / "inverted.nii.gz",
        method="intensity-inversion",
        options=FULL_RANGE,
        settings=SETTINGS,
    )

    source = medi2i.read_volume(medi2i_volume_file).numpy()
    result = medi2i.read_volume(written).numpy()
    np.testing.assert_allclose(result, source.min() + source.max() - source, rtol=1e-5, atol=1e-3)


def test_is_registered_by_the_installed_plugin(medi2i_registry: Registry) -> None:
    assert medi2i_registry.method("intensity-inversion") is IntensityInversion
    assert medi2i_registry.method_owner("intensity-inversion") == "invert"


def test_hook_module_imports_no_torch() -> None:
    code = "import sys, medi2i_invert; print('torch' in sys.modules, 'monai' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == ["False", "False"]


def test_card_describes_the_method() -> None:
    card = yaml.safe_load(resources.files("medi2i_invert").joinpath("card.yaml").read_text())

    assert card["id"] == IntensityInversion.id
    assert card["version"] == IntensityInversion.version
    assert "clinical" in card["intended_use"]["out_of_scope"].lower()
