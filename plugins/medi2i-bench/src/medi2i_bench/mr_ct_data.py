"""Q1, Q1x and Q4, the MR→CT benchmarks' data: pseudo-T1w MR simulated from real CTs
(:func:`medi2i.synth.ct_to_pseudo_t1`).

- Q1 (MR→CT): a pseudo-T1w MR simulated from the real head CT (seed :data:`Q1_SEED`);
  body mask CT > -500 HU with holes filled; train on array x < 124, test on x >= 132.
  The bottom fifth of the training half's axial slices (the skull base; 10 mm away from
  the training slices) is the validation case and is never trained on; it is mirrored
  left-right, so that, like the test half, it shows the network the side of the head it
  did not train on.
- Q1x (cross-subject MR→CT): the head CT and two chest CTs resampled to
  :data:`Q1X_SPACING_MM`, a pseudo-T1w MR simulated from each (seeds ``Q1X_SEED + i``),
  body mask CT > -500 HU with holes filled in 3D and in each axial slice. Split ``a``
  trains on the head and lung1, tests on lung2; split ``b`` trains on the head and lung2,
  tests on lung1. The last fifth of the training chest's slices (after a 2-slice gap)
  is the split's validation case and is never trained on.
- Q4 (MR→CT under scanner shift): Q1x split ``a``'s subjects (train on the head and
  lung1, validate on lung1's last fifth, test on lung2), each subject's pseudo-T1w MR
  under scanner styles A, B and C (seeds :data:`Q4_SEED` ``+ 10 i + j``; the whole
  subject is styled, then cut). Every case is named ``<part>-<style>`` and carries its
  style; the no-adaptation model trains on style A's pairs
  (:data:`Q4_SOURCE_STYLE`), the oracles on the target style's.

The builders are called by :func:`medi2i_bench.datasets.build_dataset`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medi2i.synth import ct_to_pseudo_t1
from medi2i_bench.cache import Built, Parts
from medi2i_bench.cases import (
    BenchCase,
    Volume,
    crop_case,
    mirrored_case,
    read_volume_file,
    renamed,
)
from medi2i_bench.grids import resample_to_spacing
from medi2i_bench.harmonization_data import Q3_SCANNERS, styled
from medi2i_bench.masks import BODY_THRESHOLD_HU, body_mask
from medi2i_bench.source_files import CT_FILE, LUNG1_FILE, LUNG2_FILE

__all__ = [
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
    "Q1_VALIDATION_MIRROR_AXIS",
    "Q4_SEED",
    "Q4_SOURCE_STYLE",
    "build_q1",
    "build_q1x",
    "build_q4",
    "validation_cut",
]

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
"""Per split: (the training subject that gives up its last slices to validation, the test
subject). The head is always trained on."""
Q1X_VALIDATION_FRACTION = 0.2
"""Share of the validation subject's axial slices (the last ones, array z) held out."""
Q1X_VALIDATION_GAP = 2
"""Slices left out between that subject's training and validation parts (10 mm)."""
Q1X_FILL_SLICES_AXIS = 2
"""Q1x's body mask also fills each axial slice's holes (the lungs; :func:`body_mask`)."""
Q4_SOURCE_STYLE = "A"
"""Q4's training scanner: the no-adaptation model learns from MR of this style."""
Q4_SEED = 400
"""Noise seed of Q4's styled MR: subject ``i`` under style ``j`` gets ``Q4_SEED + 10 i + j``."""


def build_q1(sources: Path) -> Parts:
    """Q1: the head CT's two halves, with the skull base of the training half held out
    (mirrored) for validation."""
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


def build_q1x(sources: Path) -> Parts:
    """Q1x: the three subjects, one dataset per split of :data:`Q1X_SPLITS`."""
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


def build_q4(sources: Path) -> Parts:
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
    styled_cases: dict[str, list[BenchCase]] = {key: [] for key in plain}
    for key, case in plain.items():
        whole = subjects[subject_of[key]]  # style the whole subject, then cut: one scan
        for j, style in enumerate(Q3_SCANNERS):
            seed = Q4_SEED + 10 * index[subject_of[key]] + j
            look = styled(whole.source, style, seed)
            if key.endswith("-train"):
                look = look.crop(2, 0, train)
            elif key.endswith("-val"):
                look = look.crop(2, validation, slices)
            styled_cases[key].append(
                BenchCase(f"{key}-{style}", look, case.target, case.mask, style, "CT")
            )
    return {
        "": Built(
            train_pairs=(*styled_cases["invesalius0051"], *styled_cases[f"{held}-train"]),
            train_domains=(),
            test=tuple(styled_cases[f"{tested}-test"]),
            validation=tuple(styled_cases[f"{held}-val"]),
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
