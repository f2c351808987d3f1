"""Q3 and Q3m, the harmonization benchmarks' data, built from MNI152 and Colin27.

- Q3 (harmonization): scanners A, B, C (:data:`medi2i.synth.NAMED_STYLES`) applied to
  MNI152 for training (one acquisition per scanner) and to Colin27 for the test:
  Colin27-under-B is the input, Colin27-under-A the reference.
- Q3m (multi-scanner harmonization): Q3's training images; Colin27 under each of A, B
  and C translated into each other (six ordered pairs, :data:`Q3M_COLIN27_SEEDS`; the
  B → A case is Q3's). Each case names its source and target scanner.

The builders are called by :func:`medi2i_bench.datasets.build_dataset`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medi2i.synth import apply_style, named_style
from medi2i_bench.cache import Built, Parts
from medi2i_bench.cases import BenchCase, DomainVolume, Volume, read_volume_file
from medi2i_bench.masks import head_mask
from medi2i_bench.source_files import COLIN27_FILE, MNI152_FILE

__all__ = [
    "Q3M_COLIN27_SEEDS",
    "Q3_SCANNERS",
    "Q3_SEED",
    "Q3_SOURCE",
    "Q3_TARGET",
    "build_q3",
    "build_q3m",
    "styled",
]

Q3_SEED = 27
Q3_SOURCE, Q3_TARGET = "B", "A"
Q3_SCANNERS = ("A", "B", "C")
Q3M_COLIN27_SEEDS = {"A": Q3_SEED + 101, "B": Q3_SEED + 100, "C": Q3_SEED + 102}
"""Noise seeds of Colin27 under each scanner in Q3m; A's and B's are Q3's, so Q3m's
B → A case is Q3's test case."""


def build_q3(sources: Path) -> Parts:
    """Q3: MNI152 under each scanner to train on; Colin27 under B → A to test."""
    domains, colin, colin_mask = _q3_parts(sources)
    source = styled(colin, Q3_SOURCE, Q3_SEED + 100)
    target = styled(colin, Q3_TARGET, Q3_SEED + 101)
    case = BenchCase(f"colin27-{Q3_SOURCE}-to-{Q3_TARGET}", source, target, colin_mask)
    return {"": Built((), domains, (case,))}


def build_q3m(sources: Path) -> Parts:
    """Q3's training images; as test cases Colin27 under every scanner translated into
    every other (six ordered pairs)."""
    domains, colin, colin_mask = _q3_parts(sources)
    looks = {name: styled(colin, name, Q3M_COLIN27_SEEDS[name]) for name in Q3_SCANNERS}
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
        DomainVolume(f"mni152-{name}", name, styled(mni, name, Q3_SEED + i), mni_mask)
        for i, name in enumerate(Q3_SCANNERS)
    )
    colin = read_volume_file(sources / COLIN27_FILE)
    colin_mask = Volume(head_mask(colin.array).astype(np.float32), colin.affine)
    return domains, colin, colin_mask


def styled(volume: Volume, scanner: str, seed: int) -> Volume:
    """``volume`` as the named scanner (:func:`medi2i.synth.named_style`) acquires it,
    with noise seed ``seed``; the affine is kept."""
    style = named_style(scanner)
    return Volume(
        apply_style(volume.array, spacing_mm=volume.spacing_mm, style=style, seed=seed),
        volume.affine,
    )
