"""Damaged files never crash a reader: they read as a volume or fail with a clear error.

Small valid files (NIfTI, NRRD, MetaImage, a DICOM series and an enhanced multi-frame
DICOM file) are made inside the test and then damaged by seeded mutations: truncated
at random offsets, random bytes of the header overwritten, and single header fields
set to values a broken exporter writes (zero, negative or absurd dimensions, NaN
spacing, unknown voxel types and transfer syntaxes, pixel data of the wrong length).
Each damaged input goes through the public readers (``medi2i.read_volume``, the DICOM
folder reader that ``predict`` and the CLI use, and the DICOM scan). The only
acceptable outcomes are a well-formed volume or a :class:`~medi2i.errors.Medi2iError`
whose message names the input; anything else (a ``ValueError`` from numpy, a
``struct.error``, a ``MemoryError`` from an absurd size) is a bug in the reader.

The default run makes a few hundred cases; ``-m slow`` runs many more seeds.
"""

from __future__ import annotations

import random
import shutil
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from monai.data.meta_tensor import MetaTensor

import medi2i
from medi2i.dicom.reading.series_scan import scan_folder
from medi2i.dicom.reading.volume_reader import DicomFolderReader
from medi2i.errors import Medi2iError
from medi2i.testing.dicom_series import write_enhanced, write_series
from medi2i.testing.volumes import write_volume_file

SHAPE = (6, 5, 4)
DEFAULT_SEEDS = 1  # per mutation kind in the default run
SLOW_SEEDS = 12

Mutation = Callable[[Path, random.Random], None]


@dataclass(frozen=True)
class Sample:
    """One valid input to damage: a file, or a folder of which one file is damaged."""

    name: str
    source: Path  # the file or folder to copy
    target: str  # the file inside the copy to damage ("" for the copy itself)


# -- the outcome every case must have ----------------------------------------------------


