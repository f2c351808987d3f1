"""A validation or test image that holds a training image's voxels in other bytes (the
same volume re-compressed, or converted to another format) is refused as a
byte-identical copy is; a volume with one voxel changed, or on another grid, is not."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from medi2i.cli.main import build_cli
from medi2i.data.cases import Case, CaseSet
from medi2i.data.discovery import DataSplits
from medi2i.io import read_volume, write_volume
from medi2i.method import DataKind
from medi2i.plugins import PluginSet, load_plugins
from medi2i.workflow import load_workflow, split_checks
from medi2i.workflow.demo_data import write_demo_cases
from medi2i.workflow.loader import WorkflowError
from medi2i.workflow.schema import Workflow
from medi2i.workflow.split_checks import (
    SameVoxels,
    cases_on_training,
    check_split_files,
    voxel_digest,
)
from tests.test_split_content import WORKFLOW

AFFINE = np.array(
    [[2.0, 0, 0, -10.0], [0, 1.5, 0, 4.0], [0, 0, 3.0, 7.0], [0, 0, 0, 1.0]], dtype=np.float64
)


@pytest.fixture
def workflow(tmp_path: Path) -> Workflow:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    return load_workflow(path)


def voxels(seed: int) -> np.ndarray:
    """Small int16 random values."""
    return np.random.default_rng(seed).integers(-1000, 2000, (6, 5, 4)).astype(np.int16)


def save(values: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    """A NIfTI file (gzipped at nibabel's default level when named ``.nii.gz``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(values, affine), str(path))  # type: ignore[no-untyped-call]
    return path


def volume(path: Path, seed: int, affine: np.ndarray = AFFINE) -> Path:
    """A small int16 NIfTI of random values."""
    return save(voxels(seed), affine, path)


def regzipped(source: Path, copy: Path) -> Path:
    """``source`` gzipped again at another level, as ``gzip -1 -n`` would."""
    copy.parent.mkdir(parents=True, exist_ok=True)
    raw = gzip.decompress(source.read_bytes())
    copy.write_bytes(gzip.compress(raw, compresslevel=1, mtime=0))
    assert copy.read_bytes() != source.read_bytes()
    return copy


def splits(train: Case, test: Case) -> DataSplits:
    def of(cases: list[Case]) -> CaseSet:
        return CaseSet(kind=DataKind.PAIRED, cases=tuple(cases))

    return DataSplits(train=of([train]), validation=of([]), test=of([test]))


def case(name: str, source: Path, target: Path) -> Case:
    return Case(name, {"source": source, "target": target})


def test_a_regzipped_training_mr_as_a_test_case_is_refused(
    tmp_path: Path, workflow: Workflow
) -> None:
    mr = volume(tmp_path / "a" / "mr.nii.gz", 0)
    train = case("a", mr, volume(tmp_path / "a" / "ct.nii.gz", 1))
    copy = regzipped(mr, tmp_path / "copy" / "mr.nii.gz")
    test = case("copy", copy, volume(tmp_path / "copy" / "ct.nii.gz", 2))
    with pytest.raises(WorkflowError) as caught:
        check_split_files(workflow, splits(train, test))
    message = str(caught.value)
    assert f"{copy} (the source of test case 'copy') holds the same voxels" in message
    assert f"as {mr} (the source of training case 'a')" in message
    assert "though the files differ (re-compressed, converted or saved again" in message


def test_one_voxel_changed_or_another_grid_is_allowed(tmp_path: Path, workflow: Workflow) -> None:
    mr = volume(tmp_path / "a" / "mr.nii.gz", 0)
    train = case("a", mr, volume(tmp_path / "a" / "ct.nii.gz", 1))
    values = voxels(0)
    values[3, 2, 1] += 1
    changed = save(values, AFFINE, tmp_path / "b" / "mr.nii.gz")
    ct = volume(tmp_path / "b" / "ct.nii.gz", 2)
    check_split_files(workflow, splits(train, case("b", changed, ct)))
    moved = AFFINE.copy()
    moved[0, 3] += 1.0  # the same voxels one millimetre apart: not the same image
    shifted = volume(tmp_path / "c" / "mr.nii.gz", 0, moved)
    same = SameVoxels([str(mr)])
    assert same.match(str(shifted)) is None
    assert same._digests == {}  # no volume on another grid is read in full


def test_a_nrrd_or_flipped_copy_of_a_nifti_is_refused(tmp_path: Path, workflow: Workflow) -> None:
    mr = volume(tmp_path / "a" / "mr.nii.gz", 0)
    train = case("a", mr, volume(tmp_path / "a" / "ct.nii.gz", 1))
    nrrd = tmp_path / "b" / "mr.nrrd"
    nrrd.parent.mkdir()
    write_volume(read_volume(mr), nrrd)
    test = case("b", nrrd, volume(tmp_path / "b" / "ct.nii.gz", 2))
    with pytest.raises(WorkflowError, match=r"source of test case 'b'\) holds the same voxels"):
        check_split_files(workflow, splits(train, test))
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = voxels(0).shape[0] - 1  # x stored the other way round: the same voxels
    flipped = save(voxels(0)[::-1], AFFINE @ flip, tmp_path / "c" / "mr.nii")
    assert SameVoxels([str(mr)]).match(str(flipped)) == str(mr)


def test_each_volume_is_hashed_once_and_unreadable_files_match_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[str] = []

    def counted(path: str) -> str | None:
        hashed.append(path)
        return voxel_digest(path)

    monkeypatch.setattr(split_checks, "voxel_digest", counted)
    first = volume(tmp_path / "a.nii.gz", 0)
    second = volume(tmp_path / "b.nii.gz", 1)
    same = SameVoxels([str(second), str(first)])
    copy = regzipped(first, tmp_path / "copy.nii.gz")
    assert same.match(str(copy)) == str(first)
    assert same.match(str(copy)) == str(first)
    assert sorted(hashed) == sorted([str(first), str(second), str(copy)])
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(copy.read_bytes()[:200])
    assert same.match(str(broken)) is None
    assert same.match(str(tmp_path / "missing.nii.gz")) is None
    assert same.match(str(first)) is None  # a file is not its own copy


def test_an_unpaired_evaluation_of_a_resaved_training_image_is_found(tmp_path: Path) -> None:
    mr = volume(tmp_path / "a" / "mr.nii.gz", 0)
    copy = regzipped(mr, tmp_path / "b" / "mr.nii.gz")
    other = volume(tmp_path / "c" / "mr.nii.gz", 3)
    evaluated = [("b", {"source": copy}), ("c", {"source": other})]
    overlap = cases_on_training(evaluated, [str(mr)])
    assert overlap is not None
    assert overlap.cases == ("b",)


def test_validate_check_data_refuses_a_regzipped_subject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins: PluginSet = load_plugins()
    root = tmp_path / "data"
    write_demo_cases(root, count=3, shape=(12, 12, 12))
    shutil.copytree(root / "demo001", root / "democopy")  # validation may share
    regzipped(root / "demo000" / "mr.nii.gz", root / "democopy" / "mr.nii.gz")
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    result = CliRunner().invoke(build_cli(plugins), ["validate", str(path), "--check-data"])
    assert result.exit_code != 0, result.output
    assert "of test case 'democopy') holds the same voxels on the same grid as" in result.output
    assert "of training case 'demo000')" in result.output
