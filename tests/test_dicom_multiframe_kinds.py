"""Multi-frame files that are not enhanced volumes: scouts and RT Dose grids."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from medi2i.dicom.reading.mosaic import mosaic_layout
from medi2i.dicom.reading.series_scan import scan_folder
from medi2i.dicom.reading.series_volume import read_dicom_folder
from medi2i.errors import InputError
from medi2i.grid import lps_to_ras
from medi2i.testing.dicom_series import write_enhanced


def scout(path: Path) -> Path:
    """An enhanced MR file of three frames, each in its own slightly tilted coronal plane."""
    write_enhanced(path, np.zeros((8, 8, 3), np.uint16), description="scout")
    dataset = pydicom.dcmread(path)
    del dataset.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence
    for frame, degrees in zip(dataset.PerFrameFunctionalGroupsSequence, (5, 15, 25), strict=True):
        angle = np.radians(degrees)
        item = Dataset()
        item.ImageOrientationPatient = [1, 0, 0, 0, float(np.sin(angle)), float(-np.cos(angle))]
        frame.PlaneOrientationSequence = [item]
    dataset.save_as(path)
    return path


def test_a_scout_of_frames_in_several_planes_is_called_a_localizer(tmp_path: Path) -> None:
    series = scan_folder(scout(tmp_path / "scout.dcm")).series[0]
    assert not series.is_volume
    text = str(series.problems[0])
    assert text.startswith("localizer: 3 frames in 3 orientations"), text
    assert "coronal tilted 5 deg, coronal tilted 15 deg, coronal tilted 25 deg" in text
    with pytest.raises(InputError, match="localizer: 3 frames in 3 orientations"):
        read_dicom_folder(tmp_path)


@pytest.mark.parametrize("name", ["rtdose.dcm", "rtdose_expb.dcm", "rtdose_rle.dcm"])
def test_rt_dose_frames_are_placed_by_the_grid_frame_offsets(tmp_path: Path, name: str) -> None:
    source = Path(get_testdata_file(name))  # 15 axial frames 5 mm apart, Dose Grid Scaling
    shutil.copy(source, tmp_path / name)
    volume = read_dicom_folder(tmp_path)
    dataset = pydicom.dcmread(source)
    gray = dataset.pixel_array.astype(np.float64) * float(dataset.DoseGridScaling)
    np.testing.assert_allclose(volume[0].numpy().transpose(2, 1, 0), gray, rtol=1e-6)
    first = np.array([float(v) for v in dataset.ImagePositionPatient])
    expected = np.eye(4)
    expected[:3, :3] = np.diag([10.0, 10.0, 5.0])
    expected[:3, 3] = first
    np.testing.assert_allclose(volume.affine.numpy(), lps_to_ras(expected), atol=1e-6)


def test_absolute_grid_frame_offsets_start_at_the_first_frame(tmp_path: Path) -> None:
    dataset = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
    z = float(dataset.ImagePositionPatient[2])
    dataset.GridFrameOffsetVector = [z + 5.0 * k for k in range(15)]  # the absolute form
    dataset.save_as(tmp_path / "dose.dcm")
    series = scan_folder(tmp_path).series[0]
    assert series.is_volume, series.problems
    assert series.slice_spacing == pytest.approx(5.0)
    assert series.images[0].position == pytest.approx(tuple(dataset.ImagePositionPatient))


NIBABEL_DICOM = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"


@pytest.mark.parametrize(
    ("name", "slices"),
    [("csa_slice_norm.dcm", 32), ("0.dcm", 48)],
    ids=["count-from-csa-header", "count-from-0019-100a"],
)
def test_siemens_mosaic_headers_agree_with_nibabel(name: str, slices: int) -> None:
    """Real Siemens headers: the first slice's corrected position and the slice normal
    as nibabel's mosaic wrapper works them out (the CSA header's slice normal)."""
    path = NIBABEL_DICOM / name
    if not path.exists():
        pytest.skip("nibabel's DICOM test files are not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel.nicom warns that it is experimental
        from nibabel.nicom import dicomwrappers

        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        wrapper = dicomwrappers.wrapper_from_data(dataset)
        expected_position = np.asarray(wrapper.image_position)
        expected_normal = np.asarray(wrapper.slice_normal)
    layout = mosaic_layout(dataset)
    assert layout is not None
    assert layout.count == slices
    np.testing.assert_allclose(layout.positions[0], expected_position, atol=1e-6)
    step = np.subtract(layout.positions[1], layout.positions[0])
    np.testing.assert_allclose(step / np.linalg.norm(step), expected_normal, atol=1e-4)
