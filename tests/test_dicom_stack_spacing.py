"""A stack whose slice spacing changes is told apart from one with missing slices."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from medi2i.dicom.reading.series_scan import scan_folder
from medi2i.testing.dicom_series import write_series


def steps_to_positions(steps: list[float], jitter: float = 0.0) -> list[float]:
    """Slice positions (mm) along z from the steps between them, each moved by up to
    ``jitter`` mm as a scanner's rounding does."""
    z = np.concatenate([[0.0], np.cumsum(steps)])
    return list(z + np.random.default_rng(1).uniform(-jitter, jitter, z.size))


def problem_of(folder: Path, z: list[float]) -> tuple[str, list[Path]]:
    """The one problem of a tiny series with slices at ``z`` mm, and its files in z order."""
    positions = np.array([[0.0, 0.0, value] for value in z])
    volume = np.zeros((4, 3, len(z)), dtype=np.int16)
    paths = write_series(folder, volume, spacing=(1, 1, 1), positions=positions)
    (series,) = scan_folder(folder).series
    assert series.problems, "the series was read as one regular volume"
    return str(series.problems[0]), paths


def test_a_change_of_spacing_is_named_with_where_it_changes(tmp_path: Path) -> None:
    """20 slices at 1.5 mm then 20 at 3 mm were reported as 19 missing slices."""
    message, paths = problem_of(tmp_path, steps_to_positions([1.5] * 20 + [3.0] * 19))
    assert message.startswith("variable slice spacing: the spacing changes from 1.5 mm to 3 mm")
    assert f"between {paths[20].name} and {paths[21].name}" in message, message
    assert "missing slices" not in message.replace("not missing slices", "")
    assert "resample" in message
    assert "\n" not in message


def test_abutting_slices_of_two_thicknesses_are_a_change_of_spacing(tmp_path: Path) -> None:
    # 1.5 mm slices then 3 mm slices, back to back: one transition step of 2.25 mm
    message, paths = problem_of(tmp_path, steps_to_positions([1.5] * 5 + [2.25] + [3.0] * 5))
    assert message.startswith("variable slice spacing: the spacing changes from 1.5 mm to 3 mm")
    assert f"between {paths[5].name} and {paths[7].name}" in message, message


def test_rounded_positions_and_several_changes(tmp_path: Path) -> None:
    steps = [5.0] * 4 + [2.5] * 6 + [5.0] * 4
    message, _ = problem_of(tmp_path, steps_to_positions(steps, jitter=0.05))
    found = re.match(r"variable slice spacing: the spacing changes from (\S+) mm to (\S+)", message)
    assert found, message
    assert [float(value) for value in found.groups()] == pytest.approx([5, 2.5], abs=0.02)
    assert "(2 changes in all)" in message


@pytest.mark.parametrize(
    ("steps", "words"),
    [
        ([1.5] * 8 + [3.0] + [1.5] * 8, "missing slices: 1 slice(s) missing"),
        ([2.0] * 5 + [6.0] + [2.0] * 4 + [4.0] + [2.0] * 5, "missing slices: 3 slice(s) missing"),
        ([2.0] * 2 + [3.0] + [2.0] * 2, "uneven slice spacing"),
        ([1.0 + 0.03 * k for k in range(30)], "uneven slice spacing"),
    ],
    ids=["one-gap", "two-gaps", "uneven", "slow-drift"],
)
def test_gaps_and_uneven_steps_keep_their_message(
    tmp_path: Path, steps: list[float], words: str
) -> None:
    message, _ = problem_of(tmp_path, steps_to_positions(steps))
    assert words in message, message
