"""Writing a method's output as a derived DICOM series (CT or MR Image Storage).

One file per slice along the volume's third array axis, Explicit VR Little Endian,
16-bit pixels with a rescale so that stored values come back as HU (CT) or as the
method's intensities (MR):

- Geometry: Image Orientation and Position (Patient) come from the affine, converted
  from medi2i's RAS+ to DICOM's LPS+; the image columns run along the first array axis
  and the rows along the second, Pixel Spacing is (second, first) axis spacing. Each
  slice's Image Position (Patient) is the first voxel's position plus its index times
  the affine's third column, so a gantry-tilted or otherwise sheared stack (the step
  from slice to slice leaning away from the slice normal, as medi2i reads a tilted CT)
  is written slice by slice where its source lay and reads back to the same affine.
  Spacing Between Slices (MR) is the distance between the slice planes (the step
  along the normal). Slice Thickness is the source's when the output keeps the
  source's slice spacing (a 5 mm slice sampled every 2.5 mm stays 5 mm), else the
  output's slice spacing (:func:`slice_thickness`). Any grid the method returns (the input
  grid, a super-resolution grid) is written as is; only a grid whose rows and columns
  are not perpendicular, or whose slices do not advance, cannot be stored in these
  IODs and is refused (:func:`slice_geometry`, which batch runs call before inference).
- Decimal strings: orientation, spacing, positions and windows are written with at
  most 6 decimals and no float noise (``7`` rather than ``7.00000031697399``); where
  Image Orientation (Patient), Pixel Spacing or Slice Thickness agree with the source
  header (within 1e-5, 1e-4 and 1e-3 mm), the source's own strings are copied.
- CT values are rounded to whole HU and stored as int16 with Rescale Slope 1 and
  Rescale Intercept 0, so they read back exactly. Only when the range does not fit
  int16 is an integer intercept (still exact) or, beyond a 65,536 HU span, a slope used.
- MR values that are whole and fit int16 or uint16 are stored as they are (slope 1).
  Otherwise the range [min, max] is mapped linearly onto uint16 0..65535: Rescale
  Intercept is the minimum and Rescale Slope the range / 65535, so values read back to
  within half a slope (1 part in 131,070 of the range). Slope and intercept are first
  rounded to the 16 characters DICOM allows and the pixels computed with the rounded
  numbers, so readers reproduce them. The MR Image IOD does not define a rescale, so
  ``dciodvfy`` warns about it (a warning, not an error); GDCM/SimpleITK, pydicom and
  medi2i apply it, and a viewer that does not still shows the right contrast.
- Windows: CT gets soft tissue (40/400 HU) and bone (400/1800 HU); MR the 0.5 to 99.5
  percentile range of its values.

The series gets new Series and SOP Instance UIDs, Image Type DERIVED\\SECONDARY, a
Derivation Description, a Related Series Sequence naming the source series and, per
slice, a Source Image Sequence naming the nearest source images; a source medi2i derived
itself passes its chain of medi2i derivations on in the Contributing Equipment Sequence
(:func:`medi2i.dicom.writing.derived_header.medi2i_derivations`), so that a DICOM node
knows a series that comes back to it through other nodes. With a
:class:`~medi2i.dicom.source.DicomSource` the Study Instance UID, Frame of Reference
UID and the patient and study attributes are copied from the source header. Without
one (the input was NIfTI) a new study and frame of reference are created and the
patient is a placeholder: Patient's Name ``ANONYMOUS^`` (family name ANONYMOUS) and a
Patient ID ``ANONYMOUS-<8 digits>`` taken from the new Study Instance UID, so that a
PACS never merges two such studies into one patient. Laterality (type 2C) is copied
from the source when it has a value (Image Laterality too); otherwise it is left out for
an unpaired Body Part Examined (HEAD, CHEST, PELVIS, ...), also when the source has it
empty, and written empty (unknown) only where the IOD requires it: a paired or unstated
body part, or no source. A CT
slice on a gantry-tilted source's grid keeps its Gantry/Detector Tilt. De-identification
(``deidentify=True``) applies :mod:`medi2i.dicom.writing.deidentify` to the files written;
the source is never modified. The attributes every slice shares are built in
:mod:`medi2i.dicom.writing.derived_header`.

The whole series is written into a hidden sibling folder that is renamed to ``folder``
at the end: a failure leaves no partial series, and an existing series at ``folder``
is only replaced once the new one is complete.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medi2i.dicom.writing.deidentify import Deidentifier, run_deidentifier
from medi2i.dicom.writing.derived_header import (
    MAX_DECIMAL_STRING,
    SOP_CLASS_UIDS,
    Modality,
    exact_decimal_string,
    measured_decimal_string,
    series_dataset,
    source_image_item,
    stated_decimal_strings,
)
from medi2i.errors import GeometryError, InputError, OptionsError
from medi2i.grid import ras_to_lps
from medi2i.io.atomic import atomic_path
from medi2i.voxel_checks import require_finite_output, require_varying_stored_output

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor
    from pydicom.dataset import Dataset

    from medi2i.dicom.source import DicomSource


@dataclass(frozen=True)
class SliceGeometry:
    """Where the slices of a volume lie, in DICOM's LPS+ patient space (mm).

    Attributes:
        row_direction: Unit vector along an image row (first array axis).
        column_direction: Unit vector down an image column (second array axis).
        pixel_spacing: (between rows, between columns), in mm.
        slice_spacing: Distance between the slice planes (the step along the normal), mm.
        origin: Position of the first voxel of slice 0.
        slice_step: Vector from one slice's first voxel to the next one's; it leans away
            from the normal for a tilted (sheared) stack.
    """

    row_direction: np.ndarray
    column_direction: np.ndarray
    pixel_spacing: tuple[float, float]
    slice_spacing: float
    origin: np.ndarray
    slice_step: np.ndarray

    def position(self, index: int) -> np.ndarray:
        """Image Position (Patient) of slice ``index``, in mm."""
        result: np.ndarray = self.origin + index * self.slice_step
        return result

    @property
    def normal(self) -> np.ndarray:
        """Unit normal of the slices (row direction x column direction)."""
        result: np.ndarray = np.cross(self.row_direction, self.column_direction)
        return result

    @property
    def tilt_deg(self) -> float:
        """Angle between the slice step and the normal, in degrees (0 when unsheared)."""
        ratio = self.slice_spacing / float(np.linalg.norm(self.slice_step))
        return float(np.degrees(np.arccos(min(1.0, ratio))))


@dataclass(frozen=True)
class StoredPixels:
    """Voxel values as stored (int16 or uint16) and the rescale that restores them.

    Attributes:
        values: ``(X, Y, Z)`` stored values.
        slope: Rescale Slope as written (a DICOM decimal string).
        intercept: Rescale Intercept as written.
    """

    values: np.ndarray
    slope: str
    intercept: str

    @property
    def signed(self) -> bool:
        """Whether the stored values are signed (Pixel Representation 1)."""
        return bool(self.values.dtype == np.int16)


def write_derived_series(
    volume: MetaTensor,
    folder: Path,
    *,
    source: DicomSource | None,
    modality: Modality,
    method_id: str,
    method_version: str,
    deidentify: bool = False,
    series_description: str | None = None,
    deidentifier: Deidentifier | None = None,
) -> list[Path]:
    """Write ``volume`` as a derived CT or MR series, one file per slice, atomically.

    Args:
        volume: ``(1, X, Y, Z)`` or ``(X, Y, Z)`` values in HU (CT) or arbitrary MR
            units, with its RAS affine in mm; slices run along the third array axis.
        folder: The series folder to create; an existing one is replaced only when it
            holds nothing but ``.dcm`` files (an earlier series).
        source: The source series (patient, study, frame of reference, references),
            or ``None`` to create a new placeholder study (see the module docstring).
        modality: ``"CT"`` (CT Image Storage) or ``"MR"`` (MR Image Storage).
        method_id: Id of the method that computed the volume.
        method_version: Its version; both go into Series Description and Software
            Versions.
        deidentify: Apply the ``medi2i-basic-1`` profile (:mod:`medi2i.dicom.writing.deidentify`).
        series_description: Series Description (64 characters at most); defaults to
            e.g. ``"Synthetic CT [pix2pix 0.1.0]"``.
        deidentifier: The run's UID mapping when de-identifying; one per process by
            default, so series written by one run stay consistent.

    Returns:
        The files written, in slice order (``folder/00001.dcm`` ...).

    Raises:
        GeometryError: Not one 3D volume, or an affine that is singular or sheared.
        InputError: ``folder`` exists and holds more than ``.dcm`` files.
        OptionsError: An unknown modality.
        OutputError: The values vary but their stored 16-bit values would not (e.g. a
            CT spanning -1e-06 to 1e-06 HU, all 0 in whole HU).
    """
    if modality not in SOP_CLASS_UIDS:
        raise OptionsError(f"cannot write a DICOM series of modality {modality!r}; use CT or MR")
    folder = Path(folder)
    _refuse_foreign_folder(folder)
    values, affine = _values_and_affine(volume, folder)
    geometry = slice_geometry(affine, folder)
    stored = quantize_ct(values) if modality == "CT" else quantize_mr(values)
    whole = "whole HU" if modality == "CT" else "whole values"
    precision = whole if stored.slope == "1" else f"steps of {stored.slope}"
    require_varying_stored_output(values, stored.values, folder, precision=precision)
    series = series_dataset(modality, source, method_id, method_version, series_description, values)
    source_slices = _source_slices(volume, affine, values.shape, source)
    thickness = slice_thickness(volume, geometry, source)
    scrubber = (deidentifier or run_deidentifier()) if deidentify else None
    names = [f"{index + 1:05d}.dcm" for index in range(values.shape[2])]
    with atomic_path(folder) as temporary:
        temporary.mkdir()
        for index, name in enumerate(names):
            dataset = _slice_dataset(
                series, geometry, stored, index, source, source_slices, thickness
            )
            if scrubber is not None:
                scrubber.apply(dataset)
            _save(dataset, temporary / name)
    return [folder / name for name in names]


def _refuse_foreign_folder(folder: Path) -> None:
    # the new series replaces the folder: never let that delete anything but a series
    if not folder.exists():
        return
    foreign = (
        []
        if not folder.is_dir()
        else [
            path.name for path in folder.iterdir() if not (path.is_file() and path.suffix == ".dcm")
        ]
    )
    if not folder.is_dir() or foreign:
        what = "is a file" if not folder.is_dir() else f"holds other things ({foreign[0]}, ...)"
        raise InputError(
            f"cannot write the DICOM series {folder}: it exists and {what}, and a series "
            "replaces its folder; give a new folder name, or remove it first"
        )


def _values_and_affine(volume: MetaTensor, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    values = volume.as_tensor().detach().cpu().numpy()
    if values.ndim == 4 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 3:
        raise GeometryError(
            f"cannot write the DICOM series {folder}: the volume has shape {tuple(values.shape)}; "
            "a series holds one channel, (1, X, Y, Z) or (X, Y, Z); write each channel separately"
        )
    affine = np.asarray(volume.affine.detach().cpu().numpy(), dtype=np.float64)
    require_finite_output(values, folder)  # NaN must not become 0 HU water
    return values, affine


def slice_geometry(affine: np.ndarray, folder: Path) -> SliceGeometry:
    """The DICOM slice geometry of a RAS affine, slices along the third array axis.

    The third axis may lean away from the slice normal (a gantry-tilted stack): each
    slice is then written at its own position. Call it before a long computation to
    learn early whether its output grid can be written.

    Raises:
        GeometryError: The affine is singular or not finite, its first two axes (image
            rows and columns) are not perpendicular, or its slices do not advance
            along the normal (DICOM CT and MR images cannot store those grids).
    """
    lps_affine = ras_to_lps(affine)
    lps = lps_affine[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    if not np.all(np.isfinite(lps)) or np.min(spacing) < 1e-6:
        raise GeometryError(
            f"cannot write the DICOM series {folder}: the affine is singular or not finite "
            f"(voxel spacing {spacing} mm); give the volume a valid affine"
        )
    axes = lps / spacing
    cosine = float(axes[:, 0] @ axes[:, 1])
    if abs(cosine) > 1e-4:
        raise GeometryError(
            f"cannot write the DICOM series {folder}: the image rows and columns (first two "
            f"voxel axes) are not perpendicular (sheared in-plane grid, cosine {cosine:.5f}); "
            "DICOM images cannot store that; resample the volume to an orthogonal grid first"
        )
    across = float(lps[:, 2] @ np.cross(axes[:, 0], axes[:, 1]))
    if abs(across) < 1e-3 * float(spacing[2]):
        raise GeometryError(
            f"cannot write the DICOM series {folder}: the slices do not advance (the third "
            "voxel axis lies in the slice plane); give the volume a valid affine"
        )
    return SliceGeometry(
        row_direction=axes[:, 0],
        column_direction=axes[:, 1],
        pixel_spacing=(float(spacing[1]), float(spacing[0])),
        slice_spacing=abs(across),
        origin=lps_affine[:3, 3],
        slice_step=lps[:, 2],
    )


def quantize_ct(values: np.ndarray) -> StoredPixels:
    """Whole HU as int16 with slope 1 (intercept 0 when the range fits int16)."""
    rounded = np.rint(values)
    low, high = float(rounded.min()), float(rounded.max())
    if low >= -32768 and high <= 32767:
        return StoredPixels(rounded.astype(np.int16), "1", "0")
    if high - low <= 65535:
        intercept = low + 32768
        return StoredPixels(
            (rounded - intercept).astype(np.int16), "1", exact_decimal_string(intercept)
        )
    return _linear_uint16(values, low, high)


def quantize_mr(values: np.ndarray) -> StoredPixels:
    """Whole values as they are when they fit 16 bits, else linearly onto uint16."""
    low, high = float(values.min()), float(values.max())
    if np.array_equal(values, np.rint(values)):
        if low >= -32768 and high <= 32767:
            return StoredPixels(values.astype(np.int16), "1", "0")
        if low >= 0 and high <= 65535:
            return StoredPixels(values.astype(np.uint16), "1", "0")
    return _linear_uint16(values, low, high)


def _linear_uint16(values: np.ndarray, low: float, high: float) -> StoredPixels:
    intercept = exact_decimal_string(low)
    slope = exact_decimal_string((high - low) / 65535) if high > low else "1"
    # float64: float32 would lose a few of the 65,536 steps near the top of the range
    stored = np.rint((values.astype(np.float64) - float(intercept)) / float(slope))
    return StoredPixels(np.clip(stored, 0, 65535).astype(np.uint16), slope, intercept)


def _source_slices(
    volume: MetaTensor,
    affine: np.ndarray,
    shape: tuple[int, ...],
    source: DicomSource | None,
) -> list[tuple[int, ...]]:
    """For each output slice, the indices of the source images it was computed from.

    The nearest source slice (two when the output slice lies between them), found
    through the source grid (``meta["original_affine"]``); without it, by proportion.
    """
    if source is None or not source.slice_count:
        return [() for _ in range(shape[2])]
    count = source.slice_count
    if count == 1:
        return [(0,) for _ in range(shape[2])]
    source_affine = volume.meta.get("original_affine")
    to_source = None if source_affine is None else np.linalg.inv(np.asarray(source_affine))
    centre = [(shape[0] - 1) / 2, (shape[1] - 1) / 2]
    found: list[tuple[int, ...]] = []
    for index in range(shape[2]):
        if to_source is not None:
            position = float((to_source @ affine @ np.array([*centre, index, 1.0]))[2])
        else:
            position = index * (count - 1) / max(shape[2] - 1, 1)
        nearest = {int(np.floor(position + 0.01)), int(np.ceil(position - 0.01))}
        found.append(tuple(sorted({min(max(i, 0), count - 1) for i in nearest})))
    return found


def slice_thickness(volume: MetaTensor, geometry: SliceGeometry, source: DicomSource | None) -> str:
    """Slice Thickness of the derived slices, a Decimal String in mm.

    The nominal thickness says how thick a slab each image stands for, which the
    acquisition or reconstruction decided, not the spacing of the grid: a series of
    5 mm slices every 2.5 mm overlaps. So an output on the source's slice spacing
    (``meta["original_affine"]``, within 1e-3 mm; a translation on the input grid)
    keeps the source's Slice Thickness, its own string. An output whose slices are
    spaced otherwise (super-resolution, resampling) was computed for that grid: nothing
    measured a thickness for it, and its slices are meant to tile the volume, so its
    thickness is its slice spacing, as for a reformatted series. The slice spacing is
    also the value without a source, a source grid or a valid source thickness.
    """
    header = source.header if source is not None else None
    source_affine = volume.meta.get("original_affine")
    if header is not None and source_affine is not None:
        columns = np.asarray(source_affine, dtype=np.float64)[:3, :3]
        area = float(np.linalg.norm(np.cross(columns[:, 0], columns[:, 1])))
        spacing = abs(float(np.linalg.det(columns))) / area if area > 0 else 0.0
        stated = header.get("SliceThickness")
        if stated is not None and abs(spacing - geometry.slice_spacing) <= 1e-3:
            try:
                value = float(stated)
            except (TypeError, ValueError):  # a malformed source value: compute ours
                value = 0.0
            text = str(getattr(stated, "original_string", None) or stated).strip()
            if value > 0 and len(text) <= MAX_DECIMAL_STRING:
                return text
    (spacing_text,) = stated_decimal_strings(
        header, "SliceThickness", [geometry.slice_spacing], 1e-3
    )
    return spacing_text


def _slice_dataset(
    series: Dataset,
    geometry: SliceGeometry,
    stored: StoredPixels,
    index: int,
    source: DicomSource | None,
    source_slices: list[tuple[int, ...]],
    thickness: str,
) -> Dataset:
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    dataset = Dataset()
    for element in series:
        # de-identification rewrites values in place: each slice needs its own elements,
        # and its own sequence items; values themselves are replaced, never mutated
        dataset.add(copy.deepcopy(element) if element.VR == "SQ" else copy.copy(element))
    dataset.SOPInstanceUID = generate_uid()
    dataset.InstanceNumber = index + 1
    header = source.header if source is not None else None
    position = geometry.position(index)
    dataset.ImagePositionPatient = [measured_decimal_string(v) for v in position]
    orientation = (*geometry.row_direction, *geometry.column_direction)
    dataset.ImageOrientationPatient = stated_decimal_strings(
        header, "ImageOrientationPatient", orientation, 1e-5
    )
    dataset.SliceLocation = measured_decimal_string(float(position @ geometry.normal))
    dataset.PixelSpacing = stated_decimal_strings(
        header, "PixelSpacing", geometry.pixel_spacing, 1e-4
    )
    dataset.SliceThickness = thickness
    tilt = _gantry_tilt(header, geometry) if dataset.Modality == "CT" else None
    if tilt is not None:
        dataset.GantryDetectorTilt = tilt
    if dataset.Modality == "MR":
        (between,) = stated_decimal_strings(
            header, "SpacingBetweenSlices", [geometry.slice_spacing], 1e-3
        )
        dataset.SpacingBetweenSlices = between
    if source is not None and source_slices[index]:
        dataset.SourceImageSequence = [source_image_item(source, i) for i in source_slices[index]]
    _pixels(dataset, stored, index)
    return dataset


def _gantry_tilt(header: Dataset | None, geometry: SliceGeometry) -> object:
    """The source's Gantry/Detector Tilt, for CT slices on a grid sheared by that tilt
    (the source's grid); ``None`` for a grid tilted otherwise or a source without it."""
    stated = header.get("GantryDetectorTilt") if header is not None else None
    try:
        degrees = abs(float(stated)) if stated not in (None, "") else None
    except (TypeError, ValueError):  # a malformed source value: leave it out
        return None
    if degrees is None or abs(degrees - geometry.tilt_deg) > 0.05:
        return None
    return stated


def _pixels(dataset: Dataset, stored: StoredPixels, index: int) -> None:
    # DICOM pixels are row-major (rows, columns): rows along the second array axis
    plane = np.ascontiguousarray(stored.values[:, :, index].T)
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.Rows, dataset.Columns = plane.shape
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 1 if stored.signed else 0
    dataset.RescaleIntercept = stored.intercept
    dataset.RescaleSlope = stored.slope
    dataset.add_new(0x7FE00010, "OW", plane.astype(plane.dtype.newbyteorder("<")).tobytes())


def _save(dataset: Dataset, path: Path) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta = meta
    dataset.save_as(path, enforce_file_format=True)
