"""``medi2i dicom ls`` of a single file that holds no DICOM series."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from click.testing import CliRunner

from medi2i.cli.main import build_cli


def run_ls(path: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli(), ["dicom", "ls", str(path), *extra])
    return result.exit_code, result.output


def test_a_nifti_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(path))
    for extra in ((), ("--json",)):
        code, output = run_ls(path, *extra)
        assert code == 1
        assert output.strip().splitlines() == [
            f"Error: {path} is a NIfTI volume, not DICOM: `medi2i dicom ls` lists DICOM files "
            "and folders (medi2i reads the volume as it is, e.g. `medi2i predict`)"
        ]


def test_another_file_without_dicom_names_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("exported from the PACS\n")
    code, output = run_ls(path)
    assert code == 1
    lines = output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: {path} holds no DICOM series: not a DICOM file")


def test_a_folder_without_dicom_is_still_listed_as_empty(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    code, output = run_ls(tmp_path)
    assert code == 0
    assert "no DICOM series" in output
