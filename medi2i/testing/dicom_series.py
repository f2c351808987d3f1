"""Synthetic DICOM series with known geometry and voxel values, for tests and benchmarks.

The series look like a scanner export in the ways that matter to a reader: one file per
slice (or one enhanced multi-frame file), positions and orientation in patient (LPS)
coordinates, rescale slope and intercept, file names and Instance Numbers that need not
follow the slice order, an optional gantry tilt and compressed transfer syntaxes.

Array convention (the one of medi2i's DICOM reader and of ITK): ``volume[i, j, k]`` is
the pixel in column ``i`` and row ``j`` of slice ``k``; ``i`` runs along the row
direction (the first three cosines of Image Orientation (Patient)), ``j`` along the
column direction (the last three), ``k`` from slice to slice.

Example:
    >>> import numpy as np
    >>> paths = write_series(tmp, np.zeros((8, 6, 4)), spacing=(0.5, 0.5, 2.0))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medi2i.dicom.reading.pixel_format import DEFLATED

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

Triple = tuple[float, float, float]
Orientation = tuple[float, float, float, float, float, float]

AXIAL: Orientation = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
"""Image Orientation (Patient) of an axial stack (rows left to right, columns to posterior)."""
CORONAL: Orientation = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL: Orientation = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
_SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
}
_ENHANCED_SOP_CLASSES = {"CT": "1.2.840.10008.5.1.4.1.1.2.1", "MR": "1.2.840.10008.5.1.4.1.1.4.1"}
_NATIVE = (EXPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2", DEFLATED)


@dataclass(frozen=True)
class GeneratedGeometry:
    """Where the slices of a generated series lie, in patient (LPS) mm.

    Attributes:
        positions: Image Position (Patient) of each slice, ``(Z, 3)``, in slice order.
        affine_lps: The voxel-to-LPS 4x4 matrix; with a gantry tilt its third column is
            the table step, not the slice normal.
    """

    positions: np.ndarray
    affine_lps: np.ndarray


def stack_geometry(
    shape: tuple[int, int, int],
    *,
    spacing: Triple,
    orientation: Sequence[float],
    origin: Triple,
    tilt_deg: float = 0.0,
) -> GeneratedGeometry:
    """The slice positions and the affine :func:`write_series` gives a volume.

    Args:
        shape: ``(X, Y, Z)``: columns, rows and slices.
        spacing: Column spacing (along the rows), row spacing and slice step, in mm.
            With a tilt the slice step is the table increment, and the distance between
            slice planes is ``spacing[2] * cos(tilt)``.
        orientation: Image Orientation (Patient): row then column direction cosines.
        origin: Image Position (Patient) of the first slice, in mm.
        tilt_deg: Gantry tilt in degrees: the slice step leans towards the column
            direction by this angle, as in a CT scan with a tilted gantry.
    """
    row, column = _unit(orientation[:3]), _unit(orientation[3:6])
    normal = np.cross(row, column)
    tilt = np.deg2rad(tilt_deg)
    step = spacing[2] * (np.cos(tilt) * normal + np.sin(tilt) * column)
    positions = np.asarray(origin, dtype=np.float64) + np.arange(shape[2])[:, None] * step
    positions = np.array([[float(_ds(value)) for value in p] for p in positions])
    affine = np.eye(4)
    affine[:3, 0] = row * spacing[0]
    affine[:3, 1] = column * spacing[1]
    affine[:3, 2] = (positions[-1] - positions[0]) / max(shape[2] - 1, 1)
    if shape[2] == 1:
        affine[:3, 2] = step
    affine[:3, 3] = positions[0]
    return GeneratedGeometry(positions=positions, affine_lps=affine)


def write_series(
    folder: str | Path,
    volume: np.ndarray,
    *,
    spacing: Triple = (1.0, 1.0, 1.0),
    orientation: Sequence[float] = AXIAL,
    origin: Triple = (0.0, 0.0, 0.0),
    modality: str = "CT",
    rescale: tuple[float, float] = (1.0, -1024.0),
    tilt_deg: float = 0.0,
    transfer_syntax: str = EXPLICIT_VR_LITTLE_ENDIAN,
    pixel_dtype: str = "int16",
    description: str = "generated series",
    series_number: int = 1,
    study_uid: str | None = None,
    series_uid: str | None = None,
    instance_numbers: Sequence[int] | None = None,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    positions: np.ndarray | None = None,
    attributes: Mapping[str, object] | None = None,
) -> list[Path]:
    """Write ``volume`` as a single-frame DICOM series, one file per slice.

    Args:
        folder: Where to write; created if missing. Files are named ``IM<uid suffix>.dcm``
            so that name order is not slice order.
        volume: ``(X, Y, Z)`` voxel values after rescale (HU for CT); stored rounded as
            ``(value - intercept) / slope`` in ``pixel_dtype``.
        spacing: Column spacing, row spacing and slice step in mm (see
            :func:`stack_geometry`).
        orientation: Image Orientation (Patient), six direction cosines (LPS).
        origin: Image Position (Patient) of slice 0, in mm.
        modality: ``"CT"``, ``"MR"`` or ``"PT"``.
        rescale: Rescale Slope and Rescale Intercept.
        tilt_deg: Gantry tilt in degrees (also written to Gantry/Detector Tilt).
        transfer_syntax: Transfer Syntax UID; compressed ones need a pydicom encoder
            (RLE Lossless always, JPEG 2000 with pylibjpeg-openjpeg, JPEG-LS with pyjpegls).
        pixel_dtype: Stored type, ``"int16"``, ``"uint16"`` or ``"uint8"``.
        description: Series Description.
        series_number: Series Number.
        study_uid: Study Instance UID; a new one when ``None``.
        series_uid: Series Instance UID; a new one when ``None``.
        instance_numbers: Instance Number of each slice; ``k + 1`` when ``None``.
        image_type: Image Type values.
        positions: ``(Z, 3)`` Image Position (Patient) per slice, overriding the regular
            positions (to make gaps, duplicates or uneven spacing).
        attributes: More elements for every slice, by keyword (``{"EchoTime": 30}``);
            write a series of several volumes by calling this once per volume with the
            same ``series_uid``.

    Returns:
        The written files, in slice order.
    """
    from pydicom.uid import generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    geometry = stack_geometry(
        volume.shape, spacing=spacing, orientation=orientation, origin=origin, tilt_deg=tilt_deg
    )
    where = geometry.positions if positions is None else np.asarray(positions, dtype=np.float64)
    stored = _stored_values(volume, rescale, pixel_dtype)
    series = _series_dataset(
        modality=modality,
        sop_class=_SOP_CLASSES[modality],
        study_uid=study_uid or generate_uid(),
        series_uid=series_uid or generate_uid(),
        description=description,
        series_number=series_number,
    )
    numbers = list(instance_numbers) if instance_numbers is not None else None
    paths = []
    for k in range(volume.shape[2]):
        dataset = _copy(series)
        dataset.SOPInstanceUID = generate_uid()
        dataset.InstanceNumber = numbers[k] if numbers is not None else k + 1
        dataset.ImageType = list(image_type)
        dataset.ImagePositionPatient = [_ds(v) for v in where[k]]
        dataset.ImageOrientationPatient = [_ds(v) for v in orientation]
        dataset.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
        dataset.SliceThickness = _ds(spacing[2] * np.cos(np.deg2rad(tilt_deg)))
        if modality == "CT":
            dataset.GantryDetectorTilt = _ds(tilt_deg)
        _set_rescale(dataset, rescale, modality)
        for keyword, value in (attributes or {}).items():
            setattr(dataset, keyword, value)
        _set_pixels(dataset, stored[:, :, k].T, transfer_syntax)
        path = folder / f"IM{dataset.SOPInstanceUID.rsplit('.', 1)[-1][-10:]}.dcm"
        _save(dataset, path, transfer_syntax)
        paths.append(path)
    return paths


def write_enhanced(
    path: str | Path,
    volume: np.ndarray,
    *,
    spacing: Triple = (1.0, 1.0, 1.0),
    orientation: Sequence[float] = AXIAL,
    origin: Triple = (0.0, 0.0, 0.0),
    modality: str = "MR",
    rescale: tuple[float, float] = (1.0, 0.0),
    transfer_syntax: str = EXPLICIT_VR_LITTLE_ENDIAN,
    pixel_dtype: str = "uint16",
    frame_order: Sequence[int] | None = None,
    description: str = "generated enhanced",
) -> Path:
    """Write ``volume`` as one Enhanced CT or MR multi-frame file.

    Geometry, pixel spacing and rescale go into the Shared Functional Groups, each
    frame's Image Position (Patient) into its Per-frame Functional Group.

    Args:
        path: The file to write.
        volume: ``(X, Y, Z)`` voxel values after rescale.
        spacing: Column spacing, row spacing and slice spacing in mm.
        orientation: Image Orientation (Patient), six direction cosines (LPS).
        origin: Image Position (Patient) of slice 0, in mm.
        modality: ``"CT"`` or ``"MR"``.
        rescale: Rescale Slope and Rescale Intercept.
        transfer_syntax: Transfer Syntax UID (see :func:`write_series`).
        pixel_dtype: Stored type.
        frame_order: Which slice each frame holds (a permutation of ``range(Z)``);
            slice order when ``None``.
        description: Series Description.

    Returns:
        ``path``.
    """
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    geometry = stack_geometry(volume.shape, spacing=spacing, orientation=orientation, origin=origin)
    order = list(frame_order) if frame_order is not None else list(range(volume.shape[2]))
    dataset = _series_dataset(
        modality=modality,
        sop_class=_ENHANCED_SOP_CLASSES[modality],
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        description=description,
        series_number=1,
    )
    dataset.SOPInstanceUID = generate_uid()
    dataset.InstanceNumber = 1
    dataset.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    dataset.NumberOfFrames = len(order)
    shared = Dataset()
    shared.PixelMeasuresSequence = [_item(PixelSpacing=[_ds(spacing[1]), _ds(spacing[0])])]
    shared.PixelMeasuresSequence[0].SliceThickness = _ds(spacing[2])
    shared.PlaneOrientationSequence = [_item(ImageOrientationPatient=[_ds(v) for v in orientation])]
    slope, intercept = rescale
    shared.PixelValueTransformationSequence = [
        _item(RescaleSlope=_ds(slope), RescaleIntercept=_ds(intercept), RescaleType="US")
    ]
    dataset.SharedFunctionalGroupsSequence = [shared]
    dataset.PerFrameFunctionalGroupsSequence = [
        _frame_group(geometry.positions[k], number) for number, k in enumerate(order, start=1)
    ]
    stored = _stored_values(volume, rescale, pixel_dtype)
    frames = np.stack([stored[:, :, k].T for k in order])
    _set_pixels(dataset, frames, transfer_syntax)
    _save(dataset, path, transfer_syntax)
    return path


def write_mosaic(
    path: str | Path,
    volume: np.ndarray,
    *,
    spacing: Triple = (1.0, 1.0, 1.0),
    orientation: Sequence[float] = AXIAL,
    origin: Triple = (0.0, 0.0, 0.0),
    description: str = "generated mosaic",
) -> Path:
    """Write ``volume`` as one Siemens mosaic: an MR image whose tiles are its slices.

    The slices are tiled row by row in a square grid of ``ceil(sqrt(Z))`` tiles per
    side (unused tiles are zero); Number of Images in Mosaic goes into the Siemens
    private element (0019,100A) and Image Type ends with ``MOSAIC``. As a scanner
    does, Image Position (Patient) is given for the first pixel of the whole tiled
    image, not of the first slice.

    Args:
        path: The file to write.
        volume: ``(X, Y, Z)`` values, stored as uint16.
        spacing: Column spacing, row spacing and slice spacing in mm.
        orientation: Image Orientation (Patient), six direction cosines (LPS).
        origin: Image Position (Patient) of slice 0's first pixel, in mm.
        description: Series Description.

    Returns:
        ``path``.
    """
    from pydicom.uid import generate_uid

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns, rows, count = volume.shape
    tiles = int(np.ceil(np.sqrt(count)))
    mosaic = np.zeros((rows * tiles, columns * tiles), dtype=np.uint16)
    stored = _stored_values(volume, (1.0, 0.0), "uint16")
    for k in range(count):
        row, column = divmod(k, tiles)
        mosaic[row * rows : (row + 1) * rows, column * columns : (column + 1) * columns] = stored[
            :, :, k
        ].T
    row_direction, column_direction = _unit(orientation[:3]), _unit(orientation[3:6])
    corner = (
        np.asarray(origin, dtype=np.float64)
        - row_direction * spacing[0] * (columns * tiles - columns) / 2
        - column_direction * spacing[1] * (rows * tiles - rows) / 2
    )
    dataset = _series_dataset(
        modality="MR",
        sop_class=_SOP_CLASSES["MR"],
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        description=description,
        series_number=1,
    )
    dataset.Manufacturer = "SIEMENS"
    dataset.SOPInstanceUID = generate_uid()
    dataset.InstanceNumber = 1
    dataset.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    dataset.ImagePositionPatient = [_ds(v) for v in corner]
    dataset.ImageOrientationPatient = [_ds(v) for v in orientation]
    dataset.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
    dataset.SliceThickness = _ds(spacing[2])
    dataset.SpacingBetweenSlices = _ds(spacing[2])
    block = dataset.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0A, "US", count)
    _set_rescale(dataset, (1.0, 0.0), "MR")
    _set_pixels(dataset, mosaic, EXPLICIT_VR_LITTLE_ENDIAN)
    _save(dataset, path, EXPLICIT_VR_LITTLE_ENDIAN)
    return path


def _frame_group(position: np.ndarray, number: int) -> Dataset:
    from pydicom.dataset import Dataset

    group = Dataset()
    group.PlanePositionSequence = [_item(ImagePositionPatient=[_ds(v) for v in position])]
    content = _item(StackID="1", InStackPositionNumber=number)
    group.FrameContentSequence = [content]
    return group


def _item(**elements: object) -> Dataset:
    from pydicom.dataset import Dataset

    item = Dataset()
    for keyword, value in elements.items():
        setattr(item, keyword, value)
    return item


def _series_dataset(
    *,
    modality: str,
    sop_class: str,
    study_uid: str,
    series_uid: str,
    description: str,
    series_number: int,
) -> Dataset:
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    dataset = Dataset()
    dataset.SOPClassUID = sop_class
    dataset.StudyInstanceUID = study_uid
    dataset.SeriesInstanceUID = series_uid
    # one frame of reference per study, derived from its UID, like a scanner session
    dataset.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid, "frame of reference"])
    dataset.Modality = modality
    dataset.SeriesDescription = description
    dataset.SeriesNumber = series_number
    dataset.PatientName = "Phantom^Generated"
    dataset.PatientID = "MEDI2I-PHANTOM"
    dataset.StudyDate = "20240101"
    dataset.StudyTime = "120000"
    dataset.StudyID = "1"
    dataset.AccessionNumber = ""
    dataset.ReferringPhysicianName = ""
    dataset.PatientBirthDate = ""
    dataset.PatientSex = "O"
    dataset.Manufacturer = "medi2i test generator"
    dataset.PositionReferenceIndicator = ""
    return dataset


def _copy(dataset: Dataset) -> Dataset:
    from pydicom.dataset import Dataset

    copy = Dataset()
    for element in dataset:
        copy.add(element)
    return copy


def _set_rescale(dataset: Dataset, rescale: tuple[float, float], modality: str) -> None:
    slope, intercept = rescale
    if modality == "MR" and rescale == (1.0, 0.0):
        return  # MR images usually carry no rescale at all
    dataset.RescaleSlope = _ds(slope)
    dataset.RescaleIntercept = _ds(intercept)
    dataset.RescaleType = "HU" if modality == "CT" else "US"


def _stored_values(volume: np.ndarray, rescale: tuple[float, float], dtype: str) -> np.ndarray:
    slope, intercept = rescale
    stored = np.rint((np.asarray(volume, dtype=np.float64) - intercept) / slope)
    limits = np.iinfo(np.dtype(dtype))
    if stored.min() < limits.min or stored.max() > limits.max:
        raise ValueError(
            f"values {volume.min()}..{volume.max()} do not fit {dtype} with rescale {rescale}"
        )
    return stored.astype(dtype)


def _set_pixels(dataset: Dataset, pixels: np.ndarray, transfer_syntax: str) -> None:
    """Pixel Module attributes and Pixel Data; ``pixels`` is ``(rows, cols)`` or frames."""
    dtype = pixels.dtype
    dataset.Rows, dataset.Columns = pixels.shape[-2:]
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = dtype.itemsize * 8
    dataset.HighBit = dtype.itemsize * 8 - 1
    dataset.PixelRepresentation = 1 if dtype.kind == "i" else 0
    data = np.ascontiguousarray(pixels, dtype=dtype.newbyteorder("<"))
    dataset.PixelData = data.tobytes()
    dataset["PixelData"].VR = "OW" if dtype.itemsize > 1 else "OB"
    if transfer_syntax not in _NATIVE:
        dataset.compress(transfer_syntax, data, generate_instance_uid=False)


def _save(dataset: Dataset, path: Path, transfer_syntax: str) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    dataset.file_meta = meta
    dataset.save_as(path, enforce_file_format=True)


def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters; geometry is read back from these."""
    from pydicom.valuerep import format_number_as_ds

    text = format_number_as_ds(float(value))
    return "0" if float(text) == 0.0 else text


def _unit(vector: Sequence[float]) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float64)
    return array / np.linalg.norm(array)
