"""One DICOM file's header as the scan needs it: its series, its images and their pixels.

A file becomes a record of the series it belongs to and its images (one per frame),
each with its geometry, rescale, where its pixels are and, when it cannot be read,
the defect in words: truncated or short pixel data, colour, 1-bit or floating-point
pixels, a Modality LUT, a compression without decoder, invalid values. Files that are
not DICOM or lack what a series needs become :class:`SkippedFile` with the reason.
Bare datasets without preamble and file meta information (old exports) are read too.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from medi2i.dicom.reading.header_parser import (
    InvalidValue,
    decimals,
    first_line,
    integer,
    rescale_slope,
    sop_class_name,
    tag_of,
    text,
    values_of,
)
from medi2i.dicom.reading.pixel_format import (
    DEFLATED,
    FLOAT_PIXEL_TAGS,
    PIXEL_DATA_TAGS,
    PixelFormat,
    content_defect,
    locate_pixels,
    replace_pixels,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

SCAN_TAGS = (
    "SpecificCharacterSet",
    "ImageType",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyDate",
    "Modality",
    "StudyDescription",
    "SeriesDescription",
    "PatientName",
    "PatientID",
    "SliceThickness",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "StudyID",
    "SeriesNumber",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "FrameOfReferenceUID",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "PixelSpacing",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "RescaleIntercept",
    "RescaleSlope",
    "ModalityLUTSequence",
    "GridFrameOffsetVector",
    "DoseGridScaling",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
    "EchoNumbers",
    "EchoTime",
    "TemporalPositionIdentifier",
    "TriggerTime",
    "AcquisitionNumber",
    "DiffusionBValue",
)
"""The header elements the scan parses; everything else is skipped unconverted."""

FILE_VOLUME_TAGS = (
    "EchoNumbers",
    "EchoTime",
    "TemporalPositionIdentifier",
    "TriggerTime",
    "AcquisitionNumber",
    "DiffusionBValue",
)
"""The elements of :data:`VOLUME_TAGS` that a (single-frame) file's header holds."""
FRAME_VOLUME_TAGS = ("StackID", "TemporalPositionIndex", "EffectiveEchoTime")
"""The elements of :data:`VOLUME_TAGS` that each frame of an enhanced multi-frame file
holds in its functional groups (Frame Content and MR Echo); ``None`` for other files."""
VOLUME_TAGS = FILE_VOLUME_TAGS + FRAME_VOLUME_TAGS
"""Elements that tell apart the volumes of one series (echoes, time points, b-values,
the stacks of an enhanced file), in the order they are tried;
:attr:`ImageHeader.volume_tags` holds their values."""

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
"""File name endings taken as DICOM without looking inside."""


@dataclass(frozen=True)
class ImageHeader:
    """One slice: a single-frame file or one frame of a multi-frame file.

    Attributes:
        path: The file.
        frame: 0-based frame number in the file (0 for single-frame files).
        sop_instance_uid: SOP Instance UID of the file.
        instance_number: Instance Number, when present (never used to order slices).
        position: Image Position (Patient): the centre of the first pixel, LPS mm.
        orientation: Image Orientation (Patient): row then column direction cosines.
        rows: Rows (pixels along the column direction).
        columns: Columns (pixels along the row direction).
        pixel_spacing: Row spacing and column spacing in mm, in DICOM's order.
        slice_thickness: Nominal slice thickness in mm (not used for spacing).
        rescale: Rescale Slope and Rescale Intercept (HU = slope x stored + intercept).
        image_type: Image Type (or Frame Type) values.
        pixels: How and where the pixels are stored.
        defect: Why this image cannot be read, in words; ``None`` when it can.
        mosaic_tiles: For a slice of a Siemens mosaic, the tiles per side of the mosaic
            (the slice is tile ``frame``, counted row by row); 0 otherwise.
        volume_tags: The values of :data:`VOLUME_TAGS`, in that order (``None`` where
            absent or invalid), which split a series of several volumes; ``()`` when
            unknown.
        frame_of_reference_uid: Frame of Reference UID; ``""`` when absent.
        name: The file as messages name it: its path relative to the folder that was
            scanned (``"t1/IM0020.dcm"``), so that files of the same name in two
            folders are told apart; the file name when empty.
    """

    path: Path
    frame: int
    sop_instance_uid: str
    instance_number: int | None
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    rows: int
    columns: int
    pixel_spacing: tuple[float, ...] | None
    slice_thickness: float | None
    rescale: tuple[float, float]
    image_type: tuple[str, ...]
    pixels: PixelFormat | None
    defect: str | None = None
    mosaic_tiles: int = 0
    volume_tags: tuple[float | None, ...] = field(default=(), repr=False)
    frame_of_reference_uid: str = field(default="", repr=False)
    name: str = field(default="", repr=False)

    @property
    def label(self) -> str:
        """The file (:attr:`name`), with the frame for multi-frame files, for messages."""
        name = self.name or self.path.name
        if self.mosaic_tiles:
            return f"{name} slice {self.frame + 1}"
        if self.pixels is not None and self.pixels.frames > 1:
            return f"{name} frame {self.frame + 1}"
        return name


