"""A fast partial reader of DICOM headers, for the folder scan.

pydicom's ``dcmread(stop_before_pixels=True, specific_tags=...)`` still decodes every
element of a header, which makes it the slowest step of scanning a large folder. This
reader walks the elements of the two little-endian uncompressed transfer syntaxes
(Explicit and Implicit VR Little Endian: nearly every file a scanner or PACS exports)
with :func:`struct.unpack_from`, skips what the scan does not need (nested sequences
included) and keeps the wanted elements as pydicom raw elements, so that the scan
reads their values exactly as it would from ``dcmread``.

Old exports may hold a bare dataset: no preamble, no file meta information, the
elements of group 0008 from the first byte, in Implicit (or Explicit) VR Little Endian.
:func:`raw_dataset_syntax` recognises them from their first eight bytes and
:func:`read_header` reads them as well, the transfer syntax taken from that probe.

Anything else returns ``None`` and the scan falls back to pydicom: other transfer
syntaxes, wanted elements that are sequences (enhanced multi-frame files), and any
header that does not parse cleanly (pydicom then reports the defect).

:func:`decimals`, :func:`integer` and :func:`text` read values from either kind of
dataset and raise :class:`InvalidValue`, naming the element, for values that cannot
be what the standard says.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_IMPLICIT = "1.2.840.10008.1.2"
_EXPLICIT = "1.2.840.10008.1.2.1"
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})  # fmt: skip
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO",
                  b"LT", b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ",
                  b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT",
                  b"UV"})  # fmt: skip
_RAW_FIRST_GROUP = 0x0008  # identifying elements: where a bare dataset starts
_META_TAGS = {0x00020002: "MediaStorageSOPClassUID", 0x00020010: "TransferSyntaxUID"}
_FIRST_READ = 8192  # bytes; most headers end before this, large private ones need more
_TAG = struct.Struct("<HH")
_SHORT = struct.Struct("<H")
_LONG = struct.Struct("<L")


class _Unparsable(Exception):
    """The header needs pydicom: truncated, malformed or a case this reader leaves out."""


@dataclass(frozen=True)
class Header:
    """The wanted elements of a header and where its pixel data element starts.

    Attributes:
        dataset: A pydicom dataset of raw (unconverted) elements, with ``file_meta``.
        pixel_tag_offset: Byte offset of the Pixel Data element's tag, or the file
            size when there is none.
        element_header: The 12 bytes from that offset (fewer at the end of the file).
    """

    dataset: Dataset
    pixel_tag_offset: int
    element_header: bytes


class _Buffer:
    """The start of a file, read further on demand."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.data = bytearray(stream.read(_FIRST_READ))

    def need(self, end: int) -> None:
        while end > len(self.data):
            more = self.stream.read(max(end - len(self.data), len(self.data)))
            if not more:
                raise _Unparsable("the file ends inside its header")
            self.data += more


def raw_dataset_syntax(start: bytes) -> str | None:
    """The transfer syntax of a bare dataset (no preamble or file meta) from its first
    8 bytes: Implicit VR Little Endian, Explicit when the first element carries a VR;
    ``None`` when they do not start an element of group 0008.

    Example:
        >>> raw_dataset_syntax(b"\\x08\\x00\\x08\\x00\\x16\\x00\\x00\\x00")
        '1.2.840.10008.1.2'
    """
    if len(start) < 8 or _SHORT.unpack_from(start, 0)[0] != _RAW_FIRST_GROUP:
        return None
    if start[4:6] in _VRS:
        return _EXPLICIT
    length = _LONG.unpack_from(start, 4)[0]
    return _IMPLICIT if length < 0x10000 else None


