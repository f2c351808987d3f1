"""How the scan walks a tree: links to folders, loops, unreadable and hidden folders,
and a Rescale Slope that would overflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

from medi2i.cli.main import build_cli
from medi2i.dicom.reading.series_scan import scan_folder
from medi2i.dicom.reading.series_volume import read_dicom_series
from medi2i.dicom.writing.volume_writer import output_modality
from medi2i.errors import InputError, OptionsError
from medi2i.plugins import load_plugins
from medi2i.testing.dicom_series import write_series

VALUES = np.random.default_rng(1).integers(0, 800, size=(8, 6, 4)).astype(np.float64)


def test_a_symlinked_folder_is_followed_and_a_loop_ends(tmp_path: Path) -> None:
    write_series(tmp_path / "elsewhere" / "s", VALUES)
    root = tmp_path / "in"
    write_series(root / "real", VALUES)
    (root / "linked").symlink_to(tmp_path / "elsewhere" / "s")
    (root / "real" / "up").symlink_to(root)
    (root / "again").symlink_to(root / "real")  # the same folder twice: searched once
    result = scan_folder(root)
    assert sorted(series.folder.name for series in result.series) == ["linked", "real"]
    assert all(series.number_of_images == 4 for series in result.series)
    assert not result.skipped


def test_an_unreadable_folder_is_listed_with_the_reason(tmp_path: Path, locked: set[Path]) -> None:
    write_series(tmp_path / "a", VALUES)
    write_series(tmp_path / "b" / "s", VALUES)
    locked.add(tmp_path / "b")
    result = scan_folder(tmp_path)
    assert len(result.series) == 1
    (item,) = result.skipped
    assert (item.path, item.reason, item.folder, item.hidden) == (
        tmp_path / "b",
        "cannot be read: Permission denied",
        True,
        False,
    )


def test_an_unreadable_root_is_refused(tmp_path: Path, locked: set[Path]) -> None:
    locked.add(tmp_path)
    with pytest.raises(InputError, match=r"cannot be read: Permission denied; give yourself"):
        scan_folder(tmp_path)


def test_dicom_ls_lists_unreadable_and_hidden_folders(tmp_path: Path, locked: set[Path]) -> None:
    write_series(tmp_path / "a", VALUES)
    write_series(tmp_path / "b" / "s", VALUES)
    write_series(tmp_path / ".c", VALUES)
    locked.add(tmp_path / "b")
    result = CliRunner().invoke(build_cli(load_plugins()), ["dicom", "ls", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"1 folder(s) that cannot be read:\n  {tmp_path / 'b'}: cannot be read" in result.output
    assert f"1 hidden folder(s) not searched:\n  {tmp_path / '.c'}: hidden folder" in result.output


@pytest.mark.parametrize("slope", ["1e300", "1e20"])
def test_a_rescale_slope_beyond_the_safe_range_is_refused_before_it_overflows(
    tmp_path: Path, slope: str
) -> None:
    files = write_series(tmp_path, VALUES, rescale=(1.0, 0.0))
    for file in files:
        dataset = pydicom.dcmread(file)
        dataset.RescaleSlope = slope
        dataset.save_as(file)
    (series,) = scan_folder(tmp_path).series
    with pytest.raises(
        InputError, match=r"Rescale Slope 1e\+\d+ .* beyond the safe range"
    ) as raised:
        read_dicom_series(series)
    assert "nonfinite" not in str(raised.value)


def test_the_writer_names_no_meta_key_when_no_dicom_type_fits(tmp_path: Path) -> None:
    with pytest.raises(OptionsError) as raised:
        output_modality({}, None, tmp_path / "out")
    assert "meta[" not in str(raised.value)
    assert "write a NIfTI file instead" in str(raised.value)
