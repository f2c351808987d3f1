"""The quality benchmarks' data: Q1-Q3 built from ``MEDI2I_DATA_DIR`` as BENCHMARKS.md says.

- Q1 (MR→CT): a pseudo-T1w MR simulated from the real head CT
  (:func:`medi2i.synth.ct_to_pseudo_t1`, seed :data:`Q1_SEED`); body mask CT > -500 HU
  with holes filled; train on array x < 124, test on x >= 132.
- Q2 (super-resolution): Colin27 degraded through-plane (Gaussian slice profile of FWHM
  equal to the spacing, every 4th or 2nd axial slice kept) is the test; MNI152 with the
  same degradation is the training data.
- Q3 (harmonization): scanners A, B, C (:data:`medi2i.synth.NAMED_STYLES`) applied to
  MNI152 for training (one acquisition per scanner) and to Colin27 for the test:
  Colin27-under-B is the input, Colin27-under-A the reference.

A built set is written once as NIfTI files under a cache folder (``--work-dir``, else
``$MEDI2I_CACHE_DIR``, else the user cache folder) keyed by a fingerprint of the source
files, the simulator parameters and the seeds, and read back on the next run. A
symbolic link ``<cache>/<task>`` (e.g. ``bench-work/q1``) points at the current
fingerprinted folder, so workflows can name a path that does not change. Q1's
training case uses the SynthRAD layout (``<case>/mr|ct|mask.nii.gz``) so training
workflows can read it unchanged.

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

from medi2i.errors import InputError, OptionsError
from medi2i.hashing import file_sha256
from medi2i.synth import PseudoT1Parameters, apply_style, ct_to_pseudo_t1, named_style, thick_slices
from medi2i.synth.scanner_styles import otsu_threshold

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
TaskName = Literal["q1", "q2", "q3"]
TASKS: tuple[TaskName, ...] = ("q1", "q2", "q3")

DATA_DIR_VARIABLE = "MEDI2I_DATA_DIR"
CACHE_DIR_VARIABLE = "MEDI2I_CACHE_DIR"
DATASET_VERSION = "1"
"""Bumped whenever a builder changes what it makes, so old caches are not reused."""

CT_FILE = "ct_head_invesalius0051.nii.gz"
COLIN27_FILE = "mr_t1_colin27_1mm.nii.gz"
MNI152_FILE = "mni152_2009a_t1_1mm.nii.gz"

Q1_SEED = 51
Q1_TRAIN_END_X = 124
"""Q1 trains on array x < 124 ..."""
Q1_TEST_START_X = 132
"""... and tests on x >= 132 (an 8-voxel gap at the midline)."""
Q1_BODY_THRESHOLD_HU = -500.0
Q2_SLICE_STEPS = (4, 2)
"""Q2's through-plane factors: 1×1×4 mm, and the ×2 variant."""
Q2_AXIS = 2
Q3_SEED = 27
Q3_SOURCE, Q3_TARGET = "B", "A"
Q3_SCANNERS = ("A", "B", "C")


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
        affine = self.affine.copy()
        affine[:3, 3] = self.affine[:3, 3] + self.affine[:3, 0] * start
        return Volume(np.ascontiguousarray(self.array[start:stop]), affine)


@dataclass(frozen=True)
class BenchCase:
    """One paired case: the method gets ``source``; ``target`` is the reference.

    Attributes:
        name: Case id, e.g. ``"colin27-x4"``.
        source: The input (Q1: MR, Q2: thick slices, Q3: the source scanner's image).
        target: The reference on its grid (Q1: CT in HU, Q2: the 1 mm volume, Q3: the
            target scanner's image).
        mask: Where metrics are computed (1 inside), on the target's grid.
    """

    name: str
    source: Volume
    target: Volume
    mask: Volume


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


def data_dir() -> Path:
    """The shared data folder from ``MEDI2I_DATA_DIR``.

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
    missing = [f for f in (CT_FILE, COLIN27_FILE, MNI152_FILE) if not (folder / f).is_file()]
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


def body_mask(ct_hu: npt.ArrayLike) -> BoolArray:
    """Q1's body mask: CT > -500 HU, holes filled (3D)."""
    return np.asarray(ndimage.binary_fill_holes(np.asarray(ct_hu) > Q1_BODY_THRESHOLD_HU))


