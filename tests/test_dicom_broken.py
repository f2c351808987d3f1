"""Bad DICOM input gets one clear error naming the file and the defect, never a traceback.

The broken files are those that ship with pydicom and pydicom-data (each a distinct
defect), plus generated series with geometry defects.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medi2i.cli.main import build_cli
from medi2i.dicom.reading.series_scan import scan_folder
from medi2i.dicom.reading.series_volume import DroppedFilesWarning, read_dicom_folder
from medi2i.dicom.reading.volume_reader import DicomFolderReader
from medi2i.dicom.source import META_KEY
from medi2i.errors import GeometryError, InputError
from medi2i.io import read_volume
from medi2i.testing.dicom_series import AXIAL, CORONAL, stack_geometry, write_series

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

# file shipped with pydicom or pydicom-data -> words the error must contain
BROKEN_FILES = {
    "MR_truncated.dcm": "truncated pixel data",
    "no_meta.dcm": "missing file meta information",
    "meta_missing_tsyntax.dcm": "no Transfer Syntax UID",
    "rtplan.dcm": "RT Plan Storage has no pixel data",
    "test-SR.dcm": "Comprehensive SR Storage has no pixel data",
    "waveform_ecg.dcm": "ECG Waveform Storage has no pixel data",
    "badVR.dcm": "invalid NumberOfFrames: '1A' is not a whole number",
    "liver.dcm": "binary segmentation",
    "ExplVR_BigEnd.dcm": "colour image (RGB, 3 samples per pixel)",
    "gdcm-US-ALOKA-16.dcm": "colour image (PALETTE COLOR",
    "zipMR.gz": "gzip-compressed",
    "mlut_18.dcm": "Modality LUT Sequence",
    "nested_priv_SQ.dcm": "no Study or Series Instance UID",
    "emri_small.dcm": "no Per-frame Functional Groups Sequence",
    "RG1_UNCI.dcm": "no Image Position or Orientation (Patient)",
    "MR_small.dcm": "a single slice",
    "dicomdirtests/DICOMDIR": "Media Storage Directory Storage",
}
# files whose pixel data cannot be decoded; given positions so that decoding is tried
UNDECODABLE = {
    "JPEG2000-embedded-sequence-delimiter.dcm": "cannot decode its JPEG 2000",
    "JPEG-lossy.dcm": "cannot decode its JPEG Extended",
}


def pydicom_file(name: str) -> Path:
    if "/" in name:
        return TEST_FILES / name
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install pydicom-data)")
    return Path(path)


def assert_clear(error: pytest.ExceptionInfo[InputError], file: str, words: str) -> None:
    message = str(error.value)
    assert Path(file).name in message, message
    assert words in message, message
    assert "Traceback" not in message


def test_at_least_fifteen_distinct_defects() -> None:
    assert len(set(BROKEN_FILES.values()) | set(UNDECODABLE.values())) >= 15


@pytest.mark.parametrize(("name", "words"), BROKEN_FILES.items(), ids=list(BROKEN_FILES))
def test_broken_pydicom_file_is_refused_with_its_defect(name: str, words: str) -> None:
    path = pydicom_file(name)
    with pytest.raises(InputError) as error:
        read_dicom_folder(path)
    assert_clear(error, path.name, words)


@pytest.mark.parametrize(("name", "words"), UNDECODABLE.items(), ids=list(UNDECODABLE))
def test_undecodable_compression_is_refused(tmp_path: Path, name: str, words: str) -> None:
    dataset = pydicom.dcmread(pydicom_file(name))
    series = generate_uid()
    for k in range(2):
        dataset.SeriesInstanceUID, dataset.SOPInstanceUID = series, generate_uid()
        dataset.ImagePositionPatient, dataset.ImageOrientationPatient = [0, 0, k], list(AXIAL)
        dataset.PixelSpacing = [1, 1]
        dataset.save_as(tmp_path / f"{k}.dcm")
    with pytest.raises(InputError) as error:
        read_dicom_folder(tmp_path)
    assert_clear(error, "0.dcm", words)


def test_the_cli_prints_the_defect_without_a_traceback(tmp_path: Path) -> None:
    shutil.copy(pydicom_file("MR_truncated.dcm"), tmp_path)
    shutil.copy(pydicom_file("rtplan.dcm"), tmp_path)
    result = CliRunner().invoke(build_cli(), ["dicom", "ls", str(tmp_path), "--modality", "MR"])
    assert result.exit_code == 0, result.output
    assert "truncated pixel data" in result.output
    assert "RT Plan Storage has no pixel data" in result.output
    assert "Traceback" not in result.output


def test_problems_of_series_sharing_a_number_are_told_apart(tmp_path: Path) -> None:
    """Exports often number every series 1: each problem line then names its series."""
    study = generate_uid()
    bad_uid, good_uid = generate_uid(), generate_uid()
    write_series(tmp_path / "bad", values((6, 5, 1)), study_uid=study, series_uid=bad_uid)
    write_series(tmp_path / "good", values(), study_uid=study, series_uid=good_uid)
    result = CliRunner().invoke(build_cli(), ["dicom", "ls", str(tmp_path)])
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if "problem:" in line]
    assert line.strip().startswith(f"#1 (UID {bad_uid}) problem: a single slice")


def test_every_pydicom_test_file_scans_without_raising() -> None:
    result = scan_folder(TEST_FILES)
    assert len(result.series) > 30
    assert any("not a DICOM" in item.reason for item in result.skipped)


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("scanner export notes")
    (tmp_path / "empty.dcm").write_bytes(b"")
    shutil.copy(pydicom_file("test-SR.dcm"), tmp_path)
    with pytest.raises(InputError) as error:
        read_dicom_folder(tmp_path)
    assert_clear(error, str(tmp_path), "no DICOM images found")
    assert "empty" in str(error.value)
    assert "Comprehensive SR Storage" in str(error.value)


def test_missing_folder() -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_dicom_folder("no/such/folder")


def values(shape: tuple[int, int, int] = (6, 5, 6)) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.int16).reshape(shape)


def series_with_positions(folder: Path, z: list[float]) -> list[Path]:
    positions = np.array([[0.0, 0.0, value] for value in z])
    return write_series(folder, values((6, 5, len(z))), spacing=(1, 1, 1), positions=positions)


@pytest.mark.parametrize(
    ("z", "words"),
    [
        ([0, 2, 4, 6, 8, 10], None),
        ([0, 2, 4, 10, 12, 14], "missing slices: 2 slice(s) missing"),
        ([0, 2, 4, 4, 6, 8], "duplicate positions"),
        ([0, 2, 4, 7, 9, 11], "uneven slice spacing"),
    ],
    ids=["regular", "gap", "duplicate", "uneven"],
)
def test_slice_spacing_defects(tmp_path: Path, z: list[float], words: str | None) -> None:
    series_with_positions(tmp_path, z)
    if words is None:
        assert read_dicom_folder(tmp_path).shape == (1, 6, 5, 6)
        return
    with pytest.raises(GeometryError) as error:
        read_dicom_folder(tmp_path)
    assert_clear(error, ".dcm", words)


def test_positions_off_a_line(tmp_path: Path) -> None:
    truth = stack_geometry((6, 5, 4), spacing=(1, 1, 2), orientation=AXIAL, origin=(0, 0, 0))
    positions = truth.positions.copy()
    positions[2, 0] += 3.0  # one slice shifted sideways
    write_series(tmp_path, values((6, 5, 4)), spacing=(1, 1, 2), positions=positions)
    with pytest.raises(GeometryError, match="not on a line"):
        read_dicom_folder(tmp_path)


def test_mixed_orientation_matrix_and_spacing(tmp_path: Path) -> None:
    uids: dict[str, Any] = {"study_uid": generate_uid(), "series_uid": generate_uid()}
    write_series(tmp_path, values(), **uids)
    write_series(tmp_path, values((6, 5, 2)), orientation=CORONAL, origin=(0, 50, 0), **uids)
    with pytest.raises(GeometryError, match=r"mixed orientations: 6 axial .*2 coronal"):
        read_dicom_folder(tmp_path)


def test_slices_of_another_frame_of_reference_are_refused(tmp_path: Path) -> None:
    """One slice of another Frame of Reference in a series was stacked without a word;
    its position is in another coordinate system."""
    import pydicom

    write_series(tmp_path, values((6, 5, 6)))
    stranger = sorted(tmp_path.glob("*.dcm"))[2]
    dataset = pydicom.dcmread(stranger)
    dataset.FrameOfReferenceUID = generate_uid()
    dataset.save_as(stranger)
    with pytest.raises(GeometryError, match=r"slices in 2 Frames of Reference \(5 in .*1 in"):
        read_dicom_folder(tmp_path)
    del dataset.FrameOfReferenceUID  # a slice without one among slices with one
    dataset.save_as(stranger)
    with pytest.raises(
        GeometryError, match=r"slices in 2 Frames of Reference \(5 in .*1 in no UID"
    ):
        read_dicom_folder(tmp_path)


@pytest.mark.parametrize(
    ("second", "words"),
    [
        ({"volume": values((4, 5, 2))}, "varying matrix (columns x rows): 6x5 (6 images), 4x5"),
        ({"spacing": (0.5, 1.0, 1.0)}, "varying pixel spacing (mm): 1x1 (6 images), 1x0.5"),
    ],
    ids=["matrix", "pixel-spacing"],
)
def test_varying_matrix_or_pixel_spacing(
    tmp_path: Path, second: dict[str, object], words: str
) -> None:
    uids: dict[str, Any] = {"study_uid": generate_uid(), "series_uid": generate_uid()}
    write_series(tmp_path, values(), **uids)
    extra: dict[str, Any] = {"volume": values((6, 5, 2)), "origin": (0.0, 0.0, 6.0)}
    extra.update(second)
    write_series(tmp_path, **extra, **uids)
    with pytest.raises(GeometryError) as error:
        read_dicom_folder(tmp_path)
    assert words in str(error.value)


def test_localizer_in_the_series_is_set_aside(tmp_path: Path) -> None:
    uids: dict[str, Any] = {"study_uid": generate_uid(), "series_uid": generate_uid()}
    write_series(tmp_path, values(), **uids)
    scout = write_series(
        tmp_path,
        values((6, 5, 1)),
        orientation=CORONAL,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        **uids,
    )
    series = scan_folder(tmp_path).series[0]
    assert series.is_volume
    assert series.number_of_images == 6
    assert any(scout[0].name in note and "localizer" in note for note in series.notes)
    np.testing.assert_array_equal(read_dicom_folder(tmp_path)[0].numpy(), values())


def test_invalid_position_value(tmp_path: Path) -> None:
    paths = write_series(tmp_path, values((6, 5, 3)), origin=(1.5, 2.5, 3.5))
    raw = paths[1].read_bytes()
    paths[1].write_bytes(raw.replace(b"1.5\\2.5\\4.5", b"1.5\\abc\\4.5"))
    with pytest.raises(InputError) as error:
        read_dicom_folder(tmp_path)
    assert_clear(error, paths[1].name, "invalid ImagePositionPatient: '1.5\\\\abc\\\\4.5'")


def test_invalid_orientation_value(tmp_path: Path) -> None:
    write_series(tmp_path, values((6, 5, 3)), orientation=(1, 0, 0, 1, 0, 0))
    with pytest.raises(InputError, match="not two perpendicular unit vectors"):
        read_dicom_folder(tmp_path)


def test_truncated_compressed_pixel_data(tmp_path: Path) -> None:
    paths = write_series(tmp_path, values((6, 5, 3)), transfer_syntax="1.2.840.10008.1.2.5")
    paths[2].write_bytes(paths[2].read_bytes()[:-20])
    with pytest.raises(InputError) as error:
        read_dicom_folder(tmp_path)
    assert_clear(error, paths[2].name, "truncated pixel data")


def test_file_truncated_after_the_scan(tmp_path: Path) -> None:
    paths = write_series(tmp_path, values((6, 5, 3)))
    series = scan_folder(tmp_path).series[0]
    paths[0].write_bytes(paths[0].read_bytes()[:-10])
    from medi2i.dicom.reading.series_volume import read_dicom_series

    with pytest.raises(InputError) as error:
        read_dicom_series(series)
    assert_clear(error, paths[0].name, "truncated pixel data")


def rounded(z: list[float], jitter: float = 0.05, seed: int = 1) -> list[float]:
    """``z`` with each position moved by up to ``jitter`` mm, as rounding by a scanner does."""
    moves = np.random.default_rng(seed).uniform(-jitter, jitter, len(z))
    return [value + float(move) for value, move in zip(z, moves, strict=True)]


@pytest.mark.parametrize(
    ("z", "words"),
    [
        (rounded([0, 7, 14, 21, 28, 35]), None),
        (rounded([0, 7, 14, 28, 35, 42]), "missing slices: 1 slice(s) missing"),
        ([0, 7, 14, 14, 21, 28], "duplicate positions"),
        (rounded([0, 7, 14, 22.5, 29.5, 36.5]), "uneven slice spacing"),
    ],
    ids=["rounded", "rounded-gap", "duplicate", "shifted"],
)
def test_rounded_positions_are_read_but_gaps_still_refused(
    tmp_path: Path, z: list[float], words: str | None
) -> None:
    series_with_positions(tmp_path, z)
    if words is None:
        assert read_dicom_folder(tmp_path).shape == (1, 6, 5, 6)
        return
    with pytest.raises(GeometryError) as error:
        read_dicom_folder(tmp_path)
    assert_clear(error, ".dcm", words)


def test_one_missing_slice_of_a_long_thin_stack_is_refused(tmp_path: Path) -> None:
    # at 0.5 mm the absolute 0.2 mm tolerance is capped at a quarter of the spacing,
    # below the half spacing a missing slice puts its neighbours off the grid
    z = [0.5 * k for k in range(61) if k != 30]
    series_with_positions(tmp_path, z)
    with pytest.raises(GeometryError, match="missing slices: 1 slice"):
        read_dicom_folder(tmp_path)


def test_slight_drift_sideways_is_within_tolerance_but_a_shift_is_not(tmp_path: Path) -> None:
    truth = stack_geometry((6, 5, 8), spacing=(1, 1, 2), orientation=AXIAL, origin=(0, 0, 0))
    positions = truth.positions.copy()
    positions[:, 0] += np.random.default_rng(2).uniform(-0.05, 0.05, 8)
    write_series(tmp_path / "ok", values((6, 5, 8)), spacing=(1, 1, 2), positions=positions)
    volume = read_dicom_folder(tmp_path / "ok")
    np.testing.assert_allclose(volume.affine[:3, 2].numpy(), [0, 0, 2], atol=1e-9)
    positions[5, 0] += 0.6
    write_series(tmp_path / "shifted", values((6, 5, 8)), spacing=(1, 1, 2), positions=positions)
    with pytest.raises(GeometryError, match=r"not on a line.*mm tolerated"):
        read_dicom_folder(tmp_path / "shifted")


def bare_datasets(source: list[Path], folder: Path) -> list[Path]:
    """``source`` rewritten as old exports do: no preamble, no file meta, Implicit VR LE."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    folder.mkdir()
    written = []
    for number, path in enumerate(source):
        dataset = pydicom.dcmread(path)
        del dataset.file_meta
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, True
        write_dataset(buffer, dataset)
        written.append(folder / f"IMG{number:04d}")
        written[-1].write_bytes(buffer.getvalue())
    return written


