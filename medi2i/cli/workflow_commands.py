"""Workflow commands: ``validate``, ``train``, ``run`` and ``schema``, and the function
behind ``evaluate WORKFLOW`` (:func:`evaluate_workflow`).

Every command takes ``--set section.key=value`` (repeatable; the value is parsed as YAML
and applied before validation; relative paths are read against the workflow's folder,
as in the file). ``train``, ``run`` and ``evaluate`` take ``--run-dir`` to continue a run
folder instead of starting a new one.

torch and MONAI are imported only once a command runs, so ``medi2i --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from medi2i.cli.options import (
    OutputPath,
    command_registry,
    overwrite_option,
    run_dir_option,
    workflow_argument,
)

if TYPE_CHECKING:
    from medi2i.data.discovery import DataSplits
    from medi2i.plugins import PluginSet
    from medi2i.registry import Registry
    from medi2i.workflow.runner import RunResult, Stage
    from medi2i.workflow.schema import Workflow


def add_to(group: click.Group) -> None:
    """Add ``validate``, ``train``, ``run`` and ``schema`` to ``group``.

    ``evaluate WORKFLOW`` shares its name with file evaluation
    (:mod:`medi2i.cli.evaluate_commands`), which calls :func:`evaluate_workflow`.
    """
    for command in (validate_command, train_command, run_command, schema_command):
        group.add_command(command)


def _load(path: Path, overrides: Sequence[str], registry: Registry) -> Workflow:
    from medi2i.workflow.loader import load_workflow

    return load_workflow(path, overrides=overrides, registry=registry)


@click.command("validate")
@workflow_argument
@click.option("--check-data", is_flag=True, help="Also find the cases and show the split.")
@click.pass_context
def validate_command(
    ctx: click.Context, workflow_path: Path, overrides: tuple[str, ...], check_data: bool
) -> None:
    """Check WORKFLOW against the schema and the installed method (no training).

    Problems are listed with their line in the file and their key path. The method's
    predict-time condition (method.condition) is checked against the method and the
    data's domains, and training.tensorboard against the installed packages. With
    --check-data the cases are found and split, and a validation split that cannot
    validate (e.g. unpaired cases without data.validation_data), or an evaluation split
    without cases, is refused; so are NaN or infinite voxels in the validation and
    evaluation cases, and references that are not on the grid the method delivers.
    A validation or test case that reads a training case's file, or an image with a
    training image's content (a subject exported twice), is refused. Evaluation cases
    that are validation cases (the same source or target file) are allowed with a
    one-line warning: best-model/ is chosen on them, so their metrics are not a held-out
    test; so are evaluation cases that read the training images of an unpaired or
    multi-domain method. Validation cases given to a method fitted once are noted as
    not used.
    """
    from medi2i.workflow.checks import (
        check_adaptation,
        check_condition,
        check_training,
        unused_training_settings,
        unused_validation,
    )
    from medi2i.workflow.checks import check_data as check_cases

    registry = command_registry(ctx)
    workflow = _load(workflow_path, overrides, registry)
    check_condition(workflow, registry)
    check_training(workflow, registry)
    method = workflow.method
    what = f"method {method.id}" if method.id is not None else f"trained model {method.model}"
    data = workflow.data
    valid = f"{workflow_path}: valid ({what}; {data.kind} data, {data.layout.type} layout)"
    note = unused_training_settings(workflow, registry)
    if note is not None:
        click.echo(note, err=True)
    if not check_data:
        _note(unused_validation(workflow, registry))
        click.echo(valid)
        return
    from medi2i.workflow.stages import learns_from_cases, workflow_splits

    # "valid" only once the data passed too: not above an error about the data
    splits = workflow_splits(workflow, registry)
    check_cases(workflow, splits, registry)  # every case's problems at once
    check_adaptation(workflow)
    if method.model is None and learns_from_cases(workflow, registry):  # every domain
        from medi2i.training.data import case_domains

        case_domains(splits.get("train"))
    counts = {name: len(splits.get(name).cases) for name in ("train", "validation", "test")}
    source = " (data.validation_data)" if data.validation_data is not None else ""
    evaluation = workflow.evaluation
    if evaluation.enabled and evaluation.data is not None:
        from medi2i.data.discovery import discover_cases

        scored = len(discover_cases(evaluation.data).cases)
        source += f"; evaluation {scored} (evaluation.data)"
    click.echo(valid)
    click.echo("cases: " + ", ".join(f"{name} {count}" for name, count in counts.items()) + source)
    _note(unused_validation(workflow, registry, cases=counts["validation"]))
    _warn_evaluation_on_validation(workflow, splits, registry)
    _warn_evaluation_on_training(workflow, splits, registry)


def _note(line: str | None) -> None:
    """A note or warning on standard error, when there is one."""
    if line is not None:
        click.echo(line, err=True)


def _warn_evaluation_on_validation(
    workflow: Workflow, splits: DataSplits, registry: Registry
) -> None:
    """One line on standard error when the evaluation scores validation cases of a
    method trained in steps, whose best-model/ is chosen on them."""
    from medi2i.workflow.checks import workflow_training_route
    from medi2i.workflow.split_checks import evaluation_on_validation

    if workflow_training_route(workflow, registry) != "gradient":
        return
    overlap = evaluation_on_validation(workflow, splits)
    if overlap is not None:
        click.echo(overlap.warning(), err=True)


def _warn_evaluation_on_training(
    workflow: Workflow, splits: DataSplits, registry: Registry
) -> None:
    """One line on standard error when the evaluation scores training images of an
    unpaired or multi-domain method that learns from them (trained or fitted)."""
    from medi2i.workflow.checks import workflow_training_route
    from medi2i.workflow.split_checks import evaluation_on_training

    if workflow_training_route(workflow, registry) not in ("gradient", "fit"):
        return
    overlap = evaluation_on_training(workflow, splits)
    if overlap is not None:
        click.echo(overlap.warning(), err=True)


@click.command("train")
@workflow_argument
@run_dir_option()
@click.pass_context
def train_command(
    ctx: click.Context, workflow_path: Path, overrides: tuple[str, ...], run_dir: Path | None
) -> None:
    """Train the method of WORKFLOW into a run folder (resumes with --run-dir)."""
    _run_stages(ctx, workflow_path, overrides, run_dir, ("train",))


@click.command("run")
@workflow_argument
@run_dir_option()
@click.pass_context
def run_command(
    ctx: click.Context, workflow_path: Path, overrides: tuple[str, ...], run_dir: Path | None
) -> None:
    """Run every stage of WORKFLOW: train, adapt (with an adaptation section), evaluate
    and report."""
    _run_stages(ctx, workflow_path, overrides, run_dir, ("train", "adapt", "evaluate", "report"))


def _run_stages(
    ctx: click.Context,
    workflow_path: Path,
    overrides: Sequence[str],
    run_dir: Path | None,
    stages: Sequence[Stage],
) -> RunResult:
    from medi2i.workflow.runner import run_workflow

    registry = command_registry(ctx)
    workflow = _load(workflow_path, overrides, registry)
    return run_workflow(
        workflow, registry=registry, stages=stages, run_dir=run_dir, echo=click.echo
    )


def evaluate_workflow(
    workflow_path: str | Path,
    *,
    plugins: PluginSet,
    overrides: Sequence[str] = (),
    run_dir: str | Path | None = None,
    echo: Callable[[str], None] | None = click.echo,
) -> RunResult:
    """Evaluate a workflow's trained model and rewrite its report (``evaluate WORKFLOW``).

    Args:
        workflow_path: The workflow file.
        plugins: The loaded plugins (the CLI's ``ctx.find_root().obj``).
        overrides: ``--set`` values.
        run_dir: The run folder holding the model; by default the workflow's newest run
            folder that holds a trained model, or a new one when the workflow gives a
            trained ``method.model``.
        echo: Receives progress lines.

    Returns:
        The run folder, metrics and report paths.

    Raises:
        WorkflowError: No run folder with a trained model was found.
    """
    from medi2i.registry import Registry
    from medi2i.workflow.loader import WorkflowError
    from medi2i.workflow.runner import latest_run_folder, run_workflow

    registry = Registry(plugins)
    workflow = _load(Path(workflow_path), overrides, registry)
    stages: tuple[Stage, ...] = ("evaluate", "report")
    if run_dir is None and workflow.method.model is None:
        latest = latest_run_folder(workflow)
        if latest is None:
            raise WorkflowError(
                f"no run of {workflow_path} under {workflow.output.root} to evaluate; train it "
                "first (`medi2i train WORKFLOW`) or give --run-dir"
            )
        run_dir = latest.root.resolve()  # "runs/x", not "wf/../runs/x"
        if echo is not None:  # picked among several: say which
            echo(f"evaluate: the newest run with a trained model is {run_dir} (--run-dir)")
    if workflow.method.model is not None:
        stages = ("train", *stages)  # records the given model in the run folder
    return run_workflow(workflow, registry=registry, stages=stages, run_dir=run_dir, echo=echo)


@click.command("schema")
@click.option(
    "--output",
    "output_path",
    type=OutputPath(dir_okay=False),
    help="Write the JSON Schema to this file instead of printing it.",
)
@overwrite_option
def schema_command(output_path: Path | None, overwrite: bool) -> None:
    """Print (or write) the JSON Schema of workflow files, for editor completion.

    With the YAML language server, start a workflow file with
    "# yaml-language-server: $schema=<path to the schema>".
    """
    import json

    from medi2i.io.destinations import check_destination
    from medi2i.workflow.loader import export_json_schema, workflow_json_schema

    if output_path is None:
        click.echo(json.dumps(workflow_json_schema(), indent=2))
        return
    check_destination(output_path, inputs=[], overwrite=overwrite, folder=False)
    click.echo(f"wrote {export_json_schema(output_path)}")