@dataclass(frozen=True)
class SkippedFile:
    """A file the scan could not use, and why.

    Attributes:
        path: The file.
        reason: Why it was skipped, in words.
        damaged: Whether it is a DICOM file (it has the ``DICM`` marker) that could not
            be read or parsed, and so may be a lost slice of a series beside it;
            ``False`` for files that are not DICOM or not part of any series.
        not_dicom: Whether it is no DICOM file at all (a README, a JPEG lying in the
            folder): no ``DICM`` marker, no bare DICOM dataset and no DICOM file name,
            so :command:`medi2i dicom ls` lists it apart from damaged DICOM files.
        name: The file as messages name it (see :attr:`ImageHeader.name`); the file
            name when empty.
        folder: Whether ``path`` is a folder the scan did not search: one that cannot
            be read (permission denied), a hidden one (``hidden``) or one the caller
            excluded (``excluded``).
        hidden: Whether it is a hidden folder (its name starts with ``.``), left out
            on purpose; ``False`` for a folder that cannot be read.
        excluded: Whether it is a folder the caller asked the scan to leave out (a
            batch's output root, reached through a link), left out on purpose.
        broken_link: Whether it is a link whose target does not exist (counted as
            ``damaged``: it may have been a slice of a series beside it).
    """

    path: Path
    reason: str
    damaged: bool = False
    not_dicom: bool = False
    name: str = ""
    folder: bool = False
    hidden: bool = False
    broken_link: bool = False
    excluded: bool = False

    @property
    def label(self) -> str:
        """The file (:attr:`name`) for messages."""
        return self.name or self.path.name


@dataclass(frozen=True)
class FileRecord:
    """The scan's result for one DICOM file: the series it belongs to and its images."""

    path: Path
    study_uid: str
    series_uid: str
    dataset: Dataset = field(repr=False)
    images: tuple[ImageHeader, ...]
    not_image: str | None


def read_file_record(path: Path) -> FileRecord | SkippedFile:
    """Parse one file's header; a :class:`SkippedFile` when it is not usable DICOM."""
    try:
        with path.open("rb") as stream:
            return _stream_record(path, stream, os.fstat(stream.fileno()).st_size)
    except OSError as exc:
        return SkippedFile(path, f"cannot be read: {exc.strerror or exc}", damaged=True)


def named(record: FileRecord | SkippedFile, name: str) -> FileRecord | SkippedFile:
    """``record`` with its file named ``name`` in messages (see :attr:`ImageHeader.name`)."""
    if not name or name == record.path.name:
        return record
    if isinstance(record, SkippedFile):
        return replace(record, name=name)
    return replace(record, images=tuple(replace(image, name=name) for image in record.images))


def instance_damage(encoded: bytes) -> str | None:
    """Why one DICOM instance (a Part 10 file's bytes, as a C-STORE receiver gets them)
    is damaged: its header cannot be parsed, an image's header ends before its UIDs or
    its Pixel Data, or its uncompressed pixel data is shorter than its Rows, Columns and
    frames need (the file was cut short). ``None`` otherwise, also for a valid object
    that is no image medi2i reads (a colour image, a structured report).

    Example:
        >>> instance_damage(Path("slice.dcm").read_bytes()[:-50])  # doctest: +SKIP
        'pixel data too short: 190 bytes where Rows x Columns x frames need 240; ...'
    """
    import io

    found = _stream_record(Path("instance.dcm"), io.BytesIO(encoded), len(encoded))
    if isinstance(found, SkippedFile):
        return found.reason if found.damaged else None
    return next(
        (
            image.defect
            for image in found.images
            if image.defect is not None and image.defect.startswith(_DAMAGE)
        ),
        None,
    )


