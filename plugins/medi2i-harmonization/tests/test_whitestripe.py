"""Tests of the WhiteStripe method."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from medi2i_harmonization.whitestripe import WhiteStripe
from monai.data.meta_tensor import MetaTensor

import medi2i
import medi2i.testing.contract
from medi2i import InferenceSettings, Medi2iError, OptionsError, predict_tensor
from medi2i.testing import check_method_contract, make_volume

Phantom = Callable[..., np.ndarray]
SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)
WHITE, GREY = 900.0, 600.0
"""Tissue means of the test phantom (see conftest.T1_TISSUES)."""


def t1_on_grid(shape: tuple[int, int, int] = (24, 20, 16), *, seed: int = 0) -> MetaTensor:
    """:func:`make_volume`'s oblique grid filled with grey and white matter: its blobs on
    a gradient have no white-matter peak, and WhiteStripe refuses them."""
    image = make_volume(shape, seed=seed)
    rng = np.random.default_rng(seed)
    labels = rng.choice(2, size=shape)
    values = np.array([GREY, WHITE])[labels] + rng.normal(0.0, 30.0, shape)
    image[0] = torch.as_tensor(values, dtype=image.dtype)
    return image


@pytest.fixture
def t1_contract_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    """The contract check predicts :func:`t1_on_grid` instead of its blobs."""
    monkeypatch.setattr(
        medi2i.testing.contract, "make_volume", lambda shape, **_: t1_on_grid(shape)
    )


@pytest.mark.usefixtures("t1_contract_volume")
def test_keeps_the_method_contract() -> None:
    check_method_contract(WhiteStripe)


@pytest.mark.usefixtures("t1_contract_volume")
def test_keeps_the_contract_with_a_fitted_target() -> None:
    check_method_contract(WhiteStripe, prepare=lambda m: m.fit([t1_on_grid(seed=2)]))


def test_the_contracts_blob_volume_has_no_white_matter_peak() -> None:
    with pytest.raises(Medi2iError, match=r"no white-matter peak.*zscore or nyul"):
        WhiteStripe().standardize(make_volume()[0].numpy().astype(np.float64))


def test_finds_the_white_matter_peak_of_a_t1_histogram(phantom: Phantom) -> None:
    stripe = WhiteStripe().stripe(phantom())

    assert stripe.mode == pytest.approx(WHITE, abs=15.0)
    assert stripe.mean == pytest.approx(WHITE, abs=10.0)
    assert stripe.low < WHITE < stripe.high
    assert stripe.high - stripe.low < 100.0  # inside white matter (noise σ 30)


def test_takes_the_last_peak_even_when_grey_matter_is_larger(phantom: Phantom) -> None:
    tissues = {"csf": (300.0, 0.1), "grey": (GREY, 0.55), "white": (WHITE, 0.35)}
    volume = phantom(tissues=tissues)

    last = WhiteStripe().stripe(volume)
    largest = WhiteStripe({"peak": "largest"}).stripe(volume)

    assert last.mode == pytest.approx(WHITE, abs=15.0)
    assert largest.mode == pytest.approx(GREY, abs=15.0)


def test_ignores_a_small_bright_class_beyond_white_matter(phantom: Phantom) -> None:
    tissues = {"grey": (GREY, 0.45), "white": (WHITE, 0.5), "fat": (1300.0, 0.05)}

    stripe = WhiteStripe().stripe(phantom(tissues=tissues))

    assert stripe.mode == pytest.approx(WHITE, abs=15.0)


def test_white_matter_is_standardized_to_mean_0_std_1(phantom: Phantom) -> None:
    volume = phantom()
    method = WhiteStripe()
    stripe = method.stripe(volume)

    output = method.standardize(volume)

    in_stripe = (volume >= stripe.low) & (volume <= stripe.high) & (volume > volume.mean())
    assert float(output[in_stripe].mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(output[in_stripe].std()) == pytest.approx(1.0, abs=1e-6)


def test_output_does_not_depend_on_the_scanners_linear_units(phantom: Phantom) -> None:
    volume = phantom()
    method = WhiteStripe()

    np.testing.assert_allclose(
        method.standardize(3.5 * volume + 40.0), method.standardize(volume), atol=1e-6
    )


def test_fitted_target_puts_white_matter_at_the_target_domains_level(phantom: Phantom) -> None:
    method = WhiteStripe()
    method.fit([2.0 * phantom(seed=1), 2.0 * phantom(seed=2)])
    mean, std = method.target() or (0.0, 0.0)

    output = method.standardize(phantom(seed=3))

    assert mean == pytest.approx(2.0 * WHITE, abs=20.0)
    assert method.stripe(output).mean == pytest.approx(mean, abs=1e-6 * mean)
    assert method.stripe(output).std == pytest.approx(std, rel=1e-6)


def test_predicts_a_volume_on_its_grid() -> None:
    volume = t1_on_grid((24, 20, 16))

    output = predict_tensor(WhiteStripe(), volume, settings=SETTINGS)

    assert output.shape == volume.shape
    assert np.isfinite(output.numpy()).all()


def test_a_constant_volume_is_refused() -> None:
    with pytest.raises(Medi2iError, match="constant"):
        WhiteStripe().standardize(np.full((8, 8, 8), 5.0))


@pytest.mark.parametrize(
    "options",
    [{"width": 0.0}, {"width": 0.5}, {"peak": "first"}, {"bins": 2}, {"tau": 0.05}],
)
def test_invalid_options_are_an_options_error(options: dict[str, object]) -> None:
    with pytest.raises(OptionsError, match="whitestripe"):
        WhiteStripe(options)


def test_the_stripe_of_a_real_t1_is_white_matter(data_dir: Path) -> None:
    t1 = medi2i.read_volume(data_dir / "mni152_2009a_t1_1mm.nii.gz")[0].numpy()
    white_matter = medi2i.read_volume(data_dir / "mni152_2009a_wm_1mm.nii.gz")[0].numpy()
    values = t1.astype(np.float64)

    stripe = WhiteStripe().stripe(values)

    in_stripe = (values >= stripe.low) & (values <= stripe.high) & (values > values.mean())
    assert float((white_matter[in_stripe] > 0.5).mean()) > 0.95
