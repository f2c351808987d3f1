"""The quality benchmarks' data: Q1-Q3, Q1x and Q3m, built from ``MEDI2I_DATA_DIR`` as
BENCHMARKS.md says.

- Q1 (MR→CT): a pseudo-T1w MR simulated from the real head CT
  (:func:`medi2i.synth.ct_to_pseudo_t1`, seed :data:`Q1_SEED`); body mask CT > -500 HU
  with holes filled; train on array x < 124, test on x >= 132. The bottom fifth of the
  training half's axial slices (the skull base; 10 mm away from the training slices) is
  the validation case and is never trained on; it is mirrored left-right, so that, like
  the test half, it shows the network the side of the head it did not train on.
- Q2 (super-resolution): Colin27 degraded through-plane (Gaussian slice profile of FWHM
  equal to the spacing, every 4th or 2nd axial slice kept) is the test; MNI152 with the
  same degradation is the training data.
- Q3 (harmonization): scanners A, B, C (:data:`medi2i.synth.NAMED_STYLES`) applied to
  MNI152 for training (one acquisition per scanner) and to Colin27 for the test:
  Colin27-under-B is the input, Colin27-under-A the reference.
- Q3m (multi-scanner harmonization): Q3's training images; Colin27 under each of A, B
  and C translated into each other (six ordered pairs, :data:`Q3M_COLIN27_SEEDS`; the
  B → A case is Q3's). Each case names its source and target scanner.
- Q4 (MR→CT under scanner shift): Q1x split ``a``'s subjects (train on the head and
  lung1, validate on lung1's last fifth, test on lung2), each subject's pseudo-T1w MR
  under scanner styles A, B and C (seeds :data:`Q4_SEED` ``+ 10 i + j``; the whole
  subject is styled, then cut). Every case is named ``<part>-<style>`` and carries its
  style; the no-adaptation model trains on style A's pairs
  (:data:`Q4_SOURCE_STYLE`), the oracles on the target style's.
- Q1x (cross-subject MR→CT): the head CT and two chest CTs resampled to
  :data:`Q1X_SPACING_MM`, a pseudo-T1w MR simulated from each (seeds ``Q1X_SEED + i``),
  body mask CT > -500 HU with holes filled in 3D and in each axial slice. Split ``a``
  trains on the head and lung1, tests on lung2; split ``b`` trains on the head and lung2,
  tests on lung1. The last fifth of the training chest's slices (after a 2-slice gap)
  is the split's validation case and is never trained on.

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
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from medi2i import InputError, OptionsError
from medi2i.hashing import file_sha256
from medi2i.synth import PseudoT1Parameters, apply_style, ct_to_pseudo_t1, named_style, thick_slices
from medi2i_bench.cache import INDEX, Built, Parts, read_dataset, write_dataset
from medi2i_bench.cases import (
    TASKS,
    BenchCase,
    BenchDataset,
    DomainVolume,
    TaskName,
    Volume,
    crop_case,
    mirrored_case,
    read_volume_file,
    renamed,
)
from medi2i_bench.grids import resample_isotropic, resample_to_spacing
from medi2i_bench.masks import BODY_THRESHOLD_HU, body_mask, head_mask

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

CT_FILE = "ct_head_invesalius0051.nii.gz"
COLIN27_FILE = "mr_t1_colin27_1mm.nii.gz"
MNI152_FILE = "mni152_2009a_t1_1mm.nii.gz"
LUNG1_FILE = "ct_chest_pyradiomics_lung1.nii.gz"
LUNG2_FILE = "ct_chest_pyradiomics_lung2.nii.gz"

Q1_SEED = 51
Q1_TRAIN_END_X = 124
"""Q1 trains on array x < 124 ..."""
Q1_TEST_START_X = 132
"""... and tests on x >= 132 (an 8-voxel gap at the midline)."""
Q1_VALIDATION_FRACTION = 0.2
"""Share of the training half's axial slices held out for validation: the first ones
(array z from 0), the skull base, where bone and air mix as in the test half; the last
ones would be the vertex, mostly empty."""
Q1_VALIDATION_GAP = 7
"""Slices left out between Q1's training and validation parts (10.5 mm at 1.5 mm)."""
Q1_VALIDATION_MIRROR_AXIS: int | None = 0
"""Q1's validation case is mirrored along this array axis (x, left-right), ``None`` for
not. The test half is the other side of the head, which the network sees only in that
mirror orientation (training has no left-right flip, so as not to mirror the training half
into the test half); unmirrored, the validation slab measured the training side and
ranked six models almost in the reverse order of the test half (benchmarks/quality/README.md).
Mirroring held-out slices puts no test data into training."""
Q1_BODY_THRESHOLD_HU = BODY_THRESHOLD_HU
Q2_SLICE_STEPS = (4, 2)
"""Q2's through-plane factors: 1×1×4 mm, and the ×2 variant."""
Q2_AXIS = 2
Q2C_CASES: tuple[tuple[str, float, int], ...] = (("5mm", 1.0, 5), ("aniso", 0.8, 5))
"""Q2c's clinical-like acquisitions, as (case suffix, isotropic reference voxel in mm,
slices merged into one thick slice): 1×1×5 mm from the 1 mm volume, and 0.8×0.8×4 mm
from the volume resampled onto a 0.8 mm grid."""
Q3_SEED = 27
Q3_SOURCE, Q3_TARGET = "B", "A"
Q3_SCANNERS = ("A", "B", "C")
Q3M_COLIN27_SEEDS = {"A": Q3_SEED + 101, "B": Q3_SEED + 100, "C": Q3_SEED + 102}
"""Noise seeds of Colin27 under each scanner in Q3m; A's and B's are Q3's, so Q3m's
B → A case is Q3's test case."""
Q1X_SPACING_MM = (2.0, 2.0, 5.0)
"""Q1x's common grid: every subject is resampled to 2 × 2 × 5 mm along its array axes."""
Q1X_SUBJECTS: tuple[tuple[str, str], ...] = (
    ("invesalius0051", CT_FILE),
    ("lung1", LUNG1_FILE),
    ("lung2", LUNG2_FILE),
)
"""Q1x's subjects (case name, source file); subject ``i`` gets MR seed ``Q1X_SEED + i``."""
Q1X_SEED = 61
Q1X_SPLITS: dict[str, tuple[str, str]] = {"a": ("lung1", "lung2"), "b": ("lung2", "lung1")}
Q4_SOURCE_STYLE = "A"
"""Q4's training scanner: the no-adaptation model learns from MR of this style."""
Q4_SEED = 400
"""Noise seed of Q4's styled MR: subject ``i`` under style ``j`` gets ``Q4_SEED + 10 i + j``."""
"""Per split: (the training subject that gives up its last slices to validation, the test
subject). The head is always trained on."""
Q1X_VALIDATION_FRACTION = 0.2
"""Share of the validation subject's axial slices (the last ones, array z) held out."""
Q1X_VALIDATION_GAP = 2
"""Slices left out between that subject's training and validation parts (10 mm)."""
Q1X_FILL_SLICES_AXIS = 2
"""Q1x's body mask also fills each axial slice's holes (the lungs; :func:`body_mask`)."""


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
    sources = Path(source_dir) if source_dir is not None else data_dir(task)
    fingerprint = _fingerprint(task, sources)
    folder = Path(work_dir or default_cache_dir()) / f"{task}-{fingerprint[:12]}"
    if not (folder / INDEX).is_file():
        write_dataset(folder, task, _BUILDERS[task](sources))
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


