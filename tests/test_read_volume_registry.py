"""``medi2i.read_volume`` asks the readers the plugins register, DICOM included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import medi2i
from medi2i.dicom.reading.series_volume import read_dicom_folder
from medi2i.io import registered_readers
from medi2i.testing.dicom_series import write_series


def test_read_volume_reads_a_dicom_folder_as_the_command_line_does(tmp_path: Path) -> None:
    values = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    write_series(tmp_path, values, spacing=(0.8, 0.9, 2.5), origin=(3, -4, 5))
    volume = medi2i.read_volume(tmp_path)
    expected = read_dicom_folder(tmp_path)
    np.testing.assert_array_equal(volume.numpy(), expected.numpy())
    np.testing.assert_array_equal(volume.affine.numpy(), expected.affine.numpy())


def test_the_default_readers_are_the_registered_ones() -> None:
    names = [reader.name for reader in registered_readers()]
    assert "dicom" in names
    assert "nifti" in names


def test_importing_io_imports_no_torch() -> None:
    code = "import sys, medi2i.io; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
