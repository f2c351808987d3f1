"""Q2 and Q2c, the super-resolution benchmarks' data: thick-slice acquisitions of
MNI152 (training) and Colin27 (test).

- Q2 (super-resolution): Colin27 degraded through-plane (Gaussian slice profile of FWHM
  equal to the spacing, every 4th or 2nd axial slice kept) is the test; MNI152 with the
  same degradation is the training data.
- Q2c (clinical-like acquisitions): the same degradation on the grids of
  :data:`Q2C_CASES`, 1×1×5 mm and 0.8×0.8×4 mm.

The builders are called by :func:`medi2i_bench.datasets.build_dataset`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medi2i.synth import thick_slices
from medi2i_bench.cache import Built, Parts
from medi2i_bench.cases import BenchCase, Volume, read_volume_file
from medi2i_bench.grids import resample_isotropic
from medi2i_bench.masks import head_mask
from medi2i_bench.source_files import COLIN27_FILE, MNI152_FILE

__all__ = ["Q2C_CASES", "Q2_AXIS", "Q2_SLICE_STEPS", "build_q2", "build_q2c"]

Q2_SLICE_STEPS = (4, 2)
"""Q2's through-plane factors: 1×1×4 mm, and the ×2 variant."""
Q2_AXIS = 2
Q2C_CASES: tuple[tuple[str, float, int], ...] = (("5mm", 1.0, 5), ("aniso", 0.8, 5))
"""Q2c's clinical-like acquisitions, as (case suffix, isotropic reference voxel in mm,
slices merged into one thick slice): 1×1×5 mm from the 1 mm volume, and 0.8×0.8×4 mm
from the volume resampled onto a 0.8 mm grid."""


def build_q2(sources: Path) -> Parts:
    """Q2: MNI152's thick slices to train on, Colin27's to test, at each of
    :data:`Q2_SLICE_STEPS`."""
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


def build_q2c(sources: Path) -> Parts:
    """Q2c: MNI152's clinical-like acquisitions to train on, Colin27's to test, one per
    entry of :data:`Q2C_CASES`."""
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
