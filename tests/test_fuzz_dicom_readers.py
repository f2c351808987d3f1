"""Damaged DICOM never crashes the DICOM readers or the DICOM scan.

A small valid series (one slice of it damaged) and an enhanced multi-frame file are
truncated at random offsets, have random header bytes overwritten, or have single
header elements set to values a broken exporter writes (zero or absurd dimensions,
invalid positions and spacings, unknown transfer syntaxes, pixel data of the wrong
length); each goes through the DICOM folder reader that ``predict`` uses and the scan,
and must read as a volume or be refused with a message naming the input (see
``reader_fuzzing.py``). A damaged slice is named as the cause, and absurd compressed
sizes are refused before anything is allocated. The default run makes a few hundred
cases; ``-m slow`` runs many more seeds.
"""

from __future__ import annotations

import random
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medi2i.errors import Medi2iError
from medi2i.testing.dicom_series import write_enhanced, write_series
from tests.reader_fuzzing import (
    DEFAULT_SEEDS,
    SHAPE,
    Mutation,
    Sample,
    flip_bytes,
    more_random_cases,
    random_cases,
    read_dicom,
    run_case,
    truncate,
)

# -- mutations ----------------------------------------------------------------------------


def set_dicom(**elements: object) -> Mutation:
    """Set header elements of a DICOM file with pydicom (``None`` deletes one)."""

    def mutate(path: Path, rng: random.Random) -> None:
        del rng
        dataset = pydicom.dcmread(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about the invalid values set
            for keyword, value in elements.items():
                if keyword == "PixelData":
                    dataset["PixelData"].value = value(dataset.PixelData)  # type: ignore[operator]
                elif value is None:
                    delattr(dataset, keyword)
                else:
                    setattr(dataset, keyword, value)
            dataset.save_as(path, enforce_file_format=True)

    return mutate


def transfer_syntax(uid: str) -> Mutation:
    """Declare another Transfer Syntax UID in the file meta, leaving the data as it is."""

    def mutate(path: Path, rng: random.Random) -> None:
        del rng
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_file_meta_info

        data = path.read_bytes()
        meta_end = 144 + struct.unpack_from("<I", data, 140)[0]  # after (0002,0000)
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        if uid:
            meta.TransferSyntaxUID = pydicom.uid.UID(uid)
        else:
            del meta.TransferSyntaxUID
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        write_file_meta_info(buffer, meta, enforce_standard=bool(uid))
        path.write_bytes(data[:128] + b"DICM" + buffer.getvalue() + data[meta_end:])

    return mutate


def raw_value(keyword: str, value: bytes) -> Mutation:
    """Overwrite an element's bytes as found in the file, keeping its length."""

    def mutate(path: Path, rng: random.Random) -> None:
        del rng
        data = bytearray(path.read_bytes())
        tag = pydicom.datadict.tag_for_keyword(keyword)
        assert tag is not None
        marker = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
        at = data.index(marker, 132)
        length = struct.unpack_from("<H", data, at + 6)[0]  # explicit VR, a short VR
        data[at + 8 : at + 8 + length] = value[:length].ljust(length, b" ")
        path.write_bytes(bytes(data))

    return mutate


DICOM_FIELDS: dict[str, list[object]] = {
    "Rows": [0, 1, 3, 65535],
    "Columns": [0, 7, 65535],
    "BitsAllocated": [0, 1, 7, 12, 64],
    "BitsStored": [0, 3, 17, 40],
    "HighBit": [0, 40],
    "PixelRepresentation": [2, None],
    "SamplesPerPixel": [0, 3],
    "PhotometricInterpretation": ["RGB", "PALETTE COLOR", "", "XYZ"],
    "NumberOfFrames": ["0", "-1", "2", "99999999"],
    "ImagePositionPatient": [
        ["1", "2"],
        ["nan", "0", "0"],
        ["1e308", "0", "0"],
        ["1", "2", "3", "4"],
        None,
    ],
    "ImageOrientationPatient": [
        ["0"] * 6,
        ["1", "0", "0", "1", "0", "0"],
        ["nan", "0", "0", "0", "1", "0"],
        ["2", "0", "0", "0", "2", "0"],
        ["1", "0", "0"],
        None,
    ],
    "PixelSpacing": [["0", "0"], ["-1", "1"], ["nan", "1"], ["1"], ["1e308", "1e308"], None],
    "SliceThickness": ["0", "-3", "nan"],
    "RescaleSlope": ["0", "nan", "inf", "-1e308", "1e308", None],
    "RescaleIntercept": ["nan", "-inf", "1e308"],
    "PixelData": [
        lambda data: data[:-2],
        lambda data: data[: len(data) // 2],
        lambda data: data + b"\0\0",
        lambda data: b"",
        lambda data: data * 3,
    ],
    "StudyInstanceUID": [None],
    "SOPClassUID": ["1.2.3", ""],
}
TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline, but the data is not JPEG
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE
    "1.2.840.10008.1.2.1.99",  # deflated, but the data is not
    "1.2.840.10008.1.2.2",  # big endian
    "1.2.840.10008.1.2",  # implicit VR, but the data is explicit
    "1.2.3.4.5",
    "",
)
DICOM_RAW: dict[str, list[bytes]] = {
    "ImagePositionPatient": [b"a\\b\\c", b"\\\\", b"1e999\\0\\0"],
    "RescaleSlope": [b"x", b"1e999"],
    "PixelSpacing": [b"0.5\\", b"abc\\d"],
    "InstanceNumber": [b"1.5", b"x"],
}


def dicom_field_mutations() -> Iterator[tuple[str, Mutation]]:
    for keyword, values in DICOM_FIELDS.items():
        for index, value in enumerate(values):
            yield f"{keyword}#{index}", set_dicom(**{keyword: value})
    for uid in TRANSFER_SYNTAXES:
        yield f"TransferSyntaxUID={uid}", transfer_syntax(uid)
    for keyword, raw in DICOM_RAW.items():
        for index, value in enumerate(raw):
            yield f"raw-{keyword}#{index}", raw_value(keyword, value)


def dicom_header(data: bytes) -> tuple[int, int]:
    """From the end of the DICM marker to the Pixel Data element."""
    return 132, data.rfind(b"\xe0\x7f\x10\x00")


# -- the valid inputs and the cases -------------------------------------------------------


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sample]:
    root = tmp_path_factory.mktemp("valid")
    rng = np.random.default_rng(0)
    volume = rng.integers(-1000, 2000, size=SHAPE).astype(np.float64)
    found: dict[str, Sample] = {}
    paths = write_series(root / "series", volume, spacing=(0.8, 0.8, 2.0))
    found["series"] = Sample("series", root / "series", paths[1].name)
    enhanced = write_enhanced(root / "enhanced" / "MF.dcm", volume + 1000, frame_order=[2, 0, 3, 1])
    found["enhanced"] = Sample("enhanced", enhanced.parent, enhanced.name)
    return found


