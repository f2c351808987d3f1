"""The body mask (medi2i.body_contour) of an MR that holds a small bright object or a
saturated slab: the head's mask stays what it is without them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medi2i.body_contour import MARGIN_VOXELS, body_mask
from medi2i.synth.phantom import head_phantom


def phantom_mr() -> np.ndarray:
    """A head phantom's MR, 32³ voxels of 5 mm, with air around the head."""
    return head_phantom(shape=(32, 32, 32), spacing_mm=(5.0, 5.0, 5.0), seed=0).mr.astype(
        np.float32
    )


def agreement_away_from(changed: np.ndarray, mask: np.ndarray, clean: np.ndarray) -> float:
    """Fraction of the voxels farther than the margin from the changed ones on which the
    two masks agree."""
    near = ndimage.binary_dilation(changed, iterations=int(MARGIN_VOXELS) + 1)
    return float((mask == clean)[~near].mean())


@pytest.mark.parametrize("brightness", [10.0, 1000.0])
@pytest.mark.parametrize(
    "region",
    [
        (slice(0, 3), slice(0, 3), slice(None)),  # a column through every slice, in the air
        (slice(14, 18), slice(14, 18), slice(14, 18)),  # a block inside the head
    ],
    ids=["column-in-air", "block-in-head"],
)
def test_a_small_bright_object_leaves_the_head_s_mask_as_it_is(
    brightness: float, region: tuple[slice, ...]
) -> None:
    clean = phantom_mr()
    volume = clean.copy()
    volume[region] = brightness * clean.max()
    changed = volume != clean
    assert changed.mean() < 0.01  # under 1 % of the voxels
    clean_mask, mask = body_mask(clean), body_mask(volume)
    assert clean_mask.mean() > 0.5
    assert agreement_away_from(changed, mask, clean_mask) > 0.999
    assert mask[clean_mask].mean() > 0.999  # the head was cut to 0.2 % of the volume


def test_a_saturated_slab_leaves_the_other_slices_as_they_are() -> None:
    clean = phantom_mr()
    volume = clean.copy()
    volume[:, :, 12:17] = clean.max()  # five slices saturated (16 % of the voxels)
    clean_mask, mask = body_mask(clean), body_mask(volume)
    assert mask[:, :, 12:17].all()  # nothing in the slab can be told from air
    changed = volume != clean
    assert agreement_away_from(changed, mask, clean_mask) > 0.999  # far slices were cut


def test_a_bright_object_s_mask_is_the_same_after_z_score_normalization() -> None:
    volume = phantom_mr()
    volume[0:3, 0:3, :] = 1000.0 * volume.max()
    z_scored = (volume - volume.mean()) / volume.std()
    np.testing.assert_array_equal(body_mask(z_scored), body_mask(volume))


def test_a_small_body_in_a_wide_field_is_no_bright_object() -> None:
    """A body of 1.6 % of the voxels: Otsu's brighter class is small, but the darker one
    is air alone, which the rule must not split (its halves do not pass as air and
    tissue), so the body keeps its mask."""
    rng = np.random.default_rng(0)
    volume = rng.rayleigh(5.0, (24, 24, 24))
    volume[9:15, 9:15, 9:15] = rng.normal(100.0, 5.0, (6, 6, 6))
    mask = body_mask(volume.astype(np.float32), margin_voxels=0)
    expected = np.zeros(volume.shape, bool)
    expected[9:15, 9:15, 9:15] = True
    np.testing.assert_array_equal(mask, expected)