def _build_q1(sources: Path) -> Parts:
    ct = read_volume_file(sources / CT_FILE)
    mr = ct_to_pseudo_t1(ct.array, spacing_mm=ct.spacing_mm, seed=Q1_SEED)
    mask = body_mask(ct.array).astype(np.float32)
    whole = BenchCase("invesalius0051", Volume(mr, ct.affine), ct, Volume(mask, ct.affine))
    size = ct.array.shape[0]
    half = crop_case(whole, 0, Q1_TRAIN_END_X, "invesalius0051-train")
    slices = ct.array.shape[2]
    # validation_cut holds out the last slices; counted from the other end, the first
    train_stop, validation_start = validation_cut(
        slices, fraction=Q1_VALIDATION_FRACTION, gap=Q1_VALIDATION_GAP
    )
    train = crop_case(half, slices - train_stop, slices, "invesalius0051-train", axis=2)
    validation = crop_case(half, 0, slices - validation_start, "invesalius0051-val", axis=2)
    if Q1_VALIDATION_MIRROR_AXIS is not None:
        validation = mirrored_case(validation, Q1_VALIDATION_MIRROR_AXIS)
    test = crop_case(whole, Q1_TEST_START_X, size, "invesalius0051-test")
    return {"": Built((train,), (), (test,), validation=(validation,))}


