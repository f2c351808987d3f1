"""``--check-data`` compares the grids of every pair it can (NRRD and MetaImage from their
headers, other files from the full read; validation cases too) and lists the problems of
all cases at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.data.discovery import discover_splits
from medi2i.errors import GeometryError
from medi2i.grid import Grid
from medi2i.io import builtin_readers, read_grid, read_volume
from medi2i.io.nifti import NiftiReader
from medi2i.plugins import load_plugins
from medi2i.registry import Registry
from medi2i.workflow.checks import check_data
from medi2i.workflow.data_checks import DataProblemsError, volume_grid
from medi2i.workflow.demo_data import write_demo_cases
from medi2i.workflow.loader import load_workflow, workflow_registry
from tests.workflow_texts import tiny_paired_workflow

PAIRED = tiny_paired_workflow()

DIRECTIONS = {
    "identity": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "flipped": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
    "permuted": (0, 0, 1, 1, 0, 0, 0, 1, 0),
    "oblique": (0.8, -0.6, 0, 0.6, 0.8, 0, 0, 0, 1),
}


@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr", ".mha", ".mhd"])
@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
def test_an_itk_header_gives_the_grid_the_full_read_gives(
    tmp_path: Path, suffix: str, direction: str
) -> None:
    image = sitk.GetImageFromArray(np.arange(7 * 6 * 5, dtype=np.int16).reshape(7, 6, 5))
    image.SetOrigin((12.5, -30.0, 4.0))
    image.SetSpacing((0.8, 1.1, 2.5))
    image.SetDirection(DIRECTIONS[direction])
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(image, str(path))
    grid = read_grid(path, readers=builtin_readers())
    full = Grid.of(read_volume(path, readers=builtin_readers()))
    assert grid is not None
    assert grid.shape == full.shape == (5, 6, 7)
    np.testing.assert_allclose(grid.affine, full.affine, atol=1e-9)


def test_an_unreadable_itk_header_gives_no_grid(tmp_path: Path) -> None:
    broken = tmp_path / "broken.nrrd"
    broken.write_bytes(b"NRRD0004\nsizes: nonsense\n\n")
    assert read_grid(broken, readers=builtin_readers()) is None


class _NoHeaderReader(NiftiReader):
    """A reader that cannot tell a grid from the header, as a DICOM series reader."""

    def read_grid(self, path: Path) -> Grid | None:
        return None


def test_a_grid_the_header_cannot_tell_comes_from_the_full_read(tmp_path: Path) -> None:
    path = tmp_path / "ct.nii.gz"
    affine = np.diag([0.9, 1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), affine), path)
    grid = volume_grid(path, [_NoHeaderReader()])
    assert grid.shape == (4, 5, 6)
    np.testing.assert_allclose(grid.affine, affine)


# -- the workflow's cases ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "cases"
    write_demo_cases(root, count=4, shape=(16, 16, 16), spacing_mm=(10.5, 12.0, 10.5))
    return root


def _cases(tmp_path: Path, demo: Path) -> Path:
    cases = tmp_path / "cases"
    shutil.copytree(demo, cases)
    return cases


def _shift(path: Path, *, mm: float = 2.0, suffix: str | None = None) -> Path:
    """Move the volume at ``path`` by ``mm`` towards the right (rewritten as ``suffix``)."""
    image = sitk.ReadImage(str(path))
    x, y, z = image.GetOrigin()
    image.SetOrigin((x - mm, y, z))  # ITK's x is LPS: left
    target = path if suffix is None else _convert(path, suffix)
    sitk.WriteImage(image, str(target))
    return target


def _convert(path: Path, suffix: str) -> Path:
    """``path`` rewritten as ``suffix`` (the NIfTI removed)."""
    target = path.with_name(path.name.split(".")[0] + suffix)
    sitk.WriteImage(sitk.ReadImage(str(path)), str(target))
    path.unlink()
    return target


def _nan(path: Path) -> None:
    image = nib.load(path)
    values = np.asarray(image.dataobj, dtype=np.float32)
    values[5, 5, 5] = np.nan
    nib.save(nib.Nifti1Image(values, image.affine), path)


def _workflow(tmp_path: Path, cases: Path, text: str = PAIRED) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(text.replace("root: cases", f"root: {cases}"))
    return path


def _validate(path: Path, *sets: str) -> Result:
    args = ["validate", str(path), "--check-data"]
    for value in sets:
        args += ["--set", value]
    return CliRunner().invoke(build_cli(load_plugins()), args)


def _error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    return result.output[result.output.index("Error:") :]


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_an_evaluation_pair_of_itk_files_on_two_grids_is_refused(
    tmp_path: Path, demo: Path, suffix: str
) -> None:
    cases = _cases(tmp_path, demo)
    _convert(cases / "demo003" / "mr.nii.gz", suffix)
    shifted = _shift(cases / "demo003" / "ct.nii.gz", suffix=suffix)
    error = _error(_validate(_workflow(tmp_path, cases)))
    assert "evaluation case 'demo003'" in error
    assert str(shifted) in error


def test_a_validation_pair_on_two_grids_is_refused(tmp_path: Path, demo: Path) -> None:
    cases = _cases(tmp_path, demo)
    shifted = _shift(cases / "demo001" / "ct.nii.gz")
    error = _error(_validate(_workflow(tmp_path, cases)))
    assert f"validation case 'demo001': the reference {shifted}" in error
    assert "2 mm" in error
    assert "resample the reference onto the source" in error


def test_a_training_pair_on_two_grids_is_refused_from_the_headers(
    tmp_path: Path, demo: Path
) -> None:
    cases = _cases(tmp_path, demo)
    shifted = _shift(cases / "demo000" / "ct.nii.gz", suffix=".nrrd")
    error = _error(_validate(_workflow(tmp_path, cases)))
    assert f"training case 'demo000': the reference {shifted}" in error


def test_a_pair_stored_in_another_axis_order_passes_training(tmp_path: Path, demo: Path) -> None:
    cases = _cases(tmp_path, demo)
    ct = cases / "demo000" / "ct.nii.gz"
    image = nib.load(ct)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = image.shape[0] - 1
    values = np.asarray(image.dataobj)[::-1]
    nib.save(nib.Nifti1Image(values, image.affine @ flip), ct)
    result = _validate(_workflow(tmp_path, cases))
    assert result.exit_code == 0, result.output


def test_the_problems_of_all_evaluation_cases_are_listed_at_once(
    tmp_path: Path, demo: Path
) -> None:
    cases = _cases(tmp_path, demo)
    shifted = _shift(cases / "demo002" / "ct.nii.gz")
    _nan(cases / "demo003" / "ct.nii.gz")
    error = _error(_validate(_workflow(tmp_path, cases), "data.split.test=[demo002, demo003]"))
    lines = error.splitlines()
    assert len(lines) == 3, error
    assert str(shifted) in lines[0]
    assert "evaluation case 'demo002'" in lines[0]
    assert "evaluation case 'demo003', its reference" in lines[1]
    assert lines[2].strip().startswith("2 problems in the data")


def test_check_data_lists_the_problems_of_every_split(tmp_path: Path, demo: Path) -> None:
    cases = _cases(tmp_path, demo)
    _shift(cases / "demo000" / "ct.nii.gz")
    _nan(cases / "demo001" / "mr.nii.gz")
    _shift(cases / "demo003" / "ct.nii.gz")
    registry = Registry(load_plugins())
    workflow = load_workflow(_workflow(tmp_path, cases), registry=registry)
    registry = workflow_registry(workflow, registry=registry)
    with pytest.raises(DataProblemsError) as caught:
        check_data(workflow, discover_splits(workflow.data), registry)
    found = str(caught.value)
    assert "training case 'demo000'" in found
    assert "validation case 'demo001', its source" in found
    assert "evaluation case 'demo003'" in found
    assert found.splitlines()[-1].startswith("3 problems in the data")


def test_one_problem_is_raised_as_it_was(tmp_path: Path, demo: Path) -> None:
    cases = _cases(tmp_path, demo)
    _shift(cases / "demo001" / "ct.nii.gz")
    registry = Registry(load_plugins())
    workflow = load_workflow(_workflow(tmp_path, cases), registry=registry)
    registry = workflow_registry(workflow, registry=registry)
    with pytest.raises(GeometryError, match="validation case 'demo001'"):
        check_data(workflow, discover_splits(workflow.data), registry)
