"""An unpaired or multi-domain method evaluated on its own training images (the Q3
workflows' evaluation pairs MNI152 under scanner B with MNI152 under A, both training
volumes) is allowed, but said: one warning line from ``medi2i validate --check-data``
and ``medi2i run``, a note in the report and a limit in the scored model's card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from medi2i.cli.main import build_cli
from medi2i.data.discovery import discover_splits
from medi2i.plugins import load_plugins
from medi2i.registry import Registry
from medi2i.testing.domain_cases import write_multi_domain_cases
from medi2i.workflow import load_workflow
from medi2i.workflow.run_folder import RunFolder
from medi2i.workflow.runner import run_workflow
from medi2i.workflow.scored_model import read_scored_record
from medi2i.workflow.split_checks import evaluation_on_training
from tests.domain_map_workflow import domain_map_workflow

pytest.importorskip("medi2i_harmonization")  # the domain intensity map: fitted, multi-domain

WORKFLOW = domain_map_workflow()
WARNING = "the evaluated images were training images of an unpaired/multi-domain method"


def workflow_file(folder: Path, *, source: Path, target: Path) -> Path:
    """:data:`WORKFLOW` on ``folder/data`` (scanners A and B, one volume each), whose
    evaluation maps ``source`` onto ``target``."""
    write_multi_domain_cases(folder / "data", domains=("A", "B"), per_domain=1, shape=(16,) * 3)
    rows = ["case,role,path", f"b-to-a,source,{source}", f"b-to-a,target,{target}"]
    (folder / "evaluation.csv").write_text("\n".join(rows) + "\n")
    path = folder / "wf.yaml"
    path.write_text(WORKFLOW)
    return path


def on_training(folder: Path) -> Path:
    return workflow_file(
        folder, source=folder / "data/B/B-0.nii.gz", target=folder / "data/A/A-0.nii.gz"
    )


def test_a_run_warns_and_its_report_and_card_say_it(tmp_path: Path, registry: Registry) -> None:
    workflow = load_workflow(on_training(tmp_path), registry=registry)
    lines: list[str] = []
    result = run_workflow(workflow, registry=registry, echo=lines.append)
    warned = [line for line in lines if WARNING in line]
    assert len(warned) == 1, lines
    assert warned[0].startswith("train: Warning: ")
    assert "not a held-out test" in warned[0]
    record = read_scored_record(RunFolder(result.run_dir))
    assert record is not None
    assert record.on_training == ("b-to-a",)
    assert result.report_path is not None
    assert "all of them training images" in result.report_path.read_text()
    card = (result.run_dir / "model" / "card.yaml").read_text()
    assert card.count("Its metrics were measured on training images") == 1
    again: list[str] = []  # evaluated alone: said by the evaluate stage, the card redone
    run_workflow(
        workflow,
        registry=registry,
        stages=("evaluate", "report"),
        run_dir=result.run_dir,
        echo=again.append,
    )
    assert any(line.startswith(f"evaluate: Warning: {WARNING}") for line in again), again
    card = (result.run_dir / "model" / "card.yaml").read_text()
    assert card.count("Its metrics were measured on training images") == 1


def test_held_out_images_are_not_flagged_and_copies_are(tmp_path: Path) -> None:
    held = tmp_path / "held"
    write_multi_domain_cases(held, domains=("A", "B"), per_domain=1, shape=(16,) * 3, seed=7)
    path = workflow_file(tmp_path, source=held / "B/B-0.nii.gz", target=held / "A/A-0.nii.gz")
    workflow = load_workflow(path)
    assert evaluation_on_training(workflow, discover_splits(workflow.data)) is None
    shutil.copyfile(tmp_path / "data/B/B-0.nii.gz", held / "B/B-0.nii.gz")  # exported twice
    overlap = evaluation_on_training(workflow, discover_splits(workflow.data))
    assert overlap is not None
    assert overlap.cases == ("b-to-a",)


def test_validate_check_data_warns_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        build_cli(load_plugins()), ["validate", str(on_training(tmp_path)), "--check-data"]
    )
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if WARNING in line]
    assert len(warned) == 1, result.output
    assert warned[0].startswith("Warning: the evaluated images")
    assert ": the evaluation case b-to-a read a training volume as source or target;" in warned[0]


def test_a_record_written_before_on_training_reads(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    run.metrics.mkdir(parents=True)
    model = {"folder": "model", "choice": "only", "reason": "the run's one model"}
    document = {"model": model, "checkpoint": "best", "where": "evaluation.data", "cases": ["x"]}
    (run.metrics / "scored-model.json").write_text(json.dumps(document))
    record = read_scored_record(run)
    assert record is not None
    assert record.on_training == ()
    assert record.training_note() is None
