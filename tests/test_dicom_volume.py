"""DICOM series into volumes: voxel values, slice order and geometry against ground truth,
SimpleITK (GDCM) and dcm2niix."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from monai.data import MetaTensor
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medi2i.dicom.reading.series_scan import scan_folder
from medi2i.dicom.reading.series_selection import SeriesSelector
from medi2i.dicom.reading.series_volume import read_dicom_folder, read_dicom_series
from medi2i.dicom.reading.volume_reader import DicomFolderReader
from medi2i.dicom.source import META_KEY, DicomSource
from medi2i.errors import GeometryError, InputError
from medi2i.grid import lps_to_ras, ras_to_lps
from medi2i.io import read_volume
from medi2i.testing.dicom_series import (
    AXIAL,
    SAGITTAL,
    stack_geometry,
    write_enhanced,
    write_mosaic,
    write_series,
)

DICOMDIR_TESTS = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"
OBLIQUE = (0.9396926, 0.3420201, 0.0, -0.2962122, 0.8137977, 0.5)  # about 20 and 30 degrees


def ct_values(shape: tuple[int, int, int] = (12, 10, 7), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1024, 3000, shape).astype(np.int16)


def assert_geometry_close(volume: MetaTensor, affine_lps: np.ndarray) -> None:
    np.testing.assert_allclose(volume.affine.numpy(), lps_to_ras(affine_lps), atol=1e-3, rtol=0)


def sitk_volume(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Voxels ``[i, j, k]`` and the RAS affine of SimpleITK's (GDCM's) series reader."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    affine = np.eye(4)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    affine[:3, :3] = direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0), lps_to_ras(affine)


def dcm2niix_volume(folder: Path, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """Voxels and affine of dcm2niix's NIfTI, reordered to the closest canonical (RAS)."""
    binary = shutil.which("dcm2niix")
    if binary is None:
        pytest.skip("dcm2niix is not installed (apt-get install dcm2niix)")
    out.mkdir()
    command = [binary, "-z", "n", "-b", "n", "-f", "volume", "-o", str(out), str(folder)]
    subprocess.run(command, check=True, capture_output=True)
    written = sorted(out.glob("*.nii"))
    assert len(written) == 1, [p.name for p in written]
    image = nib.as_closest_canonical(nib.load(written[0]))
    return np.asarray(image.get_fdata()), image.affine


def canonical(volume: MetaTensor) -> tuple[np.ndarray, np.ndarray]:
    image = nib.Nifti1Image(volume[0].numpy(), volume.affine.numpy())
    canon = nib.as_closest_canonical(image)
    return np.asarray(canon.dataobj), canon.affine


def test_generated_ct_series_has_hu_values_slice_order_and_affine(tmp_path: Path) -> None:
    values = ct_values()
    shuffled = [5, 2, 7, 1, 3, 6, 4]  # Instance Numbers that do not follow the positions
    write_series(
        tmp_path, values, spacing=(0.7, 0.8, 2.5), origin=(-10, 20, 30), instance_numbers=shuffled
    )
    volume = read_dicom_folder(tmp_path)
    assert volume.shape == (1, 12, 10, 7)
    np.testing.assert_array_equal(volume[0].numpy(), values)
    truth = stack_geometry(
        (12, 10, 7), spacing=(0.7, 0.8, 2.5), orientation=AXIAL, origin=(-10, 20, 30)
    )
    assert_geometry_close(volume, truth.affine_lps)
    assert volume.meta["medi2i.dtype"] == "int16"
    assert volume.meta["space"] == "RAS"


def test_positions_decide_the_order_even_when_descending(tmp_path: Path) -> None:
    values = ct_values((6, 5, 4))
    spacing = (1.0, 1.0, 3.0)
    truth = stack_geometry((6, 5, 4), spacing=spacing, orientation=AXIAL, origin=(0, 0, 0))
    # the same slices written top-down: the volume must come out bottom-up regardless
    reversed_positions = truth.positions[::-1]
    write_series(tmp_path, values[:, :, ::-1], spacing=spacing, positions=reversed_positions)
    volume = read_dicom_folder(tmp_path)
    np.testing.assert_array_equal(volume[0].numpy(), values)
    assert_geometry_close(volume, truth.affine_lps)


