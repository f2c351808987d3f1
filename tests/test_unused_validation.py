"""Validation cases given to a method fitted once (monotone mapping, Nyul) are used
nowhere: ``medi2i validate`` and the run's log say so in one note, and the model card
and the report say ``validation: not used``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from medi2i.cli.main import build_cli
from medi2i.plugins import load_plugins
from medi2i.registry import Registry
from medi2i.workflow import load_workflow
from medi2i.workflow.checks import unused_validation
from medi2i.workflow.demo_data import write_demo_cases
from medi2i.workflow.runner import run_workflow

pytest.importorskip("medi2i_regression_unet")  # monotone-mapping: fitted once on pairs

WORKFLOW = """\
data:
  kind: paired
  layout: {type: synthrad, root: data, source: mr, target: ct, mask: mask}
  split: {validation: [demo001], test: [demo002]}
method: {id: monotone-mapping}
inference: {device: cpu, progress: false}
evaluation: {enabled: false}
report: {figures: false}
output: {root: runs}
"""
NOTE = "the validation cases (1) are not used: method 'monotone-mapping' is fitted once"


def workflow_file(folder: Path, text: str = WORKFLOW) -> Path:
    write_demo_cases(folder / "data", count=3, shape=(16, 16, 16))
    path = folder / "wf.yaml"
    path.write_text(text)
    return path


def test_validate_notes_the_unused_validation_cases(tmp_path: Path) -> None:
    cli = build_cli(load_plugins())
    path = str(workflow_file(tmp_path))
    plain = CliRunner().invoke(cli, ["validate", path])
    assert plain.exit_code == 0, plain.output
    assert "note: the validation cases are not used" in plain.output
    assert "set data.split.validation to 0 to fit on those cases too" in plain.output
    checked = CliRunner().invoke(cli, ["validate", path, "--check-data"])
    assert checked.exit_code == 0, checked.output
    assert f"note: {NOTE}" in checked.output


def test_the_log_card_and_report_say_validation_is_not_used(
    tmp_path: Path, registry: Registry
) -> None:
    workflow = load_workflow(workflow_file(tmp_path), registry=registry)
    lines: list[str] = []
    result = run_workflow(
        workflow, registry=registry, stages=("train", "report"), echo=lines.append
    )
    assert f"train: note: {NOTE}" in "\n".join(lines)
    card = " ".join((result.run_dir / "model" / "card.yaml").read_text().split())
    assert "validation: not used (1 case: a fitted method is not validated)" in card
    assert result.report_path is not None
    assert "none (fitted on whole volumes; validation: not used)" in result.report_path.read_text()


def test_no_note_without_validation_or_for_a_method_trained_in_steps(
    tmp_path: Path, registry: Registry
) -> None:
    path = workflow_file(tmp_path)
    none = load_workflow(path, overrides=["data.split.validation=0"], registry=registry)
    assert unused_validation(none, registry) is None
    assert unused_validation(load_workflow(path, registry=registry), registry, cases=0) is None
    gradient = load_workflow(path, overrides=["method.id=regression-unet"], registry=registry)
    assert unused_validation(gradient, registry) is None