def build_dataset(
    task: TaskName, *, work_dir: str | Path | None = None, source_dir: str | Path | None = None
) -> BenchDataset:
    """Build (or read back from the cache) one benchmark's data.

    Args:
        task: ``"q1"``, ``"q2"`` or ``"q3"``.
        work_dir: Cache folder; :func:`default_cache_dir` when ``None``.
        source_dir: Folder of the real volumes; ``MEDI2I_DATA_DIR`` when ``None``.

    Returns:
        The dataset; its files are in ``dataset.folder``.

    Raises:
        InputError: The shared data is missing.
        OptionsError: ``task`` is not a benchmark.
    """
    if task not in TASKS:
        raise OptionsError(f"unknown benchmark {task!r}; choose one of {', '.join(TASKS)}")
    sources = Path(source_dir) if source_dir is not None else data_dir()
    fingerprint = _fingerprint(task, sources)
    folder = Path(work_dir or default_cache_dir()) / f"{task}-{fingerprint[:12]}"
    if not (folder / _INDEX).is_file():
        _write_dataset(folder, task, _BUILDERS[task](sources))
    dataset = _read_dataset(folder, task, fingerprint)
    link_stable_alias(folder, task)
    return dataset


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


def _read(path: Path) -> Volume:
    from medi2i.io import read_volume

    image = read_volume(path)
    return Volume(image[0].numpy().astype(np.float32), np.asarray(image.affine, np.float64))


def _build_q1(sources: Path) -> _Built:
    ct = _read(sources / CT_FILE)
    mr = ct_to_pseudo_t1(ct.array, spacing_mm=ct.spacing_mm, seed=Q1_SEED)
    mask = body_mask(ct.array).astype(np.float32)
    whole = BenchCase("invesalius0051", Volume(mr, ct.affine), ct, Volume(mask, ct.affine))
    size = ct.array.shape[0]
    train = _crop_case(whole, 0, Q1_TRAIN_END_X, "invesalius0051-train")
    test = _crop_case(whole, Q1_TEST_START_X, size, "invesalius0051-test")
    return _Built((train,), (), (test,))


def _crop_case(case: BenchCase, start: int, stop: int, name: str) -> BenchCase:
    return BenchCase(
        name,
        case.source.crop_x(start, stop),
        case.target.crop_x(start, stop),
        case.mask.crop_x(start, stop),
    )


def _build_q2(sources: Path) -> _Built:
    train = tuple(
        _thick_slice_case(sources / MNI152_FILE, "mni152", step) for step in Q2_SLICE_STEPS
    )
    test = tuple(
        _thick_slice_case(sources / COLIN27_FILE, "colin27", step) for step in Q2_SLICE_STEPS
    )
    return _Built(train, (), test)


def _thick_slice_case(path: Path, label: str, step: int) -> BenchCase:
    high = _read(path)
    spacing = high.spacing_mm[Q2_AXIS] * step
    thick = thick_slices(high.array, affine=high.affine, axis=Q2_AXIS, slice_spacing_mm=spacing)
    mask = Volume(head_mask(high.array).astype(np.float32), high.affine)
    return BenchCase(f"{label}-x{step}", Volume(thick.data, thick.affine), high, mask)


def _build_q3(sources: Path) -> _Built:
    mni = _read(sources / MNI152_FILE)
    mni_mask = Volume(head_mask(mni.array).astype(np.float32), mni.affine)
    domains = tuple(
        DomainVolume(f"mni152-{name}", name, _styled(mni, name, Q3_SEED + i), mni_mask)
        for i, name in enumerate(Q3_SCANNERS)
    )
    colin = _read(sources / COLIN27_FILE)
    colin_mask = Volume(head_mask(colin.array).astype(np.float32), colin.affine)
    source = _styled(colin, Q3_SOURCE, Q3_SEED + 100)
    target = _styled(colin, Q3_TARGET, Q3_SEED + 101)
    case = BenchCase(f"colin27-{Q3_SOURCE}-to-{Q3_TARGET}", source, target, colin_mask)
    return _Built((), domains, (case,))


