"""Research workflows: data, method, training, inference, evaluation and report in one YAML.

A workflow file is what a colleague needs to rerun an experiment. Load and check one
with :func:`load_workflow` (errors name the line and key path), run its stages with
:func:`run_workflow` (each run gets a folder with the resolved config, logs,
checkpoints, the trained model, metrics and a report), and export the JSON Schema for
editors with :func:`export_json_schema`.

Example:
    >>> from medi2i import Registry
    >>> registry = Registry()  # doctest: +SKIP
    >>> path = "workflows/demo_paired_tiny.yaml"
    >>> workflow = load_workflow(path, registry=registry)  # doctest: +SKIP
    >>> run_workflow(workflow, registry=registry).report_path  # doctest: +SKIP
    PosixPath('workflows/runs/demo_paired_tiny-20240131-142501/report.md')
"""

from __future__ import annotations

from medi2i.workflow.loader import (
    WorkflowError,
    dump_workflow,
    export_json_schema,
    load_workflow,
    workflow_json_schema,
)
from medi2i.workflow.runner import STAGES, RunFolder, RunResult, run_workflow
from medi2i.workflow.schema import Workflow

__all__ = [
    "STAGES",
    "RunFolder",
    "RunResult",
    "Workflow",
    "WorkflowError",
    "dump_workflow",
    "export_json_schema",
    "load_workflow",
    "run_workflow",
    "workflow_json_schema",
]
