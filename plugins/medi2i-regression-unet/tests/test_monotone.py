"""Tests of the monotone MR→HU mapping method."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from medi2i_regression_unet.monotone import MonotoneMapping, fit_curve, isotonic_regression
from monai.data.meta_tensor import MetaTensor

import medi2i
from medi2i import (
    FitPair,
    InferenceSettings,
    Medi2iError,
    ModelFormatError,
    Registry,
    body_mask,
    predict_tensor,
)
from medi2i.testing import check_method_contract, make_volume

SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)


def ramp_pair(shape: tuple[int, int, int] = (20, 18, 16)) -> tuple[MetaTensor, MetaTensor]:
    """An MR volume and a CT that falls linearly with its intensity: 1000 - 2 · MR."""
    mr = make_volume(shape)
    ct = MetaTensor(1000.0 - 2.0 * mr.as_tensor(), affine=mr.affine)
    return mr, ct


def pair_of(
    method: MonotoneMapping, mr: MetaTensor, ct: MetaTensor, mask: object = None
) -> FitPair:
    source = method.preprocess(mr)
    return FitPair("case", source, ct, mask if isinstance(mask, torch.Tensor) else None)


def test_isotonic_regression_pools_violators() -> None:
    fitted = isotonic_regression([1.0, 3.0, 2.0, 4.0], [1.0, 1.0, 3.0, 1.0])
    np.testing.assert_allclose(fitted, [1.0, 2.25, 2.25, 4.0])
    down = isotonic_regression([3.0, 1.0, 2.0], [1.0, 1.0, 1.0], increasing=False)
    np.testing.assert_allclose(down, [3.0, 1.5, 1.5])


def test_the_curve_finds_the_direction_of_the_data() -> None:
    rng = np.random.default_rng(0)
    mr = rng.uniform(0, 100, 5000)
    ct = 1000.0 - 10.0 * mr + rng.normal(0, 5, mr.shape)
    curve = fit_curve(mr, ct, bins=256)
    assert not curve.increasing
    assert np.abs(curve(mr) - (1000.0 - 10.0 * mr)).mean() < 10.0
    assert np.all(np.diff(curve.hounsfield) <= 0)


def test_keeps_the_method_contract() -> None:
    def fit(method: medi2i.Method) -> None:
        assert isinstance(method, MonotoneMapping)
        mr, ct = ramp_pair()
        method.fit_pairs([pair_of(method, mr, ct)])

    check_method_contract(MonotoneMapping, prepare=fit)


def test_it_is_registered_as_a_paired_fitted_method(medi2i_registry: Registry) -> None:
    method_cls = medi2i_registry.method("monotone-mapping")
    assert method_cls is MonotoneMapping
    assert method_cls.data is medi2i.DataKind.PAIRED
    assert method_cls.training is medi2i.Training.FIT


def test_fitted_on_raw_intensities_it_reproduces_a_monotone_relation() -> None:
    mr, ct = ramp_pair()
    method = MonotoneMapping({"mr_normalization": "none", "body_contour": False})
    method.fit_pairs([pair_of(method, mr, ct, torch.ones_like(mr, dtype=torch.bool))])
    output = predict_tensor(method, mr, settings=SETTINGS)
    assert not method.state_values()["increasing"]
    # 256 bins of a smooth volume: the curve is the line up to the spread within a bin
    assert float((output - ct).abs().mean()) < 5.0


def test_only_voxels_in_the_mask_are_fitted() -> None:
    mr, ct = ramp_pair()
    method = MonotoneMapping({"mr_normalization": "none", "body_contour": False, "bins": 4})
    bright = mr.as_tensor() > float(mr.median())
    ct_masked = MetaTensor(torch.where(bright, ct.as_tensor(), 5000.0), affine=mr.affine)
    method.fit_pairs([pair_of(method, mr, ct_masked, bright)])
    # the 5000 HU outside the mask never reaches the curve
    assert max(method.state_values()["hounsfield"]) < 1000.0  # type: ignore[type-var]


def test_outside_the_body_is_air_by_default() -> None:
    mr, ct = ramp_pair()
    method = MonotoneMapping()
    method.fit_pairs([pair_of(method, mr, ct)])
    output = predict_tensor(method, mr, settings=SETTINGS)[0].numpy()
    outside = ~body_mask(mr[0].numpy())
    assert outside.any()
    assert set(np.unique(output[outside])) == {medi2i.AIR_HU}
    assert (output[~outside] > medi2i.HU_MIN).all()


def test_predicting_before_fitting_or_a_broken_state_is_an_error() -> None:
    method = MonotoneMapping()
    with pytest.raises(Medi2iError, match="has not been fitted"):
        predict_tensor(method, make_volume(), settings=SETTINGS)
    with pytest.raises(ModelFormatError, match="not a monotone curve"):
        method.load_state_values({"intensities": [1.0], "hounsfield": [1.0, 2.0]})
    with pytest.raises(Medi2iError, match="at least one paired case"):
        method.fit_pairs([])


def test_a_workflow_fits_it_on_paired_cases_and_predicts_with_its_model(
    tmp_path: Path, medi2i_registry: Registry
) -> None:
    from medi2i.testing.trainable_examples import write_paired_cases
    from medi2i.workflow import load_workflow, run_workflow

    root = tmp_path / "cases"
    write_paired_cases(root, count=3)
    workflow_file = tmp_path / "workflow.yaml"
    layout = f"{{type: synthrad, root: {root}, source: source, target: target, mask: mask}}"
    workflow_file.write_text(
        "data:\n"
        "  kind: paired\n"
        f"  layout: {layout}\n"
        "  split: {test: [case-2]}\n"
        "method: {id: monotone-mapping, options: {mr_normalization: none, body_contour: false}}\n"
        "inference: {device: cpu, progress: false}\n"
        "evaluation: {metrics: [mae], mask: mask}\n"
        "report: {figures: false}\n"
        f"output: {{root: {tmp_path / 'runs'}}}\n"
    )
    workflow = load_workflow(workflow_file, registry=medi2i_registry)
    result = run_workflow(workflow, registry=medi2i_registry)
    assert result.model_dir is not None
    log = (result.run_dir / "logs" / "run.log").read_text()
    assert "fitting method 'monotone-mapping' on 2 paired cases" in log
    model = medi2i.load_model(result.model_dir)
    assert isinstance(model, MonotoneMapping)
    assert model.curve is not None
    # the toy targets are linear in the sources: the mapping is close inside the mask
    assert result.metrics_path is not None
    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["cases"]["case-2"]["mae"] < 25.0