def _stream_record(path: Path, stream: BinaryIO, size: int) -> FileRecord | SkippedFile:
    """:func:`read_file_record` of the open ``stream`` of ``size`` bytes."""
    from medi2i.dicom.reading.header_parser import raw_dataset_syntax, read_header

    try:
        raw_syntax = None
        if not _has_dicom_marker(stream):
            stream.seek(0)
            raw_syntax = raw_dataset_syntax(stream.read(8))
            if raw_syntax is None:
                # a .dcm file without the marker is a slice truncated or damaged in copying
                named = _named_dicom(path)
                reason = _not_dicom_reason(stream, named=named)
                return SkippedFile(path, reason, damaged=named, not_dicom=not named)
        stream.seek(0)
        header = read_header(stream, _wanted_tags(), raw_syntax=raw_syntax)
        if header is None:
            stream.seek(0)
            dataset, pixel_tag_offset, element_header = _pydicom_header(stream, raw_syntax)
        else:
            dataset = header.dataset
            pixel_tag_offset, element_header = header.pixel_tag_offset, header.element_header
    except OSError as exc:
        return SkippedFile(path, f"cannot be read: {exc.strerror or exc}", damaged=True)
    except Exception as exc:  # pydicom raises many kinds for damaged headers
        return SkippedFile(path, f"damaged DICOM header: {first_line(exc)}", damaged=True)
    return _record(path, dataset, pixel_tag_offset, element_header, size)


def _pydicom_header(stream: BinaryIO, raw_syntax: str | None) -> tuple[Dataset, int, bytes]:
    from pydicom import dcmread
    from pydicom.uid import UID

    dataset = dcmread(
        stream,
        stop_before_pixels=True,
        specific_tags=list(SCAN_TAGS),
        force=raw_syntax is not None,
    )
    if raw_syntax is not None:
        dataset.file_meta.TransferSyntaxUID = UID(raw_syntax)
    # pydicom stops with the stream at the tag of the Pixel Data element
    pixel_tag_offset = stream.tell()
    return dataset, pixel_tag_offset, stream.read(12)


def _wanted_tags() -> frozenset[int]:
    global _WANTED
    if _WANTED is None:
        _WANTED = frozenset(tag_of(keyword) for keyword in SCAN_TAGS)
    return _WANTED


_WANTED: frozenset[int] | None = None


_DAMAGE = ("no Pixel Data element found", "pixel data too short", "truncated pixel data")
"""How the defects of an image whose file is damaged begin (the rest are images medi2i
does not read, such as colour ones); :func:`instance_damage` refuses those."""


def _named_dicom(path: Path) -> bool:
    return path.name.lower().endswith(DICOM_SUFFIXES)


def _has_dicom_marker(stream: BinaryIO) -> bool:
    return stream.read(132)[128:132] == b"DICM"


def _not_dicom_reason(stream: BinaryIO, *, named: bool) -> str:
    stream.seek(0)
    start = stream.read(4)
    if start[:2] == b"\x1f\x8b":
        return "not a DICOM file: gzip-compressed; decompress it first"
    if not start:
        return "not a DICOM file: empty"
    if not named:  # a README or a JPEG beside the series, not a damaged slice
        return "not a DICOM file (no 'DICM' marker at byte 128)"
    return (
        "not a DICOM Part 10 file: missing file meta information (no 'DICM' marker at "
        "byte 128); re-export it from the PACS or scanner as DICOM files"
    )


