"""``select_series`` never drops a series that shares its Series Instance UID with a
series of another study or orientation (a UID reused by an export tool)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from medi2i.dicom.reading.series_scan import scan_folder
from medi2i.dicom.reading.series_selection import SeriesSelector, select_series
from medi2i.errors import InputError
from medi2i.testing.dicom_series import write_series

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def _two_studies_one_uid(tmp_path: Path) -> Path:
    series_uid = generate_uid()
    volume = np.random.default_rng(0).integers(1, 1000, (8, 8, 5)).astype(np.float64)
    write_series(tmp_path / "a", volume, modality="MR", series_uid=series_uid)
    write_series(tmp_path / "b", volume, modality="MR", series_uid=series_uid, orientation=SAGITTAL)
    return tmp_path


def test_series_of_two_studies_sharing_a_uid_are_not_taken_for_one(tmp_path: Path) -> None:
    found = scan_folder(_two_studies_one_uid(tmp_path)).series
    assert len(found) == 2
    with pytest.raises(InputError, match="2 series of 2 studies share the Series Instance UID"):
        select_series(found)


def test_a_rule_picks_one_of_the_series_sharing_a_uid(tmp_path: Path) -> None:
    found = scan_folder(_two_studies_one_uid(tmp_path)).series
    chosen = select_series(found, SeriesSelector(orientation="sagittal"))
    assert chosen.orientation == "sagittal"
    with pytest.raises(InputError, match="tie for the largest"):
        select_series(found, SeriesSelector(largest=True))