def test_bare_datasets_without_preamble_or_file_meta_are_read(tmp_path: Path) -> None:
    data = values((6, 5, 4))
    source = write_series(tmp_path / "part10", data, transfer_syntax="1.2.840.10008.1.2")
    written = bare_datasets(source, tmp_path / "bare")
    assert written[0].read_bytes()[:2] == b"\x08\x00"  # group 0008 from the first byte
    assert DicomFolderReader().can_read(tmp_path / "bare")
    volume = read_volume(tmp_path / "bare", readers=[DicomFolderReader()])
    np.testing.assert_array_equal(volume[0].numpy(), data)
    assert volume.meta[META_KEY].header.Modality == "CT"


def test_exact_copies_of_a_file_are_dropped_with_a_note(tmp_path: Path) -> None:
    data = values((6, 5, 4))
    paths = write_series(tmp_path, data)
    shutil.copy(paths[1], tmp_path / "copy of slice 2.dcm")
    series = scan_folder(tmp_path).series[0]
    assert series.is_volume, series.problems
    assert series.number_of_images == 4
    assert any("1 duplicate file(s) dropped" in note for note in series.notes)
    with pytest.warns(DroppedFilesWarning, match="copy of slice 2.dcm"):
        volume = read_dicom_folder(tmp_path)
    np.testing.assert_array_equal(volume[0].numpy(), data)