RANDOM_MUTATIONS: dict[str, dict[str, Mutation]] = {
    "series": {
        "truncate": truncate(),
        "truncate-header": truncate(0.0, 0.5),
        "flip-header": flip_bytes(dicom_header),
        "flip-header-many": flip_bytes(dicom_header, count=40),
    },
    "enhanced": {
        "truncate": truncate(),
        "flip-header": flip_bytes(dicom_header),
        "flip-header-many": flip_bytes(dicom_header, count=40),
    },
}


def field_cases() -> list[tuple[str, str, Mutation]]:
    return [("series", name, mutate) for name, mutate in dicom_field_mutations()]


ENHANCED_FIELDS = {
    "NumberOfFrames#few": set_dicom(NumberOfFrames="3"),
    "NumberOfFrames#many": set_dicom(NumberOfFrames="400000"),
    "Rows#huge": set_dicom(Rows=65535, Columns=65535),
    "PixelData#short": set_dicom(PixelData=lambda data: data[:-8]),
    "PerFrame#none": set_dicom(PerFrameFunctionalGroupsSequence=[]),
    "Shared#none": set_dicom(SharedFunctionalGroupsSequence=None),
    "TransferSyntax#rle": transfer_syntax("1.2.840.10008.1.2.5"),
    "TransferSyntax#implicit": transfer_syntax("1.2.840.10008.1.2"),
}