def check_outcome(read: Callable[[Path], MetaTensor], path: Path) -> str:
    """Read ``path``; a volume or a Medi2iError naming the input pass, anything else fails."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # libraries warn about what they tolerate
            volume = read(path)
    except Medi2iError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        assert path.name in message, f"the message does not name {path.name}: {message}"
        assert "Traceback" not in message
        return "refused"
    assert isinstance(volume, MetaTensor), type(volume)
    assert volume.ndim == 4, volume.shape
    assert volume.shape[0] == 1, volume.shape
    assert min(volume.shape[1:]) >= 1, volume.shape
    assert volume.dtype == torch.float32
    assert volume.affine.shape == (4, 4)
    assert torch.isfinite(volume.affine).all(), volume.affine
    return "read"


def read_file(path: Path) -> MetaTensor:
    return medi2i.read_volume(path)


def read_dicom(path: Path) -> MetaTensor:
    """As ``medi2i predict`` reads a DICOM input: ``read_volume`` with the DICOM reader."""
    return medi2i.read_volume(path, readers=[DicomFolderReader()])


def scan(path: Path) -> MetaTensor:
    """The scan never raises for a damaged file; it lists the file or its problems."""
    result = scan_folder(path)
    for series in result.series:
        assert series.is_volume or series.problems
        if series.problems:
            assert all(str(problem).strip() for problem in series.problems)
    assert all(skipped.reason for skipped in result.skipped)
    raise _Scanned(f"scanned {path.name}")


class _Scanned(Medi2iError):
    """Marks a finished scan as an accepted outcome in :func:`check_outcome`."""


# -- mutations ----------------------------------------------------------------------------


def truncate(low: float = 0.0, high: float = 1.0) -> Mutation:
    def mutate(path: Path, rng: random.Random) -> None:
        data = path.read_bytes()
        cut = rng.randint(int(low * len(data)), max(int(high * len(data)) - 1, 0))
        path.write_bytes(data[:cut])

    return mutate


def flip_bytes(region: Callable[[bytes], tuple[int, int]], count: int = 4) -> Mutation:
    def mutate(path: Path, rng: random.Random) -> None:
        data = bytearray(path.read_bytes())
        start, stop = region(bytes(data))
        for _ in range(rng.randint(1, count)):
            offset = rng.randrange(start, min(stop, len(data)))
            data[offset] = rng.choice([0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        path.write_bytes(bytes(data))

    return mutate


def pack_at(offset: int, form: str, *values: float) -> Mutation:
    def mutate(path: Path, rng: random.Random) -> None:
        del rng
        data = bytearray(path.read_bytes())
        struct.pack_into(form, data, offset, *values)
        path.write_bytes(bytes(data))

    return mutate


def gzip_damaged(inner: Mutation) -> Mutation:
    """Damage the decompressed bytes of a ``.nii.gz`` and compress them again."""
    import gzip

    def mutate(path: Path, rng: random.Random) -> None:
        plain = path.with_name("plain.nii")
        plain.write_bytes(gzip.decompress(path.read_bytes()))
        inner(plain, rng)
        path.write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()

    return mutate


# NIfTI-1 header fields: (offset, struct format)
NIFTI_FIELDS: dict[str, tuple[int, str]] = {
    "sizeof_hdr": (0, "<i"),
    "dim0": (40, "<h"),
    "dim1": (42, "<h"),
    "dim3": (46, "<h"),
    "dim4": (48, "<h"),
    "datatype": (70, "<h"),
    "bitpix": (72, "<h"),
    "pixdim0": (76, "<f"),
    "pixdim1": (80, "<f"),
    "pixdim3": (88, "<f"),
    "vox_offset": (108, "<f"),
    "scl_slope": (112, "<f"),
    "scl_inter": (116, "<f"),
    "xyzt_units": (123, "<B"),
    "qform_code": (252, "<h"),
    "sform_code": (254, "<h"),
    "quatern_b": (256, "<f"),
    "qoffset_x": (268, "<f"),
    "srow_x0": (280, "<f"),
    "srow_z3": (340, "<f"),
}
NIFTI_VALUES: dict[str, list[float | int]] = {
    "sizeof_hdr": [0, 540, -348],
    "dim0": [0, -1, 2, 4, 5, 8, 32767],
    "dim1": [0, -1, 1, 32767],
    "dim3": [0, -5, 32767],
    "dim4": [0, 2, -1, 32767],
    "datatype": [0, 1, 128, 1536, 1792, 2304, 32, 255, 32767],
    "bitpix": [0, 7, 128],
    "pixdim0": [0.0, -1.0, float("nan")],
    "pixdim1": [0.0, -1.0, float("nan"), float("inf"), 1e38],
    "pixdim3": [0.0, float("nan")],
    "vox_offset": [0.0, -1.0, 351.0, 1e9, float("nan"), float("inf")],
    "scl_slope": [0.0, float("nan"), float("inf"), -1e38],
    "scl_inter": [float("nan"), float("inf")],
    "xyzt_units": [255, 0],
    "qform_code": [-1, 5, 32767],
    "sform_code": [0, -1, 5],
    "quatern_b": [float("nan"), 2.0, 1e38],
    "qoffset_x": [float("nan"), float("inf")],
    "srow_x0": [0.0, float("nan"), float("inf")],
    "srow_z3": [float("nan")],
}


def nifti_field_mutations() -> Iterator[tuple[str, Mutation]]:
    for field, values in NIFTI_VALUES.items():
        offset, form = NIFTI_FIELDS[field]
        for value in values:
            yield f"{field}={value}", pack_at(offset, form, value)


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


def nifti_header(data: bytes) -> tuple[int, int]:
    return 0, 352


def text_header(data: bytes) -> tuple[int, int]:
    """The text header of an NRRD or MetaImage file (up to its blank line or ElementDataFile)."""
    end = data.find(b"\n\n")
    if end < 0:
        end = data.find(b"ElementDataFile")
        end = data.find(b"\n", end) if end >= 0 else len(data) // 4
    return 0, max(end, 8)


def text_field(old: bytes, new: bytes) -> Mutation:
    def mutate(path: Path, rng: random.Random) -> None:
        del rng
        data = path.read_bytes()
        assert old in data, (old, data[:300])
        path.write_bytes(data.replace(old, new, 1))

    return mutate


NRRD_FIELDS = {
    "sizes huge": (b"sizes: 6 5 4", b"sizes: 60000 50000 40000"),
    "sizes zero": (b"sizes: 6 5 4", b"sizes: 0 5 4"),
    "sizes 4d": (b"sizes: 6 5 4", b"sizes: 6 5 4 3"),
    "dimension": (b"dimension: 3", b"dimension: 9"),
    "type": (b"type: float", b"type: block"),
    "encoding": (b"encoding: gzip", b"encoding: hex"),
    "space directions": (b"space directions: (", b"space directions: (nan,"),
}
MHA_FIELDS = {
    "DimSize huge": (b"DimSize = 6 5 4", b"DimSize = 60000 50000 40000"),
    "DimSize zero": (b"DimSize = 6 5 4", b"DimSize = 6 0 4"),
    "NDims": (b"NDims = 3", b"NDims = 2"),
    "ElementType": (b"ElementType = MET_FLOAT", b"ElementType = MET_OTHER"),
    "ElementSpacing nan": (b"ElementSpacing = ", b"ElementSpacing = nan "),
    "CompressedDataSize": (b"CompressedDataSize = ", b"CompressedDataSize = 9"),
    "channels": (b"NDims = 3", b"NDims = 3\nElementNumberOfChannels = 3"),
}


# -- the valid inputs ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sample]:
    root = tmp_path_factory.mktemp("valid")
    rng = np.random.default_rng(0)
    volume = rng.integers(-1000, 2000, size=SHAPE).astype(np.float64)
    found: dict[str, Sample] = {}
    for name in ("volume.nii", "volume.nii.gz", "volume.nrrd", "volume.mha"):
        path = write_volume_file(root, name, shape=SHAPE, seed=1)
        found[name] = Sample(name, path, "")
    paths = write_series(root / "series", volume, spacing=(0.8, 0.8, 2.0))
    found["series"] = Sample("series", root / "series", paths[1].name)
    enhanced = write_enhanced(root / "enhanced" / "MF.dcm", volume + 1000, frame_order=[2, 0, 3, 1])
    found["enhanced"] = Sample("enhanced", enhanced.parent, enhanced.name)
    return found


def damaged(sample: Sample, mutate: Mutation, seed: int, tmp_path: Path) -> Path:
    """A copy of the sample with ``mutate`` applied; returns the path to read."""
    if sample.target:
        copy = tmp_path / sample.source.name
        shutil.copytree(sample.source, copy)
        mutate(copy / sample.target, random.Random(seed))
        return copy
    copy = tmp_path / sample.source.name
    shutil.copy(sample.source, copy)
    mutate(copy, random.Random(seed))
    return copy


def run_case(sample: Sample, mutate: Mutation, seed: int, tmp_path: Path) -> None:
    path = damaged(sample, mutate, seed, tmp_path)
    if sample.target:
        check_outcome(scan, path)
        check_outcome(read_dicom, path)
    else:
        check_outcome(read_file, path)


# -- the cases ----------------------------------------------------------------------------

RANDOM_MUTATIONS: dict[str, dict[str, Mutation]] = {
    "volume.nii": {
        "truncate": truncate(),
        "truncate-header": truncate(0.0, 0.3),
        "flip-header": flip_bytes(nifti_header),
    },
    "volume.nii.gz": {
        "truncate": truncate(),
        "flip-header": gzip_damaged(flip_bytes(nifti_header)),
        "flip-compressed": flip_bytes(lambda data: (10, len(data))),
    },
    "volume.nrrd": {"truncate": truncate(), "flip-header": flip_bytes(text_header)},
    "volume.mha": {"truncate": truncate(), "flip-header": flip_bytes(text_header)},
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
# random mutations run this many times more often than the seed count
RANDOM_REPEATS = 12


def random_cases(seeds: int) -> list[tuple[str, str, int]]:
    return [
        (sample, kind, seed)
        for sample, kinds in RANDOM_MUTATIONS.items()
        for kind in kinds
        for seed in range(seeds * RANDOM_REPEATS)
    ]


def field_cases() -> list[tuple[str, str, Mutation]]:
    cases: list[tuple[str, str, Mutation]] = []
    for name, mutate in nifti_field_mutations():
        cases.append(("volume.nii", name, mutate))
        cases.append(("volume.nii.gz", name, gzip_damaged(mutate)))
    for name, (old, new) in NRRD_FIELDS.items():
        cases.append(("volume.nrrd", name, text_field(old, new)))
    for name, (old, new) in MHA_FIELDS.items():
        cases.append(("volume.mha", name, text_field(old, new)))
    for name, mutate in dicom_field_mutations():
        cases.append(("series", name, mutate))
    return cases


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


@pytest.mark.parametrize(("sample", "kind", "seed"), random_cases(DEFAULT_SEEDS))
def test_randomly_damaged_input(
    samples: dict[str, Sample], sample: str, kind: str, seed: int, tmp_path: Path
) -> None:
    run_case(samples[sample], RANDOM_MUTATIONS[sample][kind], seed, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sample", "kind", "seed"),
    [case for case in random_cases(SLOW_SEEDS) if case[2] >= DEFAULT_SEEDS * RANDOM_REPEATS],
)
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


@pytest.mark.parametrize(
    ("name", "mutate", "words"),
    [
        ("volume.nii", pack_at(42, "<3h", 32767, 32767, 32767), "cannot hold them"),
        (
            "volume.nii.gz",
            gzip_damaged(pack_at(42, "<3h", 32767, 32767, 32767)),
            "gzip's best compression",
        ),
        ("volume.nii", pack_at(42, "<h", 0), "an axis of no voxels"),
        ("volume.nrrd", text_field(*NRRD_FIELDS["sizes huge"]), "more than a file of"),
        ("volume.mha", text_field(*MHA_FIELDS["DimSize zero"]), "an axis of no voxels"),
        ("volume.nii", pack_at(123, "<B", 255), "cannot read"),
    ],
)
def test_absurd_dimensions_are_refused_before_allocating(
    samples: dict[str, Sample], name: str, mutate: Mutation, words: str, tmp_path: Path
) -> None:
    path = damaged(samples[name], mutate, 0, tmp_path)
    with pytest.raises(Medi2iError, match=words) as error:
        read_file(path)
    assert path.name in str(error.value)
    assert "\n" not in str(error.value)


def test_absurd_compressed_dicom_rows_are_refused_before_allocating(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", np.zeros((6, 5, 4)), transfer_syntax="1.2.840.10008.1.2.5")
    for path in paths:
        set_dicom(Rows=65535, Columns=65535)(path, random.Random(0))
    # 65535 x 65535 x 4 slices: 32 GiB stored, 64 GiB of float32
    with pytest.raises(Medi2iError, match=r"GiB|memory") as error:
        read_dicom(tmp_path / "s")
    assert "s:" in str(error.value) or "/s" in str(error.value)


@pytest.mark.parametrize("name", ["values.nii.gz", "values.nrrd", "values.mha"])
def test_non_finite_voxels_are_read_as_they_are(name: str, tmp_path: Path) -> None:
    """The reader keeps NaN and infinity; what to do with them is decided at predict time."""
    import nibabel
    import SimpleITK

    values = np.arange(60, dtype=np.float32).reshape(5, 4, 3)
    values[1, 2, 0], values[3, 0, 2], values[0, 0, 1] = np.nan, np.inf, -np.inf
    path = tmp_path / name
    if name.endswith(".nii.gz"):
        nibabel.save(nibabel.Nifti1Image(values, np.eye(4)), path)  # type: ignore[no-untyped-call]
    else:
        SimpleITK.WriteImage(SimpleITK.GetImageFromArray(values.transpose(2, 1, 0)), str(path))

    volume = medi2i.read_volume(path)

    read = volume.numpy()[0]
    assert np.isnan(read[1, 2, 0])
    assert read[3, 0, 2] == np.inf
    assert read[0, 0, 1] == -np.inf
    finite = np.isfinite(values)
    assert np.array_equal(read[finite], values[finite])
