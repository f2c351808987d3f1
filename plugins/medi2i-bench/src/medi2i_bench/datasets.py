"""The quality benchmarks' data: Q1-Q3, Q1x and Q3m, built from ``MEDI2I_DATA_DIR`` as
BENCHMARKS.md says.

- Q1 (MR→CT): a pseudo-T1w MR simulated from the real head CT
  (:func:`medi2i.synth.ct_to_pseudo_t1`, seed :data:`Q1_SEED`); body mask CT > -500 HU
  with holes filled; train on array x < 124, test on x >= 132. The bottom fifth of the
  training half's axial slices (the skull base; 10 mm away from the training slices) is
  the validation case and is never trained on.
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
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from medi2i import InputError, OptionsError
from medi2i.hashing import file_sha256
from medi2i.synth import PseudoT1Parameters, apply_style, ct_to_pseudo_t1, named_style, thick_slices
from medi2i.synth.scanner_styles import otsu_threshold

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
TaskName = Literal["q1", "q2", "q3", "q1x", "q3m", "q4", "q2c"]
TASKS: tuple[TaskName, ...] = ("q1", "q2", "q3", "q1x", "q3m", "q4", "q2c")

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
Q1_BODY_THRESHOLD_HU = -500.0
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


@dataclass(frozen=True)
class Volume:
    """An array ``(X, Y, Z)`` with its voxel-to-world (RAS, mm) affine."""

    array: FloatArray
    affine: npt.NDArray[np.float64]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, in mm."""
        sizes = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(sizes[0]), float(sizes[1]), float(sizes[2]))

    def metatensor(self) -> MetaTensor:
        """The volume as a channel-first ``MetaTensor`` ``(1, X, Y, Z)``, as methods take it."""
        import torch
        from monai.data.meta_tensor import MetaTensor

        data = torch.from_numpy(np.ascontiguousarray(self.array, np.float32))[None]
        return MetaTensor(data, affine=torch.as_tensor(self.affine, dtype=torch.float64))

    def crop_x(self, start: int, stop: int) -> Volume:
        """Array x in ``[start, stop)``, with the affine moved accordingly."""
        return self.crop(0, start, stop)

    def crop(self, axis: int, start: int, stop: int) -> Volume:
        """Array indices ``[start, stop)`` along ``axis``, with the affine moved accordingly."""
        affine = self.affine.copy()
        affine[:3, 3] = self.affine[:3, 3] + self.affine[:3, axis] * start
        index: list[slice] = [slice(None)] * 3
        index[axis] = slice(start, stop)
        return Volume(np.ascontiguousarray(self.array[tuple(index)]), affine)


@dataclass(frozen=True)
class BenchCase:
    """One paired case: the method gets ``source``; ``target`` is the reference.

    Attributes:
        name: Case id, e.g. ``"colin27-x4"``.
        source: The input (Q1: MR, Q2: thick slices, Q3: the source scanner's image).
        target: The reference on its grid (Q1: CT in HU, Q2: the 1 mm volume, Q3: the
            target scanner's image).
        mask: Where metrics are computed (1 inside), on the target's grid.
        source_domain: The source's domain where a benchmark has several pairs of
            domains (Q3m: the scanner, e.g. ``"B"``); empty otherwise.
        target_domain: The target's domain (Q3m: e.g. ``"A"``); empty otherwise.
    """

    name: str
    source: Volume
    target: Volume
    mask: Volume
    source_domain: str = ""
    target_domain: str = ""


@dataclass(frozen=True)
class DomainVolume:
    """One unpaired training image of one scanner (Q3)."""

    name: str
    domain: str
    image: Volume
    mask: Volume


@dataclass(frozen=True)
class BenchDataset:
    """A benchmark's data: paired training cases, per-scanner training images, test cases."""

    task: TaskName
    train_pairs: tuple[BenchCase, ...]
    train_domains: tuple[DomainVolume, ...]
    test: tuple[BenchCase, ...]
    folder: Path
    fingerprint: str
    validation: tuple[BenchCase, ...] = ()
    split: str = ""

    @property
    def label(self) -> str:
        """``"q1x-a"`` for a split of a multi-split benchmark, else the task (``"q1"``)."""
        return f"{self.task}-{self.split}" if self.split else self.task


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


