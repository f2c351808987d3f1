"""The ``medi2i bench run|prepare`` commands (quality benchmarks), which this plugin adds
through medi2i's ``register_commands`` hook.

Heavy modules are imported inside the commands, so adding these to the CLI costs
``medi2i --help`` nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from medi2i.cli.options import (
    command_registry,
    device_option,
    key_values,
    parse_mirror_axes,
    parse_reflect_padding,
    parse_roi_size,
)

if TYPE_CHECKING:
    from medi2i_bench.datasets import TaskName

TASK_CHOICES = ("q1", "q2", "q3", "q1x", "q3m", "q4", "q2c", "all")
SPLIT_CHOICES = ("a", "b")


def bench_group() -> click.Group:
    """A new ``bench`` group holding ``run`` and ``prepare``."""
    return click.Group(
        "bench",
        commands=[bench_run_command, bench_prepare_command],
        help="Quality benchmarks Q1-Q3, Q1x, Q3m, Q4 and Q2c (see "
        "benchmarks/quality/README.md). They read the real volumes from MEDI2I_DATA_DIR; "
        "run needs no MEDI2I_DATA_DIR when its --work-dir holds data that prepare built.",
    )


def _tasks(choice: str) -> list[TaskName]:
    from medi2i_bench.datasets import TASKS

    return list(TASKS) if choice == "all" else [choice]  # type: ignore[list-item]


@click.command("run")
@click.option(
    "--task",
    type=click.Choice(TASK_CHOICES),
    default="all",
    show_default=True,
    help="Benchmark to run: q1 (MR→CT), q2 (super-resolution), q3 (harmonization), "
    "q1x (cross-subject MR→CT), q3m (multi-scanner harmonization, every pair of A, B, C), "
    "q4 (MR→CT under scanner shift), q2c (clinical-like thick slices: 1×1×5 and 0.8×0.8×4 mm).",
)
@click.option(
    "--split",
    "splits",
    type=click.Choice(SPLIT_CHOICES),
    multiple=True,
    help="Q1x only: the split to run (a: test on lung2, b: test on lung1; repeat) "
    "[default: both]. A --model needs exactly one.",
)
@click.option(
    "--method",
    "methods",
    multiple=True,
    metavar="ID",
    help="A registered method to evaluate besides the baselines (repeat).",
)
@click.option(
    "--option",
    "option_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="An option of every --method, value parsed as YAML (repeat; as medi2i predict "
    "--option), e.g. --option align=centres; named in the row's legend.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="PATH",
    type=click.Path(exists=True, path_type=Path),
    help="A trained-model folder or zip to evaluate (repeat).",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-results"),
    show_default=True,
    help="Folder for the JSON, Markdown and PNG results.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Cache of the built benchmark data; without MEDI2I_DATA_DIR, the data "
    "medi2i bench prepare built there is used [default: the user cache folder].",
)
@click.option(
    "--overlap",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.25,
    show_default=True,
    help="Sliding-window overlap of methods and models (as medi2i predict --overlap); "
    "another value than the default is named in the row's legend.",
)
@click.option(
    "--blend",
    type=click.Choice(["gaussian", "constant"]),
    default="gaussian",
    show_default=True,
    help="How overlapping windows are blended (as medi2i predict --blend).",
)
@click.option(
    "--roi-size",
    default=None,
    metavar="SIZE",
    help="Sliding-window size of methods and models in voxels (as medi2i predict "
    "--roi-size: one or three integers, e.g. 256,256,64; a window longer than the "
    "volume shrinks to it, so a large one predicts the volume in one window); named in "
    "the row's legend when given [default: each method's own].",
)
@click.option(
    "--mirror-axes",
    default="",
    metavar="AXES",
    help="Test-time mirroring of methods and models (as medi2i predict --mirror-axes, "
    "e.g. 0,1); named in the row's legend when on [default: off].",
)
@click.option(
    "--reflect-padding",
    default="0",
    metavar="VOXELS",
    help="Reflection padding of each volume for methods and models (as medi2i predict "
    "--reflect-padding, e.g. 64,0,0); named in the row's legend when on [default: 0, off].",
)
@device_option("Device methods run on: auto, cpu, cuda or cuda:N.")
@click.pass_context
def bench_run_command(
    ctx: click.Context,
    task: str,
    splits: tuple[str, ...],
    methods: tuple[str, ...],
    option_pairs: tuple[str, ...],
    models: tuple[Path, ...],
    output: Path,
    work_dir: Path | None,
    overlap: float,
    blend: str,
    roi_size: str | None,
    mirror_axes: str,
    reflect_padding: str,
    device: str,
) -> None:
    """Run the baselines, and any --method or --model, on the quality benchmarks.

    Writes <task>_baselines.{json,md} (or <task>_comparison.* when methods or models
    ran) and one montage PNG per test case into --output.
    """
    from medi2i import InferenceSettings
    from medi2i_bench.harness import run_benchmarks

    # the baselines are registered methods too, and the metrics registered metrics
    registry = command_registry(ctx)
    results = run_benchmarks(
        tasks=_tasks(task),
        methods=methods,
        method_options=key_values(option_pairs, "--option") or None,
        models=models,
        output_dir=output,
        work_dir=work_dir,
        settings=InferenceSettings(
            device=device,
            progress=False,
            overlap=overlap,
            blend=blend,
            roi_size=parse_roi_size(roi_size),
            mirror_axes=parse_mirror_axes(mirror_axes),
            reflect_padding=parse_reflect_padding(reflect_padding),
        ),
        registry=registry,
        splits=splits or None,
        log=lambda line: click.echo(line, err=True),
    )
    for result in results:
        click.echo(result.to_markdown())
    click.echo(f"results written to {output}")


@click.command("prepare")
@click.option("--task", type=click.Choice(TASK_CHOICES), default="all", show_default=True)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to build the data [default: the user cache folder].",
)
def bench_prepare_command(task: str, work_dir: Path | None) -> None:
    """Build the benchmark data (train and test NIfTI files) and print where it is,
    e.g. to train a method on it."""
    from medi2i_bench.datasets import build_splits

    for name in _tasks(task):
        for dataset in build_splits(name, work_dir=work_dir):
            click.echo(f"{dataset.label}: {dataset.folder}")
