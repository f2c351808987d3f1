"""What the reader fuzz tests (``test_fuzz_file_readers.py``, ``test_fuzz_dicom_readers.py``) share.

Small valid inputs are made inside the tests and damaged by seeded mutations. Each
damaged input goes through the public readers (``medi2i.read_volume``, the DICOM folder
reader that ``predict`` and the CLI use, and the DICOM scan). The only acceptable
outcomes are a well-formed volume or a :class:`~medi2i.errors.Medi2iError` whose message
names the input; anything else (a ``ValueError`` from numpy, a ``struct.error``, a
``MemoryError`` from an absurd size) is a bug in the reader. :func:`check_outcome` holds
a read to that; ``tests/conftest.py`` registers this module for pytest's assertion
rewriting.
"""

from __future__ import annotations

import random
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from monai.data.meta_tensor import MetaTensor

import medi2i
from medi2i.dicom.reading.series_scan import scan_folder
from medi2i.dicom.reading.volume_reader import DicomFolderReader
from medi2i.errors import Medi2iError

SHAPE = (6, 5, 4)
DEFAULT_SEEDS = 1  # per mutation kind in the default run
SLOW_SEEDS = 12
# random mutations run this many times more often than the seed count
RANDOM_REPEATS = 12

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


# -- damaging a sample and reading it ---------------------------------------------------


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


def random_cases(
    mutations: dict[str, dict[str, Mutation]], seeds: int
) -> list[tuple[str, str, int]]:
    """(sample, mutation kind, seed) for every random mutation of every sample."""
    return [
        (sample, kind, seed)
        for sample, kinds in mutations.items()
        for kind in kinds
        for seed in range(seeds * RANDOM_REPEATS)
    ]


def more_random_cases(mutations: dict[str, dict[str, Mutation]]) -> list[tuple[str, str, int]]:
    """The slow run's random cases: the seeds after those of the default run."""
    return [
        case
        for case in random_cases(mutations, SLOW_SEEDS)
        if case[2] >= DEFAULT_SEEDS * RANDOM_REPEATS
    ]