def _styled(volume: Volume, scanner: str, seed: int) -> Volume:
    style = named_style(scanner)
    return Volume(
        apply_style(volume.array, spacing_mm=volume.spacing_mm, style=style, seed=seed),
        volume.affine,
    )


_BUILDERS: dict[TaskName, Callable[[Path], _Built]] = {
    "q1": _build_q1,
    "q2": _build_q2,
    "q3": _build_q3,
}
_SOURCES: dict[TaskName, tuple[str, ...]] = {
    "q1": (CT_FILE,),
    "q2": (COLIN27_FILE, MNI152_FILE),
    "q3": (COLIN27_FILE, MNI152_FILE),
}


def _fingerprint(task: TaskName, sources: Path) -> str:
    digest = hashlib.sha256(f"medi2i-bench/{DATASET_VERSION}/{task}".encode())
    for name in _SOURCES[task]:
        path = sources / name
        if not path.is_file():
            raise InputError(f"benchmark {task} needs {name} in {sources}")
        digest.update(bytes.fromhex(file_sha256(path)))
    settings = {
        "q1": [PseudoT1Parameters().model_dump_json(), Q1_SEED, Q1_TRAIN_END_X, Q1_TEST_START_X],
        "q2": [list(Q2_SLICE_STEPS), Q2_AXIS],
        "q3": [
            [named_style(n).model_dump_json() for n in Q3_SCANNERS],
            Q3_SEED,
            Q3_SOURCE,
            Q3_TARGET,
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
}
"""File names (without ``.nii.gz``) of a case's source, target and mask."""


def _write_dataset(folder: Path, task: TaskName, built: _Built) -> None:
    from medi2i.io import atomic_path

    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    index: dict[str, list[dict[str, str]]] = {"train_pairs": [], "train_domains": [], "test": []}
    for split, cases in (("train_pairs", built.train_pairs), ("test", built.test)):
        for case in cases:
            volumes = (case.source, case.target, case.mask)
            for role, volume in zip(_ROLE_FILES[task], volumes, strict=True):
                _write(
                    volume, staging / split / case.name / f"{role}.nii.gz", mask=volume is case.mask
                )
            index[split].append({"name": case.name})
    for item in built.train_domains:
        _write(item.image, staging / "train_domains" / item.name / "image.nii.gz", mask=False)
        _write(item.mask, staging / "train_domains" / item.name / "mask.nii.gz", mask=True)
        index["train_domains"].append({"name": item.name, "domain": item.domain})
    with atomic_path(staging / _INDEX) as tmp:
        tmp.write_text(json.dumps(index, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def _write(volume: Volume, path: Path, *, mask: bool) -> None:
    from medi2i.io import write_volume

    image = volume.metatensor()
    image.meta["medi2i.dtype"] = "uint8" if mask else "float32"
    write_volume(image, path)


def _read_dataset(folder: Path, task: TaskName, fingerprint: str) -> BenchDataset:
    try:
        index = json.loads((folder / _INDEX).read_text())
        pairs = _read_cases(folder / "train_pairs", index["train_pairs"], _ROLE_FILES[task])
        test = _read_cases(folder / "test", index["test"], _ROLE_FILES[task])
        domains = tuple(
            DomainVolume(
                entry["name"],
                entry["domain"],
                _read(folder / "train_domains" / entry["name"] / "image.nii.gz"),
                _read(folder / "train_domains" / entry["name"] / "mask.nii.gz"),
            )
            for entry in index["train_domains"]
        )
    except (KeyError, json.JSONDecodeError, InputError) as exc:
        raise InputError(
            f"benchmark cache {folder} is damaged ({exc}); delete the folder and run again"
        ) from None
    return BenchDataset(task, pairs, domains, test, folder, fingerprint)


def _read_cases(
    split: Path, entries: Sequence[dict[str, str]], roles: tuple[str, str, str]
) -> tuple[BenchCase, ...]:
    return tuple(
        BenchCase(e["name"], *(_read(split / e["name"] / f"{role}.nii.gz") for role in roles))
        for e in entries
    )
