"""The header of a derived DICOM series: what its slices share, and how numbers are written.

:func:`series_dataset` builds the attributes every slice of a derived series carries:
the patient and study modules (copied from the source header, or a placeholder patient
and a new study without one), the series, equipment and image attributes, the display
windows, the MR acquisition attributes, the reference to the source series and, for a
source medi2i derived itself, the chain of its derivations (:func:`medi2i_derivations`).
Laterality (type 2C) is copied from the source when it has a value; otherwise it is left
out for an unpaired Body Part Examined and written empty (unknown) only where the IOD
requires it (a paired or unstated body part). The numbers a slice states (positions,
cosines, spacings) are written as Decimal Strings without float noise, or as the
source's own strings when they state the same values.
:mod:`medi2i.dicom.writing.derived_series` adds each slice's geometry and pixels and
writes the files.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import numpy as np

from medi2i.dicom.writing.deidentify import PLACEHOLDER_NAME

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from medi2i.dicom.source import DicomSource

Modality = Literal["CT", "MR"]

SOP_CLASS_UIDS: dict[str, str] = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
}
_CT_WINDOWS = (("SOFT TISSUE", 40.0, 400.0), ("BONE", 400.0, 1800.0))
_SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
_PROCESSING_PURPOSE = ("109102", "DCM", "Processing Equipment")
MANUFACTURER = "medi2i"
"""The Manufacturer of every series medi2i derives (its method id is the Manufacturer's
Model Name)."""
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


def exact_decimal_string(value: float) -> str:
    """A number as a DICOM Decimal String (16 characters at most), all its precision."""
    from pydicom.valuerep import format_number_as_ds

    return str(format_number_as_ds(float(value)))


def measured_decimal_string(value: float, places: int = 6) -> str:
    """A measured number (mm, cosines, HU) as a Decimal String: ``places`` decimals at
    most, no float noise (``7.00000031697399`` is written ``7``), never ``-0``."""
    text = f"{float(value):.{places}f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text if len(text) <= 16 else exact_decimal_string(value)


MAX_DECIMAL_STRING = 16
"""The longest Decimal String (VR DS) value DICOM allows, in characters."""


def stated_decimal_strings(
    header: Dataset | None, keyword: str, values: Sequence[float], atol: float
) -> list[str]:
    """``values`` as Decimal Strings: the source's own strings when it states the same
    numbers (within ``atol``) in valid Decimal Strings, so that copied values are not
    re-rounded; a source string longer than the 16 characters DICOM allows (written by
    a non-conformant exporter) is not copied into the output."""
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
        stated = [str(getattr(v, "original_string", None) or v).strip() for v in found]
        if all(len(text) <= MAX_DECIMAL_STRING for text in stated):
            return stated
    return [measured_decimal_string(v) for v in values]


def series_dataset(
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
    series.Manufacturer = MANUFACTURER
    series.ManufacturerModelName = method_id[:64]
    series.SoftwareVersions = [f"medi2i {__version__}", f"{method_id} {method_version}"[:64]]
    series.ImageType = ["DERIVED", "SECONDARY", "AXIAL" if modality == "CT" else "OTHER"]
    series.DerivationDescription = _derivation(label, method_id, method_version, source)
    series.BurnedInAnnotation = "NO"
    _lossy_compression(series, source)
    _windows(series, modality, values)
    if modality == "CT":
        series.KVP = None
        series.AcquisitionNumber = None
        series.RescaleType = "HU"
    else:
        _mr_acquisition(series, source)
    if source is not None:
        series.RelatedSeriesSequence = [_related_series(source)]
        earlier = _earlier_derivations(source.header)
        if earlier:
            series.ContributingEquipmentSequence = earlier
    return series


def medi2i_derivations(header: Dataset) -> tuple[str, ...]:
    """The method ids of the medi2i derivations a series' ``header`` records, newest first.

    A series medi2i derived names its method as Manufacturer's Model Name (Manufacturer
    ``medi2i``), and every earlier medi2i derivation of its source, at any depth, as an
    item of its Contributing Equipment Sequence (Processing Equipment, Manufacturer
    ``medi2i``), oldest first, each copied forward by the next derivation; the
    de-identification profile keeps them. ``()`` for a series medi2i did not derive.
    """
    found: list[str] = []
    for item in reversed(list(_sequence(header, "ContributingEquipmentSequence"))):
        method = _medi2i_model(item)
        if method is not None:
            found.append(method)
    own = _medi2i_model(header)
    return (own, *found) if own is not None else tuple(found)


def _medi2i_model(dataset: Dataset) -> str | None:
    """The method id of a dataset (or equipment item) medi2i made, else ``None``."""
    try:
        if str(dataset.get("Manufacturer", "") or "").strip() != MANUFACTURER:
            return None
        return str(dataset.get("ManufacturerModelName", "") or "").strip() or None
    except Exception:  # a malformed value written by someone else: no marker to go by
        return None


def _sequence(header: Dataset, keyword: str) -> list[Dataset]:
    try:
        value = header.get(keyword)
        return [item for item in (value or []) if hasattr(item, "get")]
    except Exception:  # a malformed sequence: nothing to go by
        return []


def _earlier_derivations(header: Dataset | None) -> list[Dataset]:
    """The Contributing Equipment items that carry a source's medi2i derivations
    forward: its own items of medi2i (oldest first), then one for the source itself when
    medi2i derived it. Equipment of other makers is not copied."""
    if header is None:
        return []
    items = [
        copy.deepcopy(item)
        for item in _sequence(header, "ContributingEquipmentSequence")
        if _medi2i_model(item) is not None
    ]
    method = _medi2i_model(header)
    if method is not None:
        from pydicom.dataset import Dataset

        item = Dataset()
        item.PurposeOfReferenceCodeSequence = [_code(*_PROCESSING_PURPOSE)]
        item.Manufacturer = MANUFACTURER
        item.ManufacturerModelName = method[:64]
        if header.get("SoftwareVersions") not in (None, ""):
            item.SoftwareVersions = copy.deepcopy(header.SoftwareVersions)
        described = str(header.get("DerivationDescription", "") or "").strip()
        if described:
            item.ContributionDescription = described[:1024]
        items.append(item)
    return items


def _lossy_compression(series: Dataset, source: DicomSource | None) -> None:
    """Lossy Image Compression (0028,2110): "01" when the source's pixels were ever
    lossy compressed (its first image says so, or any of its images is stored in a
    lossy transfer syntax), with the compression method; the standard forbids setting
    it back to "00" for images derived from them. The ratio (type 3) is left out: the
    source's images may each have their own."""
    from medi2i.dicom.source import LOSSY_COMPRESSION_METHODS, LOSSY_TRANSFER_SYNTAXES

    header = source.header if source is not None else None
    meta = getattr(header, "file_meta", None)
    syntax = (source.lossy_transfer_syntax if source is not None else "") or str(
        getattr(meta, "TransferSyntaxUID", "") or ""
    )
    stated = str(header.get("LossyImageCompression", "") or "") if header is not None else ""
    if header is None or (stated.strip() != "01" and syntax not in LOSSY_TRANSFER_SYNTAXES):
        series.LossyImageCompression = "00"
        return
    series.LossyImageCompression = "01"
    if header.get("LossyImageCompressionMethod") not in (None, ""):
        series.LossyImageCompressionMethod = header.get("LossyImageCompressionMethod")
    elif syntax in LOSSY_COMPRESSION_METHODS:
        series.LossyImageCompressionMethod = LOSSY_COMPRESSION_METHODS[syntax]


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
    """Laterality as the source has it when it has a value; else empty (unknown) where
    the IOD asks for it (type 2C: a paired or unstated body part; validators report it
    missing when they cannot tell that the body part is unpaired), and left out for an
    unpaired one, also when the source has it empty."""
    if header.get("Laterality") not in (None, ""):
        series.Laterality = _copied_value(header, "Laterality")
    elif str(header.get("BodyPartExamined") or "").strip().upper() not in _UNPAIRED_BODY_PARTS:
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
    series.WindowCenter = [measured_decimal_string(center) for _, center, _ in windows]
    series.WindowWidth = [measured_decimal_string(width) for _, _, width in windows]
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


def source_image_item(source: DicomSource, index: int) -> Dataset:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID = source.sop_class_uid
    uid, frame = source.slice_reference(index)
    item.ReferencedSOPInstanceUID = uid
    if frame:
        item.ReferencedFrameNumber = frame
    item.PurposeOfReferenceCodeSequence = [_code(*_SOURCE_PURPOSE)]
    return item
