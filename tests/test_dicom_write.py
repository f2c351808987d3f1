"""Derived DICOM series: geometry and values read back by SimpleITK, UIDs, references,
de-identification, validation with dciodvfy, atomic writing."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from monai.data.meta_tensor import MetaTensor
from pydicom.dataset import Dataset

from medi2i.dicom.reading.series_volume import read_dicom_folder
from medi2i.dicom.source import META_KEY
from medi2i.dicom.writing import derived_series as write_module
from medi2i.dicom.writing.deidentify import Deidentifier
from medi2i.dicom.writing.derived_series import quantize_mr, write_derived_series
from medi2i.dicom.writing.volume_writer import DicomSeriesWriter
from medi2i.errors import GeometryError, InputError, OptionsError, OutputError
from medi2i.grid import Grid
from medi2i.method import Method, PredictContext, Task, VolumeSpec
from medi2i.testing.dicom_series import write_series
from medi2i.testing.volumes import make_volume
from tests.dicom_write_sources import MR_STORAGE, SHAPE
from tests.dicom_write_sources import ct_volume as _ct_volume
from tests.dicom_write_sources import source as _source


def _read_sitk(folder: Path) -> tuple[sitk.Image, np.ndarray]:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    return image, sitk.GetArrayFromImage(image).transpose(2, 1, 0)


def _lps(affine: np.ndarray) -> np.ndarray:
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)


def _assert_geometry(image: sitk.Image, affine: np.ndarray) -> None:
    lps = _lps(affine)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(image.GetOrigin(), lps[:3, 3], atol=1e-3)
    np.testing.assert_allclose(image.GetSpacing(), spacing, atol=1e-3)
    np.testing.assert_allclose(direction * spacing, lps[:3, :3], atol=1e-3)


def _read_all(files: list[Path]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(path) for path in files]


def test_ct_round_trip_keeps_oblique_geometry_and_whole_hu(tmp_path: Path) -> None:
    volume = _ct_volume()
    files = write_derived_series(
        volume, tmp_path / "sct", source=None, modality="CT", method_id="m", method_version="1"
    )
    image, values = _read_sitk(tmp_path / "sct")
    _assert_geometry(image, volume.affine.numpy())
    np.testing.assert_array_equal(values, np.rint(volume.numpy()[0]))
    first = pydicom.dcmread(files[0])
    assert first.RescaleSlope == 1
    assert first.RescaleIntercept == 0
    assert first.pixel_array.dtype == np.int16


def test_ct_beyond_int16_still_round_trips_exactly(tmp_path: Path) -> None:
    volume = _ct_volume()
    shifted = MetaTensor(volume.as_tensor() + 40000.0, affine=volume.affine)
    write_derived_series(
        shifted, tmp_path / "s", source=None, modality="CT", method_id="m", method_version="1"
    )
    _, values = _read_sitk(tmp_path / "s")
    np.testing.assert_array_equal(values, np.rint(shifted.numpy()[0]))


def test_a_ct_that_rounds_to_one_value_is_not_written(tmp_path: Path) -> None:
    """An input read with Rescale Slope 1e-9 gave a CT of -1e-06 to 1e-06 HU, which the
    series stored as 0 HU everywhere and exit 0: a constant series of a varying output."""
    base = _ct_volume()
    tiny = MetaTensor((base.as_tensor() + 1000.4) * 1e-8, affine=base.affine)
    folder = tmp_path / "old"
    write_derived_series(
        base, folder, source=None, modality="CT", method_id="m", method_version="1"
    )
    with pytest.raises(OutputError, match=r"was not written: .*\(whole HU\), a constant volume"):
        write_derived_series(
            tiny, folder, source=None, modality="CT", method_id="m", method_version="2"
        )
    with pytest.raises(OutputError, match="constant volume"):
        write_derived_series(
            tiny, tmp_path / "new", source=None, modality="CT", method_id="m", method_version="2"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]  # nothing left, old kept
    assert "m 1" in pydicom.dcmread(folder / "00001.dcm").SeriesDescription


def test_mr_round_trips_within_half_a_rescale_step(tmp_path: Path) -> None:
    base = make_volume(SHAPE)
    mr = MetaTensor(base.as_tensor() * 1.37 + 0.123, affine=base.affine)
    files = write_derived_series(
        mr, tmp_path / "mr", source=None, modality="MR", method_id="m", method_version="1"
    )
    image, values = _read_sitk(tmp_path / "mr")
    _assert_geometry(image, base.affine.numpy())
    slope = float(pydicom.dcmread(files[0]).RescaleSlope)
    assert slope < 0.03
    assert np.max(np.abs(values - mr.numpy()[0])) <= slope / 2 + 1e-6


def test_mr_whole_values_are_stored_without_scaling() -> None:
    stored = quantize_mr(np.array([[[0.0, 5.0], [70000.0 - 65535, 12.0]]]))
    assert (stored.slope, stored.intercept) == ("1", "0")
    assert stored.values.dtype == np.int16


def test_super_resolution_grid_is_written_as_is(tmp_path: Path) -> None:
    source = _source(tmp_path)
    low = _ct_volume()
    fine = Grid.of(low).scaled((1.0, 1.0, 2.0))
    values = torch.zeros((1, *fine.shape))
    volume = MetaTensor(
        values, affine=torch.from_numpy(fine.affine), meta={"original_affine": low.affine.numpy()}
    )
    files = write_derived_series(
        volume, tmp_path / "sr", source=source, modality="CT", method_id="m", method_version="1"
    )
    image, _ = _read_sitk(tmp_path / "sr")
    _assert_geometry(image, fine.affine)
    assert len(files) == 2 * SHAPE[2]
    # fine slices 1 and 2 straddle coarse slice 0 and 1 (half-voxel shifted centres)
    referenced = [
        [item.ReferencedSOPInstanceUID for item in pydicom.dcmread(path).SourceImageSequence]
        for path in files[:3]
    ]
    uids = source.sop_instance_uids
    assert referenced == [[uids[0]], [uids[0], uids[1]], [uids[0], uids[1]]]


def test_slice_thickness_is_the_source_s_on_its_grid_and_the_spacing_on_a_finer_one(
    tmp_path: Path,
) -> None:
    volume = np.random.default_rng(5).integers(0, 1000, (8, 7, 6)).astype(np.float64)
    written = write_series(tmp_path / "source", volume, modality="MR", spacing=(0.8, 0.9, 2.5))
    for path in written:  # 5 mm slices every 2.5 mm: overlapping, as scanners reconstruct
        dataset = pydicom.dcmread(path)
        dataset.SliceThickness, dataset.SpacingBetweenSlices = "5.0", "2.5"
        dataset.save_as(path)
    image = read_dicom_folder(tmp_path / "source")
    fine = Grid.of(image).scaled((1.0, 1.0, 2.0))
    finer = MetaTensor(
        torch.rand(1, *fine.shape) * 1000,
        affine=torch.from_numpy(fine.affine),
        meta={"original_affine": image.affine.numpy()},
    )
    # on the source's grid its thickness; on a finer one the new slice spacing
    for name, output, thickness, between in [
        ("same", image, "5.0", "2.5"),
        ("sr", finer, "1.25", "1.25"),
    ]:
        written = _read_all(
            write_derived_series(
                output,
                tmp_path / name,
                source=image.meta[META_KEY],
                modality="MR",
                method_id="m",
                method_version="1",
            )
        )
        assert {str(d.SliceThickness) for d in written} == {thickness}
        assert {str(d.SpacingBetweenSlices) for d in written} == {between}


def test_left_handed_grid_reads_back_at_the_same_world_positions(tmp_path: Path) -> None:
    volume = _ct_volume()
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1.0, SHAPE[2] - 1
    affine = volume.affine.numpy() @ flip
    flipped = MetaTensor(volume.as_tensor().flip(-1), affine=torch.from_numpy(affine))
    write_derived_series(
        flipped, tmp_path / "f", source=None, modality="CT", method_id="m", method_version="1"
    )
    image, values = _read_sitk(tmp_path / "f")
    # the reader sorts slices along the normal, which undoes the flip
    _assert_geometry(image, volume.affine.numpy())
    np.testing.assert_array_equal(values, np.rint(volume.numpy()[0]))


def test_an_in_plane_sheared_grid_is_refused(tmp_path: Path) -> None:
    volume = _ct_volume()
    affine = volume.affine.numpy().copy()
    affine[:3, 1] += 0.3 * affine[:3, 0]  # rows and columns not perpendicular
    sheared = MetaTensor(volume.as_tensor(), affine=torch.from_numpy(affine))
    with pytest.raises(GeometryError, match="not perpendicular"):
        write_derived_series(
            sheared, tmp_path / "s", source=None, modality="CT", method_id="m", method_version="1"
        )
    assert not (tmp_path / "s").exists()


def test_slices_that_do_not_advance_are_refused(tmp_path: Path) -> None:
    affine = np.eye(4)
    affine[:3, 2] = [1.0, 1.0, 0.0]  # the slice step lies in the slice plane
    with pytest.raises(GeometryError, match="do not advance"):
        write_module.slice_geometry(affine, tmp_path / "s")


TILTED = (
    ("axial", (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), 15.0),
    ("oblique", (0.9659258, 0.258819, 0.0, -0.0669873, 0.25, -0.9659258), -20.0),
)


def _tilted_source(folder: Path, orientation: tuple[float, ...], tilt: float) -> np.ndarray:
    values = np.random.default_rng(3).integers(-1000, 1500, size=(12, 10, 6)).astype(float)
    write_series(
        folder,
        values,
        spacing=(0.8, 0.9, 2.5),
        orientation=orientation,
        origin=(-40.2, 17.5, 93.0),
        modality="CT",
        tilt_deg=tilt,
    )
    return values


@pytest.mark.parametrize(("name", "orientation", "tilt"), TILTED, ids=[t[0] for t in TILTED])
def test_a_tilted_stack_is_written_where_each_source_slice_lay(
    tmp_path: Path, name: str, orientation: tuple[float, ...], tilt: float
) -> None:
    values = _tilted_source(tmp_path / "source", orientation, tilt)
    image = read_dicom_folder(tmp_path / "source")
    files = write_derived_series(
        image,
        tmp_path / "sct",
        source=image.meta[META_KEY],
        modality="CT",
        method_id="m",
        method_version="1",
    )
    back = read_dicom_folder(tmp_path / "sct")
    np.testing.assert_allclose(back.affine.numpy(), image.affine.numpy(), atol=1e-4)
    np.testing.assert_array_equal(back.numpy()[0], values)
    source = sorted(_read_all(sorted((tmp_path / "source").iterdir())), key=_along_normal)
    for written, original in zip(_read_all(files), source, strict=True):
        np.testing.assert_allclose(
            [float(v) for v in written.ImagePositionPatient],
            [float(v) for v in original.ImagePositionPatient],
            atol=1e-5,
        )
        assert list(written.ImageOrientationPatient) == list(original.ImageOrientationPatient)
        assert str(written.SliceThickness) == str(original.SliceThickness)
        # the CT output keeps the tilt its sheared grid was acquired with
        assert float(written.GantryDetectorTilt) == float(original.GantryDetectorTilt)
    if shutil.which("dciodvfy") is not None:
        assert _dciodvfy_problems(files[0]) + _dciodvfy_problems(files[-1]) == []


def test_decimal_strings_carry_no_float_noise_and_keep_the_source_s(tmp_path: Path) -> None:
    affine = np.diag([-0.7, -0.7, 7.00000031697399, 1.0])
    affine[:3, 3] = [10.1000000001, -3.0, 20.0]
    volume = MetaTensor(torch.rand(1, 6, 5, 4) * 1000, affine=torch.from_numpy(affine))
    plain = _read_all(
        write_derived_series(
            volume, tmp_path / "a", source=None, modality="CT", method_id="m", method_version="1"
        )
    )
    assert str(plain[0].SliceThickness) == "7"
    assert [str(v) for v in plain[0].PixelSpacing] == ["0.7", "0.7"]
    assert [str(v) for v in plain[1].ImagePositionPatient] == ["-10.1", "3", "27"]
    assert [str(v) for v in plain[0].ImageOrientationPatient] == ["1", "0", "0", "0", "1", "0"]
    source = _source(tmp_path, slices=4)
    source.header.SliceThickness = "7.000"
    source.header.PixelSpacing = ["0.70", "0.70"]
    copied = _read_all(
        write_derived_series(
            volume, tmp_path / "b", source=source, modality="MR", method_id="m", method_version="1"
        )
    )
    assert str(copied[0].SliceThickness) == "7.000"
    assert [str(v) for v in copied[0].PixelSpacing] == ["0.70", "0.70"]
    assert str(copied[0].SpacingBetweenSlices) == "7"


@pytest.mark.parametrize(
    ("stated", "expected"),
    [
        ({"BodyPartExamined": "HEAD"}, None),
        ({"Laterality": "R"}, "R"),
        ({"BodyPartExamined": "KNEE"}, ""),
        # unstated body part: required (dciodvfy reports it missing), and unknown
        ({}, ""),
        # an empty source value of an unpaired part is left out, not copied
        ({"BodyPartExamined": "HEAD", "Laterality": ""}, None),
    ],
)
def test_laterality_is_copied_or_left_out_unless_the_iod_needs_it(
    tmp_path: Path, stated: dict[str, str], expected: str | None
) -> None:
    source = _source(tmp_path)
    for keyword, value in stated.items():
        setattr(source.header, keyword, value)
    files = write_derived_series(
        _ct_volume(),
        tmp_path / "s",
        source=source,
        modality="CT",
        method_id="m",
        method_version="1",
    )
    first = pydicom.dcmread(files[0])
    assert (None if "Laterality" not in first else str(first.Laterality)) == expected
    if shutil.which("dciodvfy") is not None and expected is None:
        run = subprocess.run(["dciodvfy", str(files[0])], capture_output=True, text=True)
        assert "<Laterality>" not in run.stdout + run.stderr


def _along_normal(dataset: pydicom.Dataset) -> float:
    cosines = np.array([float(v) for v in dataset.ImageOrientationPatient])
    normal = np.cross(cosines[:3], cosines[3:])
    return float(np.array([float(v) for v in dataset.ImagePositionPatient]) @ normal)


def test_series_is_new_and_keeps_study_frame_patient_and_references(tmp_path: Path) -> None:
    source = _source(tmp_path)
    files = write_derived_series(
        _ct_volume(),
        tmp_path / "sct",
        source=source,
        modality="CT",
        method_id="pix2pix",
        method_version="0.3.1",
    )
    datasets = _read_all(files)
    series_uids = {ds.SeriesInstanceUID for ds in datasets}
    sop_uids = {ds.SOPInstanceUID for ds in datasets}
    assert len(series_uids) == 1
    assert series_uids.isdisjoint({source.series_instance_uid})
    assert len(sop_uids) == len(files)
    assert sop_uids.isdisjoint(source.sop_instance_uids)
    first = datasets[0]
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert first.StudyInstanceUID == source.study_instance_uid
    assert first.FrameOfReferenceUID == source.frame_of_reference_uid
    assert (str(first.PatientName), first.PatientID) == ("Doe^Jane", "MRN-12345")
    assert first.AccessionNumber == "ACC991"
    assert list(first.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "pix2pix 0.3.1" in first.SeriesDescription
    assert "pix2pix" in first.DerivationDescription
    assert first.RelatedSeriesSequence[0].SeriesInstanceUID == source.series_instance_uid
    for index, ds in enumerate(datasets):
        item = ds.SourceImageSequence[0]
        assert item.ReferencedSOPInstanceUID == source.sop_instance_uids[index]
        assert item.ReferencedSOPClassUID == MR_STORAGE
    assert [ds.InstanceNumber for ds in datasets] == list(range(1, len(files) + 1))


def test_without_source_a_placeholder_study_is_created(tmp_path: Path) -> None:
    files = write_derived_series(
        _ct_volume(), tmp_path / "a", source=None, modality="CT", method_id="m", method_version="1"
    )
    other = write_derived_series(
        _ct_volume(), tmp_path / "b", source=None, modality="CT", method_id="m", method_version="1"
    )
    first, second = pydicom.dcmread(files[0]), pydicom.dcmread(other[0])
    assert first.PatientName.family_name == "ANONYMOUS"
    assert first.PatientID.startswith("ANONYMOUS-")
    assert first.StudyInstanceUID != second.StudyInstanceUID
    assert first.PatientID != second.PatientID
    assert "SourceImageSequence" not in first


def test_deidentification_applies_the_profile_to_outputs_only(tmp_path: Path) -> None:
    source = _source(tmp_path)
    header_before = copy.deepcopy(source.header)
    deidentifier = Deidentifier(salt=b"test")
    written = [
        write_derived_series(
            _ct_volume(),
            tmp_path / name,
            source=source,
            modality="CT",
            method_id="m",
            method_version="1",
            deidentify=True,
            deidentifier=deidentifier,
        )
        for name in ("first", "second")
    ]
    first, second = pydicom.dcmread(written[0][0]), pydicom.dcmread(written[1][0])
    last = pydicom.dcmread(written[0][-1])
    assert first.PatientName.family_name == "ANONYMOUS"
    related = first.RelatedSeriesSequence[0].SeriesInstanceUID
    assert last.RelatedSeriesSequence[0].SeriesInstanceUID == related  # mapped once per slice
    assert last.StudyInstanceUID == first.StudyInstanceUID
    assert first.PatientID.startswith("ANON-")
    assert first.PatientID == second.PatientID
    for keyword in ("PatientBirthDate", "PatientSex", "StudyDate", "AccessionNumber"):
        assert first[keyword].value in (None, ""), keyword
    assert first.StudyID == second.StudyID == deidentifier.study_id(source.study_instance_uid)
    assert first.StudyID != "S77"
    for keyword in ("PatientAge", "InstitutionName", "StudyDescription", "SeriesDate"):
        assert keyword not in first, keyword
    assert first.StudyInstanceUID == second.StudyInstanceUID != source.study_instance_uid
    assert first.FrameOfReferenceUID == second.FrameOfReferenceUID
    assert first.FrameOfReferenceUID != source.frame_of_reference_uid
    referenced = first.SourceImageSequence[0].ReferencedSOPInstanceUID
    assert referenced == deidentifier.uid(source.sop_instance_uids[0])
    assert first.RelatedSeriesSequence[0].SeriesInstanceUID != source.series_instance_uid
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    assert first.PatientIdentityRemoved == "YES"
    assert "medi2i-basic-1" in first.DeidentificationMethod
    assert source.header == header_before


def test_a_failure_leaves_no_partial_series_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "sct"
    write_derived_series(
        _ct_volume(), folder, source=None, modality="CT", method_id="m", method_version="old"
    )
    saved: list[Path] = []

    def failing_save(dataset: Dataset, path: Path) -> None:
        if len(saved) == 3:
            raise OSError("disk full")
        saved.append(path)
        real_save(dataset, path)

    real_save = write_module._save
    monkeypatch.setattr(write_module, "_save", failing_save)
    with pytest.raises(OutputError, match=r"cannot write .*sct: disk full; nothing was written"):
        write_derived_series(
            _ct_volume(), folder, source=None, modality="CT", method_id="m", method_version="new"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sct"]
    assert "old" in pydicom.dcmread(folder / "00001.dcm").SeriesDescription
    assert len(list(folder.iterdir())) == SHAPE[2]


def _dciodvfy_problems(path: Path) -> list[str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None,
    reason="dciodvfy not installed (Debian package dicom3tools; CI installs it)",
)
@pytest.mark.parametrize(("modality", "deidentify"), [("CT", False), ("MR", False), ("CT", True)])
def test_dciodvfy_reports_no_errors(tmp_path: Path, modality: str, deidentify: bool) -> None:
    base = _ct_volume()
    volume = base if modality == "CT" else MetaTensor(base.as_tensor() + 1000.6, affine=base.affine)
    for name, source in (("with-source", _source(tmp_path)), ("without", None)):
        files = write_derived_series(
            volume,
            tmp_path / name,
            source=source,
            modality=modality,  # type: ignore[arg-type]
            method_id="pix2pix",
            method_version="0.1.0",
            deidentify=deidentify,
        )
        for path in (files[0], files[-1]):
            assert _dciodvfy_problems(path) == [], path


def test_dicom_writer_takes_suffixless_paths_and_existing_folders(tmp_path: Path) -> None:
    writer = DicomSeriesWriter()
    assert writer.can_write(tmp_path / "sct")
    assert writer.can_write(tmp_path)
    assert not writer.can_write(tmp_path / "sct.nii.gz")
    assert not writer.can_write(tmp_path / "sct.mha")


def test_dicom_writer_reads_method_and_modality_from_meta(tmp_path: Path) -> None:
    volume = _ct_volume()
    source = _source(tmp_path)
    volume.meta.update(
        {
            "medi2i.method.id": "pix2pix",
            "medi2i.method.version": "2.0",
            "medi2i.output.modality": "any",
            META_KEY: source,
        }
    )
    DicomSeriesWriter().write(volume, tmp_path / "out")
    first = pydicom.dcmread(tmp_path / "out" / "00001.dcm")
    assert first.Modality == "MR"  # "any" falls back to the source's modality
    assert "pix2pix 2.0" in first.SeriesDescription
    assert first.StudyInstanceUID == source.study_instance_uid


def test_dicom_writer_refuses_a_volume_that_does_not_name_its_method(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match=r"medi2i\.method\.id"):
        DicomSeriesWriter().write(_ct_volume(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_dicom_folder_predicted_and_written_keeps_its_study_and_grid(tmp_path: Path) -> None:
    from medi2i.dicom.reading.series_volume import read_dicom_folder
    from medi2i.io import write_volume
    from medi2i.prediction import predict_tensor
    from medi2i.settings import InferenceSettings
    from medi2i.testing.dicom_series import write_series
    from medi2i.testing.example_methods import CT

    class Shift(Method):
        """Synthetic CT as MR - 1000 HU."""

        id = "test-shift"
        tasks = (Task.TRANSLATION,)
        input_spec = VolumeSpec(modality="MR")
        output_spec = CT

        def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
            return image.as_tensor() - 1000.0

    values = np.arange(8 * 6 * 4, dtype=np.float64).reshape(8, 6, 4)
    orientation = (0.0, 1.0, 0.0, 0.6, 0.0, -0.8)  # oblique sagittal
    source_files = write_series(
        tmp_path / "mr",
        values,
        spacing=(0.8, 0.9, 2.5),
        orientation=orientation,
        origin=(10.0, -20.0, 30.0),
        modality="MR",
        rescale=(1.0, 0.0),
    )
    image = read_dicom_folder(tmp_path / "mr")
    result = predict_tensor(
        Shift(), image, settings=InferenceSettings(device="cpu", progress=False)
    )
    write_volume(result, tmp_path / "sct", writers=[DicomSeriesWriter()])
    written, read_back = _read_sitk(tmp_path / "sct")
    np.testing.assert_array_equal(read_back, values - 1000.0)
    _assert_geometry(written, image.affine.numpy())
    first, source = (
        pydicom.dcmread(tmp_path / "sct" / "00001.dcm"),
        pydicom.dcmread(source_files[0]),
    )
    assert (first.Modality, first.StudyInstanceUID) == ("CT", source.StudyInstanceUID)
    assert first.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert "test-shift" in first.SeriesDescription


def test_a_folder_holding_other_files_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="holds other things"):
        write_derived_series(
            _ct_volume(),
            tmp_path / "results",
            source=None,
            modality="CT",
            method_id="m",
            method_version="1",
        )
    assert (tmp_path / "results" / "notes.txt").read_text() == "keep me"


def test_a_method_output_of_no_modality_asks_for_nifti_naming_the_method(tmp_path: Path) -> None:
    from medi2i.dicom.writing.volume_writer import (
        METHOD_ID_KEY,
        OUTPUT_MODALITY_KEY,
        output_modality,
    )

    meta = {OUTPUT_MODALITY_KEY: "any", METHOD_ID_KEY: "gamma-curve"}
    with pytest.raises(OptionsError, match=r"method 'gamma-curve' declares.*'any'.*NIfTI"):
        output_modality(meta, None, tmp_path / "out")
    assert output_modality({**meta, OUTPUT_MODALITY_KEY: "CT"}, None, tmp_path / "out") == "CT"


def test_an_over_long_source_decimal_string_is_not_copied() -> None:
    from pydicom.dataset import Dataset as Header

    from medi2i.dicom.writing.derived_header import stated_decimal_strings

    header = Header()
    with pytest.warns(UserWarning, match="16"):  # pydicom: the source is non-conformant
        header.ImageOrientationPatient = ["0.9396926207859084", "0", "-0.3420201433256687"] * 2
    values = [0.9396926207859084, 0.0, -0.3420201433256687] * 2
    written = stated_decimal_strings(header, "ImageOrientationPatient", values, 1e-5)
    assert all(len(text) <= 16 for text in written)
    np.testing.assert_allclose([float(t) for t in written], values, atol=1e-6)
    header.ImageOrientationPatient = ["0.93969262", "0", "-0.34202014"] * 2  # valid: kept as is
    kept = stated_decimal_strings(header, "ImageOrientationPatient", values, 1e-5)
    assert kept == ["0.93969262", "0", "-0.34202014"] * 2
