"""The quality benchmarks' data types: volumes with their affine, paired cases, per-scanner
training images and a benchmark's whole dataset (built by :mod:`medi2i_bench.datasets`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
TaskName = Literal["q1", "q2", "q3", "q1x", "q3m", "q4", "q2c"]
TASKS: tuple[TaskName, ...] = ("q1", "q2", "q3", "q1x", "q3m", "q4", "q2c")


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

    def mirrored(self, axis: int) -> Volume:
        """The array reversed along ``axis`` under the same affine: a mirror image in the
        world too (a left half shown as a right half), not a relabelling of the voxels."""
        return Volume(np.ascontiguousarray(np.flip(self.array, axis)), self.affine.copy())


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


def read_volume_file(path: Path) -> Volume:
    """A NIfTI (or any medi2i-readable) file as a :class:`Volume` (float32, first channel)."""
    from medi2i import read_volume

    image = read_volume(path)
    return Volume(image[0].numpy().astype(np.float32), np.asarray(image.affine, np.float64))


def crop_case(case: BenchCase, start: int, stop: int, name: str, *, axis: int = 0) -> BenchCase:
    """Array indices ``[start, stop)`` along ``axis`` of a case's three volumes, renamed."""
    return BenchCase(
        name,
        case.source.crop(axis, start, stop),
        case.target.crop(axis, start, stop),
        case.mask.crop(axis, start, stop),
    )


def mirrored_case(case: BenchCase, axis: int) -> BenchCase:
    """A case's three volumes mirrored along array ``axis`` (:meth:`Volume.mirrored`)."""
    return BenchCase(
        case.name,
        case.source.mirrored(axis),
        case.target.mirrored(axis),
        case.mask.mirrored(axis),
        case.source_domain,
        case.target_domain,
    )


def renamed(case: BenchCase, name: str) -> BenchCase:
    """The same volumes under another name (domains dropped)."""
    return BenchCase(name, case.source, case.target, case.mask)
