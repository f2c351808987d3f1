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
  Slice Thickness (and Spacing Between Slices for MR) is the distance between the
  slice planes (the step along the normal). Any grid the method returns (the input
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
slice, a Source Image Sequence naming the nearest source images. With a
:class:`~medi2i.dicom.source.DicomSource` the Study Instance UID, Frame of Reference
UID and the patient and study attributes are copied from the source header. Without
one (the input was NIfTI) a new study and frame of reference are created and the
patient is a placeholder: Patient's Name ``ANONYMOUS^`` (family name ANONYMOUS) and a
Patient ID ``ANONYMOUS-<8 digits>`` taken from the new Study Instance UID, so that a
PACS never merges two such studies into one patient. Laterality (type 2C) is copied
from the source when it has it (Image Laterality too); otherwise it is left out for an
unpaired Body Part Examined (HEAD, CHEST, PELVIS, ...) and written empty (unknown) only
where the IOD requires it: a paired or unstated body part, or no source. De-identification
(``deidentify=True``) applies :mod:`medi2i.dicom.deidentify` to the files written;
the source is never modified.

The whole series is written into a hidden sibling folder that is renamed to ``folder``
at the end: a failure leaves no partial series, and an existing series at ``folder``
is only replaced once the new one is complete.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from medi2i.dicom.deidentify import PLACEHOLDER_NAME, Deidentifier, run_deidentifier
from medi2i.errors import GeometryError, InputError, OptionsError
from medi2i.io.atomic import atomic_path
from medi2i.voxel_checks import require_finite_output

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor
    from pydicom.dataset import Dataset

    from medi2i.dicom.source import DicomSource

Modality = Literal["CT", "MR"]

SOP_CLASS_UIDS: dict[str, str] = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
}
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
_CT_WINDOWS = (("SOFT TISSUE", 40.0, 400.0), ("BONE", 400.0, 1800.0))
_SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
_PATIENT = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge")
_PATIENT_OPTIONAL = ("IssuerOfPatientID", "PatientSize", "PatientWeight")
_STUDY = ("StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")
_STUDY_OPTIONAL = ("StudyDescription", "BodyPartExamined")
_UNPAIRED_BODY_PARTS = frozenset(
    [
        "HEAD",
        "BRAIN",
        "SKULL",
        "NECK",
        "HEADNECK",
        "CHEST",
        "ABDOMEN",
        "PELVIS",
        "ABDOMENPELVIS",
        "CHESTABDOMEN",
        "CHESTABDPELVIS",
        "SPINE",
        "CSPINE",
        "TSPINE",
        "LSPINE",
        "SSPINE",
        "WHOLEBODY",
        "HEART",
        "LIVER",
        "PROSTATE",
        "BLADDER",
        "PANCREAS",
        "AORTA",
        "UTERUS",
        "RECTUM",
        "ESOPHAGUS",
    ]
)
"""Body Part Examined terms (PS3.16 Annex L) of unpaired parts: no Laterality needed."""
_MR_ACQUISITION = (
    "ScanningSequence",
    "SequenceVariant",
    "ScanOptions",
    "MRAcquisitionType",
    "RepetitionTime",
    "EchoTime",
    "EchoTrainLength",
    "InversionTime",
    "MagneticFieldStrength",
)


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
        deidentify: Apply the ``medi2i-basic-1`` profile (:mod:`medi2i.dicom.deidentify`).
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
    """
    if modality not in SOP_CLASS_UIDS:
        raise OptionsError(f"cannot write a DICOM series of modality {modality!r}; use CT or MR")
    folder = Path(folder)
    _refuse_foreign_folder(folder)
    values, affine = _values_and_affine(volume, folder)
    geometry = slice_geometry(affine, folder)
    stored = quantize_ct(values) if modality == "CT" else quantize_mr(values)
    series = _series_dataset(
        modality, source, method_id, method_version, series_description, values
    )
    source_slices = _source_slices(volume, affine, values.shape, source)
    scrubber = (deidentifier or run_deidentifier()) if deidentify else None
    names = [f"{index + 1:05d}.dcm" for index in range(values.shape[2])]
    with atomic_path(folder) as temporary:
        temporary.mkdir()
        for index, name in enumerate(names):
            dataset = _slice_dataset(series, geometry, stored, index, source, source_slices)
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
    lps = _RAS_TO_LPS @ affine[:3, :3]
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
        origin=_RAS_TO_LPS @ affine[:3, 3],
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
        return StoredPixels((rounded - intercept).astype(np.int16), "1", _ds(intercept))
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
    intercept = _ds(low)
    slope = _ds((high - low) / 65535) if high > low else "1"
    # float64: float32 would lose a few of the 65,536 steps near the top of the range
    stored = np.rint((values.astype(np.float64) - float(intercept)) / float(slope))
    return StoredPixels(np.clip(stored, 0, 65535).astype(np.uint16), slope, intercept)


def _ds(value: float) -> str:
    """A number as a DICOM Decimal String (16 characters at most), all its precision."""
    from pydicom.valuerep import format_number_as_ds

    return str(format_number_as_ds(float(value)))


def _decimal(value: float, places: int = 6) -> str:
    """A measured number (mm, cosines, HU) as a Decimal String: ``places`` decimals at
    most, no float noise (``7.00000031697399`` is written ``7``), never ``-0``."""
    text = f"{float(value):.{places}f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text if len(text) <= 16 else _ds(value)


def _stated(
    header: Dataset | None, keyword: str, values: Sequence[float], atol: float
) -> list[str]:
    """``values`` as Decimal Strings: the source's own strings when it states the same
    numbers (within ``atol``), so that copied values are not re-rounded."""
    element = header[keyword] if header is not None and keyword in header else None
    found = [] if element is None or element.VM == 0 else element.value
    found = [found] if element is not None and element.VM == 1 else list(found)
    try:
        same = len(found) == len(values) and np.allclose(
            [float(v) for v in found], values, rtol=0.0, atol=atol
        )
    except (TypeError, ValueError):  # a malformed source value: compute ours
        same = False
    if same:
        return [str(getattr(v, "original_string", None) or v) for v in found]
    return [_decimal(v) for v in values]


def _series_dataset(
    modality: Modality,
    source: DicomSource | None,
    method_id: str,
    method_version: str,
    description: str | None,
    values: np.ndarray,
) -> Dataset:
    """The attributes every slice shares: patient, study, series, equipment, image."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    from medi2i import __version__

    series = Dataset()
    series.SpecificCharacterSet = "ISO_IR 192"
    _patient_and_study(series, source)
    now = datetime.now()
    series.SeriesDate = series.ContentDate = now.strftime("%Y%m%d")
    series.SeriesTime = series.ContentTime = now.strftime("%H%M%S")
    series.Modality = modality
    series.SOPClassUID = SOP_CLASS_UIDS[modality]
    series.SeriesInstanceUID = generate_uid()
    series.SeriesNumber = _series_number(source)
    label = _label(modality, source)
    series.SeriesDescription = (description or f"{label} [{method_id} {method_version}]")[:64]
    series.Manufacturer = "medi2i"
    series.ManufacturerModelName = method_id[:64]
    series.SoftwareVersions = [f"medi2i {__version__}", f"{method_id} {method_version}"[:64]]
    series.ImageType = ["DERIVED", "SECONDARY", "AXIAL" if modality == "CT" else "OTHER"]
    series.DerivationDescription = _derivation(label, method_id, method_version, source)
    series.BurnedInAnnotation = "NO"
    series.LossyImageCompression = "00"
    _windows(series, modality, values)
    if modality == "CT":
        series.KVP = None
        series.AcquisitionNumber = None
        series.RescaleType = "HU"
    else:
        _mr_acquisition(series, source)
    if source is not None:
        series.RelatedSeriesSequence = [_related_series(source)]
    return series


