"""Tests of medi2i.synth: every simulator against the properties its docstring promises."""

from __future__ import annotations

import numpy as np
import pytest

from medi2i.errors import OptionsError
from medi2i.synth import (
    HU_RANGE,
    HU_TO_T1_KNOTS,
    NAMED_STYLES,
    Phantom,
    ScannerStyle,
    Tissue,
    apply_style,
    bias_field,
    ct_to_pseudo_t1,
    gaussian_blur_mm,
    head_phantom,
    hu_to_t1_signal,
    measured_fwhm,
    named_style,
    normalise_intensity,
    random_style,
    rician_noise,
    slice_profile_blur,
    thick_slices,
    white_matter_peak,
)

ISOTROPIC = (1.0, 1.0, 1.0)


# -- fields -----------------------------------------------------------------------------


def test_bias_field_stays_within_its_strength_and_is_seeded() -> None:
    field = bias_field((24, 20, 16), spacing_mm=(1.0, 1.2, 2.0), strength=0.2, seed=4)
    assert field.dtype == np.float32
    assert np.exp(-0.2) - 1e-5 <= field.min()
    assert field.max() <= np.exp(0.2) + 1e-5
    assert np.isclose(np.abs(np.log(field)).max(), 0.2, atol=1e-4)
    same = bias_field((24, 20, 16), spacing_mm=(1.0, 1.2, 2.0), strength=0.2, seed=4)
    other = bias_field((24, 20, 16), spacing_mm=(1.0, 1.2, 2.0), strength=0.2, seed=5)
    np.testing.assert_array_equal(field, same)
    assert not np.allclose(field, other)


def test_bias_field_is_smooth() -> None:
    # a degree-2 field: neighbouring voxels differ by a tiny fraction of its full swing
    log_field = np.log(bias_field((32, 32, 32), spacing_mm=ISOTROPIC, strength=0.3, seed=0))
    swing = float(log_field.max() - log_field.min())
    for axis in range(3):
        step = np.abs(np.diff(log_field, axis=axis)).max()
        assert step < 0.15 * swing
        curvature = np.abs(np.diff(log_field, n=2, axis=axis)).max()
        assert curvature < 0.01 * swing


def test_bias_field_of_zero_strength_is_ones_and_negative_is_refused() -> None:
    np.testing.assert_array_equal(
        bias_field((4, 4, 4), spacing_mm=ISOTROPIC, strength=0.0, seed=0), np.ones((4, 4, 4))
    )
    with pytest.raises(OptionsError, match=">= 0"):
        bias_field((4, 4, 4), spacing_mm=ISOTROPIC, strength=-0.1, seed=0)


def test_rician_noise_is_rayleigh_on_background_and_unbiased_at_high_snr() -> None:
    background = rician_noise(np.zeros((32, 32, 32)), sigma=10.0, seed=1)
    assert background.min() >= 0
    assert background.mean() == pytest.approx(10.0 * np.sqrt(np.pi / 2), rel=0.02)
    bright = rician_noise(np.full((32, 32, 32), 1000.0), sigma=10.0, seed=1)
    assert bright.mean() == pytest.approx(1000.0, rel=0.002)
    assert bright.std() == pytest.approx(10.0, rel=0.05)


def test_gaussian_blur_has_the_requested_fwhm_in_mm_per_axis() -> None:
    impulse = np.zeros((31, 31, 31), np.float32)
    impulse[15, 15, 15] = 1.0
    spacing = (0.5, 1.0, 2.0)
    blurred = gaussian_blur_mm(impulse, spacing_mm=spacing, fwhm_mm=(4.0, 4.0, 8.0))
    assert measured_fwhm(blurred[:, 15, 15], voxel_mm=0.5) == pytest.approx(4.0, abs=0.1)
    assert measured_fwhm(blurred[15, :, 15], voxel_mm=1.0) == pytest.approx(4.0, abs=0.15)
    assert measured_fwhm(blurred[15, 15, :], voxel_mm=2.0) == pytest.approx(8.0, abs=0.3)


# -- thick slices -----------------------------------------------------------------------


@pytest.mark.parametrize(("fwhm_mm", "voxel_mm"), [(4.0, 1.0), (2.0, 0.5), (6.0, 1.0)])
def test_slice_profile_has_the_requested_fwhm(fwhm_mm: float, voxel_mm: float) -> None:
    impulse = np.zeros((3, 3, 41), np.float32)
    impulse[:, :, 20] = 1.0
    profile = slice_profile_blur(impulse, axis=2, voxel_mm=voxel_mm, fwhm_mm=fwhm_mm)[1, 1]
    assert measured_fwhm(profile, voxel_mm=voxel_mm) == pytest.approx(fwhm_mm, rel=0.04)
    assert profile.sum() == pytest.approx(1.0, abs=1e-5)  # the profile keeps signal


