"""Damaged NIfTI, NRRD and MetaImage files never crash ``medi2i.read_volume``.

Small valid files (``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``) are truncated at random
offsets, have random bytes of their header overwritten, or have single header fields
set to values a broken exporter writes (zero, negative or absurd dimensions, NaN
spacing, unknown voxel types); each must read as a volume or be refused with a message
naming the file (see ``reader_fuzzing.py``). Absurd sizes are refused before anything is
allocated, and non-finite voxels are read as they are. The default run makes a few
hundred cases; ``-m slow`` runs many more seeds.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import medi2i
from medi2i.errors import Medi2iError
from medi2i.testing.volumes import write_volume_file
from tests.reader_fuzzing import (
    DEFAULT_SEEDS,
    SHAPE,
    Mutation,
    Sample,
    damaged,
    flip_bytes,
    more_random_cases,
    random_cases,
    read_file,
    run_case,
    truncate,
)

# -- mutations ----------------------------------------------------------------------------


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


# -- the valid inputs and the cases -------------------------------------------------------


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sample]:
    root = tmp_path_factory.mktemp("valid")
    found: dict[str, Sample] = {}
    for name in ("volume.nii", "volume.nii.gz", "volume.nrrd", "volume.mha"):
        path = write_volume_file(root, name, shape=SHAPE, seed=1)
        found[name] = Sample(name, path, "")
    return found


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
}


def field_cases() -> list[tuple[str, str, Mutation]]:
    cases: list[tuple[str, str, Mutation]] = []
    for name, mutate in nifti_field_mutations():
        cases.append(("volume.nii", name, mutate))
        cases.append(("volume.nii.gz", name, gzip_damaged(mutate)))
    for name, (old, new) in NRRD_FIELDS.items():
        cases.append(("volume.nrrd", name, text_field(old, new)))
    for name, (old, new) in MHA_FIELDS.items():
        cases.append(("volume.mha", name, text_field(old, new)))
    return cases


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


# -- what the fuzzer found, pinned down ---------------------------------------------------


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