def _patient_and_study(series: Dataset, source: DicomSource | None) -> None:
    from pydicom.uid import generate_uid

    if source is None:
        series.StudyInstanceUID = generate_uid()
        series.FrameOfReferenceUID = generate_uid()
        series.PatientName = PLACEHOLDER_NAME
        series.PatientID = f"ANONYMOUS-{series.StudyInstanceUID[-8:]}"
        series.StudyID = series.StudyInstanceUID[-8:]  # type 2, and a DICOMDIR needs it
        now = datetime.now()
        series.StudyDate, series.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        empty = ("PatientBirthDate", "PatientSex", "ReferringPhysicianName", "AccessionNumber")
        for keyword in (*empty, "PatientPosition"):
            setattr(series, keyword, None)
        # the body part is not known: Laterality is required (type 2C), and unknown
        series.PositionReferenceIndicator = series.Laterality = None
        return
    header = source.header
    series.StudyInstanceUID = source.study_instance_uid
    series.FrameOfReferenceUID = source.frame_of_reference_uid or generate_uid()
    for keyword in (*_PATIENT, *_STUDY, "PatientPosition", "PositionReferenceIndicator"):
        setattr(series, keyword, _copied_value(header, keyword))
    for keyword in (*_PATIENT_OPTIONAL, *_STUDY_OPTIONAL, "ImageLaterality"):
        if header.get(keyword) not in (None, ""):
            setattr(series, keyword, _copied_value(header, keyword))
    if "ImageLaterality" not in series:
        _laterality(series, header)