def test_thick_slices_keep_every_step_th_slice_where_it_was() -> None:
    affine = np.diag([0.8, 0.9, 1.0, 1.0])
    affine[:3, 3] = (5.0, -3.0, 10.0)
    volume = np.random.default_rng(0).random((6, 5, 17)).astype(np.float32)
    thick = thick_slices(volume, affine=affine, axis=2, slice_spacing_mm=4.0, first_index=1)
    assert thick.data.shape == (6, 5, 4)
    assert thick.kept_indices == (1, 5, 9, 13)
    assert thick.step == 4
    assert thick.fwhm_mm == 4.0
    for k, index in enumerate(thick.kept_indices):
        world_thick = thick.affine @ np.array([0, 0, k, 1.0])
        world_source = affine @ np.array([0, 0, index, 1.0])
        np.testing.assert_allclose(world_thick, world_source)
    blurred = slice_profile_blur(volume, axis=2, voxel_mm=1.0, fwhm_mm=4.0)
    np.testing.assert_allclose(thick.data, blurred[:, :, 1::4], rtol=1e-6)


def test_thick_slices_refuse_a_spacing_that_is_not_a_whole_number_of_voxels() -> None:
    with pytest.raises(OptionsError, match="whole multiple"):
        thick_slices(np.zeros((4, 4, 8)), affine=np.eye(4), axis=2, slice_spacing_mm=2.5)


# -- CT to pseudo-T1 --------------------------------------------------------------------

REGIONS_HU = {"air": -1000.0, "fat": -100.0, "csf": 3.0, "brain": 22.0, "bone": 1300.0}


def _region_phantom() -> tuple[np.ndarray, dict[str, tuple[slice, slice, slice]]]:
    ct = np.full((32, 32, 30), -1000.0, np.float32)
    regions = {}
    for index, (name, hu) in enumerate(REGIONS_HU.items()):
        block = (slice(4, 28), slice(4, 28), slice(index * 6, index * 6 + 6))
        ct[block] = hu
        # the interior, away from partial volume with the neighbouring block
        regions[name] = (slice(8, 24), slice(8, 24), slice(index * 6 + 2, index * 6 + 4))
    return ct, regions


def test_pseudo_t1_makes_bone_and_air_dark_fat_bright_and_csf_darker_than_brain() -> None:
    ct, regions = _region_phantom()
    mr = ct_to_pseudo_t1(ct, spacing_mm=ISOTROPIC, seed=0)
    mean = {name: float(mr[block].mean()) for name, block in regions.items()}
    assert mean["bone"] < 0.2 * mean["brain"]
    assert mean["air"] < 0.2 * mean["brain"]
    assert mean["csf"] < 0.5 * mean["brain"]
    assert mean["fat"] > 1.3 * mean["brain"]
    assert mr.min() >= 0
    assert mr.dtype == np.float32


def test_pseudo_t1_is_reproducible_by_seed() -> None:
    ct, _ = _region_phantom()
    first = ct_to_pseudo_t1(ct, spacing_mm=ISOTROPIC, seed=3)
    np.testing.assert_array_equal(first, ct_to_pseudo_t1(ct, spacing_mm=ISOTROPIC, seed=3))
    assert not np.array_equal(first, ct_to_pseudo_t1(ct, spacing_mm=ISOTROPIC, seed=4))


def test_tissue_curve_passes_through_its_knots_and_fat_is_brightest() -> None:
    hu, signal = (np.array(v) for v in zip(*HU_TO_T1_KNOTS, strict=True))
    np.testing.assert_allclose(hu_to_t1_signal(hu), signal, atol=1e-6)
    dense = hu_to_t1_signal(np.linspace(-2000, 4000, 5001))
    assert dense.max() <= 1.0 + 1e-6
    assert dense.min() >= 0.0
    assert hu_to_t1_signal([-100.0])[0] == pytest.approx(1.0)


# -- scanner styles ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "style", [*NAMED_STYLES.values(), *(random_style(seed=s) for s in range(5))]
)
def test_contrast_curves_are_monotone_and_start_at_zero(style: ScannerStyle) -> None:
    intensities = np.linspace(0.0, 2.5, 1001)
    values = style.curve(intensities)
    assert values[0] == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.diff(values) >= -1e-7)


