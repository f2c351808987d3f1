"""The predict-time condition an evaluation ran under (a multi-domain method's source and
target domains, UNIT's direction, MUNIT's style seed) is recorded in ``metrics/``, the
report and the scored model's card; a method without condition records none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medi2i.cards import ModelCard, load_card
from medi2i.registry import Registry
from medi2i.testing.domain_cases import write_multi_domain_cases
from medi2i.workflow import load_workflow
from medi2i.workflow.evaluation import (
    VARIES,
    EvaluatedCase,
    EvaluationRecord,
    card_condition,
    scored_condition,
)
from medi2i.workflow.reporting import _scored_under
from medi2i.workflow.run_folder import RunFolder
from medi2i.workflow.runner import run_workflow
from medi2i.workflow.scored_model import read_scored_record
from tests.domain_map_workflow import domain_map_workflow

WORKFLOW = domain_map_workflow(("A", "B", "C"))
B_TO_A = {"target_domain": "A", "source_domain": "B"}


def run_folder(folder: Path, rows: list[str]) -> RunFolder:
    """Fit :data:`WORKFLOW` on one volume per scanner and evaluate the CSV ``rows``."""
    pytest.importorskip("medi2i_harmonization")
    write_multi_domain_cases(
        folder / "data", domains=("A", "B", "C"), per_domain=1, shape=(16,) * 3
    )
    (folder / "evaluation.csv").write_text("\n".join(["case,role,path,condition", *rows]) + "\n")
    (folder / "wf.yaml").write_text(WORKFLOW)
    registry = Registry()
    workflow = load_workflow(folder / "wf.yaml", registry=registry)
    return RunFolder(run_workflow(workflow, registry=registry).run_dir)


def pair(case: str, source: str, condition: str = "") -> list[str]:
    data = Path("data").resolve()
    return [
        f"{case},source,{data}/{source}/{source}-0.nii.gz,{condition}",
        f"{case},target,{data}/A/A-0.nii.gz,",
    ]


def test_the_condition_is_in_metrics_the_record_the_report_and_the_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run = run_folder(tmp_path, pair("b-to-a", "B"))
    metrics = json.loads((run.metrics / "metrics.json").read_text())
    assert metrics["condition"] == B_TO_A
    assert metrics["condition_by_case"] == {"b-to-a": B_TO_A}
    record = read_scored_record(run)
    assert record is not None
    assert record.condition == B_TO_A
    assert (
        "| scored under | target_domain=A, source_domain=B |"
        in (run.root / "report.md").read_text()
    )
    card = load_card(run.model / "card.yaml")
    assert isinstance(card, ModelCard)
    assert card.metrics_inference["condition.target_domain"] == "A"
    assert card.metrics_inference["condition.source_domain"] == "B"
    assert "Predicted under the condition target_domain=A, source_domain=B." in card.summary


def test_conditions_that_differ_by_case_are_recorded_per_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run = run_folder(tmp_path, [*pair("b-to-a", "B"), *pair("c-to-a", "C", "source_domain=C")])
    metrics = json.loads((run.metrics / "metrics.json").read_text())
    assert metrics["condition"] is None
    assert metrics["condition_by_case"]["c-to-a"] == {"target_domain": "A", "source_domain": "C"}
    report = (run.root / "report.md").read_text()
    assert "differs by case: b-to-a: target_domain=A, source_domain=B; c-to-a:" in report
    card = load_card(run.model / "card.yaml")
    assert isinstance(card, ModelCard)
    assert card.metrics_inference["condition.source_domain"] == VARIES
    assert "Predicted under each case's own condition: b-to-a: target_domain=A" in card.summary


def test_a_stochastic_prediction_records_its_seed() -> None:
    pytest.importorskip("medi2i_unit")
    method = Registry().method("munit")(
        {
            "roi_size": (16, 16, 16),
            "filters": 4,
            "blocks": 1,
            "style_downsamples": 2,
            "mlp_features": 8,
            "discriminator_filters": 4,
            "discriminator_layers": 2,
        }
    )
    method.use_domains(["scanner-a", "scanner-b"])
    condition = scored_condition(method, {"direction": "b2a"}, seed=7)
    assert condition is not None
    assert condition["direction"] == "b2a"
    assert condition["style_seed"] == 7  # the prediction's seed, not "settings.seed"
    assert scored_condition(method, {"direction": "b2a", "style_seed": 3}, seed=7) == {
        **condition,
        "style_seed": 3,
    }


def test_a_method_without_condition_records_none() -> None:
    method = Registry().method("intensity-inversion")()
    assert scored_condition(method, None, seed=0) is None


def case(case_id: str, condition: dict[str, object] | None) -> EvaluatedCase:
    return EvaluatedCase(
        id=case_id, source="s", reference="r", mask=None, prediction=None, condition=condition
    )


def test_card_and_report_text_of_shared_and_differing_conditions() -> None:
    same = [
        case("a", {"direction": "b2a", "scale": [1, 2]}),
        case("b", {"direction": "b2a", "scale": [1, 2]}),
    ]
    assert card_condition(same) == {"condition.direction": "b2a", "condition.scale": "[1, 2]"}
    mixed = [case("a", {"direction": "b2a"}), case("b", {"direction": "a2b"})]
    assert card_condition(mixed) == {"condition.direction": VARIES}
    assert card_condition([case("a", None)]) == {}
    record = EvaluationRecord(units={}, cases=mixed, per_case={})
    assert _scored_under(record) == "differs by case: a: direction=b2a; b: direction=a2b"
    assert _scored_under(EvaluationRecord(units={}, cases=[case("a", None)], per_case={})) is None