@pytest.mark.parametrize(("sample", "kind", "seed"), random_cases(RANDOM_MUTATIONS, DEFAULT_SEEDS))
def test_randomly_damaged_input(
    samples: dict[str, Sample], sample: str, kind: str, seed: int, tmp_path: Path
) -> None:
    run_case(samples[sample], RANDOM_MUTATIONS[sample][kind], seed, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(("sample", "kind", "seed"), more_random_cases(RANDOM_MUTATIONS))
def test_randomly_damaged_input_more_seeds(
    samples: dict[str, Sample], sample: str, kind: str, seed: int, tmp_path: Path
) -> None:
    run_case(samples[sample], RANDOM_MUTATIONS[sample][kind], seed, tmp_path)


@pytest.mark.parametrize(
    ("sample", "field", "mutate"), field_cases(), ids=[f"{s}-{f}" for s, f, _ in field_cases()]
)
def test_damaged_header_field(
    samples: dict[str, Sample], sample: str, field: str, mutate: Mutation, tmp_path: Path
) -> None:
    run_case(samples[sample], mutate, 0, tmp_path)


@pytest.mark.parametrize("field", list(ENHANCED_FIELDS))
def test_damaged_enhanced_field(samples: dict[str, Sample], field: str, tmp_path: Path) -> None:
    run_case(samples["enhanced"], ENHANCED_FIELDS[field], 0, tmp_path)


# -- what the fuzzer found, pinned down ---------------------------------------------------


def broken_vr(path: Path, rng: random.Random) -> None:
    """Overwrite the VR of Image Position (Patient): pydicom loses the rest of the header."""
    del rng
    data = bytearray(path.read_bytes())
    at = data.index(b"\x20\x00\x32\x00", 132)
    data[at + 4 : at + 6] = b"\xff\xff"
    path.write_bytes(bytes(data))


def unknown_vr_in_a_functional_group(path: Path, rng: random.Random) -> None:
    """Give the Pixel Measures Sequence (0028,9110) of an enhanced file an unknown VR:
    pydicom reads the header and fails only when the frame's group is first read."""
    del rng
    data = bytearray(path.read_bytes())
    at = data.index(b"\x28\x00\x10\x91SQ", 132)
    data[at + 4 : at + 6] = b"S\x80"
    path.write_bytes(bytes(data))


def test_an_unknown_vr_inside_a_functional_group_is_a_damaged_file(
    samples: dict[str, Sample], tmp_path: Path
) -> None:
    run_case(samples["enhanced"], unknown_vr_in_a_functional_group, 0, tmp_path)


SLICE_DAMAGE: dict[str, Mutation] = {
    "truncated in its header": truncate(0.15, 0.2),
    "emptied": truncate(0.0, 0.0),
    "broken VR": broken_vr,
    "without Series Instance UID": set_dicom(SeriesInstanceUID=None),
}


@pytest.mark.parametrize("damage", list(SLICE_DAMAGE))
@pytest.mark.parametrize("which", [0, 2, 4])
def test_a_damaged_slice_is_named_as_the_cause(damage: str, which: int, tmp_path: Path) -> None:
    """Neither reported as "missing slices" nor, at an end of the stack, silently dropped."""
    paths = write_series(tmp_path / "series", np.zeros((6, 5, 5)))
    SLICE_DAMAGE[damage](paths[which], random.Random(0))

    with pytest.raises(Medi2iError) as error:
        read_dicom(tmp_path / "series")

    message = str(error.value)
    assert paths[which].name in message, message
    assert not message.split(": ", 2)[-1].startswith("missing slices"), message
    if "missing slices" in message:
        assert message.index(paths[which].name) < message.index("missing slices"), message


def test_absurd_compressed_dicom_rows_are_refused_before_allocating(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", np.zeros((6, 5, 4)), transfer_syntax="1.2.840.10008.1.2.5")
    for path in paths:
        set_dicom(Rows=65535, Columns=65535)(path, random.Random(0))
    # 65535 x 65535 x 4 slices: 32 GiB stored, 64 GiB of float32
    with pytest.raises(Medi2iError, match=r"GiB|memory") as error:
        read_dicom(tmp_path / "s")
    assert "s:" in str(error.value) or "/s" in str(error.value)
