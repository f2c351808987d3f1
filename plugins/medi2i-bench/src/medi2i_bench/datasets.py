"""The quality benchmarks' data: Q1-Q3, Q1x, Q3m, Q4 and Q2c, built from
``MEDI2I_DATA_DIR`` as BENCHMARKS.md says, and cached.

What each benchmark's data is, and the constants that fix it, are in the module of its
task family: :mod:`medi2i_bench.mr_ct_data` (Q1, Q1x, Q4),
:mod:`medi2i_bench.super_resolution_data` (Q2, Q2c) and
:mod:`medi2i_bench.harmonization_data` (Q3, Q3m); the source file names are in
:mod:`medi2i_bench.source_files`. This module builds and caches the data; it exports
those constants too, as it is the module users import (CHANGELOG).

A built set is written once as NIfTI files under a cache folder (``--work-dir``, else
``$MEDI2I_CACHE_DIR``, else the user cache folder) keyed by a fingerprint of the source
files, the simulator parameters and the seeds, and read back on the next run. A
symbolic link ``<cache>/<task>`` (e.g. ``bench-work/q1``) points at the current
fingerprinted folder, so workflows can name a path that does not change. Q1's
and Q1x's cases use the SynthRAD layout (``<case>/mr|ct|mask.nii.gz``) so training
workflows can read them unchanged; Q1x keeps each split in its own subfolder
(``bench-work/q1x/a/{train_pairs,validation,test}``).

Example:
    >>> dataset = build_dataset("q2")  # doctest: +SKIP
    >>> [case.name for case in dataset.test]  # doctest: +SKIP
    ['colin27-x4', 'colin27-x2']
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from medi2i import InputError, OptionsError
from medi2i.hashing import file_sha256
from medi2i.synth import PseudoT1Parameters, named_style
from medi2i_bench.cache import INDEX, Parts, read_dataset, write_dataset
from medi2i_bench.cases import TASKS, BenchCase, BenchDataset, DomainVolume, TaskName, Volume
from medi2i_bench.grids import resample_to_spacing
from medi2i_bench.harmonization_data import (
    Q3_SCANNERS,
    Q3_SEED,
    Q3_SOURCE,
    Q3_TARGET,
    Q3M_COLIN27_SEEDS,
    build_q3,
    build_q3m,
)
from medi2i_bench.masks import body_mask, head_mask
from medi2i_bench.mr_ct_data import (
    Q1_BODY_THRESHOLD_HU,
    Q1_SEED,
    Q1_TEST_START_X,
    Q1_TRAIN_END_X,
    Q1_VALIDATION_FRACTION,
    Q1_VALIDATION_GAP,
    Q1_VALIDATION_MIRROR_AXIS,
    Q1X_FILL_SLICES_AXIS,
    Q1X_SEED,
    Q1X_SPACING_MM,
    Q1X_SPLITS,
    Q1X_SUBJECTS,
    Q1X_VALIDATION_FRACTION,
    Q1X_VALIDATION_GAP,
    Q4_SEED,
    Q4_SOURCE_STYLE,
    build_q1,
    build_q1x,
    build_q4,
    validation_cut,
)
from medi2i_bench.prepared import prepared_folder, record_sources
from medi2i_bench.source_files import COLIN27_FILE, CT_FILE, LUNG1_FILE, LUNG2_FILE, MNI152_FILE
from medi2i_bench.super_resolution_data import (
    Q2_AXIS,
    Q2_SLICE_STEPS,
    Q2C_CASES,
    build_q2,
    build_q2c,
)

__all__ = [
    "CACHE_DIR_VARIABLE",
    "COLIN27_FILE",
    "CT_FILE",
    "DATASET_VERSION",
    "DATA_DIR_VARIABLE",
    "LUNG1_FILE",
    "LUNG2_FILE",
    "MNI152_FILE",
    "Q1X_FILL_SLICES_AXIS",
    "Q1X_SEED",
    "Q1X_SPACING_MM",
    "Q1X_SPLITS",
    "Q1X_SUBJECTS",
    "Q1X_VALIDATION_FRACTION",
    "Q1X_VALIDATION_GAP",
    "Q1_BODY_THRESHOLD_HU",
    "Q1_SEED",
    "Q1_TEST_START_X",
    "Q1_TRAIN_END_X",
    "Q1_VALIDATION_FRACTION",
    "Q1_VALIDATION_GAP",
    "Q2C_CASES",
    "Q2_AXIS",
    "Q2_SLICE_STEPS",
    "Q3M_COLIN27_SEEDS",
    "Q3_SCANNERS",
    "Q3_SEED",
    "Q4_SEED",
    "Q4_SOURCE_STYLE",
    "TASKS",
    "BenchCase",
    "BenchDataset",
    "DomainVolume",
    "TaskName",
    "Volume",
    "body_mask",
    "build_dataset",
    "build_splits",
    "data_dir",
    "default_cache_dir",
    "head_mask",
    "link_stable_alias",
    "resample_to_spacing",
    "splits_of",
    "validation_cut",
]

DATA_DIR_VARIABLE = "MEDI2I_DATA_DIR"
CACHE_DIR_VARIABLE = "MEDI2I_CACHE_DIR"
DATASET_VERSION = "1"
"""Bumped whenever a builder changes what it makes, so old caches are not reused."""


def data_dir(task: TaskName | None = None) -> Path:
    """The shared data folder from ``MEDI2I_DATA_DIR``.

    Args:
        task: The benchmark whose source files must be there; Q1-Q3's when ``None``.

    Raises:
        InputError: The variable is unset or the folder lacks a benchmark file.
    """
    value = os.environ.get(DATA_DIR_VARIABLE, "")
    if not value:
        raise InputError(
            f"{DATA_DIR_VARIABLE} is not set; point it at the shared data folder "
            "(the Makefile uses ../shared/data beside the clone)"
        )
    folder = Path(value)
    needed = _SOURCES[task] if task is not None else (CT_FILE, COLIN27_FILE, MNI152_FILE)
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise InputError(f"{DATA_DIR_VARIABLE}={folder} lacks {', '.join(missing)}")
    return folder


def default_cache_dir() -> Path:
    """``$MEDI2I_CACHE_DIR``, else ``$XDG_CACHE_HOME/medi2i/bench``, else
    ``~/.cache/medi2i/bench``."""
    explicit = os.environ.get(CACHE_DIR_VARIABLE)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "medi2i" / "bench"


def build_dataset(
    task: TaskName,
    *,
    work_dir: str | Path | None = None,
    source_dir: str | Path | None = None,
    split: str | None = None,
) -> BenchDataset:
    """Build (or read back from the cache) one benchmark's data.

    Args:
        task: ``"q1"``, ``"q2"``, ``"q3"``, ``"q1x"`` or ``"q3m"``.
        work_dir: Cache folder; :func:`default_cache_dir` when ``None``.
        source_dir: Folder of the real volumes; ``MEDI2I_DATA_DIR`` when ``None``.
        split: For Q1x, which split (``"a"`` or ``"b"``, :data:`Q1X_SPLITS`); must be
            ``None`` for the other benchmarks.

    Returns:
        The dataset; its files are in ``dataset.folder``.

    Raises:
        InputError: The shared data is missing.
        OptionsError: ``task`` is not a benchmark, or ``split`` does not fit it.
    """
    splits = splits_of(task)
    if split is None and splits:
        raise OptionsError(f"benchmark {task} has splits {', '.join(splits)}: choose one")
    if split is not None and split not in splits:
        raise OptionsError(
            f"benchmark {task} has "
            + (f"splits {', '.join(splits)}, not {split!r}" if splits else "no splits")
        )
    folder, fingerprint = _built_folder(task, work_dir, source_dir)
    if split is None:
        return read_dataset(folder, task, fingerprint)
    return read_dataset(folder / split, task, fingerprint, split=split)


def build_splits(
    task: TaskName,
    *,
    work_dir: str | Path | None = None,
    source_dir: str | Path | None = None,
    splits: Sequence[str] | None = None,
) -> tuple[BenchDataset, ...]:
    """Every split of a benchmark (Q1x: ``a`` and ``b``), or its one dataset (Q1-Q3).

    Args:
        task: The benchmark.
        work_dir: Cache folder; :func:`default_cache_dir` when ``None``.
        source_dir: Folder of the real volumes; ``MEDI2I_DATA_DIR`` when ``None``.
        splits: A subset of the benchmark's splits, in this order; all when ``None``.

    Raises:
        InputError: The shared data is missing.
        OptionsError: ``task`` is not a benchmark or a split is not one of its splits.
    """
    names = splits_of(task)
    if not names:
        if splits:
            raise OptionsError(f"benchmark {task} has no splits")
        return (build_dataset(task, work_dir=work_dir, source_dir=source_dir),)
    chosen = tuple(splits) if splits else names
    return tuple(
        build_dataset(task, work_dir=work_dir, source_dir=source_dir, split=name) for name in chosen
    )


def splits_of(task: TaskName) -> tuple[str, ...]:
    """The split names of a benchmark: ``("a", "b")`` for Q1x, ``()`` for the others.

    Raises:
        OptionsError: ``task`` is not a benchmark.
    """
    if task not in TASKS:
        raise OptionsError(f"unknown benchmark {task!r}; choose one of {', '.join(TASKS)}")
    return tuple(Q1X_SPLITS) if task == "q1x" else ()


def _built_folder(
    task: TaskName, work_dir: str | Path | None, source_dir: str | Path | None
) -> tuple[Path, str]:
    """The built folder of ``task`` and its fingerprint: without ``source_dir`` and
    ``MEDI2I_DATA_DIR``, the one prepared in the cache (:mod:`medi2i_bench.prepared`);
    else the one of the sources' fingerprint, built when missing."""
    cache = Path(work_dir or default_cache_dir())
    if source_dir is None and not os.environ.get(DATA_DIR_VARIABLE):
        found = prepared_folder(cache, task, lambda digests: _fingerprint_of(task, digests))
        if found is None:
            raise InputError(
                f"{DATA_DIR_VARIABLE} is not set and {cache} holds no prepared {task} data; "
                "point the variable at the shared data folder (the Makefile uses "
                "../shared/data beside the clone), or pass the --work-dir that "
                "medi2i bench prepare filled"
            )
        return found
    sources = Path(source_dir) if source_dir is not None else data_dir(task)
    digests = _source_digests(task, sources)
    fingerprint = _fingerprint_of(task, digests)
    folder = cache / f"{task}-{fingerprint[:12]}"
    if not (folder / INDEX).is_file():
        write_dataset(folder, task, _BUILDERS[task](sources))
    record_sources(folder, fingerprint, digests)
    link_stable_alias(folder, task)
    return folder, fingerprint


