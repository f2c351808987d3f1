"""How a DICOM file stores its pixels, and why they cannot be read: the pixel element's
place, length and byte order, read from its header without loading the pixels, and the
defects (compression without decoder, short or truncated data, colour, 1-bit pixels,
a Modality LUT) in words."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from medi2i.dicom.reading.header_parser import integer, text

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2": "<",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1": "<",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.2": ">",  # Explicit VR Big Endian (retired)
}
DEFLATED = "1.2.840.10008.1.2.1.99"
_UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_DATA_TAGS = {  # (7FE0,0010) as the first 4 bytes of the element, either byte order
    b"\xe0\x7f\x10\x00": "<",
    b"\x7f\xe0\x00\x10": ">",
}
FLOAT_PIXEL_TAGS = (b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")


@dataclass(frozen=True)
class PixelFormat:
    """How a file stores its pixels, and where, without having read them.

    Attributes:
        transfer_syntax: Transfer Syntax UID of the file.
        bits_allocated: Bits per stored sample (8, 16 or 32 for images read here).
        bits_stored: Bits of each sample that hold the value.
        signed: Pixel Representation 1 (two's complement).
        frames: Number of frames in the file.
        offset: Byte offset of the first pixel in the file for uncompressed data,
            ``None`` for compressed or deflated files (decoded through pydicom).
        byte_order: ``"<"`` or ``">"`` for uncompressed data.
    """

    transfer_syntax: str
    bits_allocated: int
    bits_stored: int
    signed: bool
    frames: int
    offset: int | None
    byte_order: str = "<"


def locate_pixels(
    dataset: Dataset,
    transfer_syntax: str,
    frames: int,
    pixel_tag_offset: int,
    element_header: bytes,
    size: int,
) -> tuple[PixelFormat | None, str | None]:
    """Where the pixels are and whether they can be decoded, from the element header."""
    bits_allocated = integer(dataset, "BitsAllocated") or 0
    pixels = PixelFormat(
        transfer_syntax=transfer_syntax,
        bits_allocated=bits_allocated,
        bits_stored=integer(dataset, "BitsStored") or bits_allocated,
        signed=integer(dataset, "PixelRepresentation") == 1,
        frames=frames,
        offset=None,
    )
    if transfer_syntax == DEFLATED:
        return pixels, None
    order = PIXEL_DATA_TAGS[element_header[:4]]
    explicit = transfer_syntax != "1.2.840.10008.1.2"
    length_bytes = element_header[8:12] if explicit else element_header[4:8]
    length = int.from_bytes(length_bytes, "little" if order == "<" else "big")
    if length == _UNDEFINED_LENGTH:
        return pixels, _decoder_defect(transfer_syntax)
    if transfer_syntax not in _NATIVE_SYNTAXES:
        return pixels, f"uses the unknown or unsupported transfer syntax {transfer_syntax}"
    offset = pixel_tag_offset + (12 if explicit else 8)
    expected = _native_bytes(dataset, frames, bits_allocated)
    located = replace_pixels(pixels, offset=offset, byte_order=order)
    if length < expected:
        return located, (
            f"pixel data too short: {length} bytes where Rows x Columns x frames need "
            f"{expected}; the file is damaged or its image attributes are wrong"
        )
    if offset + expected > size:
        return located, (
            f"truncated pixel data: the file ends {offset + expected - size} bytes before "
            f"the end of its {expected} bytes of pixels; copy or export it again"
        )
    return located, None


def replace_pixels(pixels: PixelFormat, **changes: object) -> PixelFormat:

    return replace(pixels, **changes)  # type: ignore[arg-type]


def _native_bytes(dataset: Dataset, frames: int, bits_allocated: int) -> int:
    samples = integer(dataset, "SamplesPerPixel") or 1
    pixels = (integer(dataset, "Rows") or 0) * (integer(dataset, "Columns") or 0)
    return (pixels * samples * frames * bits_allocated + 7) // 8


def _decoder_defect(transfer_syntax: str) -> str | None:
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import UID

    name = UID(transfer_syntax).name
    try:
        decoder = get_decoder(UID(transfer_syntax))
    except NotImplementedError:
        return f"compressed with {name}, which pydicom cannot decode"
    if decoder.is_available:
        return None
    return (
        f"compressed with {name}, but no decoder is installed; install "
        "pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg and pylibjpeg-rle"
    )


def content_defect(dataset: Dataset, frames: int) -> str | None:
    """Why an image with pixel data still cannot be a slice of a scalar volume."""
    samples = integer(dataset, "SamplesPerPixel") or 1
    photometric = text(dataset, "PhotometricInterpretation").upper()
    bits = integer(dataset, "BitsAllocated") or 0
    if samples != 1 or (photometric and photometric not in _MONOCHROME):
        return (
            f"a colour image ({photometric or '?'}, {samples} samples per pixel); medi2i "
            "reads greyscale (MONOCHROME) images into scalar volumes"
        )
    if bits not in (8, 16, 32):
        what = " (a binary segmentation)" if bits == 1 else ""
        return f"{bits} bits allocated per pixel{what}; images of 8, 16 or 32 bits are read"
    if not integer(dataset, "Rows") or not integer(dataset, "Columns"):
        return "no Rows or Columns: the image size is unknown"
    if "ModalityLUTSequence" in dataset:
        return (
            "values are mapped through a Modality LUT Sequence (a lookup table rather "
            "than Rescale Slope and Intercept), which is not supported"
        )
    return None
