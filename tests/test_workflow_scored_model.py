"""Which model folder a workflow's evaluation scores (``evaluation.checkpoint``), and what
the report and the model cards say about it: the steps, a resume, the cases, the limits
that follow from them, and evaluation data that is the validation data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from medi2i.card_checks import check_model_card
from medi2i.cards import ModelCard, load_card
from medi2i.cli import workflow_commands
from medi2i.cli.main import build_cli
from medi2i.data.cases import Case, CaseSet
from medi2i.data.discovery import DataSplits
from medi2i.method import DataKind
from medi2i.plugins import PluginSet, load_plugins
from medi2i.registry import Registry
from medi2i.workflow import load_workflow, run_workflow
from medi2i.workflow.demo_data import write_demo_cases
from medi2i.workflow.model_card import (
    FEW_CASES,
    SHORT_BUDGET_STEPS,
    training_record,
    training_sentence,
)
from medi2i.workflow.run_folder import RunFolder
from medi2i.workflow.schema import Workflow
from medi2i.workflow.scored_model import choose_scored_model, read_scored_record

DATA_CARDS = Path(__file__).resolve().parent.parent / "data_cards"

WORKFLOW = """\
description: scored
plugins: [medi2i.testing.trainable_examples]
data:
  kind: paired
  cards: [head_phantoms]
  layout: {type: synthrad, root: CASES}
  split: {validation: [demo001], test: [demo003]}
method:
  id: example-tiny-regression
  options: {hidden: 4, roi_size: [16, 16, 16]}
training:
  steps: 12
  batch_size: 2
  checkpoint_every: 6
  validate_every: 6
  log_every: 3
  device: cpu
  progress: false
