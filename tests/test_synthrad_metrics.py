"""SynthRAD2025 MAE, PSNR and MS-SSIM: properties, and a literal re-derivation.

The re-derivation below is written from the challenge's definition with different
numerics from the module (FFT convolutions with explicit kernels and explicit
padding instead of ``uniform_filter`` and strided sums). The project promises
agreement to 1e-6; the tests ask for 1e-9, because MS-SSIM near 1 hides slips such
as population instead of sample covariance (4e-7 on a mildly noisy case) below 1e-6.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.signal import fftconvolve

from medi2i.errors import GeometryError
from medi2i.evaluation import synthrad

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def literal_mae(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    weight = (mask > 0).astype(float)
    gt, pred = np.where(weight == 0, -1024.0, gt), np.where(weight == 0, -1024.0, pred)
    return float(np.sum(np.abs(gt * weight - pred * weight)) / weight.sum())


def literal_psnr(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    inside = mask > 0
    error = np.clip(gt[inside], -1024, 3071) - np.clip(pred[inside], -1024, 3071)
    return float(10 * math.log10(4095.0**2 / np.mean(error**2)))


def literal_ms_ssim(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    inside = mask > 0
    x = np.where(inside, np.clip(gt, -1024, 3071), -1024) + 1024.0
    y = np.where(inside, np.clip(pred, -1024, 3071), -1024) + 1024.0
    widths = []
    for extent in x.shape:
        total = max(97 - extent, 0)
        widths.append((total // 2, total - total // 2))
    x, y = np.pad(x, widths, mode="edge"), np.pad(y, widths, mode="edge")
    inside = np.pad(inside, widths, mode="edge")
    values = []
    for weight in WEIGHTS:
        values.append(literal_ssim_at_scale(x, y, inside, weight))
        x, y, inside = block_mean(x), block_mean(y), inside[::2, ::2, ::2]
    return float(np.prod(np.clip(values, 0, 1)))


def literal_ssim_at_scale(x: np.ndarray, y: np.ndarray, inside: np.ndarray, w: float) -> float:
    def window(image: np.ndarray) -> np.ndarray:
        # scipy's "reflect" border is numpy's "symmetric" padding
        padded = np.pad(image, 3, mode="symmetric")
        return np.asarray(fftconvolve(padded, np.ones((7, 7, 7)) / 343, mode="valid"))

    c1, c2 = (0.01 * 4095) ** 2, (0.03 * 4095) ** 2
    mx, my = window(x), window(y)
    vx = (window(x**2) - mx**2) * 343 / 342
    vy = (window(y**2) - my**2) * 343 / 342
    vxy = (window(x * y) - mx * my) * 343 / 342
    sx, sy = np.sqrt(np.clip(vx, 0, None)), np.sqrt(np.clip(vy, 0, None))
    lum = np.clip((2 * mx * my + c1) / (mx**2 + my**2 + c1), 0, None)
    con = np.clip((2 * sx * sy + c2) / (vx + vy + c2), 0, None)
    struct = np.clip((vxy + c2 / 2) / (sx * sy + c2 / 2), 0, None)
    ssim_map = lum**w * con**w * struct**w
    core = (slice(3, -3),) * 3
    return float(ssim_map[core][inside[core]].mean())


def block_mean(image: np.ndarray) -> np.ndarray:
    """2×2×2 mean of each voxel and its predecessors (zeros before index 0), even indices."""
    full = np.asarray(fftconvolve(image, np.ones((2, 2, 2)) / 8, mode="full"))
    return full[: image.shape[0], : image.shape[1], : image.shape[2]][::2, ::2, ::2]


def synthetic_case(
    shape: tuple[int, int, int], seed: int, error_hu: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth CT-like volume past both ends of [-1024, 3071], a noisy copy and a blob mask."""
    rng = np.random.default_rng(seed)
    ct = gaussian_filter(rng.normal(size=shape), 2) * 6000 + rng.normal(0, 30, shape)
    pred = ct + gaussian_filter(rng.normal(0, error_hu, shape), 1)
    mask = gaussian_filter(rng.normal(size=shape), 3) > -0.1
    mask[tuple(n // 2 for n in shape)] = True  # the coarsest scale looks at the centre only
    return ct, pred, mask


@pytest.mark.parametrize(
    ("shape", "seed", "error_hu"),
    [
        ((20, 24, 18), 0, 80.0),
        ((16, 100, 12), 1, 400.0),
        ((9, 11, 13), 2, 5.0),
        ((18, 14, 20), 3, 1500.0),
    ],
)
def test_metrics_agree_with_a_literal_rederivation(
    shape: tuple[int, int, int], seed: int, error_hu: float
) -> None:
    ct, pred, mask = synthetic_case(shape, seed, error_hu)
    assert synthrad.mae(ct, pred, mask) == pytest.approx(literal_mae(ct, pred, mask), abs=1e-9)
    assert synthrad.psnr(ct, pred, mask) == pytest.approx(literal_psnr(ct, pred, mask), abs=1e-9)
    expected = literal_ms_ssim(ct, pred, mask)
    assert 0.0 < expected < 1.0
    assert synthrad.ms_ssim(ct, pred, mask) == pytest.approx(expected, abs=1e-9)


def test_identical_images_give_perfect_scores() -> None:
    ct, _, mask = synthetic_case((12, 14, 10), 3, 0.0)
    assert synthrad.mae(ct, ct, mask) == 0.0
    assert synthrad.psnr(ct, ct, mask) == math.inf
    assert synthrad.ms_ssim(ct, ct, mask) == pytest.approx(1.0, abs=1e-12)


def test_a_constant_offset_gives_known_mae_and_psnr() -> None:
    rng = np.random.default_rng(4)
    ct = rng.uniform(-1000, 2000, (10, 12, 8))
    mask = np.zeros(ct.shape)
    mask[2:8, 3:9, 2:6] = 1
    pred = np.where(mask > 0, ct + 50.0, 5000.0)  # garbage outside the mask
    assert synthrad.mae(ct, pred, mask) == pytest.approx(50.0, abs=1e-9)
    assert synthrad.psnr(ct, pred, mask) == pytest.approx(20 * math.log10(4095 / 50), abs=1e-9)


def test_voxels_outside_the_mask_change_nothing() -> None:
    ct, pred, mask = synthetic_case((14, 12, 16), 5, 100.0)
    rng = np.random.default_rng(6)
    ct_changed = np.where(mask, ct, rng.uniform(-3000, 5000, ct.shape))
    pred_changed = np.where(mask, pred, rng.uniform(-3000, 5000, ct.shape))
    for metric in (synthrad.mae, synthrad.psnr, synthrad.ms_ssim):
        assert metric(ct_changed, pred_changed, mask) == metric(ct, pred, mask)


def test_mask_is_binarised_as_greater_than_zero() -> None:
    ct, pred, mask = synthetic_case((12, 12, 12), 7, 50.0)
    graded = np.where(mask, 0.3, -2.0)  # negative values count as outside
    for metric in (synthrad.mae, synthrad.psnr, synthrad.ms_ssim):
        assert metric(ct, pred, graded) == metric(ct, pred, mask)


def test_psnr_and_ms_ssim_clip_to_the_population_range_but_mae_does_not() -> None:
    ct = np.full((8, 8, 8), 3071.0)
    pred = np.full((8, 8, 8), 4000.0)
    body = np.ones(ct.shape)
    assert synthrad.mae(ct, pred, body) == 929.0
    assert synthrad.psnr(ct, pred, body) == math.inf
    assert synthrad.ms_ssim(ct, pred, body) == pytest.approx(1.0, abs=1e-12)


def test_ms_ssim_falls_with_the_error() -> None:
    cases = [synthetic_case((16, 16, 16), 8, error_hu) for error_hu in (10.0, 100.0, 1000.0)]
    scores = [synthrad.ms_ssim(ct, pred, mask) for ct, pred, mask in cases]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_ms_ssim_is_nan_when_the_mask_vanishes_at_a_coarse_scale() -> None:
    ct, pred, _ = synthetic_case((10, 10, 10), 9, 50.0)
    corner = np.zeros(ct.shape)
    corner[0, 0, 0] = 1  # far from the centre voxel the coarsest scale evaluates
    assert math.isnan(synthrad.ms_ssim(ct, pred, corner))


@pytest.mark.parametrize(
    ("pred_shape", "mask_value"), [((8, 8, 9), 1.0), ((8, 8, 8), 0.0)], ids=["shape", "empty"]
)
def test_unusable_inputs_raise_geometry_error(
    pred_shape: tuple[int, int, int], mask_value: float
) -> None:
    ct = np.zeros((8, 8, 8))
    with pytest.raises(GeometryError, match=r"one shape|no voxel"):
        synthrad.ms_ssim(ct, np.zeros(pred_shape), np.full(ct.shape, mask_value))
