"""Tests of the air MAE (medi2i.evaluation.air) on hand-made volumes with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medi2i.errors import GeometryError
from medi2i.evaluation import METRIC_PRESETS, air_mae, evaluate_case, evaluation_metrics
from medi2i.evaluation.air import AIR_MAE_MISSING, air_region
from medi2i.evaluation.image_metrics import MetricUndefinedError
from medi2i.metrics import Metric


def slab_case() -> tuple[np.ndarray, np.ndarray]:
    """Air everywhere (-1000 HU) and a body slab x < 5: voxel x = 4 + d lies d voxels
    from the body."""
    reference = np.full((32, 4, 4), -1000.0)
    mask = np.zeros_like(reference)
    mask[:5] = 1
    return reference, mask


def air_metric() -> Metric:
    return next(m for m in evaluation_metrics() if m.name == "air_mae")


def test_air_mae_is_the_mean_error_over_the_air_far_from_the_body() -> None:
    reference = np.full((32, 32, 32), -1000.0)
    body = np.zeros_like(reference)
    body[12:20, 12:20, 12:20] = 1
    reference[body > 0] = 40.0
    prediction = reference + 20.0
    prediction[body > 0] += 500.0  # errors in the body are not air errors
    assert air_mae(reference, prediction, body) == pytest.approx(20.0, abs=1e-12)
    # every air voxel 10 or more voxels away: the corners of the cube, none next to it
    region = air_region(reference, body)
    assert region[0, 0, 0]
    assert not region[21, 16, 16]  # 2 voxels from the body
    assert not region[body > 0].any()


def test_a_voxel_nine_voxels_from_the_body_is_left_out_and_ten_counts() -> None:
    reference, mask = slab_case()
    region = air_region(reference, mask)
    assert not region[13].any()  # 9 voxels from the body
    assert region[14].all()  # 10 voxels
    assert region[14:].all()
    assert not region[:14].any()
    nine = reference.copy()
    nine[13, 0, 0] += 300.0
    assert air_mae(reference, nine, mask) == 0.0
    ten = reference.copy()
    ten[14, 0, 0] += 288.0
    # 18 slices of 4 x 4 voxels are scored: 288 HU on one of 288 voxels
    assert air_mae(reference, ten, mask) == pytest.approx(1.0, abs=1e-12)


def test_only_reference_voxels_below_minus_900_hu_are_air() -> None:
    reference, mask = slab_case()
    reference[20:] = -900.0  # not below the threshold
    reference[20, 0, 0] = -901.0
    region = air_region(reference, mask)
    assert region[14:20].all()
    assert region[20].sum() == 1
    assert not region[21:].any()


def test_values_are_raw_hu_without_clipping() -> None:
    reference, mask = slab_case()
    prediction = reference.copy()
    prediction[14:] = -3000.0  # below the -1024 HU that the SynthRAD PSNR clips to
    assert air_mae(reference, prediction, mask) == pytest.approx(2000.0)


def test_no_air_is_an_error_saying_why_and_nan_in_evaluate_case() -> None:
    """A Python call raises with the reason (it once returned NaN silently); evaluate_case,
    behind ``medi2i evaluate`` and workflows, records NaN, shown as n/a with that reason."""
    reference, mask = slab_case()
    soft = np.zeros_like(reference)  # no reference air at all
    wide = mask.copy()
    wide[:23] = 1  # air, but none 10 voxels from the mask
    for gt, pred, body in [(soft, soft + 5.0, mask), (reference, reference, wide)]:
        with pytest.raises(MetricUndefinedError, match="'air_mae' is undefined") as raised:
            air_mae(gt, pred, body)
        assert raised.value.reason == AIR_MAE_MISSING
        with pytest.raises(MetricUndefinedError):
            air_metric()(gt, pred, body)
        assert math.isnan(evaluate_case(gt, pred, body, [air_metric()])["air_mae"])
    # the registered metric without a mask: the whole volume is inside
    for call in [
        lambda: air_metric()(reference, reference),
        lambda: air_metric()(reference, reference, None),
    ]:
        with pytest.raises(MetricUndefinedError, match="no body mask was given"):
            call()
    assert math.isnan(evaluate_case(reference, reference, None, [air_metric()])["air_mae"])


def test_metrics_other_than_air_mae_have_a_value_without_a_mask() -> None:
    """air_mae is the one built-in metric that needs a mask (it scores outside it)."""
    rng = np.random.default_rng(0)
    reference = rng.normal(0.0, 300.0, (24, 24, 24))
    for metric in evaluation_metrics():
        if metric.name != "air_mae":
            assert math.isfinite(metric(reference, reference + 5.0, None)), metric.name


def test_an_empty_mask_or_mismatched_shapes_are_refused() -> None:
    reference, mask = slab_case()
    with pytest.raises(GeometryError, match="selects no voxel"):
        air_mae(reference, reference, np.zeros_like(mask))
    with pytest.raises(GeometryError, match="one shape"):
        air_mae(reference, reference[:-1], mask)


def test_air_mae_is_registered_and_in_the_synthrad_preset() -> None:
    metric = air_metric()
    assert (metric.units, metric.higher_is_better) == ("HU", False)
    assert METRIC_PRESETS["synthrad"][-1] == "air_mae"
    reference, mask = slab_case()
    values = evaluate_case(reference, reference + 10.0, mask, [metric])
    assert values == {"air_mae": pytest.approx(10.0)}