def link_stable_alias(folder: Path, task: TaskName) -> Path | None:
    """Point ``<work_dir>/<task>`` (e.g. ``bench-work/q1``) at the fingerprinted ``folder``.

    Workflows name the stable path (``bench-work/q1/train_pairs``), which keeps working
    when a new fingerprint (new sources or simulator settings) makes a new folder. The
    link is relative and replaced atomically (a new link renamed over the old one). A
    real file or folder of that name is left alone, as is a file system without
    symbolic links.

    Returns:
        The alias, or ``None`` when it could not be made.
    """
    alias = folder.parent / task
    if alias.exists() and not alias.is_symlink():
        return None
    if alias.is_symlink() and os.readlink(alias) == folder.name:
        return alias
    staging = folder.parent / f".{task}.link-{os.getpid()}"
    try:
        staging.unlink(missing_ok=True)
        staging.symlink_to(folder.name, target_is_directory=True)
        os.replace(staging, alias)
    except OSError:
        staging.unlink(missing_ok=True)
        return None
    return alias


_BUILDERS: dict[TaskName, Callable[[Path], Parts]] = {
    "q1": build_q1,
    "q2": build_q2,
    "q3": build_q3,
    "q1x": build_q1x,
    "q3m": build_q3m,
    "q4": build_q4,
    "q2c": build_q2c,
}
_SOURCES: dict[TaskName, tuple[str, ...]] = {
    "q1": (CT_FILE,),
    "q2": (COLIN27_FILE, MNI152_FILE),
    "q3": (COLIN27_FILE, MNI152_FILE),
    "q1x": tuple(file for _, file in Q1X_SUBJECTS),
    "q3m": (COLIN27_FILE, MNI152_FILE),
    "q4": tuple(file for _, file in Q1X_SUBJECTS),
    "q2c": (COLIN27_FILE, MNI152_FILE),
}


