"""The volumes of validation and evaluation cases are checked before training: NaN voxels,
and super-resolution references that are not on the grid the method delivers."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.errors import InputError
from medi2i.plugins import load_plugins
from medi2i.registry import Registry
from medi2i.training.validation import output_grid_hint
from medi2i.workflow.data_checks import in_workflow_words
from medi2i.workflow.demo_data import write_demo_cases
from tests.workflow_texts import tiny_paired_workflow

PAIRED = tiny_paired_workflow()

SUPER_RESOLUTION = """\
data:
  kind: paired
  layout: {type: synthrad, root: cases, source: thick, target: high_res, mask: null}
  split: {validation: [demo001], test: [demo003]}
method:
  id: edsr
  options: {factor: 2, features: 4, blocks: 1, roi_size: [8, 8, 4]}
training: {steps: 2, batch_size: 2, device: cpu, progress: false}
inference: {device: cpu, progress: false}
evaluation: {metrics: [mr], mask: null}
output: {root: runs}
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "cases"
    write_demo_cases(root, count=4, shape=(16, 16, 16), spacing_mm=(10.5, 12.0, 10.5))
    return root


def cli(*args: str) -> Result:
    return CliRunner().invoke(build_cli(load_plugins()), list(args))


def error_line(result: Result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    return next(line for line in result.output.splitlines() if line.startswith("Error:"))


def workflow(tmp_path: Path, text: str, cases: Path) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(text.replace("root: cases", f"root: {cases}"))
    return path


def poison(path: Path) -> None:
    image = nib.load(path)
    values = np.asarray(image.dataobj, dtype=np.float32)
    values[5, 5, 5] = np.nan
    nib.save(nib.Nifti1Image(values, image.affine), path)


# -- NaN voxels ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "role", "what"),
    [
        ("demo001", "mr", "validation case 'demo001', its source"),
        ("demo001", "ct", "validation case 'demo001', its reference"),
        ("demo003", "mr", "evaluation case 'demo003', its source"),
        ("demo003", "ct", "evaluation case 'demo003', its reference"),
    ],
)
def test_nan_voxels_of_later_cases_are_refused_before_training(
    tmp_path: Path, demo: Path, case: str, role: str, what: str
) -> None:
    cases = tmp_path / "cases"
    shutil.copytree(demo, cases)
    poison(cases / case / f"{role}.nii.gz")
    path = workflow(tmp_path, PAIRED, cases)
    line = error_line(cli("validate", str(path), "--check-data"))
    assert f"{cases / case / role}.nii.gz ({what})" in line
    if role == "mr":
        assert "inference.nonfinite: zero|nearest" in line
        assert "--nonfinite" not in line
    assert what in error_line(cli("run", str(path)))
    assert not list((tmp_path / "runs").rglob("train.jsonl"))  # refused before a step


def test_a_nan_source_passes_when_the_workflow_replaces_nan(tmp_path: Path, demo: Path) -> None:
    cases = tmp_path / "cases"
    shutil.copytree(demo, cases)
    poison(cases / "demo003" / "mr.nii.gz")
    path = workflow(tmp_path, PAIRED, cases)
    result = cli("validate", str(path), "--check-data", "--set", "inference.nonfinite=zero")
    assert result.exit_code == 0, result.output


def test_predicts_nonfinite_hint_becomes_the_workflow_key() -> None:
    error = InputError(
        "x.nii.gz: 1 voxel(s) are NaN or infinite (first at voxel (1, 1, 1)); fix the file, "
        "or pass --nonfinite zero|nearest (InferenceSettings(nonfinite=...) in Python) to "
        "replace them"
    )
    assert str(in_workflow_words(error)) == (
        "x.nii.gz: 1 voxel(s) are NaN or infinite (first at voxel (1, 1, 1)); fix the file, "
        "or set inference.nonfinite: zero|nearest in the workflow to replace them"
    )


# -- super-resolution grids ------------------------------------------------------------------


def thick_cases(demo: Path, root: Path, *, reference_slices: int, edges: bool = False) -> Path:
    """Thick sources of every other slice of the demo CTs (or, with ``edges``, the mean
    of each two slices: the thick slice centred between them), thin references."""
    for case in sorted(demo.iterdir()):
        image = nib.load(case / "ct.nii.gz")
        thin = np.asarray(image.dataobj, dtype=np.float32)
        affine = image.affine.copy()
        affine[:3, 2] *= 2
        if edges:
            thick = (thin[:, :, ::2] + thin[:, :, 1::2]) / 2
            affine[:3, 3] += image.affine[:3, 2] / 2
        else:
            thick = thin[:, :, ::2]
        (root / case.name).mkdir(parents=True)
        nib.save(
            nib.Nifti1Image(np.ascontiguousarray(thick), affine), root / case.name / "thick.nii.gz"
        )
        reference = np.ascontiguousarray(thin[:, :, :reference_slices])
        nib.save(nib.Nifti1Image(reference, image.affine), root / case.name / "high_res.nii.gz")
    return root


def test_a_reference_off_the_delivered_grid_is_refused_before_training(
    tmp_path: Path, demo: Path
) -> None:
    cases = thick_cases(demo, tmp_path / "cases", reference_slices=16)
    path = workflow(tmp_path, SUPER_RESOLUTION, cases)
    line = error_line(cli("validate", str(path), "--check-data"))
    assert "validation case 'demo001'" in line
    assert "(16x16x16 voxels)" in line
    assert "(16x16x15 voxels)" in line
    assert "align" not in line  # EDSR has no align option
    line = error_line(
        cli("validate", str(path), "--check-data", "--set", "data.split.validation=0")
    )
    assert "evaluation case 'demo003'" in line


def test_references_on_the_delivered_grid_pass(tmp_path: Path, demo: Path) -> None:
    cases = thick_cases(demo, tmp_path / "cases", reference_slices=15)
    path = workflow(tmp_path, SUPER_RESOLUTION, cases)
    result = cli("validate", str(path), "--check-data")
    assert result.exit_code == 0, result.output


def test_training_targets_half_a_thin_slice_off_are_refused(tmp_path: Path, demo: Path) -> None:
    cases = thick_cases(demo, tmp_path / "cases", reference_slices=16, edges=True)
    path = workflow(tmp_path, SUPER_RESOLUTION, cases)
    line = error_line(cli("validate", str(path), "--check-data"))
    assert "training case 'demo000'" in line
    assert "mm from its" in line


def test_references_with_the_sources_shape_are_held_to_the_delivered_grid(
    tmp_path: Path, demo: Path
) -> None:
    cases = thick_cases(demo, tmp_path / "cases", reference_slices=8)  # as many as the source
    path = workflow(tmp_path, SUPER_RESOLUTION, cases)
    line = error_line(cli("validate", str(path), "--check-data"))
    assert "is not the grid method 'edsr' delivers" in line
    assert "(16x16x8 voxels)" in line


def test_the_grid_hint_names_align_only_for_methods_that_have_it() -> None:
    registry = Registry(load_plugins())
    assert "align" not in output_grid_hint(registry.method("edsr")({"factor": 2}))
    assert "align" not in output_grid_hint(registry.method("srgan")({"factor": 2}))
    assert "set the method's align option" in output_grid_hint(registry.method("srcnn")({}))
