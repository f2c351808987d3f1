"""A rerun of a finished run validates its model again only when the validation cases
or the inference settings changed, and then replaces the last step's validation record:
the training curves keep one point per step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from medi2i.cli.main import build_cli
from medi2i.plugins import PluginSet, load_plugins
from medi2i.training.records import CHECKPOINTS, VALIDATION_RECORD
from medi2i.workflow.demo_data import write_demo_cases

WORKFLOW = """\
plugins: [medi2i.testing.trainable_examples]
data:
  kind: paired
  layout: {type: synthrad, root: cases}
  split: {validation: [demo001], test: [demo003]}
method:
  id: example-tiny-regression
  options: {hidden: 4, roi_size: [16, 16, 16]}
training:
  {steps: 4, batch_size: 2, checkpoint_every: 2, validate_every: 2, device: cpu, progress: false}
inference: {device: cpu, progress: false}
evaluation: {enabled: false}
report: {enabled: false}
output: {root: runs, run_id: one}
"""


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> PluginSet:
    monkeypatch.setenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "1")
    return load_plugins()


def train(plugins: PluginSet, workflow: Path, *overrides: str) -> None:
    args = ["train", str(workflow)]
    for override in overrides:
        args += ["--set", override]
    result = CliRunner().invoke(build_cli(plugins), args)
    assert result.exit_code == 0, result.output


def validations(run: Path) -> list[int]:
    lines = (run / "logs" / "train.jsonl").read_text().splitlines()
    return [entry["step"] for entry in map(json.loads, lines) if "validation" in entry]


def test_a_finished_rerun_keeps_one_validation_per_step(tmp_path: Path, plugins: PluginSet) -> None:
    write_demo_cases(tmp_path / "cases", count=4, shape=(16, 16, 16))
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(WORKFLOW)
    run = tmp_path / "runs" / "wf-one"
    train(plugins, workflow)
    assert validations(run) == [2, 4]
    train(plugins, workflow)  # unchanged: not validated again
    train(plugins, workflow)
    assert validations(run) == [2, 4]
    train(plugins, workflow, "inference.overlap=0.5")  # validated again, the point replaced
    assert validations(run) == [2, 4]
    record = json.loads((run / CHECKPOINTS / VALIDATION_RECORD).read_text())
    assert record["inference"]["overlap"] == 0.5
    assert json.loads((run / "model" / "metrics.json").read_text())["mae"] >= 0
