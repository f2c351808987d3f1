"""Output paths without a name of their own, links at the output path, temporary names
of dotted outputs, and what a failed write tells the user to do."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.errors import OutputError
from medi2i.io.atomic import atomic_path, is_temporary, temporary_sibling
from medi2i.io.destinations import check_destination
from medi2i.plugins import load_plugins
from medi2i.testing import example_methods


def run(*args: str) -> Result:
    plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
    return CliRunner().invoke(build_cli(plugins), list(args))


def nifti(path: Path) -> Path:
    values = np.random.default_rng(0).normal(400.0, 100.0, (12, 10, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(values, np.eye(4)), str(path))
    return path


def translate(source: Path, output: str, *extra: str) -> Result:
    args = ["predict", str(source), output, "--method", "example-self-rescaling"]
    return run(*args, "--no-progress", *extra)


@pytest.mark.parametrize("extra", [(), ("--overwrite",)])
@pytest.mark.parametrize("output", [".", "./"])
def test_the_current_folder_as_output_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str, extra: tuple[str, ...]
) -> None:
    """``predict in.nii.gz .`` from an empty folder used to crash with a traceback."""
    source = nifti(tmp_path / "a.nii.gz")
    here = tmp_path / "empty"
    here.mkdir()
    monkeypatch.chdir(here)
    result = translate(source, output, *extra)
    assert result.exit_code != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "names the folder" in errors[0]
    assert "Traceback" not in result.stderr
    assert list(here.iterdir()) == []


@pytest.mark.parametrize("output", [".", "..", "x/.."])
def test_check_destination_refuses_a_path_without_a_name(tmp_path: Path, output: str) -> None:
    with pytest.raises(OutputError, match="give the output a name inside it"):
        check_destination(Path(output), inputs=[tmp_path / "a.nii.gz"], overwrite=True)


def test_a_dangling_link_at_the_output_is_refused_before_inference(tmp_path: Path) -> None:
    source = nifti(tmp_path / "a.nii.gz")
    link = tmp_path / "s4.nii.gz"
    link.symlink_to("nowhere/x.nii.gz")
    refused = translate(source, str(link))
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines() == [
        f"Error: {link} is a link to nowhere/x.nii.gz (which does not exist); choose a new "
        "output path, or pass --overwrite (overwrite=True in Python) to replace it (replaced "
        "only after the new output is written in full)"
    ]
    assert link.is_symlink()
    assert not (tmp_path / "s4.provenance.json").exists()
    replaced = translate(source, str(link), "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert link.is_file()
    assert not link.is_symlink()
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    ("name", "expected_start", "expected_end"),
    [
        ("a_0.05", ".a_0.05.medi2i-tmp-", ""),
        ("a_0.05.nii.gz", ".a_0.05.medi2i-tmp-", ".nii.gz"),
        ("out.nii.gz", ".out.medi2i-tmp-", ".nii.gz"),
        ("1.2.840.5.dcm", ".1.2.840.5.medi2i-tmp-", ".dcm"),
    ],
)
def test_temporary_names_keep_the_whole_output_name(
    tmp_path: Path, name: str, expected_start: str, expected_end: str
) -> None:
    temporary = temporary_sibling(tmp_path / name).name
    assert temporary.startswith(expected_start)
    assert temporary.endswith(expected_end)
    assert is_temporary(temporary)
    token = temporary.removeprefix(expected_start)
    assert len(token.removesuffix(expected_end).split("-")) == 2  # <pid>-<hex> only


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (errno.EROFS, "the file system is read-only"),
        (errno.EACCES, "write permission"),
        (errno.ENOSPC, "free disk space"),
    ],
)
def test_a_failed_write_says_what_to_do_for_its_cause(tmp_path: Path, code: int, said: str) -> None:
    with pytest.raises(OutputError) as raised, atomic_path(tmp_path / "out.nii.gz"):
        raise OSError(code, os.strerror(code))
    assert said in str(raised.value)
    if code != errno.ENOSPC:
        assert "free disk space" not in str(raised.value)


def test_mask_into_the_current_folder_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = nifti(tmp_path / "a.nii.gz")
    here = tmp_path / "empty"
    here.mkdir()
    monkeypatch.chdir(here)
    result = run("mask", str(source), ".")
    assert result.exit_code != 0
    assert "names the folder" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(here.iterdir()) == []


@pytest.mark.parametrize("output", ["e.nii.bz2", "e.", "e..gz", "e.nii.v2", "e.mha.1"])
def test_a_file_name_no_writer_writes_is_refused_not_taken_for_a_folder(
    tmp_path: Path, output: str
) -> None:
    """A name with an image or compression suffix no writer writes, or ending in a dot,
    is a file: refused in one line listing the suffixes, never written as a DICOM folder."""
    source = nifti(tmp_path / "mr.nii.gz")
    result = translate(source, str(tmp_path / output))
    assert result.exit_code == 1, result.output
    assert f"no writer for {tmp_path / output}: supported suffixes are" in result.output
    assert "cannot write the DICOM series" not in result.output
    assert not (tmp_path / output).exists()


@pytest.mark.parametrize("name", ["1.2.840.113619", "series.001", "out.v2", "sct.2", "out"])
def test_dotted_folder_names_stay_dicom_folders(name: str) -> None:
    from medi2i.io.destinations import file_suffix

    assert file_suffix(Path(name)) == ""


@pytest.mark.parametrize(
    ("name", "suffix"),
    [("e.nii.bz2", ".bz2"), ("e.", "."), ("e.nii.v2", ".v2"), ("e.nii.gz", ".gz"), ("e.xz", ".xz")],
)
def test_file_suffix_of_names_that_are_files(name: str, suffix: str) -> None:
    from medi2i.io.destinations import file_suffix

    assert file_suffix(Path(name)) == suffix