@pytest.mark.parametrize(
    ("orientation", "spacing"),
    [(AXIAL, (0.5, 0.6, 1.5)), (SAGITTAL, (1.0, 1.2, 2.0)), (OBLIQUE, (0.9, 0.7, 3.3))],
    ids=["axial", "sagittal", "oblique"],
)
def test_geometry_agrees_with_simpleitk(
    tmp_path: Path, orientation: tuple[float, ...], spacing: tuple[float, float, float]
) -> None:
    values = ct_values((9, 8, 6), seed=2)
    write_series(tmp_path, values, spacing=spacing, orientation=orientation, origin=(12.5, -40, 7))
    volume = read_dicom_folder(tmp_path)
    voxels, affine = sitk_volume(tmp_path)
    np.testing.assert_array_equal(volume[0].numpy(), voxels)
    np.testing.assert_allclose(volume.affine.numpy(), affine, atol=1e-3, rtol=0)


@pytest.mark.parametrize("orientation", [AXIAL, OBLIQUE], ids=["axial", "oblique"])
def test_geometry_agrees_with_dcm2niix(tmp_path: Path, orientation: tuple[float, ...]) -> None:
    values = ct_values((10, 8, 6), seed=3)
    write_series(
        tmp_path / "in",
        values,
        spacing=(0.8, 0.9, 2.0),
        orientation=orientation,
        origin=(-30, 15, 60),
    )
    volume = read_dicom_folder(tmp_path / "in")
    theirs, their_affine = dcm2niix_volume(tmp_path / "in", tmp_path / "out")
    ours, our_affine = canonical(volume)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(our_affine, their_affine, atol=1e-3, rtol=0)


def test_pydicom_ct_series_agrees_with_simpleitk_and_dcm2niix(tmp_path: Path) -> None:
    folder = DICOMDIR_TESTS / "98892001" / "CT5N"  # 5 slices, z descending with Instance Number
    volume = read_dicom_folder(folder)
    assert volume.shape == (1, 16, 16, 5)
    voxels, affine = sitk_volume(folder)
    np.testing.assert_array_equal(volume[0].numpy(), voxels)
    np.testing.assert_allclose(volume.affine.numpy(), affine, atol=1e-3, rtol=0)
    theirs, their_affine = dcm2niix_volume(folder, tmp_path / "out")
    ours, our_affine = canonical(volume)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(our_affine, their_affine, atol=1e-3, rtol=0)


def test_gantry_tilt_keeps_every_slice_at_its_position(tmp_path: Path) -> None:
    values = ct_values((8, 8, 5))
    paths = write_series(
        tmp_path, values, spacing=(0.5, 0.5, 2.0), tilt_deg=15.0, origin=(5, -5, 10)
    )
    series = scan_folder(tmp_path).series[0]
    assert series.geometry is not None
    assert series.geometry.tilt_deg == pytest.approx(15.0, abs=1e-3)
    assert series.slice_spacing == pytest.approx(2.0 * np.cos(np.deg2rad(15.0)), abs=1e-4)
    assert any("tilt" in note for note in series.notes)
    volume = read_dicom_series(series)
    np.testing.assert_array_equal(volume[0].numpy(), values)
    for k, path in enumerate(paths):  # voxel (i, j, k) lies where slice k's header says
        header = pydicom.dcmread(path, stop_before_pixels=True)
        row, column = (
            np.array(header.ImageOrientationPatient[:3]),
            np.array(header.ImageOrientationPatient[3:]),
        )
        corner = np.array(header.ImagePositionPatient) + 7 * 0.5 * row + 3 * 0.5 * column
        world = ras_to_lps(volume.affine.numpy()) @ np.array([7, 3, k, 1.0])
        np.testing.assert_allclose(world[:3], corner, atol=1e-3)


