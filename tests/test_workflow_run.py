"""Running workflows end to end on CPU: train, evaluate, report, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from medi2i.cards import ModelCard, load_card
from medi2i.cli import workflow_commands
from medi2i.cli.main import build_cli
from medi2i.plugins import PluginSet, load_plugins
from medi2i.registry import Registry
from medi2i.workflow import WorkflowError, load_workflow, run_workflow
from medi2i.workflow.demo_data import write_demo_cases

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

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
  steps: 12
  batch_size: 2
  checkpoint_every: 4
  validate_every: 6
  log_every: 1
  device: cpu
  progress: false
inference: {device: cpu, progress: false}
report: {cases: 1}
output: {root: runs}
"""

SLOW_METHOD = '''\
"""The tiny regression, slowed down so that a test can kill it mid-run."""
import os
import time

from medi2i.hookspecs import hookimpl
from medi2i.testing.trainable_examples import TinyRegression


class SlowTinyRegression(TinyRegression):
    id = "slow-tiny-regression"

    def training_step(self, batch, trainer):
        time.sleep(float(os.environ.get("SLOW_STEP_SECONDS", "0")))
        return super().training_step(batch, trainer)


@hookimpl
def register_methods(register):
    register(SlowTinyRegression)
'''

CLI_SCRIPT = """\
import sys
from medi2i.cli.main import build_cli
from medi2i.plugins import load_plugins

build_cli(load_plugins()).main(args=sys.argv[1:], prog_name="medi2i")
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
    # built-ins only: the workflows name their method's module under `plugins`
    monkeypatch.setenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "1")
    return load_plugins()


def cli(plugins: PluginSet) -> click.Group:
    return build_cli(plugins)


def invoke(plugins: PluginSet, *args: str) -> str:
    result = CliRunner().invoke(cli(plugins), list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def losses(run_dir: Path) -> dict[int, float]:
    records = [
        json.loads(line) for line in (run_dir / "logs" / "train.jsonl").read_text().splitlines()
    ]
    return {r["step"]: r["losses"]["l1"] for r in records if "losses" in r}


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    assert len(data) > 5_000, f"{path} looks empty ({len(data)} bytes)"


def test_run_trains_evaluates_and_reports(workflow_file: Path, plugins: PluginSet) -> None:
    output = invoke(plugins, "run", str(workflow_file), "--set", "output.run_id=first")
    run = workflow_file.parent / "runs" / "tiny-first"
    assert f"report: {run / 'report.md'}" in output
    for name in (
        "config.resolved.yaml",
        "run.json",
        "logs/run.log",
        "logs/train.jsonl",
        "model/medi2i-model.json",
        "model/weights.safetensors",
        "metrics/metrics.json",
        "metrics/metrics.md",
        "predictions/demo003.nii.gz",
    ):
        assert (run / name).is_file(), name
    assert list((run / "checkpoints").iterdir())
    assert sorted(losses(run)) == list(range(1, 13))
    card = load_card(run / "model" / "card.yaml")
    assert isinstance(card, ModelCard)
    assert card.training_data == ["head_phantoms"]
    assert card.provenance.seed == 0
    assert "head_phantoms" in (run / "model" / "README.md").read_text()
    # the model of the best validation is kept beside the last one, with its own card
    best = json.loads((run / "best-model" / "metrics.json").read_text())
    assert best["validation_step"] in (6, 12)
    best_card = load_card(run / "best-model" / "card.yaml")
    assert isinstance(best_card, ModelCard)
    assert best_card.training_data == ["head_phantoms"]
    assert best_card.metrics["validation_mae"] == best["mae"]  # its validation, recorded
    assert "validation_validation_step" not in best_card.metrics
    manifest = json.loads((run / "model" / "medi2i-model.json").read_text())
    assert manifest["data_cards"] == ["head_phantoms"]
    metrics = json.loads((run / "metrics" / "metrics.json").read_text())
    assert set(metrics["cases"]) == {"demo003"}
    assert 0 < metrics["cases"]["demo003"]["synthrad_mae"] < 2000
    # the evaluation scored best-model/ (evaluation.checkpoint: best, the default): its
    # card records what the evaluation measured beside its validation; model/'s none
    measured = best_card.metrics["synthrad_mae_hu"]
    assert measured == metrics["cases"]["demo003"]["synthrad_mae"]
    assert set(best_card.metrics) == {
        "synthrad_mae_hu",
        "synthrad_psnr_db",
        "synthrad_ms_ssim",
        "validation_mae",
        "validation_psnr",
    }
    assert best_card.evaluation_data == ["head_phantoms"]
    assert "synthrad_mae_hu" in (run / "best-model" / "README.md").read_text()
    assert card.metrics == {}
    assert card.evaluation_data == []
    assert "Not scored by the evaluation" in card.summary
    scored = json.loads((run / "metrics" / "scored-model.json").read_text())
    assert scored["model"]["folder"] == "best-model"
    assert scored["model"]["step"] == best["validation_step"]
    report = (run / "report.md").read_text()
    assert f"| scored model | best-model/ (step {best['validation_step']}" in report
    assert "synthrad_mae (HU)" in report
    # the options row lists every option of the model, defaults included
    options = json.loads((run / "model" / "medi2i-model.json").read_text())["options"]
    assert json.dumps(options, sort_keys=True) in report
    figures = sorted((run / "figures").glob("*.png"))
    assert [f.name for f in figures] == ["case_demo003.png", "training_curves.png"]
    for figure in figures:
        assert f"(figures/{figure.name})" in report
        assert_png(figure)
    assert set(json.loads((run / "run.json").read_text())["stages"]) == {
        "train",
        "evaluate",
        "report",
    }


def test_resolved_config_reruns_in_place(workflow_file: Path, plugins: PluginSet) -> None:
    registry = Registry(plugins)
    workflow = load_workflow(workflow_file, overrides=["training.steps=3"], registry=registry)
    result = run_workflow(workflow, registry=registry, stages=("train",))
    resolved = load_workflow(result.run_dir / "config.resolved.yaml", registry=registry)
    assert resolved.model_dump() == workflow.model_dump()
    again = run_workflow(resolved, registry=registry, stages=("train",), run_dir=result.run_dir)
    assert again.run_dir == result.run_dir
    assert sorted(losses(result.run_dir)) == [1, 2, 3]


def test_resumed_run_continues_with_identical_losses(
    workflow_file: Path, plugins: PluginSet, tmp_path: Path
) -> None:
    registry = Registry(plugins)
    whole = load_workflow(workflow_file, registry=registry)
    straight = run_workflow(whole, registry=registry, stages=("train",), run_dir=tmp_path / "a")
    # a run stopped after its checkpoint at step 8, then continued to the end
    first = load_workflow(workflow_file, overrides=["training.steps=8"], registry=registry)
    run_workflow(first, registry=registry, stages=("train",), run_dir=tmp_path / "b")
    resumed = run_workflow(whole, registry=registry, stages=("train",), run_dir=tmp_path / "b")
    assert losses(resumed.run_dir) == losses(straight.run_dir)
    assert "resumed from the checkpoint of step 8" in (tmp_path / "b/logs/run.log").read_text()


def test_killed_run_resumes_with_identical_losses(
    workflow_file: Path, plugins: PluginSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_slow_method(tmp_path)
    (tmp_path / "cli.py").write_text(CLI_SCRIPT)
    text = workflow_file.read_text().replace("example-tiny-regression", "slow-tiny-regression")
    workflow_file.write_text(text.replace("[medi2i.testing.trainable_examples]", "[slow-tiny]"))
    run_dir = tmp_path / "killed"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
        "SLOW_STEP_SECONDS": "0.3",
    }
    command = [sys.executable, str(tmp_path / "cli.py"), "train", str(workflow_file)]
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as errors:
        process = subprocess.Popen(
            [*command, "--run-dir", str(run_dir)], env=env, stdout=subprocess.DEVNULL, stderr=errors
        )
        try:
            wait_for_step(run_dir, step=6, process=process, stderr=stderr)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    assert max(losses(run_dir)) < 12, "the run finished before it was killed"

    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry(plugins)
    workflow = load_workflow(workflow_file, registry=registry)
    resumed = run_workflow(workflow, registry=registry, stages=("train",), run_dir=run_dir)
    straight = run_workflow(workflow, registry=registry, stages=("train",), run_dir=tmp_path / "s")
    assert losses(resumed.run_dir) == losses(straight.run_dir)
    assert sorted(losses(resumed.run_dir)) == list(range(1, 13))
    assert "resumed from the checkpoint of step" in (run_dir / "logs" / "run.log").read_text()


def install_slow_method(site: Path) -> None:
    """What pip would leave in ``site`` for a plugin ``slow-tiny``: a workflow selects
    installed plugins only, by name."""
    (site / "slow_tiny.py").write_text(SLOW_METHOD)
    info = site / "slow_tiny-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: slow-tiny\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[medi2i]\nslow-tiny = slow_tiny\n")


def wait_for_step(
    run_dir: Path, *, step: int, process: subprocess.Popen[bytes], stderr: Path
) -> None:
    history = run_dir / "logs" / "train.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            message = stderr.read_text()
            pytest.fail(f"training stopped by itself (exit {process.returncode}): {message}")
        if history.is_file() and losses(run_dir) and max(losses(run_dir)) >= step:
            return
        time.sleep(0.02)
    pytest.fail(f"training did not reach step {step} in time")


def test_run_folder_of_other_data_is_refused(workflow_file: Path, plugins: PluginSet) -> None:
    registry = Registry(plugins)
    workflow = load_workflow(workflow_file, overrides=["training.steps=1"], registry=registry)
    result = run_workflow(workflow, registry=registry, stages=("train",))
    other = load_workflow(workflow_file, overrides=["method.options.hidden=6"], registry=registry)
    with pytest.raises(WorkflowError, match="different method"):
        run_workflow(other, registry=registry, stages=("train",), run_dir=result.run_dir)


def test_evaluate_workflow_uses_the_latest_run_and_writes_html(
    workflow_file: Path, plugins: PluginSet
) -> None:
    invoke(plugins, "train", str(workflow_file), "--set", "training.steps=2")
    markdown = workflow_commands.evaluate_workflow(
        workflow_file, plugins=plugins, overrides=["training.steps=2"], echo=None
    )
    assert markdown.report_path is not None
    assert markdown.report_path.name == "report.md"
    result = workflow_commands.evaluate_workflow(
        workflow_file,
        plugins=plugins,
        overrides=["training.steps=2", "report.format=html"],
        echo=None,
    )
    assert not markdown.report_path.exists()  # no stale report beside the new one
    assert result.metrics_path is not None
    assert result.metrics_path.is_file()
    assert result.report_path == result.run_dir / "report.html"
    page = result.report_path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<table>" in page
    assert 'src="figures/case_demo003.png"' in page


def test_the_card_keeps_the_test_metrics_when_another_split_is_evaluated(
    workflow_file: Path, plugins: PluginSet
) -> None:
    from medi2i.cards import load_card

    invoke(plugins, "train", str(workflow_file), "--set", "training.steps=2")
    tested = workflow_commands.evaluate_workflow(
        workflow_file, plugins=plugins, overrides=["training.steps=2"], echo=None
    )
    assert tested.scored_dir == tested.run_dir / "best-model"  # the scored folder's card
    card = tested.scored_dir / "card.yaml"
    before = load_card(card).metrics
    assert before
    lines: list[str] = []
    workflow_commands.evaluate_workflow(
        workflow_file,
        plugins=plugins,
        overrides=["training.steps=2", "evaluation.split=train"],
        echo=lines.append,
    )
    assert load_card(card).metrics == before
    assert any("the model card keeps the metrics of the test split" in line for line in lines)


def test_evaluate_without_a_run_says_what_to_do(workflow_file: Path, plugins: PluginSet) -> None:
    with pytest.raises(WorkflowError, match="train it first"):
        workflow_commands.evaluate_workflow(workflow_file, plugins=plugins, echo=None)


def test_validate_command(
    workflow_file: Path, plugins: PluginSet, cases: Path, tmp_path: Path
) -> None:
    output = invoke(plugins, "validate", str(workflow_file), "--check-data")
    assert "valid (method example-tiny-regression; paired data, synthrad layout)" in output
    assert "cases: train 2, validation 1, test 1" in output
    assert "evaluation" not in output.splitlines()[-1]  # the test split is what is scored
    # evaluation data of their own (other phantoms: training files, or copies of them,
    # would be refused as test files)
    other = tmp_path / "scored"
    write_demo_cases(other, count=4, shape=(16, 16, 16), spacing_mm=(10.5, 12.0, 10.5), seed=100)
    scored = f"evaluation.data={{kind: paired, layout: {{type: synthrad, root: {other}}}}}"
    output = invoke(plugins, "validate", str(workflow_file), "--check-data", "--set", scored)
    assert "cases: train 2, validation 1, test 1; evaluation 4 (evaluation.data)" in output
    result = CliRunner().invoke(
        cli(plugins), ["validate", str(workflow_file), "--set", "training.steps=x"]
    )
    assert result.exit_code == 1
    assert "--set training.steps=x: training.steps: expected an integer" in result.output


def test_validate_command_names_the_line(tmp_path: Path, plugins: PluginSet) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(textwrap.dedent(WORKFLOW).replace("  batch_size: 2", "  batch_size: two"))
    result = CliRunner().invoke(cli(plugins), ["validate", str(path)])
    assert result.exit_code == 1
    assert "broken.yaml line 13: training.batch_size: expected an integer" in (result.output)


def test_schema_command(tmp_path: Path, plugins: PluginSet) -> None:
    invoke(plugins, "schema", "--output", str(tmp_path / "schema.json"))
    schema = json.loads((tmp_path / "schema.json").read_text())
    assert "training" in schema["properties"]
    assert json.loads(invoke(plugins, "schema")) == schema


def test_schema_command_keeps_an_existing_file(tmp_path: Path, plugins: PluginSet) -> None:
    target = tmp_path / "notes.json"
    target.write_text("mine")
    result = CliRunner().invoke(cli(plugins), ["schema", "--output", str(target)])
    assert result.exit_code == 1
    assert "pass --overwrite" in result.output
    assert target.read_text() == "mine"
    invoke(plugins, "schema", "--output", str(target), "--overwrite")
    assert "training" in json.loads(target.read_text())["properties"]


def test_resolved_config_is_plain_yaml(workflow_file: Path, plugins: PluginSet) -> None:
    registry = Registry(plugins)
    workflow = load_workflow(
        workflow_file, overrides=["evaluation.enabled=false"], registry=registry
    )
    result = run_workflow(workflow, registry=registry, stages=("report",))
    resolved = yaml.safe_load((result.run_dir / "config.resolved.yaml").read_text())
    assert resolved["training"]["steps"] == 12
    assert resolved["output"]["name"] == "tiny"
    assert result.report_path is not None
    assert "## Rerun" in result.report_path.read_text()


def test_the_evaluate_log_shows_an_unmeasurable_score_as_in_the_tables() -> None:
    from medi2i.workflow.evaluation import case_scores

    line = case_scores({"synthrad_mae": 912.7663, "air_mae": float("nan")})

    assert line == "synthrad_mae=912.8, air_mae=n/a"


def test_save_predictions_off_without_figures_keeps_no_prediction(
    workflow_file: Path, plugins: PluginSet
) -> None:
    registry = Registry(plugins)
    settings = ["training.steps=1", "evaluation.save_predictions=false", "report.figures=false"]
    workflow = load_workflow(workflow_file, overrides=settings, registry=registry)
    result = run_workflow(workflow, registry=registry)
    assert result.report_path is not None
    assert not list((result.run_dir / "predictions").glob("*"))
    # with figures, the montages' cases are kept
    figures = load_workflow(workflow_file, overrides=settings[:2], registry=registry)
    again = run_workflow(figures, registry=registry)
    assert [p.name for p in (again.run_dir / "predictions").iterdir()] == ["demo003.nii.gz"]


def test_the_demo_data_helper_takes_help_for_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from medi2i.workflow.demo_data import main

    monkeypatch.chdir(tmp_path)
    assert main(["--help"]) == 2
    assert "usage: python -m medi2i.workflow.demo_data" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
