"""Enhanced multi-frame files of several volumes, stack tilt labels, user slice
tolerances, re-exported copies and NIfTI files with singleton axes."""

from __future__ import annotations

import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from medi2i.cli.main import build_cli
from medi2i.dicom.reading.series_scan import scan_folder
from medi2i.dicom.reading.series_selection import SeriesSelector, select_series
from medi2i.dicom.reading.series_volume import SliceToleranceWarning, read_dicom_folder
from medi2i.errors import InputError
from medi2i.io import read_volume
from medi2i.testing.dicom_series import AXIAL, CORONAL, write_enhanced, write_series

SHAPE = (6, 5, 4)
Content = Callable[[int], dict[str, object]]


def enhanced_volumes(
    path: Path,
    volumes: list[np.ndarray],
    content: Content,
    *,
    orientations: list[tuple[float, ...]] | None = None,
) -> Path:
    """One Enhanced MR file holding ``volumes`` (each written by :func:`write_enhanced`,
    their frames then joined), volume ``i``'s frames carrying ``content(i)``: Frame
    Content attributes, or ``EffectiveEchoTime`` in an MR Echo item."""
    orientations = orientations or [AXIAL] * len(volumes)
    parts = [
        pydicom.dcmread(
            write_enhanced(
                path.with_suffix(f".{i}.dcm"),
                volume,
                spacing=(0.8, 0.9, 2.5),
                orientation=orientation,
                origin=(-3.0, 4.0, 10.0),
            )
        )
        for i, (volume, orientation) in enumerate(zip(volumes, orientations, strict=True))
    ]
    joined = parts[0]
    frames = []
    for i, part in enumerate(parts):
        orientation = part.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence
        for group in part.PerFrameFunctionalGroupsSequence:
            group.PlaneOrientationSequence = orientation
            for keyword, value in content(i).items():
                if keyword == "EffectiveEchoTime":
                    echo = Dataset()
                    echo.EffectiveEchoTime = value
                    group.MREchoSequence = [echo]
                else:
                    setattr(group.FrameContentSequence[0], keyword, value)
            frames.append(group)
        path.with_suffix(f".{i}.dcm").unlink()
    del joined.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence
    joined.PerFrameFunctionalGroupsSequence = frames
    joined.NumberOfFrames = len(frames)
    joined.PixelData = b"".join(part.PixelData for part in parts)
    joined.save_as(path, enforce_file_format=True)
    return path


def two_volumes() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 1000, SHAPE).astype(np.float32) for _ in range(2)]


KINDS = [
    ("TemporalPositionIndex", lambda i: {"TemporalPositionIndex": i + 1}, "time point 2"),
    ("EffectiveEchoTime", lambda i: {"EffectiveEchoTime": 10.0 + 20.0 * i}, "echo 2 (TE 30 ms)"),
]


@pytest.mark.parametrize(("tag", "content", "label"), KINDS, ids=[kind[0] for kind in KINDS])
def test_the_volumes_of_one_enhanced_file_are_listed_and_read_one_by_one(
    tmp_path: Path, tag: str, content: Content, label: str
) -> None:
    volumes = two_volumes()
    enhanced_volumes(tmp_path / "mr.dcm", volumes, content)
    series = scan_folder(tmp_path).series
    assert [info.volume.tag if info.volume else None for info in series] == [tag, tag]
    assert series[1].volume is not None
    assert series[1].volume.label == label
    assert all(info.is_volume and info.number_of_images == SHAPE[2] for info in series)
    for index, expected in ((1, volumes[0]), (2, volumes[1])):
        image = read_dicom_folder(tmp_path, SeriesSelector(volume=index))
        np.testing.assert_array_equal(image.numpy()[0], expected)
    with pytest.raises(InputError, match="holds 2 volumes at the same slice positions"):
        read_dicom_folder(tmp_path)


def test_two_stacks_of_one_enhanced_file_are_picked_by_volume_or_orientation(
    tmp_path: Path,
) -> None:
    volumes = two_volumes()
    enhanced_volumes(
        tmp_path / "mr.dcm",
        volumes,
        lambda i: {"StackID": str(i + 1)},
        orientations=[AXIAL, CORONAL],
    )
    series = scan_folder(tmp_path).series
    assert [(info.orientation, info.volume.label if info.volume else "") for info in series] == [
        ("axial", "stack 1 (axial)"),
        ("coronal", "stack 2 (coronal)"),
    ]
    coronal = read_dicom_folder(tmp_path, SeriesSelector(orientation="coronal"))
    np.testing.assert_array_equal(coronal.numpy()[0], volumes[1])
    second = read_dicom_folder(tmp_path, SeriesSelector(volume=2))
    np.testing.assert_array_equal(second.numpy()[0], volumes[1])
    with pytest.raises(InputError, match=r"holds 2 stacks, .* or --orientation"):
        read_dicom_folder(tmp_path)


def test_a_single_volume_enhanced_file_is_not_split(tmp_path: Path) -> None:
    enhanced_volumes(tmp_path / "mr.dcm", two_volumes()[:1], lambda i: {"TemporalPositionIndex": 1})
    (series,) = scan_folder(tmp_path).series
    assert series.is_volume
    assert series.volume is None


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli(), list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_ls_counts_the_slices_of_each_volume_of_an_enhanced_file(tmp_path: Path) -> None:
    enhanced_volumes(tmp_path / "mr.dcm", two_volumes(), lambda i: {"TemporalPositionIndex": i + 1})
    code, output = run_cli("dicom", "ls", str(tmp_path))
    assert code == 0
    # each volume lists its own 4 slices, not the file's 8 frames
    assert re.search(r"volume 1/2: time point 1\s+4\s+6x5 ", output), output
    assert re.search(r"volume 2/2: time point 2\s+4\s+6x5 ", output), output


