"""Text others control (a Series Description, a Patient ID, a file name) printed by
``dicom ls``, ``batch``, ``predict`` and ``dicom send``: a newline cannot forge a line
of medi2i's, a terminal escape cannot clear the screen (:mod:`medi2i.text`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.plugins import load_plugins
from medi2i.testing import example_methods
from medi2i.testing.dicom_series import write_series
from medi2i.text import message_lines, one_line

VALUES = np.random.default_rng(0).integers(0, 800, size=(12, 10, 6)).astype(np.float64)
METHOD = ["--method", "example-self-rescaling", "--no-progress", "--device", "cpu"]
FORGED = "study 6.6.6  patient FORGED"
EVIL = [f"ev\n{FORGED}", "ev\x1b[2J"]


def command(*args: str) -> Result:
    plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
    return CliRunner().invoke(build_cli(plugins), list(args))


def assert_safe(output: str) -> None:
    assert "\x1b" not in output
    assert not any(
        line.startswith(("study 6.6.6", "FORGED", "sent 99")) for line in output.splitlines()
    )


def gapped_series(folder: Path, text: str) -> None:
    """A series with a missing slice (it fails) whose description and Patient ID hold ``text``."""
    files = write_series(
        folder,
        VALUES,
        modality="MR",
        rescale=(1.0, 0.0),
        description=text,
        attributes={"PatientID": text},
    )
    files[2].unlink()


def test_one_line_escapes_and_message_lines_indents() -> None:
    assert one_line(f"a\n{FORGED}\x1b[2J") == "a\\nstudy 6.6.6  patient FORGED\\x1b[2J"
    assert message_lines(f"a\n{FORGED}") == f"a\n  {FORGED}"


@pytest.mark.parametrize("text", EVIL)
def test_dicom_ls_escapes_descriptions_and_file_names(tmp_path: Path, text: str) -> None:
    gapped_series(tmp_path / "in" / "s", text)
    (tmp_path / "in" / "s" / f"x{text}.txt").write_text("not DICOM")
    result = command("dicom", "ls", str(tmp_path / "in"))
    assert result.exit_code == 0, result.output
    assert_safe(result.output)
    assert one_line(text) in result.output


@pytest.mark.parametrize("text", EVIL)
def test_batch_lines_are_escaped(tmp_path: Path, text: str) -> None:
    gapped_series(tmp_path / "in" / f"s{text}", text)
    result = command("batch", str(tmp_path / "in"), str(tmp_path / "out"), *METHOD)
    assert result.exit_code == 1
    assert_safe(result.output)
    assert f"failed: s{one_line(text)}" in result.output


@pytest.mark.parametrize("text", EVIL)
def test_the_error_line_of_predict_is_escaped(tmp_path: Path, text: str) -> None:
    gapped_series(tmp_path / "s", text)
    result = command("predict", str(tmp_path / "s"), str(tmp_path / "o.nii.gz"), *METHOD)
    assert result.exit_code != 0
    assert "Error:" in result.output
    assert_safe(result.output)
    assert one_line(text) in result.output  # click drops a raw escape only off a terminal


# pynetdicom 3.0 leaves the socket of a refused connection for the garbage collector
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("text", EVIL)
def test_dicom_send_escapes_file_names(tmp_path: Path, text: str) -> None:
    folder = tmp_path / "nl"
    folder.mkdir()
    name = text.replace(FORGED, "sent 99 file(s) to PACS, 0 failed")
    (folder / f"b{name}.dcm").write_text("junk")
    write_series(folder / "s", VALUES[..., :2], modality="MR", rescale=(1.0, 0.0))
    result = command("dicom", "send", str(folder), "127.0.0.1:9:X")
    assert_safe(result.output)
    assert one_line(name) in result.output
