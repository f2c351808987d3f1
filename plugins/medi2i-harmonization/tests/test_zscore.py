"""Tests of the z-score method."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from medi2i_harmonization.samples import foreground_mask
from medi2i_harmonization.zscore import ZScore
from monai.data import MetaTensor

import medi2i
from medi2i import InferenceSettings, Medi2iError, OptionsError, predict_tensor
from medi2i.testing import check_method_contract, make_volume

SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)
Phantom = Callable[..., np.ndarray]


def zscore(image: MetaTensor, method: ZScore | None = None) -> np.ndarray:
    output = predict_tensor(method or ZScore(), image, settings=SETTINGS)
    return np.asarray(output[0].numpy(), np.float64)


def test_keeps_the_method_contract() -> None:
    check_method_contract(ZScore)


def test_keeps_the_contract_with_a_fitted_target() -> None:
    check_method_contract(ZScore, prepare=lambda m: m.fit([make_volume(seed=1)]))


def test_foreground_has_mean_0_and_std_1(medi2i_volume: MetaTensor) -> None:
    output = zscore(medi2i_volume)
    inside = foreground_mask(medi2i_volume[0].numpy().astype(np.float64), rule="otsu")

    assert 0 < inside.sum() < inside.size  # the foreground is not the whole volume
    assert float(output[inside].mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(output[inside].std()) == pytest.approx(1.0, abs=1e-5)


def test_the_whole_volume_is_transformed_alike(medi2i_volume: MetaTensor) -> None:
    values = medi2i_volume[0].numpy().astype(np.float64)
    output = zscore(medi2i_volume)

    slope, intercept = np.polyfit(values.ravel(), output.ravel(), 1)
    np.testing.assert_allclose(output, slope * values + intercept, atol=1e-4)
    assert slope > 0


def test_ignores_the_background_around_the_head(phantom: Phantom) -> None:
    head = phantom()
    padded = np.pad(head, 8)  # the same head in a larger field of view
    method = ZScore({"foreground": "nonzero"})

    small, large = method.statistics(head), method.statistics(padded)

    assert small == pytest.approx(large)


def test_declared_target_sets_the_foreground_statistics(medi2i_volume: MetaTensor) -> None:
    output = zscore(medi2i_volume, ZScore({"target_mean": 500.0, "target_std": 80.0}))
    inside = foreground_mask(medi2i_volume[0].numpy().astype(np.float64), rule="otsu")

    assert float(output[inside].mean()) == pytest.approx(500.0, abs=1e-3)
    assert float(output[inside].std()) == pytest.approx(80.0, abs=1e-3)


def test_fit_takes_the_mean_statistics_of_the_target_domain(phantom: Phantom) -> None:
    target_domain = [2.0 * phantom(seed=1) + 100.0, 3.0 * phantom(seed=2) + 50.0]
    method = ZScore({"foreground": "nonzero"})

    method.fit(target_domain)

    means, stds = zip(*(method.statistics(v) for v in target_domain), strict=True)
    assert method.target() == pytest.approx((np.mean(means), np.mean(stds)))
    harmonized = method.standardize(phantom(seed=3))
    inside = phantom(seed=3) != 0
    assert float(harmonized[inside].mean()) == pytest.approx(np.mean(means))
    assert float(harmonized[inside].std()) == pytest.approx(np.mean(stds))


def test_fit_reads_volume_files(tmp_path: Path) -> None:
    path = medi2i.write_volume(make_volume(seed=4), tmp_path / "a.nii.gz")
    from_file, from_tensor = ZScore(), ZScore()

    from_file.fit([path])
    from_tensor.fit([make_volume(seed=4)])

    assert from_file.target() == pytest.approx(from_tensor.target())


def test_fitting_over_a_declared_target_is_refused() -> None:
    method = ZScore({"target_mean": 0.5, "target_std": 2.0})

    with pytest.raises(OptionsError, match="declares target_mean"):
        method.fit([make_volume()])


def test_a_constant_volume_is_refused() -> None:
    with pytest.raises(Medi2iError, match="constant volume"):
        zscore(make_volume((16, 16, 16), kind="constant"))


@pytest.mark.parametrize(
    "options",
    [
        {"target_mean": 1.0},
        {"target_std": 1.0},
        {"target_mean": 1.0, "target_std": 0.0},
        {"foreground": "brain"},
        {"mean": 0.0},
    ],
)
def test_invalid_options_are_an_options_error(options: dict[str, object]) -> None:
    with pytest.raises(OptionsError, match="zscore"):
        ZScore(options)
