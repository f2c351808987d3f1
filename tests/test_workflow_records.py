"""What a workflow run records about its evaluation: one prediction and figure per case
id, cases outside the training spacings, the inference settings, the overrides and the
resume the model was trained with, and what an interrupted evaluation keeps."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from medi2i.cards import ModelCard, load_card
from medi2i.cli.main import build_cli
from medi2i.plugins import PluginSet, load_plugins
from medi2i.registry import Registry
from medi2i.workflow import WorkflowError, load_workflow, run_workflow
from medi2i.workflow.demo_data import write_demo_cases
from medi2i.workflow.evaluation import prediction_stem
from medi2i.workflow.reporting import _values_line

SPACING = (10.5, 12.0, 10.5)

WORKFLOW = """\
description: records
plugins: [medi2i.testing.trainable_examples]
data:
  kind: paired
  layout: {type: csv, manifest: cases.csv}
  split: {validation: [], test: ["x y", "x_y", thick]}
method:
  id: example-tiny-regression
  options: {hidden: 4, roi_size: [16, 16, 16]}
training:
  steps: 2
  batch_size: 1
  checkpoint_every: 2
  log_every: 1
  device: cpu
  progress: false
inference: {device: cpu, progress: false}
report: {cases: 3}
output: {root: runs}
"""


def _manifest(cases: Path, thick: Path) -> str:
    rows = ["case,role,path"]
    files = {"a": cases / "demo000", "b": cases / "demo001", "x y": cases / "demo002"}
    files |= {"x_y": cases / "demo003", "thick": thick / "demo000"}
    for case_id, folder in files.items():
        for role, name in (("source", "mr"), ("target", "ct"), ("mask", "mask")):
            rows.append(f'"{case_id}",{role},{folder / f"{name}.nii.gz"}')
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def plugins() -> PluginSet:
    return load_plugins()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, plugins: PluginSet) -> Path:
    """One run: cases "x y" and "x_y" (one name once their space is replaced), and a
    case whose slices are 4 times thicker than the training cases'."""
    root = tmp_path_factory.mktemp("records")
    write_demo_cases(root / "cases", count=4, shape=(16, 16, 16), spacing_mm=SPACING)
    thick = (SPACING[0], SPACING[1], SPACING[2] * 4)
    write_demo_cases(root / "thick", count=1, shape=(16, 16, 16), spacing_mm=thick)
    (root / "cases.csv").write_text(_manifest(root / "cases", root / "thick"))
    (root / "wf.yaml").write_text(WORKFLOW)
    result = CliRunner().invoke(
        build_cli(plugins),
        [
            "run",
            str(root / "wf.yaml"),
            "--set",
            "output.run_id=main",
            "--set",
            "inference.overlap=0.6",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return root / "runs" / "wf-main"


def test_prediction_stems_are_unique_and_stable() -> None:
    assert prediction_stem("sub-01") == "sub-01"  # the common case stays readable
    assert prediction_stem("x y") != prediction_stem("x_y")
    assert prediction_stem("x y") == prediction_stem("x y")  # the same in every run
    assert prediction_stem("x y").startswith("x_y-")
    assert prediction_stem("a/case1").startswith("a__case1-")
    assert prediction_stem("sub é") != prediction_stem("sub e")


def test_cases_with_one_sanitised_name_keep_their_own_files(trained: Path) -> None:
    records = json.loads((trained / "metrics" / "cases.json").read_text())["cases"]
    by_id = {record["id"]: record for record in records}
    assert by_id["x y"]["prediction"] != by_id["x_y"]["prediction"]
    for record in by_id.values():
        assert (trained / record["prediction"]).is_file()
    figures = sorted(p.name for p in (trained / "figures").glob("case_*.png"))
    assert len(figures) == 3
    report = (trained / "report.md").read_text()
    assert f"figures/case_{prediction_stem('x y')}.png" in report
    assert f"figures/case_{prediction_stem('x_y')}.png" in report


def test_a_case_outside_the_training_spacings_is_recorded_everywhere(trained: Path) -> None:
    records = json.loads((trained / "metrics" / "cases.json").read_text())["cases"]
    by_id = {record["id"]: record for record in records}
    outside = by_id["thick"]["spacing_outside_training_mm"]
    assert outside["input"][2] == pytest.approx(SPACING[2] * 4)
    assert by_id["x y"]["spacing_outside_training_mm"] is None
    metrics = json.loads((trained / "metrics" / "metrics.json").read_text())
    assert set(metrics["spacing_outside_training_mm"]) == {"thick"}
    assert set(metrics["cases"]) == {"x y", "x_y", "thick"}
    log = (trained / "logs" / "run.log").read_text()
    assert "case 'thick': input spacing 10.5x12x42 mm, outside the training spacings" in log
    report = (trained / "report.md").read_text()
    assert "thick (spacing outside training)" in report  # its row of the per-case table
    assert "the summary includes 1 case(s) whose voxel spacing lies outside" in report
    assert "| spacing outside training |" in report or "spacing outside training:" in report
    card = load_card(trained / "model" / "card.yaml")
    assert isinstance(card, ModelCard)
    (limit,) = [limit for limit in card.limits if limit.startswith("The metrics include")]
    assert "1 of 3 test case(s)" in limit
    assert "'thick'" in limit


def test_the_card_and_metrics_record_the_inference_settings(trained: Path) -> None:
    card = load_card(trained / "model" / "card.yaml")
    assert isinstance(card, ModelCard)
    assert card.metrics_inference["overlap"] == 0.6
    assert card.metrics_inference["blend"] == "gaussian"
    assert card.metrics_inference["mirror_axes"] == []
    metrics = json.loads((trained / "metrics" / "metrics.json").read_text())
    assert metrics["inference"]["overlap"] == 0.6
    # a card written before medi2i recorded them stays valid
    raw = load_card(trained / "model" / "card.yaml").model_dump(exclude={"metrics_inference"})
    assert ModelCard.model_validate(raw).metrics_inference == {}


def test_evaluate_without_the_runs_overrides_reports_them(
    trained: Path, plugins: PluginSet, tmp_path: Path
) -> None:
    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    workflow = trained.parent.parent / "wf.yaml"
    result = CliRunner().invoke(
        build_cli(plugins),
        ["evaluate", str(workflow), "--run-dir", str(run)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = (run / "report.md").read_text()
    assert (
        "training: output.run_id=main, inference.overlap=0.6; this evaluation and report: none"
        in report
    )


def test_the_report_says_training_resumed(
    trained: Path, plugins: PluginSet, tmp_path: Path
) -> None:
    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    registry = Registry(plugins)
    path = trained.parent.parent / "wf.yaml"
    workflow = load_workflow(path, overrides=["training.steps=3"], registry=registry)
    run_workflow(workflow, registry=registry, run_dir=run)
    assert json.loads((run / "run.json").read_text())["resumed_from"] == 2
    assert "from the checkpoint of step 2" in (run / "report.md").read_text()


def test_an_interrupted_evaluation_says_what_a_rerun_does(
    trained: Path, plugins: PluginSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medi2i.workflow import evaluation

    def interrupted(*args: object, **kwargs: object) -> Path:
        raise KeyboardInterrupt

    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    monkeypatch.setattr(evaluation, "evaluate_stage", interrupted)
    result = CliRunner().invoke(
        build_cli(plugins),
        ["evaluate", str(trained.parent.parent / "wf.yaml"), "--run-dir", str(run)],
    )
    assert result.exit_code == 130
    assert "where training resumes" not in result.output
    assert "training had finished" in result.output
    assert f"medi2i evaluate WORKFLOW --run-dir {run}` redoes the evaluate stage" in result.output


def test_a_refused_method_change_shows_the_default_it_would_use(
    trained: Path, plugins: PluginSet, tmp_path: Path
) -> None:
    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    source = trained.parent.parent / "wf.yaml"
    changed = source.parent / "wf_defaults.yaml"
    changed.write_text(source.read_text().replace("hidden: 4, ", ""))
    registry = Registry(plugins)
    default = registry.method("example-tiny-regression").Options().model_dump()["hidden"]
    with pytest.raises(WorkflowError) as caught:
        run_workflow(load_workflow(changed, registry=registry), registry=registry, run_dir=run)
    assert f"method.options.hidden: 4 → null (the default: {default})" in str(caught.value)


def test_the_montage_title_shows_n_a_for_a_missing_value() -> None:
    line = _values_line({"synthrad_mae": 12.5, "air_mae": math.nan})
    assert "air_mae n/a" in line
    assert "nan" not in line


def test_evaluate_files_gives_the_python_reason_for_air_mae_without_a_mask() -> None:
    from medi2i.cli.evaluate_commands import _missing_notes
    from medi2i.evaluation.air import AIR_MAE_NO_MASK

    assert _missing_notes({"air_mae": math.nan}, None) == {"air_mae": AIR_MAE_NO_MASK}