def test_copies_with_different_pixels_are_refused(tmp_path: Path) -> None:
    paths = write_series(tmp_path, values((6, 5, 4)))
    dataset = pydicom.dcmread(paths[1])
    pixels = dataset.pixel_array.copy()
    pixels[0, 0] += 1
    dataset.PixelData = pixels.tobytes()
    dataset.save_as(tmp_path / "edited.dcm")
    with pytest.raises(InputError, match=r"same instance .* with different pixel data"):
        read_dicom_folder(tmp_path)


def big_endian_copy(path: Path, folder: Path, pixels: np.ndarray | None = None) -> Path:
    """``path`` written again in Explicit VR Big Endian into ``folder`` (dcmconv +tb)."""
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import ExplicitVRBigEndian

    dataset = pydicom.dcmread(path)
    stored = dataset.pixel_array if pixels is None else pixels
    dataset.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    dataset.PixelData = stored.astype(stored.dtype.newbyteorder(">")).tobytes()
    folder.mkdir(parents=True, exist_ok=True)
    dcmwrite(
        folder / path.name, dataset, implicit_vr=False, little_endian=False, force_encoding=True
    )
    return folder / path.name


def test_a_big_endian_copy_in_another_folder_is_a_duplicate_named_by_its_folder(
    tmp_path: Path,
) -> None:
    data = values((6, 5, 4))
    paths = write_series(tmp_path / "a", data)
    copy = big_endian_copy(paths[1], tmp_path / "b")
    series = scan_folder(tmp_path).series[0]
    assert series.is_volume, series.problems
    assert series.number_of_images == 4
    note = next(note for note in series.notes if "duplicate file(s) dropped" in note)
    assert f"b/{copy.name} = a/{paths[1].name}" in note
    # the warning names the folder the copies lie in, not that of the files kept
    with pytest.warns(
        DroppedFilesWarning, match=rf"^{re.escape(str(tmp_path))}: 1 duplicate"
    ) as caught:
        volume = read_dicom_folder(tmp_path)
    assert f"b/{copy.name}" in str(caught[0].message)
    np.testing.assert_array_equal(volume[0].numpy(), data)


def test_a_copy_with_other_pixels_in_another_folder_is_named_with_its_folder(
    tmp_path: Path,
) -> None:
    paths = write_series(tmp_path / "a", values((6, 5, 4)))
    pixels = pydicom.dcmread(paths[1]).pixel_array.copy()
    pixels[0, 0] += 1
    big_endian_copy(paths[1], tmp_path / "b", pixels)
    name = paths[1].name
    with pytest.raises(InputError, match=rf"a/{name} and b/{name} are the same instance"):
        read_dicom_folder(tmp_path)


def test_ls_names_a_damaged_slice_by_its_folder_under_the_path_given(tmp_path: Path) -> None:
    for study in ("p1", "p2"):
        paths = write_series(tmp_path / study, values((6, 5, 4)), study_uid=generate_uid())
    paths[1].write_bytes(paths[1].read_bytes()[:-20])
    result = CliRunner().invoke(build_cli(), ["dicom", "ls", str(tmp_path)])
    problem = next(line for line in result.output.splitlines() if "problem" in line)
    assert f"problem: p2/{paths[1].name}: truncated pixel data" in problem