def read_header(
    stream: BinaryIO, wanted: Collection[int], *, raw_syntax: str | None = None
) -> Header | None:
    """Read the elements ``wanted`` (tags as ints) of a Part 10 file, from its start.

    Args:
        stream: The file, at its start.
        wanted: Tags of the elements to keep.
        raw_syntax: For a bare dataset (no preamble or file meta), its transfer
            syntax (see :func:`raw_dataset_syntax`).

    Returns:
        The header, or ``None`` when pydicom must read this file instead.
    """
    buffer = _Buffer(stream)
    try:
        if raw_syntax is None:
            meta, position = _file_meta(buffer)
        else:
            meta, position = {0x00020010: raw_syntax.encode("ascii")}, 0
        syntax = meta.get(0x00020010, b"").decode("ascii", "replace").strip(" \0")
        if syntax not in (_IMPLICIT, _EXPLICIT):
            return None
        elements, stop = _top_level(buffer, position, wanted, implicit=syntax == _IMPLICIT)
    except (_Unparsable, struct.error):
        return None
    buffer.data.extend(stream.read(max(0, stop + 12 - len(buffer.data))))
    return Header(
        dataset=_dataset(elements, meta, implicit=syntax == _IMPLICIT),
        pixel_tag_offset=stop,
        element_header=bytes(buffer.data[stop : stop + 12]),
    )


def _file_meta(buffer: _Buffer) -> tuple[dict[int, bytes], int]:
    """Group 0002, always Explicit VR Little Endian, right after the 128-byte preamble."""
    meta: dict[int, bytes] = {}
    position = 132
    while True:
        buffer.need(position + 8)
        group, element = _TAG.unpack_from(buffer.data, position)
        if group != 0x0002:
            return meta, position
        _, length, header = _explicit_length(buffer, position)
        if length == _UNDEFINED:
            raise _Unparsable("undefined length in the file meta information")
        buffer.need(position + header + length)
        tag = group << 16 | element
        if tag in _META_TAGS:
            meta[tag] = bytes(buffer.data[position + header : position + header + length])
        position += header + length


def _top_level(
    buffer: _Buffer, position: int, wanted: Collection[int], *, implicit: bool
) -> tuple[dict[int, tuple[bytes | None, bytes, int]], int]:
    """Wanted elements (VR, value, value offset) up to Pixel Data, and where it starts."""
    found: dict[int, tuple[bytes | None, bytes, int]] = {}
    while True:
        try:
            buffer.need(position + 8)
        except _Unparsable:
            return found, len(buffer.data)  # a file without pixel data ends here
        group, element = _TAG.unpack_from(buffer.data, position)
        tag = group << 16 | element
        if tag in _PIXEL_TAGS:
            return found, position
        vr, length, header = _element(buffer, position, implicit)
        start = position + header
        if length == _UNDEFINED:
            if tag in wanted:
                raise _Unparsable("a wanted sequence")
            position = _skip_sequence(buffer, start, implicit=implicit or vr == b"UN")
            continue
        if tag in wanted:
            if vr == b"SQ":
                raise _Unparsable("a wanted sequence")
            buffer.need(start + length)
            found[tag] = (vr, bytes(buffer.data[start : start + length]), start)
        position = start + length


def _element(buffer: _Buffer, position: int, implicit: bool) -> tuple[bytes | None, int, int]:
    if implicit:
        return None, _LONG.unpack_from(buffer.data, position + 4)[0], 8
    vr, length, header = _explicit_length(buffer, position)
    return vr, length, header


def _explicit_length(buffer: _Buffer, position: int) -> tuple[bytes, int, int]:
    buffer.need(position + 12)
    vr = bytes(buffer.data[position + 4 : position + 6])
    if vr in _LONG_VRS:
        return vr, _LONG.unpack_from(buffer.data, position + 8)[0], 12
    if not vr.isalpha():
        raise _Unparsable(f"not a VR: {vr!r}")
    return vr, _SHORT.unpack_from(buffer.data, position + 6)[0], 8