def _build_q1x(sources: Path) -> Parts:
    subjects = {
        name: _q1x_subject(name, sources / file, Q1X_SEED + index)
        for index, (name, file) in enumerate(Q1X_SUBJECTS)
    }
    parts: Parts = {}
    for split, (held, tested) in Q1X_SPLITS.items():
        train, validation = validation_cut(
            subjects[held].target.array.shape[2],
            fraction=Q1X_VALIDATION_FRACTION,
            gap=Q1X_VALIDATION_GAP,
        )
        parts[split] = Built(
            train_pairs=(
                renamed(subjects["invesalius0051"], f"{split}-invesalius0051"),
                crop_case(subjects[held], 0, train, f"{split}-{held}-train", axis=2),
            ),
            train_domains=(),
            test=(renamed(subjects[tested], f"{split}-{tested}-test"),),
            validation=(
                crop_case(
                    subjects[held],
                    validation,
                    subjects[held].target.array.shape[2],
                    f"{split}-{held}-val",
                    axis=2,
                ),
            ),
        )
    return parts


def _build_q4(sources: Path) -> Parts:
    """Q1x split a's subjects with their pseudo-MR under each scanner style; cases are
    named ``<Q1x case>-<style>`` and carry the style as their source domain."""
    subjects = {
        name: _q1x_subject(name, sources / file, Q1X_SEED + index)
        for index, (name, file) in enumerate(Q1X_SUBJECTS)
    }
    held, tested = Q1X_SPLITS["a"]
    train, validation = validation_cut(
        subjects[held].target.array.shape[2],
        fraction=Q1X_VALIDATION_FRACTION,
        gap=Q1X_VALIDATION_GAP,
    )
    slices = subjects[held].target.array.shape[2]
    plain = {
        "invesalius0051": subjects["invesalius0051"],
        f"{held}-train": crop_case(subjects[held], 0, train, "", axis=2),
        f"{held}-val": crop_case(subjects[held], validation, slices, "", axis=2),
        f"{tested}-test": subjects[tested],
    }
    index = {name: i for i, (name, _) in enumerate(Q1X_SUBJECTS)}
    subject_of = {
        "invesalius0051": "invesalius0051",
        f"{held}-train": held,
        f"{held}-val": held,
        f"{tested}-test": tested,
    }
    styled: dict[str, list[BenchCase]] = {key: [] for key in plain}
    for key, case in plain.items():
        whole = subjects[subject_of[key]]  # style the whole subject, then cut: one scan
        for j, style in enumerate(Q3_SCANNERS):
            seed = Q4_SEED + 10 * index[subject_of[key]] + j
            look = _styled(whole.source, style, seed)
            if key.endswith("-train"):
                look = look.crop(2, 0, train)
            elif key.endswith("-val"):
                look = look.crop(2, validation, slices)
            styled[key].append(
                BenchCase(f"{key}-{style}", look, case.target, case.mask, style, "CT")
            )
    return {
        "": Built(
            train_pairs=(*styled["invesalius0051"], *styled[f"{held}-train"]),
            train_domains=(),
            test=tuple(styled[f"{tested}-test"]),
            validation=tuple(styled[f"{held}-val"]),
        )
    }


def validation_cut(slices: int, *, fraction: float, gap: int) -> tuple[int, int]:
    """Where a training volume's axial slices split into training and validation.

    Args:
        slices: The volume's number of slices (array z).
        fraction: Share of the slices (the last ones) held out for validation.
        gap: Slices between the two parts that go to neither, so that no training patch
            touches the validation part.

    Returns:
        ``(train_stop, validation_start)``: training gets slices ``[0, train_stop)``,
        validation ``[validation_start, slices)``.
    """
    held = max(1, round(slices * fraction))
    start = slices - held
    return start - gap, start


def _q1x_subject(name: str, path: Path, seed: int) -> BenchCase:
    ct = resample_to_spacing(read_volume_file(path), Q1X_SPACING_MM)
    mr = ct_to_pseudo_t1(ct.array, spacing_mm=ct.spacing_mm, seed=seed)
    mask = body_mask(ct.array, fill_slices_axis=Q1X_FILL_SLICES_AXIS).astype(np.float32)
    return BenchCase(name, Volume(mr, ct.affine), ct, Volume(mask, ct.affine))


def _build_q2(sources: Path) -> Parts:
    train = tuple(
        _thick_slice_case(sources / MNI152_FILE, "mni152", step) for step in Q2_SLICE_STEPS
    )
    test = tuple(
        _thick_slice_case(sources / COLIN27_FILE, "colin27", step) for step in Q2_SLICE_STEPS
    )
    return {"": Built(train, (), test)}


