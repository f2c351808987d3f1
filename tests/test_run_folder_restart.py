"""A rerun in a run folder whose earlier attempt kept no checkpoint starts at step 0 and
says so: which settings changed (old → new), and that the attempt's step records are
replaced; the train stage's first line says where the validation cases come from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from medi2i.cli.main import build_cli
from medi2i.plugins import PluginSet, load_plugins
from medi2i.workflow.demo_data import write_demo_cases
from medi2i.workflow.loader import load_workflow
from medi2i.workflow.run_folder import EarlierAttempt, RunFolder, open_run

WORKFLOW = """\
description: tiny test run
plugins: [medi2i.testing.trainable_examples]
data:
  kind: paired
  cards: [head_phantoms]
  layout: {type: synthrad, root: cases}
  split: {validation: [demo001], test: [demo003]}
method:
  id: example-tiny-regression
  options: {hidden: 4, roi_size: [16, 16, 16]}
training:
  steps: 40
  batch_size: 2
  checkpoint_every: 20
  log_every: 1
  device: cpu
  progress: false
inference: {device: cpu, progress: false}
report: {cases: 1, figures: false}
output: {root: runs, run_id: one}
"""


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "cases"
    write_demo_cases(root, count=4, shape=(16, 16, 16), spacing_mm=(10.5, 12.0, 10.5))
    return root


@pytest.fixture
def workflow_file(tmp_path: Path, cases: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(WORKFLOW.replace("root: cases", f"root: {cases}"))
    return path


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> PluginSet:
    monkeypatch.setenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "1")
    return load_plugins()


def killed_attempt(workflow_file: Path) -> RunFolder:
    """The folder a run killed at step 2, before its first checkpoint, leaves."""
    run = open_run(load_workflow(workflow_file), defer_config=True)
    records = [{"step": step, "losses": {"earlier": 9.0}} for step in (1, 2)]
    run.train_log.write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_a_rerun_with_other_settings_and_no_checkpoint_says_what_changed(
    workflow_file: Path, plugins: PluginSet
) -> None:
    run = killed_attempt(workflow_file)
    result = CliRunner().invoke(
        build_cli(plugins), ["train", str(workflow_file), "--set", "training.steps=1"]
    )
    assert result.exit_code == 0, result.output
    assert (
        f"train: run folder {run.root} holds no checkpoint of an earlier attempt (it logged "
        "steps up to 2), so training starts again from step 0 with this run's settings, "
        "which differ from the folder's config.resolved.yaml (training.steps: 40 → 1)"
    ) in result.output
    assert "logs/train.jsonl are replaced" in result.output
    assert "training starts again from step 0" in (run.logs / "run.log").read_text()
    assert yaml.safe_load(run.config.read_text())["training"]["steps"] == 1
    assert "earlier" not in run.train_log.read_text()


def test_a_rerun_with_the_same_settings_says_it_starts_again(workflow_file: Path) -> None:
    run = killed_attempt(workflow_file)
    note = EarlierAttempt.read(run).restart_note(run, load_workflow(workflow_file))
    assert note is not None
    assert "starts again from step 0; the earlier attempt's records" in note
    assert "differ" not in note


def test_a_new_run_folder_has_nothing_to_say(workflow_file: Path) -> None:
    workflow = load_workflow(workflow_file)
    run = open_run(workflow, defer_config=True)
    assert EarlierAttempt.read(run).restart_note(run, workflow) is None
    assert EarlierAttempt.read(RunFolder(run.root / "none")).restart_note(run, workflow) is None


def test_the_first_train_line_names_where_validation_comes_from(
    workflow_file: Path, plugins: PluginSet
) -> None:
    args = ["train", str(workflow_file), "--set", "training.steps=1"]
    result = CliRunner().invoke(build_cli(plugins), args)
    assert result.exit_code == 0, result.output
    assert (
        "train: method 'example-tiny-regression' on 2 paired training cases; 1 validation "
        "case (held out of the data by data.split.validation); 1 step"
    ) in result.output
    assert "starts again" not in result.output  # a new folder has no earlier attempt