def _source_digests(task: TaskName, sources: Path) -> dict[str, str]:
    """The SHA-256 of each source file of ``task`` in ``sources``, by file name.

    Raises:
        InputError: A source file is missing.
    """
    digests = {}
    for name in _SOURCES[task]:
        path = sources / name
        if not path.is_file():
            raise InputError(f"benchmark {task} needs {name} in {sources}")
        digests[name] = file_sha256(path)
    return digests


def _fingerprint_of(task: TaskName, digests: Mapping[str, str]) -> str:
    """The fingerprint of ``task``'s data built from sources of these SHA-256s.

    Raises:
        KeyError: ``digests`` lacks a source file of ``task``.
        ValueError: A digest is not hexadecimal.
    """
    digest = hashlib.sha256(f"medi2i-bench/{DATASET_VERSION}/{task}".encode())
    for name in _SOURCES[task]:
        digest.update(bytes.fromhex(digests[name]))
    settings = {
        "q1": [
            PseudoT1Parameters().model_dump_json(),
            Q1_SEED,
            Q1_TRAIN_END_X,
            Q1_TEST_START_X,
            Q1_VALIDATION_FRACTION,
            Q1_VALIDATION_GAP,
            Q1_VALIDATION_MIRROR_AXIS,
        ],
        "q2": [list(Q2_SLICE_STEPS), Q2_AXIS],
        "q2c": [[list(case) for case in Q2C_CASES], Q2_AXIS],
        "q3": [
            [named_style(n).model_dump_json() for n in Q3_SCANNERS],
            Q3_SEED,
            Q3_SOURCE,
            Q3_TARGET,
        ],
        "q3m": [
            [named_style(n).model_dump_json() for n in Q3_SCANNERS],
            Q3_SEED,
            Q3M_COLIN27_SEEDS,
        ],
        "q4": [
            PseudoT1Parameters().model_dump_json(),
            list(Q1X_SPACING_MM),
            [name for name, _ in Q1X_SUBJECTS],
            Q1X_SEED,
            list(Q1X_SPLITS["a"]),
            Q1X_VALIDATION_FRACTION,
            Q1X_VALIDATION_GAP,
            Q1_BODY_THRESHOLD_HU,
            Q1X_FILL_SLICES_AXIS,
            [named_style(n).model_dump_json() for n in Q3_SCANNERS],
            Q4_SEED,
        ],
        "q1x": [
            PseudoT1Parameters().model_dump_json(),
            list(Q1X_SPACING_MM),
            [name for name, _ in Q1X_SUBJECTS],
            Q1X_SEED,
            {k: list(v) for k, v in Q1X_SPLITS.items()},
            Q1X_VALIDATION_FRACTION,
            Q1X_VALIDATION_GAP,
            Q1_BODY_THRESHOLD_HU,
            Q1X_FILL_SLICES_AXIS,
        ],
    }[task]
    digest.update(json.dumps(settings).encode())
    return digest.hexdigest()
