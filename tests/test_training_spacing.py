"""The training spacings a model folder records, and the warning for an input far
from them (:mod:`medi2i.training_spacing`)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from medi2i import builtins
from medi2i.grid import Grid, SpatialPlan
from medi2i.io import write_volume
from medi2i.model_averaging import average_models
from medi2i.model_folder import MANIFEST, load_model, read_manifest
from medi2i.prediction import predict
from medi2i.provenance import sidecar_path
from medi2i.testing import isolated_registry, trainable_examples
from medi2i.testing.trainable_examples import TinyRegression, write_paired_cases
from medi2i.testing.volumes import make_volume
from medi2i.training import AugmentationConfig, TrainingConfig, train
from medi2i.training_spacing import SpacingWarning, TrainingSpacing, planned_spacing

TRAINED = (0.9, 1.1, 2.0)
"""The spacing of :func:`make_volume`, the toy training cases'."""


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cases = write_paired_cases(tmp_path_factory.mktemp("cases"), count=2, shape=(20, 20, 20))
    config = TrainingConfig(
        steps=1,
        batch_size=1,
        patch_size=(16, 16, 16),
        device="cpu",
        progress=False,
        augmentation=AugmentationConfig(intensity_probability=0.0, noise_probability=0.0),
    )
    run = tmp_path_factory.mktemp("run")
    return train(TinyRegression(), cases, config=config, run_dir=run).model_dir


def scan(folder: Path, spacing: tuple[float, float, float]) -> Path:
    volume = make_volume((16, 16, 16), spacing=spacing, seed=3)
    return Path(write_volume(volume, folder / f"in-{spacing[0]}.nii.gz"))


def predicted(model: Path, source: Path) -> Path:
    registry = isolated_registry(builtins, trainable_examples)
    return predict(source, source.with_name("out.nii.gz"), model=model, registry=registry)


def test_training_records_the_spacing_range_of_its_inputs(model: Path) -> None:
    recorded = read_manifest(model).training_spacing_mm
    assert recorded is not None
    np.testing.assert_allclose(recorded.min, TRAINED, atol=1e-4)
    np.testing.assert_allclose(recorded.max, TRAINED, atol=1e-4)


def test_an_input_at_two_and_a_half_times_the_spacing_warns(model: Path, tmp_path: Path) -> None:
    source = scan(tmp_path, (2.25, 2.75, 5.0))
    with pytest.warns(SpacingWarning, match=r"in-2\.25.*2\.25x2\.75x5 mm.*resample the input"):
        output = predicted(model, source)
    record = json.loads(sidecar_path(output).read_text())
    assert "spacing_outside_training_mm" in json.dumps(record)


def test_an_input_within_the_range_does_not_warn(model: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpacingWarning)
        predicted(model, scan(tmp_path, (1.0, 1.0, 2.5)))


def test_a_model_without_the_field_loads_and_predicts_without_warning(
    model: Path, tmp_path: Path
) -> None:
    older = shutil.copytree(model, tmp_path / "older")
    manifest = json.loads((older / MANIFEST).read_text())
    del manifest["training_spacing_mm"]
    (older / MANIFEST).write_text(json.dumps(manifest))
    assert read_manifest(older).training_spacing_mm is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpacingWarning)
        predicted(older, scan(tmp_path, (2.25, 2.75, 5.0)))


def test_averaged_models_keep_the_range_spanning_theirs(model: Path, tmp_path: Path) -> None:
    other = shutil.copytree(model, tmp_path / "other")
    manifest = json.loads((other / MANIFEST).read_text())
    manifest["training_spacing_mm"] = {"min": [0.5, 0.5, 5.0], "max": [0.5, 0.5, 5.0]}
    (other / MANIFEST).write_text(json.dumps(manifest))
    registry = isolated_registry(builtins, trainable_examples)
    averaged = average_models([model, other], tmp_path / "mean", registry=registry)
    spanned = read_manifest(averaged).training_spacing_mm
    assert spanned is not None
    np.testing.assert_allclose(spanned.min, (0.5, 0.5, 2.0), atol=1e-4)
    np.testing.assert_allclose(spanned.max, (0.9, 1.1, 5.0), atol=1e-4)
    assert load_model(averaged, registry=registry) is not None


def test_a_reorienting_plan_compares_the_reoriented_axes() -> None:
    # stored with the 5 mm axis first (sagittal-like: array axes S, A, R)
    affine = np.array([[0, 0, 2.0, 0], [0, 2.0, 0, 0], [5.0, 0, 0, 0], [0, 0, 0, 1]])
    grid = Grid((10, 10, 10), affine)
    assert planned_spacing(grid, SpatialPlan()) == (5.0, 2.0, 2.0)
    assert planned_spacing(grid, SpatialPlan(orientation="RAS")) == pytest.approx((2, 2, 5))
    assert planned_spacing(grid, SpatialPlan(spacing=(1.0, 1.0, 1.0))) == (1.0, 1.0, 1.0)


def test_the_range_is_widened_by_half_each_way() -> None:
    trained = TrainingSpacing(min=(2.0, 2.0, 5.0), max=(2.0, 2.0, 5.0))
    assert not trained.outside((1.4, 2.9, 3.4))
    assert trained.outside((1.0, 1.0, 1.0))  # the outside tester's 1 mm scan
    assert trained.outside((0.5, 0.5, 5.0))
