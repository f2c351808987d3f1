"""WhiteStripe's white-matter peak is a mode of the histogram, and its stripe's standard
deviation is never below one intensity level's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from medi2i_harmonization.whitestripe import PEAK_PROMINENCE, WhiteStripe

import medi2i
from medi2i import InferenceSettings, InputError, Registry
from medi2i.io.base import volume_from_array

Phantom = Callable[..., np.ndarray]
FLAT = r"no white-matter peak: .* is flat on one side of its \w+ peak .*zscore or nyul instead$"
"""The refusal of a histogram whose chosen peak is not a mode."""


def ramp() -> np.ndarray:
    """A linear ramp of intensities 1 to 1000 over 32³ voxels: every level is equally
    common, and the "peaks" of its histogram are ripples."""
    return np.linspace(1.0, 1000.0, 32**3).reshape(32, 32, 32)


def uniform_8bit(seed: int) -> np.ndarray:
    """32³ random 8-bit intensities, equally likely: a flat histogram with noise."""
    return np.round(np.random.default_rng(seed).uniform(0.0, 255.0, (32, 32, 32)))


@pytest.mark.parametrize("peak", ["last", "largest"])
def test_a_ramp_of_intensities_is_refused(peak: str) -> None:
    # before, its last peak was a ripple at 986: the stripe was its brightest voxels
    with pytest.raises(InputError, match=FLAT):
        WhiteStripe({"peak": peak}).stripe(ramp())


@pytest.mark.parametrize("peak", ["last", "largest"])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_flat_histogram_of_random_intensities_is_refused(peak: str, seed: int) -> None:
    with pytest.raises(InputError, match=FLAT):
        WhiteStripe({"peak": peak}).stripe(uniform_8bit(seed))


def test_a_plateau_ending_in_a_ripple_is_refused() -> None:
    # uniform float intensities: the histogram is flat, then falls at its brightest
    # end; its last ripple before the fall was taken for white matter
    values = np.random.default_rng(2).uniform(1.0, 1000.0, (32, 32, 32))

    with pytest.raises(InputError, match=FLAT):
        WhiteStripe().stripe(values)


def test_the_refusal_says_how_far_the_histogram_falls() -> None:
    with pytest.raises(InputError) as refused:
        WhiteStripe().stripe(ramp())

    message = str(refused.value)
    assert "\n" not in message
    assert f"noise standard deviations below it there, {PEAK_PROMINENCE:g} needed" in message


def test_the_refusal_names_the_input_file(medi2i_registry: Registry, tmp_path: Path) -> None:
    source = tmp_path / "ramp.nii.gz"
    medi2i.write_volume(
        volume_from_array(ramp().astype(np.float32), np.eye(4), path=source), source
    )
    settings = InferenceSettings(device="cpu", progress=False)

    with pytest.raises(InputError, match=rf"^{source}: WhiteStripe finds no white-matter peak"):
        medi2i.predict(
            source,
            tmp_path / "out.nii.gz",
            method="whitestripe",
            registry=medi2i_registry,
            settings=settings,
        )


@pytest.mark.parametrize("peak", ["last", "largest"])
def test_a_peak_of_a_small_phantom_is_still_a_mode(phantom: Phantom, peak: str) -> None:
    # 16³ voxels of head in a 32³ volume: the noisiest histogram the tests accept
    tissues = {"grey": (600.0, 0.4), "white": (900.0, 0.6)}

    stripe = WhiteStripe({"peak": peak}).stripe(phantom(tissues=tissues))

    assert stripe.mode == pytest.approx(900.0, abs=15.0)


def white_matter_on_one_level(seed: int = 1) -> np.ndarray:
    """An 8-bit crop whose white matter is all at level 110, 1 % of it at 111: the mode
    falls just above 110, and the stripe is almost only level 110."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(4, size=(24, 24, 24), p=[0.4, 0.25, 0.34, 0.01])
    means, sds = np.array([30.0, 100.0, 110.0, 111.0]), np.array([4.0, 4.0, 0.0, 0.0])
    return np.asarray(np.round(means[labels] + rng.normal(size=labels.shape) * sds[labels]))


def test_the_stripes_std_is_at_least_one_levels() -> None:
    values = white_matter_on_one_level()

    stripe = WhiteStripe().stripe(values)

    chosen = values[(values >= stripe.low) & (values <= stripe.high) & (values > values.mean())]
    assert float(chosen.std()) < 1.0 / np.sqrt(12.0)  # the levels' own spread: 0.22
    assert stripe.std == pytest.approx(1.0 / np.sqrt(12.0))
    assert stripe.mean == pytest.approx(float(chosen.mean()))


def test_a_stripe_of_several_levels_keeps_its_std(phantom: Phantom) -> None:
    values = np.asarray(np.round(phantom()), np.float64)

    stripe = WhiteStripe().stripe(values)

    chosen = values[(values >= stripe.low) & (values <= stripe.high) & (values > values.mean())]
    assert stripe.std == float(chosen.std())