def _record(
    path: Path, dataset: Dataset, pixel_tag_offset: int, element_header: bytes, size: int
) -> FileRecord | SkippedFile:
    transfer_syntax = str(dataset.file_meta.get("TransferSyntaxUID", "") or "")
    if not transfer_syntax:
        return SkippedFile(
            path,
            "damaged file meta information: no Transfer Syntax UID (0002,0010), so the "
            "data cannot be decoded; re-export the file",
            damaged=True,
        )
    try:
        study_uid, series_uid = (
            text(dataset, "StudyInstanceUID"),
            text(dataset, "SeriesInstanceUID"),
        )
    except InvalidValue as exc:
        return SkippedFile(path, str(exc), damaged=True)
    if not study_uid or not series_uid:
        kind = sop_class_name(dataset)
        # an image without them is a damaged slice (an image class whose header ends
        # before them was truncated); a DICOMDIR or private object is not
        if _is_image(dataset, element_header) or _image_class(dataset):
            return SkippedFile(
                path,
                f"{kind}: no Study or Series Instance UID; its header is damaged or the "
                "file is truncated",
                damaged=True,
            )
        return SkippedFile(path, f"{kind}: no Study or Series Instance UID, not part of a series")
    has_pixels = element_header[:4] in PIXEL_DATA_TAGS or (
        transfer_syntax == DEFLATED and "Rows" in dataset
    )
    if not has_pixels and _image_class(dataset) and element_header[:4] not in FLOAT_PIXEL_TAGS:
        # an image object without pixel data lost it to a damaged header: say so,
        # rather than set it aside as "not an image" and report its slot as missing
        defect = (
            f"no Pixel Data element found in this {sop_class_name(dataset)}: its header is "
            "damaged (an element could not be parsed, so the rest of the file is lost) or "
            "the file is truncated; copy or export it again"
        )
        broken = _broken_image(path, dataset, defect)
        return FileRecord(path, study_uid, series_uid, dataset, (broken,), None)
    if not has_pixels:
        reason = _no_pixels_reason(dataset, element_header)
        return FileRecord(path, study_uid, series_uid, dataset, (), reason)
    try:
        images = _images(path, dataset, transfer_syntax, pixel_tag_offset, element_header, size)
    except InvalidValue as exc:
        images = (_broken_image(path, dataset, f"{exc} (a damaged or non-conformant header)"),)
    except (NotImplementedError, ValueError, TypeError) as exc:
        # pydicom converts elements when they are first read: a damaged one inside a
        # sequence (an unknown VR in a functional group) fails only here
        images = (_broken_image(path, dataset, f"damaged DICOM header: {first_line(exc)}"),)
    return FileRecord(path, study_uid, series_uid, dataset, images, None)


def _image_class(dataset: Dataset) -> bool:
    """Whether the SOP class is an image storage class (CT, MR, Secondary Capture...)."""
    try:
        return "Rows" in dataset or "Image Storage" in sop_class_name(dataset)
    except InvalidValue:
        return False


def _is_image(dataset: Dataset, element_header: bytes) -> bool:
    return element_header[:4] in PIXEL_DATA_TAGS or "Rows" in dataset


def _no_pixels_reason(dataset: Dataset, element_header: bytes) -> str:
    kind = sop_class_name(dataset)
    if element_header[:4] in FLOAT_PIXEL_TAGS:
        return f"{kind} with floating-point pixel data, which is not supported"
    return f"not an image: {kind} has no pixel data"


def _images(
    path: Path,
    dataset: Dataset,
    transfer_syntax: str,
    pixel_tag_offset: int,
    element_header: bytes,
    size: int,
) -> tuple[ImageHeader, ...]:
    from medi2i.dicom.reading.multiframe import (
        frame_geometries,
        grid_frame_positions,
        has_functional_groups,
    )

    frames = integer(dataset, "NumberOfFrames") or 1
    pixels, defect = locate_pixels(
        dataset, transfer_syntax, frames, pixel_tag_offset, element_header, size
    )
    defect = defect or content_defect(dataset, frames)
    base = _single_frame(path, dataset, pixels, defect)
    if frames == 1 and defect is None and "MOSAIC" in base.image_type:
        mosaic = _mosaic_slices(base)
        if mosaic:
            return mosaic
    if not has_functional_groups(dataset):
        grid = grid_frame_positions(dataset, frames) if frames > 1 else None
        if grid is not None:
            return tuple(
                _replace(base, frame=index, position=position)
                for index, position in enumerate(grid)
            )
        if frames > 1 and defect is None:
            defect = (
                f"{sop_class_name(dataset)} with {frames} frames but no Per-frame "
                "Functional Groups Sequence or Grid Frame Offset Vector, so where each "
                "frame lies is unknown; only enhanced multi-frame images (with functional "
                "groups) and RT Dose grids are read"
            )
            return (_replace(base, defect=defect),)
        return (base,)
    return tuple(
        _replace(
            base,
            frame=frame.index,
            position=frame.position,
            orientation=frame.orientation,
            pixel_spacing=frame.pixel_spacing,
            slice_thickness=frame.slice_thickness,
            rescale=frame.rescale,
            image_type=frame.frame_type or base.image_type,
            volume_tags=(
                *base.volume_tags[: len(FILE_VOLUME_TAGS)],
                _stack_number(frame.stack_id),
                frame.temporal_index,
                frame.echo_time,
            ),
        )
        for frame in frame_geometries(dataset, frames)
    )