def _thick_slice_case(path: Path, label: str, step: int) -> BenchCase:
    high = read_volume_file(path)
    spacing = high.spacing_mm[Q2_AXIS] * step
    thick = thick_slices(high.array, affine=high.affine, axis=Q2_AXIS, slice_spacing_mm=spacing)
    mask = Volume(head_mask(high.array).astype(np.float32), high.affine)
    return BenchCase(f"{label}-x{step}", Volume(thick.data, thick.affine), high, mask)


def _build_q2c(sources: Path) -> Parts:
    train = tuple(
        _clinical_case(sources / MNI152_FILE, "mni152", suffix, voxel, step)
        for suffix, voxel, step in Q2C_CASES
    )
    test = tuple(
        _clinical_case(sources / COLIN27_FILE, "colin27", suffix, voxel, step)
        for suffix, voxel, step in Q2C_CASES
    )
    return {"": Built(train, (), test)}


def _clinical_case(path: Path, label: str, suffix: str, voxel_mm: float, step: int) -> BenchCase:
    r"""A Q2c case: the reference on an isotropic ``voxel_mm`` grid whose slice count along
    :data:`Q2_AXIS` is a whole number of ``step``\ s plus one (so that the first and the
    last slice are acquired), and its thick slices of ``step`` voxels."""
    high = resample_isotropic(read_volume_file(path), voxel_mm)
    count = (high.array.shape[Q2_AXIS] - 1) // step * step + 1
    kept = np.take(high.array, range(count), axis=Q2_AXIS)
    high = Volume(np.ascontiguousarray(kept), high.affine)
    spacing = high.spacing_mm[Q2_AXIS] * step
    thick = thick_slices(high.array, affine=high.affine, axis=Q2_AXIS, slice_spacing_mm=spacing)
    mask = Volume(head_mask(high.array).astype(np.float32), high.affine)
    return BenchCase(f"{label}-{suffix}", Volume(thick.data, thick.affine), high, mask)


def _build_q3(sources: Path) -> Parts:
    domains, colin, colin_mask = _q3_parts(sources)
    source = _styled(colin, Q3_SOURCE, Q3_SEED + 100)
    target = _styled(colin, Q3_TARGET, Q3_SEED + 101)
    case = BenchCase(f"colin27-{Q3_SOURCE}-to-{Q3_TARGET}", source, target, colin_mask)
    return {"": Built((), domains, (case,))}


def _build_q3m(sources: Path) -> Parts:
    """Q3's training images; as test cases Colin27 under every scanner translated into
    every other (six ordered pairs)."""
    domains, colin, colin_mask = _q3_parts(sources)
    looks = {name: _styled(colin, name, Q3M_COLIN27_SEEDS[name]) for name in Q3_SCANNERS}
    cases = tuple(
        BenchCase(f"colin27-{a}-to-{b}", looks[a], looks[b], colin_mask, a, b)
        for a in Q3_SCANNERS
        for b in Q3_SCANNERS
        if a != b
    )
    return {"": Built((), domains, cases)}


def _q3_parts(sources: Path) -> tuple[tuple[DomainVolume, ...], Volume, Volume]:
    """MNI152 under each scanner (the training images), Colin27 and its head mask."""
    mni = read_volume_file(sources / MNI152_FILE)
    mni_mask = Volume(head_mask(mni.array).astype(np.float32), mni.affine)
    domains = tuple(
        DomainVolume(f"mni152-{name}", name, _styled(mni, name, Q3_SEED + i), mni_mask)
        for i, name in enumerate(Q3_SCANNERS)
    )
    colin = read_volume_file(sources / COLIN27_FILE)
    colin_mask = Volume(head_mask(colin.array).astype(np.float32), colin.affine)
    return domains, colin, colin_mask


def _styled(volume: Volume, scanner: str, seed: int) -> Volume:
    style = named_style(scanner)
    return Volume(
        apply_style(volume.array, spacing_mm=volume.spacing_mm, style=style, seed=seed),
        volume.affine,
    )


_BUILDERS: dict[TaskName, Callable[[Path], Parts]] = {
    "q1": _build_q1,
    "q2": _build_q2,
    "q3": _build_q3,
    "q1x": _build_q1x,
    "q3m": _build_q3m,
    "q4": _build_q4,
    "q2c": _build_q2c,
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


def _fingerprint(task: TaskName, sources: Path) -> str:
    digest = hashlib.sha256(f"medi2i-bench/{DATASET_VERSION}/{task}".encode())
    for name in _SOURCES[task]:
        path = sources / name
        if not path.is_file():
            raise InputError(f"benchmark {task} needs {name} in {sources}")
        digest.update(bytes.fromhex(file_sha256(path)))
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
