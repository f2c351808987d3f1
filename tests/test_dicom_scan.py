"""Scanning DICOM folders, selecting series by rules, and ``medi2i dicom ls``."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from pydicom.uid import generate_uid

from medi2i.cli.main import build_cli
from medi2i.dicom.reading import header_parser as header
from medi2i.dicom.reading.series_records import ScanResult, SeriesInfo
from medi2i.dicom.reading.series_scan import scan_folder
from medi2i.dicom.reading.series_selection import SeriesSelector, matching_series, select_series
from medi2i.dicom.reading.series_volume import read_dicom_folder
from medi2i.dicom.reading.stack_geometry import orientation_label
from medi2i.errors import InputError
from medi2i.testing.dicom_series import SAGITTAL, write_series

DICOMDIR_TESTS = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """A PACS-like export: two studies, four series, nested folders, a stray file."""
    study = generate_uid()
    base = tmp_path / "export"
    zeros = np.zeros((8, 6, 5), np.int16)
    write_series(
        base / "p1" / "s1",
        zeros,
        description="Head 5mm",
        study_uid=study,
        spacing=(0.5, 0.5, 5.0),
        series_number=2,
    )
    write_series(
        base / "p1" / "s2",
        np.zeros((16, 12, 10), np.int16),
        description="Head 1mm bone",
        study_uid=study,
        spacing=(0.5, 0.5, 1.0),
        series_number=3,
    )
    write_series(
        base / "p1" / "s3",
        zeros,
        description="Head sag",
        study_uid=study,
        orientation=SAGITTAL,
        series_number=4,
    )
    write_series(
        base / "p2",
        np.zeros((6, 6, 4), np.uint16),
        modality="MR",
        description="T1 MPRAGE",
        rescale=(1.0, 0.0),
        pixel_dtype="uint16",
    )
    (base / "p1" / "DICOMDIR.txt").write_text("index")
    return base


def by_description(result: ScanResult) -> dict[str, SeriesInfo]:
    return {series.description: series for series in result.series}


def test_scan_groups_studies_and_series(export: Path) -> None:
    result = scan_folder(export)
    assert len(result.studies) == 2
    ct_study = next(s for s in result.studies if len(s.series) == 3)
    assert [s.series_number for s in ct_study.series] == [2, 3, 4]
    assert ct_study.patient_id == "MEDI2I-PHANTOM"
    series = by_description(result)
    thin = series["Head 1mm bone"]
    assert (thin.modality, thin.number_of_images, thin.rows, thin.columns) == ("CT", 10, 12, 16)
    assert thin.pixel_spacing == (0.5, 0.5)
    assert thin.slice_spacing == pytest.approx(1.0)
    assert thin.orientation == "axial"
    assert thin.is_volume
    assert not thin.problems
    assert thin.folder == export / "p1" / "s2"
    assert thin.sop_class_name == "CT Image Storage"
    assert series["Head sag"].orientation == "sagittal"
    assert series["T1 MPRAGE"].modality == "MR"
    assert [item.path.name for item in result.skipped] == ["DICOMDIR.txt"]


def test_scan_files_are_in_slice_order(tmp_path: Path) -> None:
    paths = write_series(
        tmp_path, np.zeros((4, 4, 6), np.int16), instance_numbers=[6, 5, 4, 3, 2, 1]
    )
    assert scan_folder(tmp_path).series[0].files == tuple(paths)


def test_scan_reads_headers_only(tmp_path: Path) -> None:
    paths = write_series(
        tmp_path, np.ones((8, 8, 3), np.int16), transfer_syntax="1.2.840.10008.1.2.5"
    )
    raw = bytearray(paths[1].read_bytes())
    raw[-40:-8] = b"\xff" * 32  # corrupt the compressed pixels, not the header
    paths[1].write_bytes(bytes(raw))
    assert scan_folder(tmp_path).series[0].is_volume  # the scan never decoded them
    with pytest.raises(InputError, match=f"{paths[1].name}: cannot decode its RLE Lossless"):
        read_dicom_folder(tmp_path)


@pytest.mark.parametrize(
    "root",
    [DICOMDIR_TESTS.parent, DICOMDIR_TESTS],
    ids=["pydicom-test-files", "dicomdirtests"],
)
def test_fast_header_reader_agrees_with_pydicom(root: Path) -> None:
    fast = scan_folder(root)
    with mock.patch.object(header, "read_header", return_value=None):
        slow = scan_folder(root)  # every header through pydicom's dcmread
    assert fast.series == slow.series
    assert fast.skipped == slow.skipped


def test_scan_of_a_single_file(tmp_path: Path) -> None:
    paths = write_series(tmp_path, np.zeros((4, 4, 2), np.int16))
    result = scan_folder(paths[0])
    assert result.series[0].number_of_images == 1
    assert "single slice" in str(result.series[0].problems[0])


@pytest.mark.parametrize(
    ("normal", "label"),
    [
        ((0, 0, 1), "axial"),
        ((0, 0, -1), "axial"),
        ((1, 0, 0), "sagittal"),
        ((0, 1, 0), "coronal"),
        ((0, np.sin(np.radians(25)), np.cos(np.radians(25))), "axial"),
        ((0, np.sin(np.radians(40)), np.cos(np.radians(40))), "oblique"),
        ((1, 1, 1), "oblique"),
    ],
)
def test_orientation_label(normal: tuple[float, float, float], label: str) -> None:
    assert orientation_label(normal) == label


def test_pydicom_series_geometry_cases() -> None:
    series = {s.description: s for s in scan_folder(DICOMDIR_TESTS).series}
    assert series["SmartScore - Gated 0.5 sec"].is_volume
    assert series["SmartScore - Gated 0.5 sec"].slice_spacing == pytest.approx(2.5)
    assert "missing slices: 161 slice(s) missing" in str(series["Routine Brain"].problems[0])
    assert "localizer (scout) series" in str(series["Scout"].problems[0])
    pilot = str(series["T/S/C RF FAST PILOT"].problems[0])  # one image per plane
    assert pilot.startswith("localizer: 3 images in 3 orientations (axial, sagittal, coronal)")
    assert "single slice" in str(series["FAST LOCALIZER"].problems[0])
    assert "no Image Position" in str(series["Cervical LAT"].problems[0])


def test_select_by_rules(export: Path) -> None:
    found = scan_folder(export).series
    assert select_series(found, SeriesSelector(modality="mr")).description == "T1 MPRAGE"
    assert select_series(found, SeriesSelector(description="BONE")).description == "Head 1mm bone"
    assert select_series(found, SeriesSelector(orientation="sagittal")).description == "Head sag"
    chosen = select_series(found, SeriesSelector(modality="CT", orientation="axial", largest=True))
    assert chosen.description == "Head 1mm bone"
    uid = chosen.series_instance_uid
    assert select_series(found, SeriesSelector(series_uid=uid)) is chosen
    assert len(matching_series(found, SeriesSelector(modality="CT"))) == 3


def test_select_errors_list_the_candidates(export: Path) -> None:
    found = scan_folder(export).series
    with pytest.raises(InputError, match=r"3 series match \(modality=CT\).*Head 5mm.*largest"):
        select_series(found, SeriesSelector(modality="CT"))
    with pytest.raises(InputError, match=r"no series matches \(modality=PT\).*T1 MPRAGE"):
        select_series(found, SeriesSelector(modality="PT"))
    with pytest.raises(InputError, match="4 series match"):
        select_series(found)


def test_select_explains_matching_series_that_cannot_be_read(tmp_path: Path) -> None:
    uneven = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 5.0]])
    for name in ("thin a", "thin b"):
        write_series(
            tmp_path / name, np.zeros((4, 4, 3), np.int16), description=name, positions=uneven
        )
    write_series(tmp_path / "c", np.zeros((4, 4, 3), np.int16), description="thick")
    found = scan_folder(tmp_path).series
    with pytest.raises(InputError, match=r"'thin a'.*cannot be read: uneven slice spacing"):
        select_series(found, SeriesSelector(description="thin"))
    # one matching series: it is read, and its own problem is the message
    with pytest.raises(InputError, match=r"thin b.*uneven slice spacing"):
        read_dicom_folder(tmp_path, SeriesSelector(description="thin b"))


def test_selector_rejects_unknown_keys_and_bad_patterns() -> None:
    with pytest.raises(ValidationError, match="extra"):
        SeriesSelector.model_validate({"modality": "CT", "modalty": "MR"})
    with pytest.raises(ValidationError, match="regular expression"):
        SeriesSelector(description="(unclosed")
    with pytest.raises(ValidationError):
        SeriesSelector.model_validate({"orientation": "transverse"})


def test_selector_from_workflow_yaml() -> None:
    import yaml

    text = "modality: CT\ndescription: '(?i)bone'\norientation: axial\nlargest: true\n"
    selector = SeriesSelector.model_validate(yaml.safe_load(text))
    assert selector.rules() == "modality=CT, description='(?i)bone', orientation=axial, largest"


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli(), list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_ls_table(export: Path) -> None:
    code, output = run_cli("dicom", "ls", str(export))
    assert code == 0
    assert "Head 1mm bone" in output
    assert "16x12" in output
    assert "0.5x0.5x1" in output
    assert "T1 MPRAGE" in output
    assert "sagittal" in output
    assert "1 non-DICOM file(s) skipped" in output  # a text file beside the series
    assert "DICOMDIR.txt" in output


def test_ls_json(export: Path) -> None:
    code, output = run_cli("dicom", "ls", str(export), "--json")
    assert code == 0
    document = json.loads(output)
    series = [s for study in document["studies"] for s in study["series"]]
    assert len(series) == 4
    thin = next(s for s in series if s["description"] == "Head 1mm bone")
    assert thin["images"] == 10
    assert thin["rows"] == 12
    assert thin["columns"] == 16
    assert thin["pixel_spacing_mm"] == [0.5, 0.5]
    assert thin["slice_spacing_mm"] == pytest.approx(1.0)
    assert thin["orientation"] == "axial"
    assert thin["is_volume"]
    assert thin["problems"] == []
    assert len(thin["files"]) == 10
    assert document["selected"] is None


def test_ls_previews_the_selection(export: Path) -> None:
    code, output = run_cli("dicom", "ls", str(export), "--modality", "CT", "--largest")
    assert code == 0
    marked = [line for line in output.splitlines() if line.startswith("*")]
    assert len(marked) == 1
    assert "Head 1mm bone" in marked[0]
    code, output = run_cli("dicom", "ls", str(export), "--json", "--description", "mprage")
    assert json.loads(output)["selected"] is not None
    code, output = run_cli("dicom", "ls", str(export), "--modality", "CT")
    assert code == 1
    assert "Error: 3 series match" in output


def test_ls_rejects_a_bad_pattern(export: Path) -> None:
    code, output = run_cli("dicom", "ls", str(export), "--description", "(")
    assert code == 1
    assert "invalid series selection: --description" in output


def test_ls_of_a_folder_without_dicom(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    code, output = run_cli("dicom", "ls", str(tmp_path))
    assert code == 0
    assert "no DICOM series" in output


def test_ls_lists_files_that_are_not_dicom_apart_from_damaged_dicom(tmp_path: Path) -> None:
    files = write_series(tmp_path, np.zeros((4, 4, 6), np.int16))
    (tmp_path / "README.txt").write_text("exported from the PACS\n")
    (tmp_path / "key.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(300))
    # a slice cut short in copying: it has the DICM marker, its UIDs are lost
    (tmp_path / "cut.dcm").write_bytes(files[0].read_bytes()[:300])

    code, output = run_cli("dicom", "ls", str(tmp_path))

    assert code == 0, output
    damaged, not_dicom = output.split("1 damaged DICOM file(s) skipped:")[1].split(
        "2 non-DICOM file(s) skipped:"
    )
    assert "cut.dcm" in damaged
    assert "truncated" in damaged
    assert "README.txt" not in damaged
    assert "key.jpg" not in damaged
    assert "README.txt: not a DICOM file" in not_dicom
    assert "key.jpg: not a DICOM file" in not_dicom
    assert "re-export" not in not_dicom  # nothing to repair in a README
    code, output = run_cli("dicom", "ls", str(tmp_path), "--json")
    skipped = {Path(item["path"]).name: item for item in json.loads(output)["skipped"]}
    assert skipped["README.txt"]["not_dicom"]
    assert not skipped["README.txt"]["damaged"]
    assert skipped["key.jpg"]["not_dicom"]
    assert skipped["cut.dcm"]["damaged"]
    assert not skipped["cut.dcm"]["not_dicom"]


def test_ls_reports_how_far_the_slices_lie_from_the_fitted_grid(tmp_path: Path) -> None:
    z = np.arange(10) * 3.0
    z[4] += 0.08  # a position rounded by the scanner
    positions = np.stack([np.zeros(10), np.zeros(10), z], axis=1)
    write_series(tmp_path, np.zeros((4, 4, 10), np.int16), spacing=(1, 1, 3), positions=positions)
    code, output = run_cli("dicom", "ls", str(tmp_path))
    assert code == 0, output
    assert "grid fit mm" in output
    assert "0.072" in output  # 0.08 less what the least-squares fit absorbs
    code, output = run_cli("dicom", "ls", str(tmp_path), "--json")
    listed = json.loads(output)["studies"][0]["series"][0]
    assert listed["is_volume"]
    assert listed["slice_position_residual_mm"] == pytest.approx(0.072, abs=1e-3)
    assert any("off a regular grid" in note for note in listed["notes"])


def test_largest_refuses_a_tie_and_names_the_tied_series(tmp_path: Path) -> None:
    study = generate_uid()
    for number, name in ((4, "T1 first"), (7, "T1 second")):
        write_series(
            tmp_path / name,
            np.zeros((8, 6, 5), np.int16),
            modality="MR",
            description=name,
            study_uid=study,
            series_number=number,
        )
    write_series(tmp_path / "small", np.zeros((4, 4, 3), np.int16), modality="MR", study_uid=study)
    found = scan_folder(tmp_path).series
    uids = sorted(info.series_instance_uid for info in found if "T1" in info.description)
    with pytest.raises(InputError, match="2 series tie for the largest") as caught:
        select_series(found, SeriesSelector(modality="MR", largest=True))
    message = str(caught.value)
    assert "#4 MR 'T1 first'" in message
    assert "#7 MR 'T1 second'" in message
    assert all(uid in message for uid in uids)
    assert "--series-uid" in message
    code, output = run_cli("dicom", "ls", str(tmp_path), "--largest")
    assert code == 1
    assert "tie for the largest" in output
    chosen = select_series(found, SeriesSelector(series_uid=uids[0], largest=True))
    assert chosen.series_instance_uid == uids[0]
