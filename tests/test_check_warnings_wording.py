"""The warnings that the evaluation data is validation data, or training images of an
unpaired or multi-domain method, start ``Warning:`` as the command line's other
warnings do (after a run log's stage prefix) and name the cases, the first five, then
how many more."""

from __future__ import annotations

from pathlib import Path

import pytest

from medi2i.registry import Registry
from medi2i.testing.domain_cases import write_multi_domain_cases
from medi2i.workflow import load_workflow
from medi2i.workflow.runner import run_workflow
from medi2i.workflow.scored_model import ScoredModel, ScoredRecord, named_cases
from medi2i.workflow.split_checks import TrainingOverlap, ValidationOverlap
from tests.domain_map_workflow import domain_map_workflow

WORKFLOW = domain_map_workflow(report="{enabled: false}")
CASES = tuple(f"case{index}" for index in range(7))


def test_case_ids_are_named_with_how_many_more() -> None:
    assert named_cases(("a",)) == "a"
    assert named_cases(CASES) == "case0, case1, case2, case3, case4 and 2 more"


def test_the_check_data_warnings_start_warning_and_name_the_cases() -> None:
    one = ValidationOverlap(("demo001",), 1).warning()
    assert one.startswith("Warning: the evaluation data is the validation data: ")
    assert "the evaluation case demo001 read a validation case's source or target" in one
    some = ValidationOverlap(CASES, 9).warning()
    assert "7 of 9 evaluation cases (case0, case1, case2, case3, case4 and 2 more)" in some
    seen = TrainingOverlap(("x", "y"), 2).warning()
    assert seen.startswith("Warning: the evaluated images were training images of an ")
    assert "all 2 evaluation cases (x, y) read a training volume" in seen


def test_the_scored_record_notes_name_the_cases() -> None:
    model = ScoredModel(folder="best-model", choice="best", reason="chosen on validation")
    whole = ScoredRecord(
        model=model, checkpoint="best", where="the test split", cases=("a",), on_validation=("a",)
    )
    assert "the evaluation data (a) is the validation data best-model/ was chosen on" in str(
        whole.validation_note()
    )
    many = ScoredRecord(
        model=model, checkpoint="best", where="the test split", cases=CASES, on_training=CASES
    )
    assert "(all 7 evaluation cases: case0, case1, case2, case3, case4 and 2 more)" in str(
        many.training_note()
    )


def test_the_run_log_says_warning_after_the_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("medi2i_harmonization")
    monkeypatch.chdir(tmp_path)
    write_multi_domain_cases(tmp_path / "data", domains=("A", "B"), per_domain=1, shape=(16,) * 3)
    rows = ["case,role,path", "b-to-a,source,data/B/B-0.nii.gz", "b-to-a,target,data/A/A-0.nii.gz"]
    (tmp_path / "evaluation.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    registry = Registry()
    workflow = load_workflow(tmp_path / "wf.yaml", registry=registry)
    lines: list[str] = []
    result = run_workflow(workflow, registry=registry, echo=lines.append)
    said = "Warning: the evaluated images were training images"
    assert next(line for line in lines if said in line).startswith(f"train: {said}")
    again: list[str] = []  # evaluated alone: the evaluate stage says it
    run_workflow(
        workflow, registry=registry, stages=("evaluate",), run_dir=result.run_dir, echo=again.append
    )
    (line,) = [line for line in again if said in line]
    assert line.startswith(f"evaluate: {said}")
    assert "(the evaluation case b-to-a)" in line
