"""The quality benchmarks Q1-Q3 and Q1x of BENCHMARKS.md: data, baselines, harness, montages.

- :mod:`medi2i.bench.datasets`: build Q1 (MR→CT), Q2 (super-resolution), Q3
  (harmonization) and Q1x (cross-subject MR→CT, two splits) from ``MEDI2I_DATA_DIR``,
  cached on disk;
- :mod:`medi2i.bench.baselines`: bulk water and the ``monotone-mapping`` method (Q1 and
  Q1x), the ``interpolation`` method, linear and cubic B-spline (Q2), no harmonization
  and the ``zscore`` and ``nyul`` methods (Q3): registered methods of the first-party
  plugins, run as any method;
- :mod:`medi2i.bench.contenders`: how a registered method is fitted and run as a
  contender;
- :mod:`medi2i.bench.harness`: evaluate baselines, methods and trained models with the
  registered metrics, write JSON and Markdown;
- :mod:`medi2i.bench.montage`: orthogonal-slice montages (PNG).

Command line: ``medi2i bench run --task all --output DIR``.

Example:
    >>> from medi2i.bench import run_benchmarks
    >>> results = run_benchmarks(tasks=["q1"], output_dir="bench-results")  # doctest: +SKIP
"""

from __future__ import annotations

from medi2i.bench.baselines import baselines_for, bulk_water
from medi2i.bench.contenders import Contender, method_contender, paired_fit
from medi2i.bench.datasets import (
    TASKS,
    BenchCase,
    BenchDataset,
    DomainVolume,
    Volume,
    body_mask,
    build_dataset,
    build_splits,
    head_mask,
)
from medi2i.bench.harness import BenchResult, evaluate, metrics_for, run_benchmarks
from medi2i.bench.montage import MontageRow, Panel, save_montage

__all__ = [
    "TASKS",
    "BenchCase",
    "BenchDataset",
    "BenchResult",
    "Contender",
    "DomainVolume",
    "MontageRow",
    "Panel",
    "Volume",
    "baselines_for",
    "body_mask",
    "build_dataset",
    "build_splits",
    "bulk_water",
    "evaluate",
    "head_mask",
    "method_contender",
    "metrics_for",
    "paired_fit",
    "run_benchmarks",
    "save_montage",
]