def test_named_styles_are_fixed_and_differ() -> None:
    assert named_style("B") == named_style("B")
    assert len({style.model_dump_json() for style in NAMED_STYLES.values()}) == 3
    assert random_style(seed=7) == random_style(seed=7)
    with pytest.raises(OptionsError, match="A, B, C"):
        named_style("Z")


def test_apply_style_uses_the_scanner_units_and_is_seeded() -> None:
    phantom = head_phantom(shape=(32, 40, 32), spacing_mm=(5.0, 5.0, 5.0), seed=0)
    clean = phantom.clean_t1()
    white = phantom.labels == Tissue.WHITE_MATTER
    for name in "ABC":
        styled = apply_style(clean, spacing_mm=phantom.spacing_mm, style=named_style(name), seed=1)
        # white matter lands near the scanner's white-matter signal (bias and blur aside)
        ratio = np.median(styled[white]) / named_style(name).signal_scale
        assert 0.75 < ratio < 1.3
    first = apply_style(clean, spacing_mm=ISOTROPIC, style=named_style("B"), seed=2)
    again = apply_style(clean, spacing_mm=ISOTROPIC, style=named_style("B"), seed=2)
    np.testing.assert_array_equal(first, again)


def test_white_matter_peak_finds_white_matter() -> None:
    phantom = head_phantom(shape=(32, 40, 32), spacing_mm=(5.0, 5.0, 5.0), seed=2)
    assert white_matter_peak(phantom.clean_t1()) == pytest.approx(0.75, rel=0.05)
    assert white_matter_peak(1000.0 * phantom.clean_t1()) == pytest.approx(750.0, rel=0.05)
    with pytest.raises(OptionsError, match="no positive voxel"):
        normalise_intensity(np.zeros((4, 4, 4)))


# -- phantoms ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return head_phantom(shape=(32, 40, 32), spacing_mm=(5.0, 5.0, 5.0), seed=0)


def test_phantom_ct_has_valid_hounsfield_units_per_tissue(phantom: Phantom) -> None:
    labels, ct = phantom.labels, phantom.ct
    assert HU_RANGE[0] <= ct.min()
    assert ct.max() <= HU_RANGE[1]
    median = {t: float(np.median(ct[labels == t])) for t in Tissue if (labels == t).any()}
    assert median[Tissue.BACKGROUND] < -950
    assert median[Tissue.CORTICAL_BONE] > 500
    assert -150 < median[Tissue.FAT] < -30
    for tissue in (Tissue.GREY_MATTER, Tissue.WHITE_MATTER, Tissue.CSF):
        assert -20 < median[tissue] < 70


def test_phantom_mr_is_t1_like(phantom: Phantom) -> None:
    labels, mr = phantom.labels, phantom.mr
    median = {t: float(np.median(mr[labels == t])) for t in Tissue if (labels == t).any()}
    assert median[Tissue.FAT] > median[Tissue.WHITE_MATTER] > median[Tissue.GREY_MATTER]
    assert median[Tissue.GREY_MATTER] > median[Tissue.CSF]
    for dark in (Tissue.BACKGROUND, Tissue.CORTICAL_BONE):
        assert median[dark] < 0.5 * median[Tissue.GREY_MATTER]


def test_phantom_geometry_and_seeds(phantom: Phantom) -> None:
    assert phantom.spacing_mm == (5.0, 5.0, 5.0)
    # the grid is centred on the head: voxel centre of the grid at the world origin
    centre = phantom.affine @ np.array([15.5, 19.5, 15.5, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)
    same = head_phantom(shape=(32, 40, 32), spacing_mm=(5.0, 5.0, 5.0), seed=0)
    np.testing.assert_array_equal(same.ct, phantom.ct)
    other = head_phantom(shape=(32, 40, 32), spacing_mm=(5.0, 5.0, 5.0), seed=1)
    assert not np.array_equal(other.labels, phantom.labels)
    assert set(np.unique(phantom.labels)) >= {int(t) for t in Tissue if t != Tissue.SINUS_AIR}


def test_phantom_under_a_scanner_keeps_the_grid(phantom: Phantom) -> None:
    styled = phantom.under_scanner(named_style("C"), seed=0)
    assert styled.shape == phantom.labels.shape
    assert not np.allclose(styled, phantom.under_scanner(named_style("A"), seed=0))