def test_fractional_rescale_gives_float_values_like_simpleitk(tmp_path: Path) -> None:
    values = np.random.default_rng(4).integers(0, 4000, (7, 6, 5)) * 0.25 + 1.5
    write_series(tmp_path, values, modality="PT", rescale=(0.25, 1.5), pixel_dtype="uint16")
    volume = read_dicom_folder(tmp_path)
    assert volume.meta["medi2i.dtype"] == "float32"
    np.testing.assert_array_equal(volume[0].numpy(), values.astype(np.float32))
    voxels, _ = sitk_volume(tmp_path)
    np.testing.assert_array_equal(volume[0].numpy(), voxels.astype(np.float32))


def test_mr_without_rescale_keeps_unsigned_type(tmp_path: Path) -> None:
    values = np.random.default_rng(5).integers(0, 60000, (6, 6, 4)).astype(np.uint16)
    write_series(tmp_path, values, modality="MR", rescale=(1.0, 0.0), pixel_dtype="uint16")
    volume = read_dicom_folder(tmp_path)
    assert volume.meta["medi2i.dtype"] == "uint16"
    np.testing.assert_array_equal(volume[0].numpy(), values)


def test_unused_high_bits_are_sign_extended(tmp_path: Path) -> None:
    values = np.array([-2048, -1, 0, 2047] * 8, dtype=np.int16).reshape(4, 4, 2)
    paths = write_series(tmp_path, values, rescale=(1.0, 0.0))
    for path in paths:  # 12 bits stored, high nibble garbage as some scanners leave it
        dataset = pydicom.dcmread(path)
        dataset.BitsStored, dataset.HighBit = 12, 11
        stored = dataset.pixel_array.astype(np.int16)
        dataset.PixelData = ((stored & 0x0FFF) | 0x5000).astype(np.int16).tobytes()
        dataset.save_as(path)
    np.testing.assert_array_equal(read_dicom_folder(tmp_path)[0].numpy(), values)