def _skip_sequence(buffer: _Buffer, position: int, *, implicit: bool) -> int:
    """The offset just past a sequence of undefined length that starts at ``position``."""
    while True:
        buffer.need(position + 8)
        group, element = _TAG.unpack_from(buffer.data, position)
        length = _LONG.unpack_from(buffer.data, position + 4)[0]
        tag = group << 16 | element
        if tag == _SEQUENCE_END:
            return position + 8
        if tag != _ITEM:
            raise _Unparsable(f"unexpected tag {tag:08X} in a sequence")
        if length != _UNDEFINED:
            position += 8 + length
        else:
            position = _skip_item(buffer, position + 8, implicit=implicit)


def _skip_item(buffer: _Buffer, position: int, *, implicit: bool) -> int:
    """The offset just past the Item Delimitation of an item of undefined length."""
    while True:
        buffer.need(position + 8)
        group, element = _TAG.unpack_from(buffer.data, position)
        if group << 16 | element == _ITEM_END:
            return position + 8
        vr, length, header = _element(buffer, position, implicit)
        if length == _UNDEFINED:
            nested_implicit = implicit or vr == b"UN"
            position = _skip_sequence(buffer, position + header, implicit=nested_implicit)
        else:
            position += header + length


def _dataset(
    elements: dict[int, tuple[bytes | None, bytes, int]], meta: dict[int, bytes], *, implicit: bool
) -> Dataset:
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.tag import BaseTag

    raw = {}
    for tag, (vr, value, offset) in elements.items():
        key = BaseTag(tag)
        text_vr = vr.decode("ascii") if vr is not None else None
        raw[key] = RawDataElement(
            key, text_vr, len(value), value, offset, implicit, True, True, False
        )
    dataset = Dataset(raw)  # type: ignore[arg-type]
    file_meta = FileMetaDataset()
    for tag, keyword in _META_TAGS.items():
        if tag in meta:
            setattr(file_meta, keyword, meta[tag].decode("ascii", "replace").strip(" \0"))
    dataset.file_meta = file_meta
    dataset.set_original_encoding(implicit, True, None)
    # the same bytes by plain int tag, for values_of: pydicom's lookups cost more than the scan
    dataset._medi2i_raw = {tag: value for tag, (_, value, _) in elements.items()}
    return dataset


class InvalidValue(ValueError):
    """A header element holds a value that cannot be what the standard says it is."""

    def __init__(self, keyword: str, found: str) -> None:
        super().__init__(f"invalid {keyword}: {found}")
        self.keyword = keyword


