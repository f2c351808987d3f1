"""Files of two splits are compared by content too: a validation or test image with a
training image's bytes (a subject exported twice, a copied case folder) is refused as
the same file is, while masks, and validation and test, may share content."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from medi2i.cli.main import build_cli
from medi2i.data.cases import Case, CaseSet
from medi2i.data.discovery import DataSplits
from medi2i.method import DataKind
from medi2i.plugins import PluginSet, load_plugins
from medi2i.workflow import load_workflow
from medi2i.workflow.demo_data import write_demo_cases
from medi2i.workflow.loader import WorkflowError
from medi2i.workflow.schema import Workflow
from medi2i.workflow.split_checks import SameContent, check_split_files
from tests.test_workflow_folder_guards import TRAINING

WORKFLOW = (
    """\
data:
  kind: paired
  layout: {type: synthrad, root: data, source: mr, target: ct, mask: mask}
  split: {validation: [demo001], test: [democopy]}
"""
    + TRAINING
)


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> PluginSet:
    monkeypatch.setenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "1")
    return load_plugins()


@pytest.fixture
def workflow(tmp_path: Path) -> Workflow:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    return load_workflow(path)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def splits(train: list[Case], test: list[Case], validation: list[Case] | None = None) -> DataSplits:
    def of(cases: list[Case]) -> CaseSet:
        return CaseSet(kind=DataKind.PAIRED, cases=tuple(cases))

    return DataSplits(train=of(train), validation=of(validation or []), test=of(test))


def case(name: str, source: Path, target: Path, mask: Path | None = None) -> Case:
    images = {"source": source, "target": target}
    return Case(name, images if mask is None else {**images, "mask": mask})


def test_a_test_image_with_a_training_image_s_content_is_refused(
    tmp_path: Path, workflow: Workflow
) -> None:
    mr = write(tmp_path / "a" / "mr.nii.gz", b"the head's MR")
    train = case("a", mr, write(tmp_path / "a" / "ct.nii.gz", b"the head's CT"))
    copy = write(tmp_path / "copy" / "mr.nii.gz", mr.read_bytes())
    test = case("copy", copy, write(tmp_path / "copy" / "ct.nii.gz", b"another CT!!"))
    with pytest.raises(WorkflowError) as caught:
        check_split_files(workflow, splits([train], [test]))
    message = str(caught.value)
    assert f"{copy} (the source of test case 'copy') has the same content as {mr}" in message
    assert "(the source of training case 'a')" in message
    assert "exported twice" in message


def test_same_size_other_content_and_shared_mask_content_are_allowed(
    tmp_path: Path, workflow: Workflow
) -> None:
    mask = b"a full mask"
    train = case(
        "a",
        write(tmp_path / "a" / "mr", b"MR of a"),
        write(tmp_path / "a" / "ct", b"CT of a"),
        write(tmp_path / "a" / "mask", mask),
    )
    test = case(
        "b",
        write(tmp_path / "b" / "mr", b"MR of b"),  # the same size, other bytes
        write(tmp_path / "b" / "ct", b"CT of b"),
        write(tmp_path / "b" / "mask", mask),  # two subjects' masks may be identical
    )
    check_split_files(workflow, splits([train], [test]))


def test_validation_and_test_may_share_content(tmp_path: Path, workflow: Workflow) -> None:
    train = case("a", write(tmp_path / "a" / "mr", b"MR of a"), write(tmp_path / "a" / "ct", b"1"))
    scored = case("b", write(tmp_path / "b" / "mr", b"MR of b"), write(tmp_path / "b" / "ct", b"2"))
    twin = case("c", write(tmp_path / "c" / "mr", b"MR of b"), write(tmp_path / "c" / "ct", b"2"))
    check_split_files(workflow, splits([train], [scored], [twin]))


def test_same_content_compares_folders_and_skips_other_sizes(tmp_path: Path) -> None:
    series = tmp_path / "series"
    write(series / "1.dcm", b"slice one")
    write(series / "2.dcm", b"slice two")
    copied = Path(shutil.copytree(series, tmp_path / "copied"))
    other = write(tmp_path / "other.nii", b"x" * 100)
    same = SameContent([str(series), str(other)])
    assert same.match(str(copied)) == str(series)
    assert same.match(str(series)) is None  # a file is not its own copy
    assert same.match(str(write(tmp_path / "small", b"y"))) is None
    assert same.match(str(tmp_path / "missing")) is None
    assert str(other) not in same._digests  # no file of that size was asked about


def test_validate_check_data_refuses_a_copied_subject(tmp_path: Path, plugins: PluginSet) -> None:
    root = tmp_path / "data"
    write_demo_cases(root, count=3, shape=(16, 16, 16))
    shutil.copytree(root / "demo000", root / "democopy")
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    runner = CliRunner()
    result = runner.invoke(build_cli(plugins), ["validate", str(path), "--check-data"])
    assert result.exit_code != 0, result.output
    assert "of test case 'democopy') has the same content as" in result.output
    assert "of training case 'demo000')" in result.output
    assert runner.invoke(build_cli(plugins), ["validate", str(path)]).exit_code == 0  # no read