def head_mask(image: npt.ArrayLike) -> BoolArray:
    """Foreground of an MR volume: the head (Colin27) or the brain (skull-stripped MNI152).

    Voxels above half the Otsu threshold, closed with a 5³ cube, holes filled in 3D and
    then slice by slice (axial), largest connected component kept. Used as the metric
    mask of Q2 and Q3 (on the clean reference) and by the z-score baseline (on its input).
    """
    data = np.asarray(image, np.float32)
    foreground = data > 0.5 * otsu_threshold(data)
    foreground = ndimage.binary_closing(foreground, structure=np.ones((5, 5, 5), bool))
    foreground = ndimage.binary_fill_holes(foreground)
    labelled, count = ndimage.label(foreground)
    if count == 0:
        raise InputError("the image has no foreground above its Otsu threshold")
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    largest = labelled == int(sizes.argmax())
    for index in range(largest.shape[2]):
        largest[:, :, index] = ndimage.binary_fill_holes(largest[:, :, index])
    return np.asarray(largest)


def body_mask(ct_hu: npt.ArrayLike, *, fill_slices_axis: int | None = None) -> BoolArray:
    """Q1's body mask: CT > -500 HU, holes filled (3D).

    Args:
        ct_hu: CT volume in HU.
        fill_slices_axis: Also fill the holes of every slice across this array axis
            (Q1x: 2, axial). A chest scan that ends inside the lungs leaves them open to
            the outside in 3D, so they stay out of the mask; in each axial slice the
            chest wall closes them.

    Returns:
        The mask, boolean, of the CT's shape.
    """
    mask = np.asarray(ndimage.binary_fill_holes(np.asarray(ct_hu) > Q1_BODY_THRESHOLD_HU))
    if fill_slices_axis is not None:
        moved = np.moveaxis(mask, fill_slices_axis, 0)
        for index in range(moved.shape[0]):
            moved[index] = ndimage.binary_fill_holes(moved[index])
    return mask


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
        return _read_dataset(folder, task, fingerprint)
    return _read_dataset(folder / split, task, fingerprint, split=split)


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
    if not (folder / _INDEX).is_file():
        _write_dataset(folder, task, _BUILDERS[task](sources))
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


@dataclass(frozen=True)
class _Built:
    train_pairs: tuple[BenchCase, ...]
    train_domains: tuple[DomainVolume, ...]
    test: tuple[BenchCase, ...]
    validation: tuple[BenchCase, ...] = ()


_Parts = dict[str, _Built]
"""A benchmark's data by split (``""``: the one dataset of an unsplit benchmark)."""


def _read(path: Path) -> Volume:
    from medi2i import read_volume

    image = read_volume(path)
    return Volume(image[0].numpy().astype(np.float32), np.asarray(image.affine, np.float64))


def _build_q1(sources: Path) -> _Parts:
    ct = _read(sources / CT_FILE)
    mr = ct_to_pseudo_t1(ct.array, spacing_mm=ct.spacing_mm, seed=Q1_SEED)
    mask = body_mask(ct.array).astype(np.float32)
    whole = BenchCase("invesalius0051", Volume(mr, ct.affine), ct, Volume(mask, ct.affine))
    size = ct.array.shape[0]
    half = _crop_case(whole, 0, Q1_TRAIN_END_X, "invesalius0051-train")
    slices = ct.array.shape[2]
    # validation_cut holds out the last slices; counted from the other end, the first
    train_stop, validation_start = validation_cut(
        slices, fraction=Q1_VALIDATION_FRACTION, gap=Q1_VALIDATION_GAP
    )
    train = _crop_case(half, slices - train_stop, slices, "invesalius0051-train", axis=2)
    validation = _crop_case(half, 0, slices - validation_start, "invesalius0051-val", axis=2)
    test = _crop_case(whole, Q1_TEST_START_X, size, "invesalius0051-test")
    return {"": _Built((train,), (), (test,), validation=(validation,))}


def _crop_case(case: BenchCase, start: int, stop: int, name: str, *, axis: int = 0) -> BenchCase:
    return BenchCase(
        name,
        case.source.crop(axis, start, stop),
        case.target.crop(axis, start, stop),
        case.mask.crop(axis, start, stop),
    )


