"""Tests of Nyul histogram standardization."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import medi2i_harmonization
import numpy as np
import pytest
from medi2i_harmonization.nyul import NyulStandardization, dequantized, landmark_map
from medi2i_harmonization.samples import head_mask
from scipy.stats import wasserstein_distance

import medi2i
from medi2i import InputError, Medi2iError, ModelFormatError, OptionsError
from medi2i.testing import check_method_contract, isolated_registry, make_volume

Phantom = Callable[..., np.ndarray]
NONZERO = {"foreground": "nonzero"}


def scanner_b(volume: np.ndarray) -> np.ndarray:
    """Another scanner's look: a monotone, non-linear contrast curve in other units
    (background stays 0)."""
    return np.asarray(3000.0 * (volume / 1000.0) ** 1.8)


def head_distance(a: np.ndarray, b: np.ndarray, *, scale: np.ndarray) -> float:
    """1-Wasserstein distance of the histograms of the phantom's head voxels, relative to
    the 1st-99th percentile range of ``scale``'s."""
    head = phantom_head(a.shape)
    low, high = np.percentile(scale[head], [1.0, 99.0])
    return float(wasserstein_distance(a[head], b[head]) / (high - low))


def phantom_head(shape: tuple[int, ...]) -> np.ndarray:
    head = np.zeros(shape, dtype=bool)
    head[tuple(slice(n // 4, n - n // 4) for n in shape)] = True
    return head


def fitted(volumes: list[np.ndarray], **options: object) -> NyulStandardization:
    method = NyulStandardization({**NONZERO, **options})
    method.fit(volumes)
    return method


def test_keeps_the_method_contract() -> None:
    check_method_contract(
        NyulStandardization, prepare=lambda m: m.fit([make_volume(seed=s) for s in (1, 2, 3)])
    )


def test_standard_landmarks_average_the_target_domain(phantom: Phantom) -> None:
    volumes = [phantom(seed=1), phantom(seed=2)]
    method = fitted(volumes)

    expected = np.mean([method.landmarks(v) for v in volumes], axis=0)
    np.testing.assert_allclose(method.standard_landmarks or (), expected, rtol=1e-3)
    assert method.fitted_volumes == 2


def test_a_fixed_standard_range_holds_the_outer_landmarks(phantom: Phantom) -> None:
    method = fitted([phantom(seed=1), 5.0 * phantom(seed=2)], standard_range=(1.0, 100.0))
    landmarks = method.standard_landmarks or ()

    assert landmarks[0] == pytest.approx(1.0)
    assert landmarks[-1] == pytest.approx(100.0)
    assert len(landmarks) == 11


def test_landmarks_round_trip_through_a_model_folder(phantom: Phantom, tmp_path: Path) -> None:
    method = fitted([phantom(seed=1), phantom(seed=2)], landmark_percentiles=(25.0, 50.0, 75.0))

    folder = medi2i.save_model(method, tmp_path / "nyul")
    loaded = medi2i.load_model(folder, registry=isolated_registry(medi2i_harmonization))

    assert isinstance(loaded, NyulStandardization)
    assert loaded.standard_landmarks == method.standard_landmarks
    assert loaded.options == method.options
    volume = scanner_b(phantom(seed=3))
    np.testing.assert_array_equal(loaded.standardize(volume), method.standardize(volume))


def test_the_map_is_monotone(phantom: Phantom) -> None:
    method = fitted([phantom(seed=1)])
    volume = scanner_b(phantom(seed=2))

    output = method.standardize(volume)

    order = np.argsort(volume, axis=None)
    assert (np.diff(output.ravel()[order]) >= 0).all()


def test_a_monotone_intensity_change_is_undone(phantom: Phantom) -> None:
    target_a = phantom(seed=1)
    method = fitted([target_a, phantom(seed=2)])
    on_a, on_b = phantom(seed=3), scanner_b(phantom(seed=3))

    before = head_distance(on_b, on_a, scale=target_a)
    after = head_distance(method.standardize(on_b), method.standardize(on_a), scale=target_a)
    to_target = head_distance(method.standardize(on_b), target_a, scale=target_a)

    assert before > 0.5
    assert after < 0.01
    assert to_target < 0.02


def test_ties_in_a_quantized_volume_keep_the_map_monotone() -> None:
    values = np.array([1.0, 1.0, 1.0, 2.0, 5.0])
    landmarks = np.array([1.0, 1.0, 1.0, 2.0, 5.0])
    standard = np.array([0.0, 10.0, 20.0, 30.0, 40.0])

    mapped = landmark_map(values, landmarks, standard)

    np.testing.assert_allclose(mapped, [10.0, 10.0, 10.0, 30.0, 40.0])


def test_intensities_beyond_the_outer_landmarks_follow_the_outer_segments() -> None:
    values = np.array([-1.0, 0.0, 1.0, 2.0, 4.0])
    mapped = landmark_map(values, np.array([0.0, 1.0, 2.0]), np.array([10.0, 20.0, 40.0]))

    np.testing.assert_allclose(mapped, [0.0, 10.0, 20.0, 40.0, 80.0])


def test_below_the_first_landmark_zero_signal_stays_zero() -> None:
    values = np.array([0.0, 0.5, 1.0, 2.0])
    mapped = landmark_map(values, np.array([1.0, 2.0]), np.array([10.0, 40.0]), below="zero")

    np.testing.assert_allclose(mapped, [0.0, 5.0, 10.0, 40.0])


def test_clamping_sets_everything_below_the_first_landmark_to_its_standard_position() -> None:
    values = np.array([-3.0, 0.0, 1.0, 2.0])
    mapped = landmark_map(values, np.array([1.0, 2.0]), np.array([10.0, 40.0]), below="clamp")

    np.testing.assert_allclose(mapped, [10.0, 10.0, 10.0, 40.0])


def test_zero_continues_its_line_through_zero_for_negative_values() -> None:
    values = np.array([-3.0, 0.0, 1.0, 2.0])
    mapped = landmark_map(values, np.array([1.0, 2.0]), np.array([10.0, 40.0]), below="zero")

    np.testing.assert_allclose(mapped, [-30.0, 0.0, 10.0, 40.0])


def test_zero_falls_back_to_clamping_when_the_first_landmark_is_not_positive() -> None:
    values = np.array([-3.0, -1.0, 2.0])
    mapped = landmark_map(values, np.array([-1.0, 2.0]), np.array([10.0, 40.0]), below="zero")

    np.testing.assert_allclose(mapped, [10.0, 10.0, 40.0])


def test_dequantizing_spreads_integer_levels_reproducibly_within_half_a_level() -> None:
    levels = np.random.default_rng(0).integers(0, 8, size=(6, 6, 6)).astype(np.float64)

    once, again = dequantized(levels), dequantized(levels)

    np.testing.assert_array_equal(once, again)
    assert np.abs(once - levels).max() <= 0.5
    assert once.min() >= levels.min()
    assert once.max() <= levels.max()
    assert np.unique(once).size > 8 * 20  # the levels became a continuum
    fractional = levels + 0.25
    np.testing.assert_array_equal(dequantized(fractional), fractional)


def test_a_whole_head_scan_fitted_on_skull_stripped_images_stays_non_negative(
    data_dir: Path,
) -> None:
    # fitted on MNI152 (brain only), applied to Colin27 (whole head, 8-bit): much of the
    # scalp and CSF lies below the brain's first landmark
    mni = medi2i.read_volume(data_dir / "mni152_2009a_t1_1mm.nii.gz")[0].numpy()[::2, ::2, ::2]
    colin = medi2i.read_volume(data_dir / "mr_t1_colin27_1mm.nii.gz")[0].numpy()[::2, ::2, ::2]
    colin = colin.astype(np.float64)
    head = head_mask(colin)
    papers = NyulStandardization({"below_first_landmark": "extend", "dequantize": False})
    papers.fit([mni.astype(np.float64)])
    method = NyulStandardization()
    method.fit([mni.astype(np.float64)])

    extended, output = papers.standardize(colin)[head], method.standardize(colin)[head]

    assert (extended < 0).mean() > 0.05  # the papers' extension: what went wrong
    assert output.min() >= 0.0
    assert np.corrcoef(output, colin[head])[0, 1] > 0.95  # still one increasing map
    # no comb: above the first landmark every one of 100 bins is occupied (the raw
    # 8-bit levels, stretched, leave gaps between them)
    low = method.standard_landmarks[0]  # type: ignore[index]
    bins = np.linspace(low, np.percentile(output, 99.0), 101)
    assert (np.histogram(output, bins)[0] > 0).all()
    assert (np.histogram(extended, bins)[0] == 0).any()


def test_predicting_before_fitting_is_an_error() -> None:
    with pytest.raises(Medi2iError, match="not fitted"):
        NyulStandardization().standardize(make_volume()[0].numpy().astype(np.float64))


def test_fitting_on_nothing_is_an_error() -> None:
    with pytest.raises(InputError, match="at least one volume"):
        NyulStandardization().fit([])


def test_a_model_folder_with_missing_landmarks_is_refused() -> None:
    method = NyulStandardization()

    with pytest.raises(ModelFormatError, match="11 standard landmarks"):
        method.load_state_values({"standard_landmarks": [1.0, 2.0]})


@pytest.mark.parametrize(
    "options",
    [
        {"lower_percentile": 20.0},
        {"upper_percentile": 80.0},
        {"landmark_percentiles": (50.0, 40.0)},
        {"standard_range": (100.0, 1.0)},
        {"upper_percentile": 101.0},
        {"landmarks": (50.0,)},
    ],
)
def test_invalid_options_are_an_options_error(options: dict[str, object]) -> None:
    with pytest.raises(OptionsError, match="nyul"):
        NyulStandardization(options)


def test_standardizes_two_looks_of_a_real_t1_alike(data_dir: Path) -> None:
    # every 2nd voxel: the same histograms, 8 times faster
    colin = medi2i.read_volume(data_dir / "mr_t1_colin27_1mm.nii.gz")[0].numpy()[::2, ::2, ::2]
    mni = medi2i.read_volume(data_dir / "mni152_2009a_t1_1mm.nii.gz")[0].numpy()[::2, ::2, ::2]
    # the solid head mask barely moves when the contrast curve changes (Otsu's threshold does)
    method = NyulStandardization({"foreground": "head"})
    method.fit([mni.astype(np.float64)])
    look_a = colin.astype(np.float64)
    look_b = scanner_b(4.0 * look_a) + 40.0

    a, b = method.standardize(look_a), method.standardize(look_b)

    head = head_mask(look_a)
    low, high = np.percentile(a[head], [1.0, 99.0])
    assert np.corrcoef(a[head], b[head])[0, 1] > 0.98
    assert wasserstein_distance(a[head], b[head]) < 0.1 * (high - low)


def test_an_unfitted_nyul_says_how_to_fit_it() -> None:
    method = NyulStandardization({})
    with pytest.raises(OptionsError, match=r"not fitted: call method\.fit\(volumes\)"):
        method.standardize(np.arange(64.0).reshape(4, 4, 4))