@pytest.mark.parametrize(
    "syntax",
    [
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.5",  # RLE Lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    ],
    ids=["implicit", "rle", "jpeg2000", "deflate"],
)
def test_compressed_series_decode_to_the_same_values(tmp_path: Path, syntax: str) -> None:
    values = ct_values((40, 36, 3), seed=6)  # JPEG 2000's 6 resolutions need 32 pixels
    write_series(tmp_path, values, transfer_syntax=syntax, spacing=(0.5, 0.5, 1.25))
    volume = read_dicom_folder(tmp_path)
    np.testing.assert_array_equal(volume[0].numpy(), values)
    voxels, _ = sitk_volume(tmp_path)
    np.testing.assert_array_equal(volume[0].numpy(), voxels)


def restack(source: str, folder: Path, slices: int = 3) -> np.ndarray:
    """Copies of one pydicom test image as a stack, its compressed pixel data untouched.

    Returns the expected volume, ``(columns, rows, slices)``, in real units.
    """
    path = get_testdata_file(source, download=False)
    if path is None:
        pytest.skip(f"{source} is not installed (pip install pydicom-data)")
    folder.mkdir()
    series_uid = generate_uid()
    dataset = pydicom.dcmread(path)
    expected = dataset.pixel_array.astype(np.float64)
    slope, intercept = (
        float(dataset.get("RescaleSlope", 1)),
        float(dataset.get("RescaleIntercept", 0)),
    )
    for k in range(slices):
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.ImagePositionPatient = [0, 0, 2 * k]
        dataset.ImageOrientationPatient = list(AXIAL)
        dataset.PixelSpacing = dataset.get("PixelSpacing") or [1, 1]
        dataset.save_as(folder / f"{k}.dcm")
    plane = (expected * slope + intercept).T
    return np.repeat(plane[:, :, None], slices, axis=2)


@pytest.mark.parametrize(
    "source",
    [
        "JPEG-LL.dcm",  # JPEG Lossless, process 14
        "JPGLosslessP14SV1_1s_1f_8b.dcm",  # JPEG Lossless, first-order prediction
        "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS Lossless
        "MR_small_RLE.dcm",  # RLE Lossless
        "MR_small_jp2klossless.dcm",  # JPEG 2000 Lossless
        "MR_small_bigendian.dcm",  # Explicit VR Big Endian
        "MR_small_implicit.dcm",  # Implicit VR Little Endian
    ],
)
def test_compressed_files_from_other_encoders(tmp_path: Path, source: str) -> None:
    expected = restack(source, tmp_path / "series")
    volume = read_dicom_folder(tmp_path / "series")
    np.testing.assert_array_equal(volume[0].numpy(), expected.astype(np.float32))


def test_enhanced_multiframe_with_frames_out_of_order(tmp_path: Path) -> None:
    values = np.random.default_rng(7).integers(0, 3000, (9, 7, 6)).astype(np.uint16)
    path = write_enhanced(
        tmp_path / "enhanced.dcm",
        values,
        spacing=(0.6, 0.7, 1.8),
        orientation=OBLIQUE,
        origin=(3, 4, 5),
        frame_order=[3, 0, 5, 1, 4, 2],
    )
    volume = DicomFolderReader().read(path)
    np.testing.assert_array_equal(volume[0].numpy(), values)
    truth = stack_geometry(
        (9, 7, 6), spacing=(0.6, 0.7, 1.8), orientation=OBLIQUE, origin=(3, 4, 5)
    )
    assert_geometry_close(volume, truth.affine_lps)
    source = volume.meta[META_KEY]
    assert len(source.sop_instance_uids) == 1


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90"])
def test_enhanced_multiframe_compressed(tmp_path: Path, syntax: str) -> None:
    values = np.random.default_rng(8).integers(-1000, 2000, (32, 32, 5)).astype(np.int16)
    path = write_enhanced(
        tmp_path / "ct.dcm",
        values,
        modality="CT",
        rescale=(1.0, -1024.0),
        pixel_dtype="int16",
        transfer_syntax=syntax,
        frame_order=[4, 3, 2, 1, 0],
    )
    np.testing.assert_array_equal(read_dicom_folder(path)[0].numpy(), values)


def test_enhanced_ct_from_pydicom_agrees_with_dcm2niix(tmp_path: Path) -> None:
    path = Path(str(get_testdata_file("eCT_Supplemental.dcm", download=False)))
    volume = read_dicom_folder(path)
    assert volume.shape == (1, 512, 512, 2)
    assert volume.meta["medi2i.dtype"] == "int16"  # 12-bit unsigned stored, -1024 intercept
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(path, folder)
    theirs, their_affine = dcm2niix_volume(folder, tmp_path / "out")
    ours, our_affine = canonical(volume)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(our_affine, their_affine, atol=1e-3, rtol=0)


def test_source_meta_for_the_writer(tmp_path: Path) -> None:
    paths = write_series(tmp_path, ct_values((4, 4, 3)), description="head", series_number=4)
    volume = read_dicom_folder(tmp_path)
    source = volume.meta[META_KEY]
    assert isinstance(source, DicomSource)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    assert source.sop_instance_uids == tuple(h.SOPInstanceUID for h in headers)
    assert source.study_instance_uid == headers[0].StudyInstanceUID
    assert source.series_instance_uid == headers[0].SeriesInstanceUID
    assert source.frame_of_reference_uid == headers[0].FrameOfReferenceUID
    assert (source.modality, source.sop_class_uid) == ("CT", headers[0].SOPClassUID)
    assert source.header.SeriesDescription == "head"
    assert "PixelData" not in source.header
    assert source.folder == tmp_path


def test_selector_picks_among_series(tmp_path: Path) -> None:
    small, large = ct_values((4, 4, 3)), ct_values((6, 6, 5), seed=1)
    write_series(tmp_path / "a", small, description="Head 5mm")
    write_series(tmp_path / "b", large, description="Head 1mm bone")
    chosen = read_dicom_folder(tmp_path, SeriesSelector(largest=True))
    np.testing.assert_array_equal(chosen[0].numpy(), large)
    chosen = read_dicom_folder(tmp_path, SeriesSelector(description="5mm"))
    np.testing.assert_array_equal(chosen[0].numpy(), small)


def test_reader_answers_for_dicom_folders_and_files(tmp_path: Path) -> None:
    write_series(tmp_path / "nested" / "series", ct_values((4, 4, 3)))
    (tmp_path / "notes.txt").write_text("not dicom")
    reader = DicomFolderReader()
    assert reader.can_read(tmp_path)
    assert reader.can_read(tmp_path / "x.dcm")
    assert not reader.can_read(tmp_path / "notes.txt")
    assert not reader.can_read(tmp_path / "t1.nii.gz")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not reader.can_read(empty)
    volume = read_volume(tmp_path, readers=[reader])
    assert volume.shape == (1, 4, 4, 3)


def test_each_slice_gets_its_own_rescale_across_reading_threads(tmp_path: Path) -> None:
    stored = np.random.default_rng(9).integers(-500, 1500, (9, 7, 40)).astype(np.int16)
    paths = write_series(tmp_path, stored.astype(np.float32), rescale=(1.0, 0.0))
    expected = np.empty(stored.shape, dtype=np.float64)
    for k, path in enumerate(paths):  # slope and intercept change from slice to slice
        dataset = pydicom.dcmread(path)
        slope, intercept = (1.0, -1024.0) if k % 3 == 0 else (0.5 + k / 8, k - 20.5)
        dataset.RescaleSlope, dataset.RescaleIntercept = slope, intercept
        dataset.save_as(path)
        expected[:, :, k] = dataset.pixel_array.T * slope + intercept
    volume = read_dicom_folder(tmp_path)
    assert volume.meta["medi2i.dtype"] == "float32"
    np.testing.assert_array_equal(volume[0].numpy(), expected.astype(np.float32))


def rounded_oblique_series(folder: Path, decimals: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A 20-slice oblique MR stack 7 mm apart, positions rounded as GE scanners do.

    Returns:
        The values and the exact (unrounded) voxel-to-LPS affine.
    """
    shape = (16, 12, 20)
    spacing = (0.9, 0.9, 7.0)
    truth = stack_geometry(shape, spacing=spacing, orientation=OBLIQUE, origin=(-100.37, 35.81, 42))
    values = ct_values(shape, seed=5)
    positions = np.round(truth.positions, decimals)
    write_series(
        folder, values, spacing=spacing, orientation=OBLIQUE, positions=positions, modality="MR"
    )
    return values, truth.affine_lps


def world_corners(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The eight corner voxel centres of a ``shape`` grid in world mm."""
    ends = [(0, size - 1) for size in shape[:3]]
    corners = np.array([[i, j, k, 1.0] for i in ends[0] for j in ends[1] for k in ends[2]])
    world: np.ndarray = (affine @ corners.T).T[:, :3]
    return world


def test_rounded_positions_are_put_on_the_fitted_grid(tmp_path: Path) -> None:
    values, exact = rounded_oblique_series(tmp_path)
    series = scan_folder(tmp_path).series[0]
    assert series.is_volume, series.problems
    assert series.geometry is not None
    assert 0.01 < series.geometry.position_residual_mm < 0.09
    assert series.geometry.tilt_deg == 0.0
    assert series.slice_spacing == pytest.approx(7.0, abs=0.01)
    assert any("off a regular grid" in note for note in series.notes)
    volume = read_dicom_series(series)
    np.testing.assert_array_equal(volume[0].numpy(), values)
    # the fitted grid is closer to the true one than any rounded position is
    ours = world_corners(volume.affine.numpy(), volume.shape[1:])
    truth = world_corners(lps_to_ras(exact), volume.shape[1:])
    assert np.abs(ours - truth).max() < 0.05


def test_rounded_positions_agree_with_dcm2niix(tmp_path: Path) -> None:
    """dcm2niix takes the slice spacing from the first two slices, so the far end of its
    grid drifts by the rounding of those two (0.7 mm here); the near end must agree, and
    our far end must lie at the last file's position, within the rounding."""
    rounded_oblique_series(tmp_path / "in")
    volume = read_dicom_folder(tmp_path / "in")
    theirs, their_affine = dcm2niix_volume(tmp_path / "in", tmp_path / "out")
    ours, _ = canonical(volume)
    np.testing.assert_array_equal(ours, theirs)
    their_corners = world_corners(their_affine, theirs.shape)
    near = world_corners(volume.affine.numpy(), volume.shape[1:])[::2]  # the k = 0 corners
    distance = np.linalg.norm(near[:, None] - their_corners[None], axis=2).min(axis=1)
    assert distance.max() < 0.1, distance
    series = scan_folder(tmp_path / "in").series[0]
    for k in (0, len(series.images) - 1):
        position = lps_to_ras(series.images[k].position)
        centre = volume.affine.numpy() @ np.array([0.0, 0.0, k, 1.0])
        assert np.linalg.norm(centre[:3] - position) < 0.1


def test_slice_tolerance_from_the_selector(tmp_path: Path) -> None:
    rounded_oblique_series(tmp_path)
    with pytest.raises(GeometryError, match=r"more than the 0.01 mm tolerated"):
        read_dicom_folder(tmp_path, SeriesSelector(slice_tolerance_mm=0.01))
    assert read_dicom_folder(tmp_path, SeriesSelector(slice_tolerance_mm=0.5)).shape[-1] == 20


@pytest.mark.parametrize(
    ("orientation", "slices"), [(AXIAL, 9), (OBLIQUE, 7)], ids=["axial-3x3", "oblique-3x3-partly"]
)
def test_siemens_mosaic_is_read_as_its_slices(
    tmp_path: Path, orientation: tuple[float, ...], slices: int
) -> None:
    shape = (10, 8, slices)
    values = ct_values(shape, seed=7).astype(np.int32) + 1024
    spacing = (0.8, 0.9, 3.0)
    write_mosaic(
        tmp_path / "mosaic.dcm",
        values,
        spacing=spacing,
        orientation=orientation,
        origin=(-30, 15, 60),
    )
    series = scan_folder(tmp_path).series[0]
    assert series.is_volume, series.problems
    assert (series.columns, series.rows, series.number_of_images) == (10, 8, slices)
    volume = read_dicom_series(series)
    np.testing.assert_array_equal(volume[0].numpy(), values)
    truth = stack_geometry(shape, spacing=spacing, orientation=orientation, origin=(-30, 15, 60))
    assert_geometry_close(volume, truth.affine_lps)


def test_siemens_mosaic_agrees_with_dcm2niix(tmp_path: Path) -> None:
    values = ct_values((10, 8, 7), seed=8).astype(np.int32) + 1024
    write_mosaic(
        tmp_path / "in" / "mosaic.dcm",
        values,
        spacing=(0.8, 0.9, 3.0),
        orientation=OBLIQUE,
        origin=(-30, 15, 60),
    )
    volume = read_dicom_folder(tmp_path / "in")
    theirs, their_affine = dcm2niix_volume(tmp_path / "in", tmp_path / "out")
    ours, our_affine = canonical(volume)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(our_affine, their_affine, atol=1e-3, rtol=0)


@pytest.mark.parametrize("spacing", [["-0.8", "0.8"], ["0", "0.8"]])
def test_a_pixel_spacing_that_is_no_distance_is_refused(tmp_path: Path, spacing: list[str]) -> None:
    # a negative spacing would mirror the volume against its orientation, silently
    files = write_series(tmp_path, ct_values(), spacing=(0.8, 0.8, 2.5))
    for path in files:
        dataset = pydicom.dcmread(path)
        dataset.PixelSpacing = spacing
        dataset.save_as(path)
    with pytest.raises(InputError, match=r"Pixel Spacing .* is not two positive distances"):
        read_dicom_folder(tmp_path)