def _build_q1x(sources: Path) -> _Parts:
    subjects = {
        name: _q1x_subject(name, sources / file, Q1X_SEED + index)
        for index, (name, file) in enumerate(Q1X_SUBJECTS)
    }
    parts: _Parts = {}
    for split, (held, tested) in Q1X_SPLITS.items():
        train, validation = validation_cut(
            subjects[held].target.array.shape[2],
            fraction=Q1X_VALIDATION_FRACTION,
            gap=Q1X_VALIDATION_GAP,
        )
        parts[split] = _Built(
            train_pairs=(
                _renamed(subjects["invesalius0051"], f"{split}-invesalius0051"),
                _crop_case(subjects[held], 0, train, f"{split}-{held}-train", axis=2),
            ),
            train_domains=(),
            test=(_renamed(subjects[tested], f"{split}-{tested}-test"),),
            validation=(
                _crop_case(
                    subjects[held],
                    validation,
                    subjects[held].target.array.shape[2],
                    f"{split}-{held}-val",
                    axis=2,
                ),
            ),
        )
    return parts


def _build_q4(sources: Path) -> _Parts:
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
        f"{held}-train": _crop_case(subjects[held], 0, train, "", axis=2),
        f"{held}-val": _crop_case(subjects[held], validation, slices, "", axis=2),
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
        "": _Built(
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


def _renamed(case: BenchCase, name: str) -> BenchCase:
    return BenchCase(name, case.source, case.target, case.mask)


def _q1x_subject(name: str, path: Path, seed: int) -> BenchCase:
    ct = resample_to_spacing(_read(path), Q1X_SPACING_MM)
    mr = ct_to_pseudo_t1(ct.array, spacing_mm=ct.spacing_mm, seed=seed)
    mask = body_mask(ct.array, fill_slices_axis=Q1X_FILL_SLICES_AXIS).astype(np.float32)
    return BenchCase(name, Volume(mr, ct.affine), ct, Volume(mask, ct.affine))


def resample_to_spacing(volume: Volume, spacing_mm: Sequence[float]) -> Volume:
    """Resample a volume onto a grid of another voxel size along the same array axes.

    The new grid covers the same extent (its shape is the old extent over the new
    spacing, rounded) with its first voxel's corner on the old first voxel's corner.
    Before linear interpolation each axis that gets coarser is blurred with a Gaussian
    of FWHM ``sqrt(new² - old²)`` mm, so that the result has about the new resolution
    and no aliasing.

    Args:
        volume: The volume (e.g. a CT in HU).
        spacing_mm: The new voxel size per array axis, in mm.

    Returns:
        The resampled volume (float32) with its new affine.
    """
    from medi2i.synth.fields import gaussian_blur_mm

    old = np.asarray(volume.spacing_mm, np.float64)
    new = np.asarray(spacing_mm, np.float64)
    extent = old * np.asarray(volume.array.shape, np.float64)
    shape = tuple(max(1, round(float(n))) for n in extent / new)
    fwhm = np.sqrt(np.clip(new**2 - old**2, 0.0, None))
    blurred = gaussian_blur_mm(volume.array, spacing_mm=old.tolist(), fwhm_mm=fwhm.tolist())
    zoom = new / old
    # new voxel i's centre lies at old voxel index (i + 0.5) * zoom - 0.5
    offset = 0.5 * zoom - 0.5
    array = ndimage.affine_transform(
        blurred, zoom, offset=offset, output_shape=shape, order=1, mode="nearest"
    )
    affine = volume.affine.copy()
    affine[:3, :3] = volume.affine[:3, :3] * zoom[None, :]
    affine[:3, 3] = volume.affine[:3, :3] @ offset + volume.affine[:3, 3]
    return Volume(np.asarray(array, np.float32), affine)


def _build_q2(sources: Path) -> _Parts:
    train = tuple(
        _thick_slice_case(sources / MNI152_FILE, "mni152", step) for step in Q2_SLICE_STEPS
    )
    test = tuple(
        _thick_slice_case(sources / COLIN27_FILE, "colin27", step) for step in Q2_SLICE_STEPS
    )
    return {"": _Built(train, (), test)}


def _thick_slice_case(path: Path, label: str, step: int) -> BenchCase:
    high = _read(path)
    spacing = high.spacing_mm[Q2_AXIS] * step
    thick = thick_slices(high.array, affine=high.affine, axis=Q2_AXIS, slice_spacing_mm=spacing)
    mask = Volume(head_mask(high.array).astype(np.float32), high.affine)
    return BenchCase(f"{label}-x{step}", Volume(thick.data, thick.affine), high, mask)


def _build_q2c(sources: Path) -> _Parts:
    train = tuple(
        _clinical_case(sources / MNI152_FILE, "mni152", suffix, voxel, step)
        for suffix, voxel, step in Q2C_CASES
    )
    test = tuple(
        _clinical_case(sources / COLIN27_FILE, "colin27", suffix, voxel, step)
        for suffix, voxel, step in Q2C_CASES
    )
    return {"": _Built(train, (), test)}


def _clinical_case(path: Path, label: str, suffix: str, voxel_mm: float, step: int) -> BenchCase:
    r"""A Q2c case: the reference on an isotropic ``voxel_mm`` grid whose slice count along
    :data:`Q2_AXIS` is a whole number of ``step``\ s plus one (so that the first and the
    last slice are acquired), and its thick slices of ``step`` voxels."""
    high = _isotropic(_read(path), voxel_mm)
    count = (high.array.shape[Q2_AXIS] - 1) // step * step + 1
    kept = np.take(high.array, range(count), axis=Q2_AXIS)
    high = Volume(np.ascontiguousarray(kept), high.affine)
    spacing = high.spacing_mm[Q2_AXIS] * step
    thick = thick_slices(high.array, affine=high.affine, axis=Q2_AXIS, slice_spacing_mm=spacing)
    mask = Volume(head_mask(high.array).astype(np.float32), high.affine)
    return BenchCase(f"{label}-{suffix}", Volume(thick.data, thick.affine), high, mask)


def _isotropic(volume: Volume, voxel_mm: float) -> Volume:
    """``volume`` (isotropic) resampled by cubic B-splines onto a grid of ``voxel_mm``
    voxels along the same axes, from the same first voxel centre, clipped to the
    original's range; the volume itself when its voxels are already that size."""
    spacing = np.asarray(volume.spacing_mm, np.float64)
    if np.allclose(spacing, voxel_mm, atol=1e-4):
        return volume
    zoom = voxel_mm / spacing
    shape = tuple(
        int(np.floor((n - 1) / z + 1e-6)) + 1 for n, z in zip(volume.array.shape, zoom, strict=True)
    )
    array = ndimage.affine_transform(
        np.asarray(volume.array, np.float64), zoom, output_shape=shape, order=3, mode="nearest"
    )
    array = np.clip(array, float(volume.array.min()), float(volume.array.max()))
    affine = volume.affine.copy()
    affine[:3, :3] = volume.affine[:3, :3] * zoom[None, :]
    return Volume(np.asarray(array, np.float32), affine)


def _build_q3(sources: Path) -> _Parts:
    domains, colin, colin_mask = _q3_parts(sources)
    source = _styled(colin, Q3_SOURCE, Q3_SEED + 100)
    target = _styled(colin, Q3_TARGET, Q3_SEED + 101)
    case = BenchCase(f"colin27-{Q3_SOURCE}-to-{Q3_TARGET}", source, target, colin_mask)
    return {"": _Built((), domains, (case,))}


def _build_q3m(sources: Path) -> _Parts:
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
    return {"": _Built((), domains, cases)}


def _q3_parts(sources: Path) -> tuple[tuple[DomainVolume, ...], Volume, Volume]:
    """MNI152 under each scanner (the training images), Colin27 and its head mask."""
    mni = _read(sources / MNI152_FILE)
    mni_mask = Volume(head_mask(mni.array).astype(np.float32), mni.affine)
    domains = tuple(
        DomainVolume(f"mni152-{name}", name, _styled(mni, name, Q3_SEED + i), mni_mask)
        for i, name in enumerate(Q3_SCANNERS)
    )
    colin = _read(sources / COLIN27_FILE)
    colin_mask = Volume(head_mask(colin.array).astype(np.float32), colin.affine)
    return domains, colin, colin_mask


def _styled(volume: Volume, scanner: str, seed: int) -> Volume:
    style = named_style(scanner)
    return Volume(
        apply_style(volume.array, spacing_mm=volume.spacing_mm, style=style, seed=seed),
        volume.affine,
    )


_BUILDERS: dict[TaskName, Callable[[Path], _Parts]] = {
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


# -- the on-disk cache ------------------------------------------------------------------

_INDEX = "dataset.json"
_ROLE_FILES: dict[TaskName, tuple[str, str, str]] = {
    "q1": ("mr", "ct", "mask"),  # the SynthRAD layout
    "q2": ("thick_slices", "high_res", "mask"),
    "q3": ("source", "target", "mask"),
    "q1x": ("mr", "ct", "mask"),  # the SynthRAD layout
    "q3m": ("source", "target", "mask"),
    "q4": ("mr", "ct", "mask"),  # the SynthRAD layout
    "q2c": ("thick_slices", "high_res", "mask"),
}
"""File names (without ``.nii.gz``) of a case's source, target and mask."""


def _write_dataset(folder: Path, task: TaskName, parts: _Parts) -> None:
    from medi2i.io import atomic_path

    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for split, built in parts.items():
        _write_part(staging / split if split else staging, task, built)
    if "" not in parts:  # the benchmark's own index: its splits, written last
        with atomic_path(staging / _INDEX) as tmp:
            tmp.write_text(json.dumps({"splits": sorted(parts)}, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def _write_part(folder: Path, task: TaskName, built: _Built) -> None:
    from medi2i.io import atomic_path

    index: dict[str, list[dict[str, str]]] = {
        "train_pairs": [],
        "train_domains": [],
        "validation": [],
        "test": [],
    }
    splits = (
        ("train_pairs", built.train_pairs),
        ("validation", built.validation),
        ("test", built.test),
    )
    for split, cases in splits:
        for case in cases:
            volumes = (case.source, case.target, case.mask)
            for role, volume in zip(_ROLE_FILES[task], volumes, strict=True):
                _write(
                    volume, folder / split / case.name / f"{role}.nii.gz", mask=volume is case.mask
                )
            entry = {"name": case.name}
            if case.source_domain or case.target_domain:
                entry.update(source_domain=case.source_domain, target_domain=case.target_domain)
            index[split].append(entry)
    for item in built.train_domains:
        _write(item.image, folder / "train_domains" / item.name / "image.nii.gz", mask=False)
        _write(item.mask, folder / "train_domains" / item.name / "mask.nii.gz", mask=True)
        index["train_domains"].append({"name": item.name, "domain": item.domain})
    with atomic_path(folder / _INDEX) as tmp:
        tmp.write_text(json.dumps(index, indent=2) + "\n")


def _write(volume: Volume, path: Path, *, mask: bool) -> None:
    from medi2i import write_volume

    image = volume.metatensor()
    image.meta["medi2i.dtype"] = "uint8" if mask else "float32"
    write_volume(image, path)


def _read_dataset(
    folder: Path, task: TaskName, fingerprint: str, *, split: str = ""
) -> BenchDataset:
    try:
        index = json.loads((folder / _INDEX).read_text())
        pairs = _read_cases(folder / "train_pairs", index["train_pairs"], _ROLE_FILES[task])
        test = _read_cases(folder / "test", index["test"], _ROLE_FILES[task])
        validation = _read_cases(
            folder / "validation", index.get("validation", []), _ROLE_FILES[task]
        )
        domains = tuple(
            DomainVolume(
                entry["name"],
                entry["domain"],
                _read(folder / "train_domains" / entry["name"] / "image.nii.gz"),
                _read(folder / "train_domains" / entry["name"] / "mask.nii.gz"),
            )
            for entry in index["train_domains"]
        )
    except (KeyError, json.JSONDecodeError, InputError, OSError) as exc:
        raise InputError(
            f"benchmark cache {folder} is damaged ({exc}); delete the folder and run again"
        ) from None
    return BenchDataset(task, pairs, domains, test, folder, fingerprint, validation, split)


def _read_case(folder: Path, entry: dict[str, str], roles: tuple[str, str, str]) -> BenchCase:
    source, target, mask = (_read(folder / f"{role}.nii.gz") for role in roles)
    return BenchCase(
        entry["name"],
        source,
        target,
        mask,
        source_domain=entry.get("source_domain", ""),
        target_domain=entry.get("target_domain", ""),
    )


def _read_cases(
    split: Path, entries: Sequence[dict[str, str]], roles: tuple[str, str, str]
) -> tuple[BenchCase, ...]:
    return tuple(_read_case(split / e["name"], e, roles) for e in entries)