def _mosaic_slices(base: ImageHeader) -> tuple[ImageHeader, ...]:
    """The slices of a Siemens mosaic (read from tiles of its one image), or ``()``."""
    from pydicom import dcmread

    from medi2i.dicom.reading.mosaic import mosaic_layout

    try:
        full = dcmread(base.path, stop_before_pixels=True, force=True)  # private elements too
    except Exception:  # pydicom raises many kinds for damaged headers; read it as one image
        return ()
    layout = mosaic_layout(full)
    if layout is None:
        return ()
    # the tiles are cut out of the decoded image, never read at a fixed offset
    pixels = replace_pixels(base.pixels, offset=None) if base.pixels is not None else None
    return tuple(
        _replace(
            base,
            frame=k,
            position=position,
            rows=layout.rows,
            columns=layout.columns,
            pixels=pixels,
            mosaic_tiles=layout.tiles,
        )
        for k, position in enumerate(layout.positions)
    )


def _single_frame(
    path: Path, dataset: Dataset, pixels: PixelFormat | None, defect: str | None
) -> ImageHeader:
    thickness = decimals(dataset, "SliceThickness", 1)
    # RT Dose scales its stored values to Gy by Dose Grid Scaling instead of a rescale
    slope = rescale_slope(dataset) or rescale_slope(dataset, "DoseGridScaling")
    intercept = decimals(dataset, "RescaleIntercept", 1)
    return ImageHeader(
        path=path,
        frame=0,
        sop_instance_uid=text(dataset, "SOPInstanceUID"),
        instance_number=integer(dataset, "InstanceNumber"),
        position=decimals(dataset, "ImagePositionPatient", 3),
        orientation=decimals(dataset, "ImageOrientationPatient", 6),
        rows=integer(dataset, "Rows") or 0,
        columns=integer(dataset, "Columns") or 0,
        pixel_spacing=decimals(dataset, "PixelSpacing", 2),
        slice_thickness=thickness[0] if thickness else None,
        rescale=(slope or 1.0, intercept[0] if intercept else 0.0),
        image_type=tuple(str(value).upper() for value in values_of(dataset, "ImageType")),
        pixels=pixels,
        defect=defect,
        volume_tags=tuple(_optional_number(dataset, keyword) for keyword in FILE_VOLUME_TAGS)
        + (None,) * len(FRAME_VOLUME_TAGS),
        frame_of_reference_uid=_optional_text(dataset, "FrameOfReferenceUID"),
    )


def _optional_text(dataset: Dataset, keyword: str) -> str:
    """A text element's value; ``""`` when absent or malformed (it does not decide
    whether the image can be read)."""
    try:
        return text(dataset, keyword)
    except (InvalidValue, ValueError, TypeError):
        return ""


def _optional_number(dataset: Dataset, keyword: str) -> float | None:
    """The first value of a numeric element; ``None`` when absent or not a number (these
    only tell volumes apart, so a bad value must not make the image unreadable)."""
    try:
        values = values_of(dataset, keyword)
        number = float(str(values[0]).strip()) if values else None
    except (InvalidValue, ValueError, TypeError):
        return None
    return number if number is not None and number == number else None


def _stack_number(stack_id: str | None) -> float | None:
    """A Stack ID as a number to sort and tell stacks apart by; ``None`` when absent or
    not a number (scanners number their stacks ``"1"``, ``"2"``...)."""
    try:
        number = float(stack_id.strip()) if stack_id is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _broken_image(path: Path, dataset: Dataset, defect: str) -> ImageHeader:
    try:
        uid = text(dataset, "SOPInstanceUID")
    except InvalidValue:
        uid = ""
    return ImageHeader(
        path, 0, uid, None, None, None, 0, 0, None, None, (1.0, 0.0), (), None, defect
    )


def _replace(image: ImageHeader, **changes: object) -> ImageHeader:

    return replace(image, **changes)  # type: ignore[arg-type]
