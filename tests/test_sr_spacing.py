"""Super-resolution models and the spacing warning: a model records the thick slices it
was trained to refine and warns for an input far from them
(:func:`medi2i.training_spacing.check_thick_spacing`); the output record says the grid."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from medi2i_super_resolution.edsr import Edsr
from medi2i_super_resolution.srcnn import Srcnn

from medi2i import Registry
from medi2i.data.cases import CaseSet
from medi2i.io import write_volume
from medi2i.model_folder import MANIFEST, save_model
from medi2i.prediction import predict
from medi2i.provenance import sidecar_path
from medi2i.testing.trainable_examples import write_paired_cases
from medi2i.testing.volumes import make_volume
from medi2i.training_spacing import (
    SpacingWarning,
    TrainingSpacing,
    record_training_spacing,
    training_spacing_of,
)

THICK = TrainingSpacing(min=(1.0, 1.0, 4.0), max=(1.0, 1.0, 4.0))
"""What a x4 model trained on Q2's 1 x 1 x 4 mm slices records."""


@pytest.fixture(scope="module")
def x4_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    method = Edsr({"factor": 4, "features": 4, "blocks": 1, "roi_size": (16, 16, 8)})
    record_training_spacing(method, THICK)
    folder = tmp_path_factory.mktemp("edsr") / "edsr-x4"
    save_model(method, folder)
    return folder


def thick_scan(folder: Path, slice_mm: float) -> Path:
    volume = make_volume((16, 16, 6), spacing=(1.0, 1.0, slice_mm), rotation_deg=(0, 0, 0))
    return Path(write_volume(volume, folder / f"thick-{slice_mm:g}.nii.gz"))


def predicted(model: Path, source: Path) -> Path:
    return predict(source, source.with_name("out.nii.gz"), model=model, registry=Registry())


def test_a_x4_model_given_2_mm_slices_warns(x4_model: Path, tmp_path: Path) -> None:
    """A x4 model on a 2 mm input silently wrote 0.5 mm slices, worse than x2
    interpolation (32.39 against 33.50 dB)."""
    with pytest.warns(SpacingWarning, match=r"2 mm apart, far from the 4 mm slices.*interpolation"):
        output = predicted(x4_model, thick_scan(tmp_path, 2.0))
    record = json.loads(sidecar_path(output).read_text())
    assert record["run"]["spacing_outside_training_mm"]["input_mm"] == pytest.approx(2.0)


def test_slices_near_the_trained_spacing_do_not_warn(x4_model: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpacingWarning)
        predicted(x4_model, thick_scan(tmp_path, 5.0))  # Q2c's 5 mm: within 4 x 1.5


def test_a_model_without_the_record_loads_and_does_not_warn(x4_model: Path, tmp_path: Path) -> None:
    older = tmp_path / "older"
    older.mkdir()
    for path in x4_model.iterdir():
        (older / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((older / MANIFEST).read_text())
    manifest.pop("training_spacing_mm", None)
    (older / MANIFEST).write_text(json.dumps(manifest))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpacingWarning)
        predicted(older, thick_scan(tmp_path, 2.0))


def test_the_output_record_gives_the_grid_and_the_scale(x4_model: Path, tmp_path: Path) -> None:
    """The provenance recorded neither the output grid nor the scale applied."""
    output = predicted(x4_model, thick_scan(tmp_path, 4.0))
    described = json.loads(sidecar_path(output).read_text())["output"]
    assert described["shape"] == [16, 16, 21]
    np.testing.assert_allclose(described["spacing_mm"], (1.0, 1.0, 1.0), atol=1e-5)
    np.testing.assert_allclose(described["scale"], (1.0, 1.0, 4.0), atol=1e-5)


def test_srcnn_records_no_training_spacing(tmp_path: Path) -> None:
    """SRCNN trains on sources already interpolated onto the fine grid: their 1 mm says
    nothing of the thick slices, and would make every thick input warn."""
    cases = write_paired_cases(tmp_path, count=1, shape=(8, 8, 8))
    assert isinstance(cases, CaseSet)
    assert training_spacing_of(Srcnn(), cases) is None
    assert training_spacing_of(Edsr(), cases) is not None