def tilted_axial(degrees: float) -> tuple[float, ...]:
    angle = np.radians(degrees)
    return (1.0, 0.0, 0.0, 0.0, float(np.cos(angle)), float(-np.sin(angle)))


def test_a_tilted_stack_is_listed_with_its_tilt_and_selected_by_its_axis(tmp_path: Path) -> None:
    write_series(tmp_path / "tilted", np.zeros(SHAPE, np.float32), orientation=tilted_axial(20))
    write_series(tmp_path / "oblique", np.zeros(SHAPE, np.float32), orientation=tilted_axial(45))
    found = scan_folder(tmp_path).series
    assert sorted(info.orientation for info in found) == ["axial (tilted 20 deg)", "oblique"]
    assert select_series(found, SeriesSelector(orientation="axial")).orientation.startswith("axial")
    assert select_series(found, SeriesSelector(orientation="oblique")).orientation == "oblique"
    code, output = run_cli("dicom", "ls", str(tmp_path / "tilted"))
    assert code == 0
    assert "axial (tilted 20 deg)" in output


def uneven(folder: Path) -> None:
    along = np.array([0.0, 5.0, 10.0, 16.0, 22.0, 28.0])  # 5 mm, then 6 mm steps
    positions = np.stack([np.zeros(6), np.zeros(6), along], axis=1)
    write_series(folder, np.zeros((4, 4, 6), np.float32), spacing=(1, 1, 5), positions=positions)


def test_a_stack_read_only_through_a_larger_user_tolerance_warns(tmp_path: Path) -> None:
    uneven(tmp_path)
    with pytest.raises(InputError, match="uneven slice spacing"):
        read_dicom_folder(tmp_path)
    said = r"lies 0\.686 mm off the regular slice grid \(default tolerance 0\.281 mm\)"
    with pytest.warns(SliceToleranceWarning, match=said):
        read_dicom_folder(tmp_path, SeriesSelector(slice_tolerance_mm=3.0))


def test_positions_rounded_within_the_default_tolerance_do_not_warn(tmp_path: Path) -> None:
    along = np.array([0.0, 2.1, 3.9, 6.0, 8.0, 10.1])
    positions = np.stack([np.zeros(6), np.zeros(6), along], axis=1)
    write_series(tmp_path, np.zeros((4, 4, 6), np.float32), spacing=(1, 1, 2), positions=positions)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SliceToleranceWarning)
        read_dicom_folder(tmp_path, SeriesSelector(slice_tolerance_mm=3.0))


def test_a_series_exported_twice_under_new_uids_is_named_as_copies(tmp_path: Path) -> None:
    values = np.random.default_rng(1).integers(0, 1000, SHAPE).astype(np.float32)
    study, series = generate_uid(), generate_uid()
    write_series(tmp_path / "a", values, study_uid=study, series_uid=series)
    write_series(tmp_path / "b", values, study_uid=study, series_uid=series)
    (info,) = scan_folder(tmp_path).series
    assert "copies of the same image" in str(info.problems[0])
    with pytest.raises(InputError, match="copies of the same image"):
        read_dicom_folder(tmp_path)


def test_different_images_at_one_position_are_still_called_volumes(tmp_path: Path) -> None:
    study, series = generate_uid(), generate_uid()
    for name, offset in (("a", 0.0), ("b", 1.0)):
        values = np.full(SHAPE, offset, np.float32)
        write_series(tmp_path / name, values, study_uid=study, series_uid=series)
    (info,) = scan_folder(tmp_path).series
    assert "several echoes, phases or time points" in str(info.problems[0])


@pytest.mark.parametrize("shape", [(7, 6, 5, 1), (7, 6, 5, 1, 1), (7, 6, 5, 1, 1, 1)])
def test_nifti_with_trailing_singleton_axes_is_one_volume(
    tmp_path: Path, shape: tuple[int, ...]
) -> None:
    values = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    path = tmp_path / "t1.nii.gz"
    nibabel.save(nibabel.Nifti1Image(values, np.eye(4)), path)  # type: ignore[no-untyped-call]
    volume = read_volume(path)
    assert tuple(volume.shape) == (1, 7, 6, 5)
    np.testing.assert_array_equal(volume.numpy()[0], values.reshape(7, 6, 5))


@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix not installed")
def test_dcm2niix_reads_the_joined_test_file_as_two_volumes(tmp_path: Path) -> None:
    """The test's joined file is a valid two-time-point Enhanced MR (a check of the
    builder, so that the tests above read what scanners write)."""
    import subprocess

    enhanced_volumes(tmp_path / "mr.dcm", two_volumes(), lambda i: {"TemporalPositionIndex": i + 1})
    out = tmp_path / "nii"
    out.mkdir()
    subprocess.run(
        ["dcm2niix", "-z", "n", "-o", str(out), str(tmp_path)], capture_output=True, check=False
    )
    shapes = [tuple(nibabel.load(path).shape) for path in out.glob("*.nii")]  # type: ignore[attr-defined]
    assert shapes, "dcm2niix wrote nothing"
    assert sum(int(np.prod(shape)) for shape in shapes) == 2 * int(np.prod(SHAPE))


def test_the_provenance_records_how_far_slices_were_moved_onto_the_grid(tmp_path: Path) -> None:
    from medi2i.provenance import input_hash

    uneven(tmp_path)
    with pytest.warns(SliceToleranceWarning):
        image = read_dicom_folder(tmp_path, SeriesSelector(slice_tolerance_mm=3.0))
    record = input_hash(tmp_path, image)
    assert record["slice_position_residual_mm"] == pytest.approx(0.686, abs=1e-3)
    assert record["series_instance_uid"] == image.meta["medi2i.dicom"].series_instance_uid
