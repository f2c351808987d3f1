"""``medi2i demo``: where it may write (the demo itself trains for minutes and is not run here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.demo import WORKFLOW, _require_demo_folder


def _demo(output: Path) -> Result:
    return CliRunner().invoke(build_cli(), ["demo", "--no-progress", "--output", str(output)])


def _one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error:")
    return lines[0]


def test_a_folder_of_other_files_is_refused_and_kept(tmp_path: Path) -> None:
    # the demo replaces its own files (synthetic_ct.nii.gz, mr_to_ct.yaml, ...) in its
    # folder: in a folder of the user's, those names would be the user's files
    folder = tmp_path / "work"
    folder.mkdir()
    for name in ("synthetic_ct.nii.gz", "mr_to_ct.yaml"):
        (folder / name).write_bytes(b"the user's " + name.encode())
    line = _one_error_line(_demo(folder))
    assert str(folder) in line
    assert "earlier demo" in line
    assert sorted(p.name for p in folder.iterdir()) == ["mr_to_ct.yaml", "synthetic_ct.nii.gz"]
    assert (folder / "synthetic_ct.nii.gz").read_bytes() == b"the user's synthetic_ct.nii.gz"


def test_a_file_as_the_folder_is_one_line(tmp_path: Path) -> None:
    taken = tmp_path / "scan.nii.gz"
    taken.write_bytes(b"data")
    line = _one_error_line(_demo(taken))
    assert str(taken) in line
    assert taken.read_bytes() == b"data"


def test_a_new_empty_or_earlier_demo_folder_is_taken(tmp_path: Path) -> None:
    _require_demo_folder(tmp_path / "new", tmp_path / "new" / "mr_to_ct.yaml")
    (tmp_path / "empty").mkdir()
    _require_demo_folder(tmp_path / "empty", tmp_path / "empty" / "mr_to_ct.yaml")
    earlier = tmp_path / "earlier"
    (earlier / "data").mkdir(parents=True)
    (earlier / "mr_to_ct.yaml").write_text(yaml.safe_dump(WORKFLOW))
    _require_demo_folder(earlier, earlier / "mr_to_ct.yaml")


def test_an_interrupted_demo_says_how_to_continue_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("Interrupted; ... continue it with --run-dir runs/x")

    monkeypatch.setattr("medi2i.workflow.runner.run_workflow", interrupted)
    folder = tmp_path / "demo"
    result = _demo(folder)
    assert result.exit_code != 0
    assert f"medi2i demo --output {folder}` again" in result.output
    assert "--run-dir" not in result.output  # the demo command takes no --run-dir
    assert (folder / "mr_to_ct.yaml").is_file()  # kept: a rerun continues this demo


@pytest.mark.parametrize("step", [None, 100])
def test_an_interrupted_demo_says_whether_a_checkpoint_was_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: int | None
) -> None:
    """Before the first checkpoint a rerun trains from step 0, as ``medi2i run`` says;
    after one it resumes there."""
    from medi2i.workflow import run_folder

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    folders: list[Path] = []

    def checkpoint_step(run: run_folder.RunFolder) -> int | None:
        folders.append(run.root)
        return step

    monkeypatch.setattr("medi2i.workflow.runner.run_workflow", interrupted)
    monkeypatch.setattr(run_folder, "checkpoint_step", checkpoint_step)
    folder = tmp_path / "demo"
    result = _demo(folder)
    assert result.exit_code != 0
    assert folders == [folder / "runs" / "mr-to-ct-demo"]
    if step is None:
        assert "no training checkpoint yet" in result.output
        assert "from step 0" in result.output
        assert "last checkpoint" not in result.output
    else:
        assert "the checkpoint of step 100, where training resumes" in result.output