def decimals(dataset: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    """A DS/FD element as ``count`` finite floats; ``None`` when absent or empty.

    Raises:
        InvalidValue: Not ``count`` numbers, or not finite.
    """
    values = values_of(dataset, keyword)
    if not values:
        return None
    try:
        numbers = tuple(float(str(value)) for value in values)
    except (TypeError, ValueError):
        raise InvalidValue(keyword, f"{_raw(values)} is not {count} number(s)") from None
    if len(numbers) != count or not all(math.isfinite(n) for n in numbers):
        raise InvalidValue(keyword, f"{_raw(values)} is not {count} finite number(s)")
    return numbers


def rescale_slope(dataset: Dataset, keyword: str = "RescaleSlope") -> float | None:
    """Rescale Slope (or Dose Grid Scaling, RT Dose's slope); ``None`` when absent.

    Raises:
        InvalidValue: Not one finite number, or 0: every voxel would then take the
            Rescale Intercept's value, which no scanner means (a damaged header).
    """
    found = decimals(dataset, keyword, 1)
    if found is not None and found[0] == 0:
        raise InvalidValue(
            keyword,
            f"{_raw(values_of(dataset, keyword))}: a slope of 0 would map every voxel to one "
            "value (the intercept), so the image is refused",
        )
    return None if found is None else found[0]


def integer(dataset: Dataset, keyword: str) -> int | None:
    """An IS/US element as an int; ``None`` when absent or empty.

    Raises:
        InvalidValue: Not a whole number.
    """
    values = values_of(dataset, keyword)
    if not values:
        return None
    try:
        return int(str(values[0]).strip())
    except ValueError:
        raise InvalidValue(keyword, f"{_raw(values)} is not a whole number") from None


def text(dataset: Dataset, keyword: str) -> str:
    """A text element's value(s), backslash-joined and stripped; ``""`` when absent."""
    values = values_of(dataset, keyword)
    return "\\".join(str(value) for value in values).strip()


def values_of(dataset: Dataset, keyword: str) -> Sequence[object]:
    """The value(s) of an element as a list; empty when absent or empty."""
    tag = tag_of(keyword)
    vr = _RAW_VRS.get(keyword)
    fast: dict[int, bytes] | None = dataset.__dict__.get("_medi2i_raw")
    if fast is not None and vr is not None:
        found = fast.get(tag)
        return () if found is None else _raw_values(found, vr, little=True)
    element = dataset.get_item(tag) if tag in dataset else None
    if element is None:
        return ()
    from pydicom.dataelem import RawDataElement

    if vr is not None and isinstance(element, RawDataElement) and isinstance(element.value, bytes):
        # parsing the few raw values the scan needs is several times faster than
        # pydicom's conversion, which dominates the scan of a large folder
        return _raw_values(element.value, vr, little=element.is_little_endian)
    try:
        value = dataset[tag].value
    except Exception:  # pydicom converts raw values on access and raises on bad ones
        raise InvalidValue(keyword, f"{_raw(element.value)} cannot be decoded") from None
    if value is None or value == "":
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return (value,)
    return list(value)


def _raw_values(value: bytes, vr: str, *, little: bool) -> Sequence[object]:
    if vr == "US":
        order: Literal["little", "big"] = "little" if little else "big"
        return [int.from_bytes(value[i : i + 2], order) for i in range(0, len(value) - 1, 2)]
    text = value.decode("ascii", errors="replace").strip(" \0")
    if not text:
        return ()
    return [part.strip(" \0") for part in text.split("\\")]


def tag_of(keyword: str) -> int:
    """The tag (as an int) of a DICOM keyword."""
    tag = _TAGS.get(keyword)
    if tag is None:
        from pydicom.datadict import tag_for_keyword

        tag = _TAGS[keyword] = int(tag_for_keyword(keyword) or 0)
    return tag


_TAGS: dict[str, int] = {}
_RAW_VRS = {
    **dict.fromkeys(
        (
            "ImagePositionPatient",
            "ImageOrientationPatient",
            "PixelSpacing",
            "SliceThickness",
            "RescaleSlope",
            "RescaleIntercept",
            "EchoTime",
            "TriggerTime",
        ),
        "DS",
    ),
    **dict.fromkeys(
        (
            "InstanceNumber",
            "NumberOfFrames",
            "SeriesNumber",
            "EchoNumbers",
            "TemporalPositionIdentifier",
            "AcquisitionNumber",
        ),
        "IS",
    ),
    **dict.fromkeys(
        (
            "Rows",
            "Columns",
            "BitsAllocated",
            "BitsStored",
            "PixelRepresentation",
            "SamplesPerPixel",
        ),
        "US",
    ),
    **dict.fromkeys(
        (
            "SOPInstanceUID",
            "SOPClassUID",
            "StudyInstanceUID",
            "SeriesInstanceUID",
            "ImageType",
            "PhotometricInterpretation",
            "Modality",
        ),
        "UI",
    ),
}
"""Elements whose raw bytes the scan parses itself: DS, IS and CS/UI text, or US."""


def _raw(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("latin-1", errors="replace")
    if isinstance(value, (list, tuple)):
        value = "\\".join(str(v) for v in value)
    text = str(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


def sop_class_name(dataset: Dataset) -> str:
    from pydicom.uid import UID

    uid = text(dataset, "SOPClassUID") or str(
        dataset.file_meta.get("MediaStorageSOPClassUID", "") or ""
    )
    if not uid:
        return "a DICOM object without a SOP Class UID"
    name = UID(uid).name
    return name if name != uid else f"SOP class {uid}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
