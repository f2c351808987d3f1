"""medi2i-bench: the quality benchmarks Q1-Q3 and Q1x of BENCHMARKS.md, as ``medi2i bench``.

A research tool of the medi2i repository, not part of the SDK: it adds ``medi2i bench
run`` and ``medi2i bench prepare`` through medi2i's ``register_commands`` hook. This
module holds only that hook; medi2i imports it on every command, so the benchmark
modules (numpy, scipy, torch) are imported when a ``bench`` command runs:

- :mod:`medi2i_bench.datasets`: build Q1 (MR→CT), Q2 (super-resolution), Q3
  (harmonization) and Q1x (cross-subject MR→CT, two splits) from ``MEDI2I_DATA_DIR``,
  cached on disk;
- :mod:`medi2i_bench.baselines`: bulk water and the ``monotone-mapping`` method (Q1 and
  Q1x), the ``interpolation`` method, linear and cubic B-spline (Q2), no harmonization
  and the ``zscore`` and ``nyul`` methods (Q3): registered methods of the first-party
  plugins, run as any method;
- :mod:`medi2i_bench.contenders`: how a registered method is fitted and run as a
  contender;
- :mod:`medi2i_bench.harness`: evaluate baselines, methods and trained models with the
  registered metrics, write JSON, Markdown and the report's slice montages;
- :mod:`medi2i_bench.commands`: the ``bench`` command group.

Example:
    >>> from medi2i_bench.harness import run_benchmarks
    >>> results = run_benchmarks(tasks=["q1"], output_dir="bench-results")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import medi2i

if TYPE_CHECKING:
    import click

MEDI2I_PLUGIN_API = "2.0"
__all__ = ["register_commands"]


@medi2i.hookimpl
def register_commands(cli: click.Group) -> None:
    """Add a new ``bench`` group (``run``, ``prepare``) to ``cli``."""
    from medi2i_bench.commands import bench_group

    cli.add_command(bench_group())