inference: {device: cpu, progress: false}
report: {cases: 1}
output: {root: ../runs, run_id: fixed}
"""


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "cases"
    write_demo_cases(root, count=4, shape=(16, 16, 16), spacing_mm=(10.5, 12.0, 10.5))
    return root


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> PluginSet:
    monkeypatch.setenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "1")
    return load_plugins()


@pytest.fixture
def workflow_file(tmp_path: Path, cases: Path) -> Path:
    folder = tmp_path / "wf"
    folder.mkdir()
    path = folder / "scored.yaml"
    path.write_text(WORKFLOW.replace("CASES", str(cases)))
    return path


def invoke(plugins: PluginSet, *args: str) -> tuple[str, str]:
    result = CliRunner().invoke(build_cli(plugins), list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def card_of(folder: Path) -> ModelCard:
    card = load_card(folder / "card.yaml")
    assert isinstance(card, ModelCard)
    return card


def facts(report: str) -> dict[str, str]:
    rows = [line.split(" | ") for line in report.splitlines() if line.startswith("| ")]
    return {row[0].removeprefix("| "): row[1].removesuffix(" |") for row in rows if len(row) == 2}


def test_the_best_validated_step_is_scored_and_said_everywhere(
    workflow_file: Path, plugins: PluginSet
) -> None:
    out, _ = invoke(plugins, "run", str(workflow_file))
    run = workflow_file.parent.parent / "runs" / "scored-fixed"
    # the printed paths are normalised: no "wf/../runs"
    assert f"run folder {run}\n" in out
    assert "/../" not in out
    best = json.loads((run / "best-model" / "metrics.json").read_text())
    step = best["validation_step"]
    assert f"evaluate: scoring best-model/ (step {step} of 12): chosen on validation" in out
    assert "model/ (the last step, 12) was not scored" in out
    record = read_scored_record(RunFolder(run))
    assert record is not None
    assert (record.model.folder, record.model.step, record.model.last_step) == (
        "best-model",
        step,
        12,
    )
    assert record.model.validation_mae == best["mae"]
    assert record.cases == ("demo003",)
    assert record.on_validation == ()
    # the report: which folder, from which step, why, and that the other was not scored
    report = (run / "report.md").read_text()
    row = facts(report)["scored model"]
    assert row.startswith(f"best-model/ (step {step} of 12): chosen on validation")
    assert f"{best['mae']:.4g} at step {step}" in row
    assert row.endswith("model/ (the last step, 12) was not scored")
    assert facts(report)["model folders"].startswith("model (the last step, 12); best-model")
    assert f"Metrics of the predictions of best-model/ (step {step} of 12)" in report
    # the scored folder's card holds the evaluation; the other one says it was not scored
    measured = json.loads((run / "metrics" / "metrics.json").read_text())["summary"]
    scored = card_of(run / "best-model")
    assert scored.metrics["synthrad_mae_hu"] == measured["synthrad_mae"]["mean"]
    assert scored.metrics["validation_mae"] == best["mae"]
    assert "on 1 case of the test split: demo003." in scored.summary
    assert "Why this folder: chosen on validation" in scored.summary
    last = card_of(run / "model")
    assert last.metrics == {}
    assert last.metrics_inference == {}
    assert f"which scored best-model/ (step {step} of 12) instead" in last.summary
    assert "the model after the last of 12 planned training steps" in last.summary
    assert "on 2 paired training cases; validated on 1 case" in last.summary
    readme = (run / "model" / "README.md").read_text()
    assert "Not scored by the evaluation" in readme
    for folder in ("model", "best-model"):
        assert check_model_card(run / folder, data_cards=DATA_CARDS) == []

    # evaluated again with the last step: the cards change places, consistently
    lines: list[str] = []
    result = workflow_commands.evaluate_workflow(
        workflow_file,
        plugins=plugins,
        overrides=["evaluation.checkpoint=last"],
        echo=lines.append,
    )
    assert result.scored_dir == run / "model"
    assert lines[0] == f"evaluate: the newest run with a trained model is {run} (--run-dir)"
    row = facts((run / "report.md").read_text())["scored model"]
    assert row.startswith("model/ (step 12, the last): the last training step: evaluation")
    assert row.endswith(
        f"best-model/ (step {step}, validation MAE {best['mae']:.4g}, the lowest) was not scored"
    )
    last, kept = card_of(run / "model"), card_of(run / "best-model")
    assert set(last.metrics) == {"synthrad_mae_hu", "synthrad_psnr_db", "synthrad_ms_ssim"}
    assert last.summary.count("Scored by the evaluation") == 1
    assert "Not scored" not in last.summary
    assert set(kept.metrics) == {"validation_mae", "validation_psnr"}  # its own validation
    assert kept.metrics_inference == {}
    assert "Scored by the evaluation" not in kept.summary
    assert not any(limit.startswith("Its metrics come from") for limit in kept.limits)
    for folder in ("model", "best-model"):
        assert check_model_card(run / folder, data_cards=DATA_CARDS) == []


def test_without_validation_the_last_step_is_scored_and_the_limits_say_why(
    workflow_file: Path, plugins: PluginSet
) -> None:
    overrides = ["data.split={validation: [], test: [demo003]}", "data.cards=[]"]
    workflow = load_workflow(workflow_file, overrides=overrides, registry=Registry(plugins))
    result = run_workflow(workflow, registry=Registry(plugins))
    assert result.scored_dir == result.run_dir / "model"
    assert not (result.run_dir / "best-model").exists()
    row = facts((result.run_dir / "report.md").read_text())["scored model"]
    assert row == (
        "model/ (step 12, the last): the last training step: the run had no validation "
        "data, so no step was chosen on validation"
    )
    card = card_of(result.run_dir / "model")
    assert "on 3 paired training cases; no validation data" in card.summary
    assert "on 1 case of the test split: demo003" in card.summary
    rules = {limit.split(",")[0]: limit for limit in card.limits}
    assert f"fewer than {SHORT_BUDGET_STEPS}" in rules["Its training was planned for 12 steps"]
    assert f"fewer than {FEW_CASES}" in rules["Trained on 3 cases"]
    assert "Its metrics come from 1 evaluation case" in rules
    assert any(limit.startswith("No data card names its training data") for limit in card.limits)
    assert check_model_card(result.run_dir / "model", data_cards=DATA_CARDS) == []


def test_evaluation_on_the_validation_data_is_warned_and_said(
    workflow_file: Path, plugins: PluginSet, cases: Path
) -> None:
    evaluation = (
        "evaluation.data={kind: paired, cards: [head_phantoms], "
        f"layout: {{type: synthrad, root: {cases}}}, include: [demo001]}}"
    )
    out, err = invoke(plugins, "validate", str(workflow_file), "--check-data", "--set", evaluation)
    assert "valid" in out
    assert err.count("\n") == 1  # one line
    assert err.startswith(
        "Warning: the evaluation data is the validation data: the evaluation case demo001 read"
    )
    assert "not a held-out test" in err
    # not refused: the run warns once, before training, and scores the validation case
    out, _ = invoke(plugins, "run", str(workflow_file), "--set", evaluation)
    assert out.count("the evaluation data is the validation data") == 1
    run = workflow_file.parent.parent / "runs" / "scored-fixed"
    report = (run / "report.md").read_text()
    assert facts(report)["evaluated cases"] == (
        "1 (evaluation.data); all of them validation data, not a held-out test"
    )
    assert (
        "WARNING: the evaluation data (demo001) is the validation data best-model/ was chosen "
        "on, so "
        "these metrics are not a held-out test."
    ) in report
    card = card_of(run / "best-model")
    assert any(
        limit.startswith("Its metrics were measured on the validation data")
        for limit in card.limits
    )
    record = read_scored_record(RunFolder(run))
    assert record is not None
    assert record.on_validation == ("demo001",)
    # a test split of other cases: no warning
    _, err = invoke(plugins, "validate", str(workflow_file), "--check-data")
    assert err == ""


def test_a_resumed_training_with_more_steps_is_on_the_card(
    workflow_file: Path, plugins: PluginSet
) -> None:
    registry = Registry(plugins)
    short = load_workflow(workflow_file, overrides=["training.steps=6"], registry=registry)
    run_workflow(short, registry=registry, stages=("train",))
    longer = load_workflow(workflow_file, registry=registry)
    result = run_workflow(longer, registry=registry)
    card = card_of(result.run_dir / "model")
    assert (
        "the model after the last of 12 planned training steps (resumed from the checkpoint "
        "of step 6; the training it continued was planned for 6 steps)"
    ) in card.summary
    # the best-model/ says the plan it was kept under: 6 steps when kept in the first part
    best = card_of(result.run_dir / "best-model")
    step = json.loads((result.run_dir / "best-model" / "metrics.json").read_text())
    planned = 6 if step["validation_step"] == 6 else 12
    assert f"of a training planned then for {planned} steps" in best.summary


def test_a_later_evaluation_keeps_the_trained_settings_of_the_run(
    workflow_file: Path, plugins: PluginSet
) -> None:
    # trained with a --set; evaluated again without it: the run's config (which the
    # cards and a later resume read) must still say how the model was trained
    registry = Registry(plugins)
    trained = load_workflow(workflow_file, overrides=["training.steps=6"], registry=registry)
    result = run_workflow(trained, registry=registry, stages=("train",))
    again = load_workflow(
        workflow_file, overrides=["evaluation.checkpoint=last"], registry=registry
    )
    run_workflow(again, registry=registry, stages=("evaluate",), run_dir=result.run_dir)

    config = yaml.safe_load((result.run_dir / "config.resolved.yaml").read_text())
    assert config["training"]["steps"] == 6
    assert config["evaluation"]["checkpoint"] == "last"


def test_a_report_of_an_evaluation_from_before_the_record_names_model(
    workflow_file: Path, plugins: PluginSet
) -> None:
    registry = Registry(plugins)
    workflow = load_workflow(workflow_file, overrides=["training.steps=6"], registry=registry)
    result = run_workflow(workflow, registry=registry)
    (result.run_dir / "metrics" / "scored-model.json").unlink()
    run_workflow(workflow, registry=registry, stages=("report",), run_dir=result.run_dir)
    row = facts((result.run_dir / "report.md").read_text())["scored model"]
    assert row.startswith("model/ (step 6, the last): the folder run.json names")
    assert "before medi2i recorded the scored folder" in row


def test_a_run_without_steps_or_a_given_model_has_one_model(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    (run.root / "model").mkdir(parents=True)
    workflow = load_workflow_text(tmp_path)
    chosen = choose_scored_model(workflow, run, run.model)
    assert (chosen.folder, chosen.choice, chosen.step) == ("model", "only", None)
    given = choose_scored_model(workflow, run, tmp_path / "elsewhere" / "model")
    assert given.choice == "given"
    assert given.not_scored is None


def load_workflow_text(folder: Path) -> Workflow:
    return Workflow.model_validate(
        {
            "data": {"kind": "paired", "layout": {"type": "synthrad", "root": str(folder)}},
            "method": {"id": "x"},
        }
    )


def test_the_training_record_counts_cases_per_domain() -> None:
    def case(case_id: str, domain: str) -> Case:
        return Case(id=case_id, images={"image": Path(f"/{case_id}.nii.gz")}, domain=domain)

    train = CaseSet(
        kind=DataKind.MULTI_DOMAIN,
        cases=(case("a1", "A"), case("a2", "A"), case("b1", "B")),
        domains=("A", "B", "C"),
    )
    empty = CaseSet(kind=DataKind.PAIRED, cases=())
    splits = DataSplits(train=train, validation=empty, test=empty)
    workflow = load_workflow_text(Path("/data"))
    workflow = workflow.model_copy(
        update={"data": workflow.data.model_copy(update={"kind": "multi-domain"})}
    )
    record = training_record(workflow, splits, route="gradient", resumed_from=0)
    assert record.domains == (("A", 2), ("B", 1), ("C", 0))
    sentence = training_sentence(record, "run-1")
    assert "on 3 multi-domain training cases (A 2, B 1, C 0); no validation data" in sentence
    assert "resumed" not in sentence


def test_the_adapt_stage_adapts_the_checkpoint_the_evaluation_scores(
    workflow_file: Path, cases: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typing import Any

    from medi2i.model_folder import read_manifest
    from medi2i.testing.trainable_examples import TinyRegression
    from tests.contract_v2_methods import registry_with

    class AdaptingTinyRegression(TinyRegression):
        id = "adapting-tiny-regression"
        adapts = True

        def adapt(self, volumes: Any, context: Any) -> None:
            """Nothing to change: the test follows which folder is adapted."""

    monkeypatch.setenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = registry_with(AdaptingTinyRegression)
    text = workflow_file.read_text().replace("example-tiny-regression", "adapting-tiny-regression")
    workflow_file.write_text(text.replace("[medi2i.testing.trainable_examples]", "[]"))
    adaptation = f"adaptation={{data: {{type: synthrad, root: {cases}, source: mr}}}}"
    workflow = load_workflow(workflow_file, overrides=[adaptation], registry=registry)
    result = run_workflow(workflow, registry=registry)
    assert result.scored_dir == result.run_dir / "adapted"
    adapted_from = read_manifest(result.run_dir / "adapted").adapted_from
    assert adapted_from is not None
    assert Path(adapted_from.model) == result.run_dir / "best-model"
    record = read_scored_record(RunFolder(result.run_dir))
    assert record is not None
    assert record.model.choice == "adapted"
    assert record.model.reason.startswith("the adapt stage's model, adapted from best-model/")
    assert "model/ (the last step, 12" in (record.model.not_scored or "")
    for folder in ("model", "best-model"):
        card = card_of(result.run_dir / folder)
        assert "which scored adapted/" in card.summary
        assert not {name for name in card.metrics if not name.startswith("validation_")}