def _laterality(series: Dataset, header: Dataset) -> None:
    """Laterality as the source has it; else empty (unknown) only where the IOD asks
    for it (type 2C: a paired or unstated body part), and left out for an unpaired one."""
    if "Laterality" in header:
        series.Laterality = _copied_value(header, "Laterality")
    elif str(header.get("BodyPartExamined") or "").upper() not in _UNPAIRED_BODY_PARTS:
        series.Laterality = None


def _copied_value(header: Dataset, keyword: str) -> object:
    """A copy of a source value (``None`` when absent); names as text, re-encoded in UTF-8."""
    if keyword not in header:
        return None
    value = header[keyword].value
    if header[keyword].VR == "PN" and value is not None:
        return str(value)
    return copy.deepcopy(value)


def _series_number(source: DicomSource | None) -> int:
    number = source.header.get("SeriesNumber") if source is not None else None
    # derived series conventionally sort after their source: +1000 keeps them apart
    return int(number) + 1000 if isinstance(number, int) else 1001


def _label(modality: Modality, source: DicomSource | None) -> str:
    if modality == "CT" and (source is None or source.modality != "CT"):
        return "Synthetic CT"
    return f"Derived {modality}"


def _derivation(label: str, method_id: str, method_version: str, source: DicomSource | None) -> str:
    from medi2i import __version__

    origin = f"a {source.modality} series" if source is not None else "a non-DICOM volume"
    return (
        f"{label} computed by medi2i {__version__} with method {method_id} {method_version} "
        f"from {origin}; not an acquired image"
    )[:1024]


def _windows(series: Dataset, modality: Modality, values: np.ndarray) -> None:
    windows: tuple[tuple[str, float, float], ...] = _CT_WINDOWS
    if modality == "MR":
        # robust range of the output, so one bright voxel does not wash the image out
        low, high = np.percentile(values[::2, ::2, ::2], [0.5, 99.5])
        windows = (("ROBUST RANGE", float(low + high) / 2, max(float(high - low), 1.0)),)
    series.WindowCenter = [_decimal(center) for _, center, _ in windows]
    series.WindowWidth = [_decimal(width) for _, _, width in windows]
    series.WindowCenterWidthExplanation = [name for name, _, _ in windows]


def _mr_acquisition(series: Dataset, source: DicomSource | None) -> None:
    header = source.header if source is not None and source.modality == "MR" else None
    for keyword in _MR_ACQUISITION:
        if header is not None and keyword in header:
            setattr(series, keyword, _copied_value(header, keyword))
    # Research Mode without variant: what an MR image not acquired by a sequence says
    series.ScanningSequence = series.get("ScanningSequence") or "RM"
    series.SequenceVariant = series.get("SequenceVariant") or "NONE"
    for keyword in ("ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime"):
        if keyword not in series:
            setattr(series, keyword, None)
    if "EchoTrainLength" not in series:
        series.EchoTrainLength = None


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    from pydicom.dataset import Dataset

    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
    return code


def _related_series(source: DicomSource) -> Dataset:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.StudyInstanceUID = source.study_instance_uid
    item.SeriesInstanceUID = source.series_instance_uid
    item.PurposeOfReferenceCodeSequence = [_code(*_SOURCE_PURPOSE)]
    return item


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
    if source is None or not source.sop_instance_uids:
        return [() for _ in range(shape[2])]
    count = len(source.sop_instance_uids)
    if count == 1:  # one multi-frame source image
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


def _slice_dataset(
    series: Dataset,
    geometry: SliceGeometry,
    stored: StoredPixels,
    index: int,
    source: DicomSource | None,
    source_slices: list[tuple[int, ...]],
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
    dataset.ImagePositionPatient = [_decimal(v) for v in position]
    orientation = (*geometry.row_direction, *geometry.column_direction)
    dataset.ImageOrientationPatient = _stated(header, "ImageOrientationPatient", orientation, 1e-5)
    dataset.SliceLocation = _decimal(float(position @ geometry.normal))
    dataset.PixelSpacing = _stated(header, "PixelSpacing", geometry.pixel_spacing, 1e-4)
    (thickness,) = _stated(header, "SliceThickness", [geometry.slice_spacing], 1e-3)
    dataset.SliceThickness = thickness
    if dataset.Modality == "MR":
        (between,) = _stated(header, "SpacingBetweenSlices", [geometry.slice_spacing], 1e-3)
        dataset.SpacingBetweenSlices = between
    if source is not None and source_slices[index]:
        dataset.SourceImageSequence = [_source_image(source, i) for i in source_slices[index]]
    _pixels(dataset, stored, index)
    return dataset


def _source_image(source: DicomSource, index: int) -> Dataset:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID = source.sop_class_uid
    item.ReferencedSOPInstanceUID = source.sop_instance_uids[index]
    item.PurposeOfReferenceCodeSequence = [_code(*_SOURCE_PURPOSE)]
    return item


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
