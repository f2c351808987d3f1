"""The methods on inputs a scanner or a pipeline really produces: one extreme voxel,
negative values (noise around zero, a small offset), exact zeros."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from medi2i_harmonization.nyul import NyulStandardization
from medi2i_harmonization.samples import foreground_mask
from medi2i_harmonization.whitestripe import WhiteStripe
from medi2i_harmonization.zscore import ZScore

from medi2i import InputError

Phantom = Callable[..., np.ndarray]

CENTRE = (16, 16, 16)


def with_voxel(volume: np.ndarray, value: float) -> np.ndarray:
    """``volume`` with its centre voxel set to ``value`` (a corrupt or hot voxel)."""
    spoiled = volume.copy()
    spoiled[CENTRE] = value
    return spoiled


@pytest.mark.parametrize("value", [1e7, 65535.0])
def test_one_extreme_voxel_moves_neither_the_white_matter_peak_nor_the_stripe(
    phantom: Phantom, value: float
) -> None:
    clean = np.round(phantom())
    method = WhiteStripe()

    before, after = method.stripe(clean), method.stripe(with_voxel(clean, value))

    # white matter at 900 with noise of 30; the stripe's standard deviation is about 5
    assert after.mode == pytest.approx(before.mode, abs=5.0)
    assert after.mean == pytest.approx(before.mean, abs=before.std)
    assert after.std == pytest.approx(before.std, rel=0.05)


def integer_crop(seed: int = 0) -> np.ndarray:
    """A crop of an 8-bit T1 (like a 64-voxel cube of Colin27): a few dozen integer
    levels above the mean, white matter at 112 with a bright tail of rounded noise.

    Its foreground spans about 30 levels, so 1 % of its range (the histogram's
    smoothing) is a third of a level: unsmoothed, every level of white matter's bright
    tail was a peak of its own and the last one, at 117, was taken for white matter."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=(24, 24, 24), p=[0.4, 0.25, 0.35])  # background, GM, WM
    means, sds = np.array([30.0, 100.0, 112.0]), np.array([4.0, 4.0, 3.0])
    return np.round(means[labels] + rng.normal(0.0, 1.0, labels.shape) * sds[labels])


def test_on_a_crop_of_few_integer_levels_the_peak_is_white_matter() -> None:
    stripe = WhiteStripe().stripe(integer_crop())

    assert stripe.mode == pytest.approx(112.0, abs=1.0)
    assert stripe.low <= 112.0 <= stripe.high
    assert stripe.mode_quantile < 0.9  # white matter is not the top of the foreground


@pytest.mark.parametrize("value", [1e7, 65535.0])
def test_on_a_crop_one_extreme_voxel_changes_no_foreground_voxel(value: float) -> None:
    clean = integer_crop()
    method = WhiteStripe()
    foreground = clean > clean.mean()
    foreground[CENTRE] = False

    spoiled = method.standardize(with_voxel(clean, value))

    np.testing.assert_allclose(spoiled[foreground], method.standardize(clean)[foreground])
    assert float(np.percentile(spoiled[foreground], 99) - np.percentile(spoiled, 1)) > 10.0


def test_whitestripe_refuses_a_histogram_still_rising_at_its_brightest_end() -> None:
    rng = np.random.default_rng(0)
    volume = np.zeros((32, 32, 32))
    # the density rises linearly to the brightest voxel: no peak, white matter or other
    volume[8:24, 8:24, 8:24] = 100.0 + 500.0 * np.sqrt(rng.uniform(size=(16, 16, 16)))

    with pytest.raises(InputError, match=r"no white-matter peak.*still rises.*zscore or nyul"):
        WhiteStripe().standardize(volume)


def test_whitestripe_refuses_a_crop_of_background_noise() -> None:
    # a 32³ corner of a head scan outside the head: zeros and 160 noise voxels of 16-42,
    # whose histogram has a "peak" of 23 voxels; standardizing by it is meaningless
    rng = np.random.default_rng(3)
    crop = np.zeros((32, 32, 32))
    crop.flat[rng.choice(crop.size, 160, replace=False)] = rng.integers(16, 43, 160)

    with pytest.raises(InputError, match=r"too few foreground voxels .*: 1\d\d of 32768"):
        WhiteStripe().stripe(crop)


def test_one_extreme_voxel_does_not_take_otsus_threshold(phantom: Phantom) -> None:
    clean = phantom()
    spoiled = with_voxel(clean, 1e7)

    assert int(foreground_mask(spoiled, rule="otsu").sum()) == pytest.approx(
        int(foreground_mask(clean, rule="otsu").sum()), rel=0.01
    )
    mean, std = ZScore().statistics(spoiled)  # a foreground with spread, not one voxel
    clean_mean, clean_std = ZScore().statistics(clean)
    assert mean == pytest.approx(clean_mean, rel=0.01)
    assert std == pytest.approx(clean_std, rel=0.01)


def test_nyul_standardizes_a_volume_with_one_extreme_voxel_as_the_clean_one(
    phantom: Phantom,
) -> None:
    method = NyulStandardization()
    method.fit([phantom(seed=1)])
    clean = phantom()

    out = method.standardize(with_voxel(clean, 1e7))

    head = clean > 0
    head[CENTRE] = False
    np.testing.assert_allclose(out[head], method.standardize(clean)[head], rtol=0.02)


def test_a_foreground_of_a_few_extreme_voxels_is_named_as_such(phantom: Phantom) -> None:
    spoiled = phantom()
    spoiled[:2, :2, :25] = 1e7  # 100 voxels, 0.3 %: more than the clipped 0.1 %

    for method in (ZScore(), NyulStandardization()):
        with pytest.raises(InputError, match=r"extreme voxels at its maximum 1e\+07"):
            method.fit([spoiled])


def nyul_and_input(phantom: Phantom) -> tuple[NyulStandardization, np.ndarray]:
    method = NyulStandardization()
    method.fit([phantom(seed=1)])
    return method, phantom()


def test_nyul_keeps_air_at_zero_under_a_small_negative_offset(phantom: Phantom) -> None:
    method, clean = nyul_and_input(phantom)
    air, head = clean == 0, clean > 0

    shifted = method.standardize(clean - 0.01)

    assert np.abs(shifted[air]).max() < 0.1  # not s1, which is hundreds
    np.testing.assert_allclose(shifted[head], method.standardize(clean)[head], atol=0.5)


def test_nyul_keeps_air_noise_around_zero_with_its_sign(phantom: Phantom) -> None:
    method, clean = nyul_and_input(phantom)
    air, head = clean == 0, clean > 0
    noisy = clean + np.random.default_rng(2).normal(0.0, 8.0, clean.shape)

    out = method.standardize(noisy)

    assert abs(float(out[air].mean())) < 2.0
    assert float(np.median(np.sign(out[air]) == np.sign(noisy[air]))) == 1.0
    assert float(out[head].mean()) == pytest.approx(
        float(method.standardize(clean)[head].mean()), rel=0.02
    )


def test_nyul_keeps_exact_zeros_of_an_integer_volume_at_zero(phantom: Phantom) -> None:
    method, clean = nyul_and_input(phantom)
    levels = np.round(clean)

    out = method.standardize(levels)

    assert np.all(out[levels == 0] == 0.0)
    assert float(out[levels > 0].min()) > 0.0
