"""A report whose evaluated cases are different tasks (super-resolution factors, the
source → target pairs of a multi-domain method) summarizes each task on its own and
says that the summary over all cases pools them; a report of one task is unchanged."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from medi2i.workflow.evaluation import EvaluatedCase, EvaluationRecord
from medi2i.workflow.loader import load_workflow
from medi2i.workflow.reporting import _metrics_section, case_groups

WORKFLOW = Path(__file__).resolve().parent.parent / "workflows" / "demo_paired_tiny.yaml"

CSV_WORKFLOW = """\
description: multi-domain pairs
data:
  kind: paired
  layout: {type: csv, manifest: pairs.csv}
method:
  id: example-tiny-regression
  condition: {target_domain: A, source_domain: B}
evaluation:
  data:
    kind: paired
    layout: {type: csv, manifest: pairs.csv}
"""


def volume(path: Path, spacing: tuple[float, float, float]) -> str:
    image = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.diag([*spacing, 1.0]))  # type: ignore[no-untyped-call]
    nib.save(image, path)
    return str(path)


def evaluation(folder: Path, inputs: dict[str, tuple[float, float, float]]) -> EvaluationRecord:
    """Cases whose input has the given spacing and whose reference is 1 mm."""
    cases = [
        EvaluatedCase(
            id=case_id,
            source=volume(folder / f"{case_id}_input.nii", spacing),
            reference=volume(folder / f"{case_id}_reference.nii", (1.0, 1.0, 1.0)),
            mask=None,
            prediction=None,
        )
        for case_id, spacing in inputs.items()
    ]
    per_case = {case_id: {"psnr": 30.0 + index} for index, case_id in enumerate(inputs)}
    return EvaluationRecord(units={"psnr": "dB"}, cases=cases, per_case=per_case)


def test_super_resolution_factors_are_summarized_apart(tmp_path: Path) -> None:
    workflow = load_workflow(WORKFLOW)
    record = evaluation(tmp_path, {"x2": (1.0, 1.0, 2.0), "x4": (1.0, 1.0, 4.0)})
    groups = case_groups(workflow, record)
    assert groups == {
        "x2": "input 1x1x2 mm → 1x1x1 mm (×2)",
        "x4": "input 1x1x4 mm → 1x1x1 mm (×4)",
    }
    section = _metrics_section(workflow, record, None, groups)
    titles = [title for title, _ in section.tables]
    assert titles == [
        "Summary: input 1x1x2 mm → 1x1x1 mm (×2)",
        "Summary: input 1x1x4 mm → 1x1x1 mm (×4)",
        "Summary over all cases (pools 2 tasks)",
        "Per case",
    ]
    assert "| 30.0000 |" in section.tables[0][1]
    assert "| 31.0000 |" in section.tables[1][1]
    assert "are 2 different tasks" in section.text
    assert "pools them" in section.text


def test_one_task_keeps_one_summary(tmp_path: Path) -> None:
    workflow = load_workflow(WORKFLOW)
    record = evaluation(tmp_path, {"a": (1.0, 1.0, 4.0), "b": (1.0, 1.0, 4.0)})
    assert case_groups(workflow, record) == {}
    section = _metrics_section(workflow, record, None, {})
    assert [title for title, _ in section.tables] == ["Summary over cases", "Per case"]
    same = evaluation(tmp_path, {"c": (1.0, 1.0, 1.0), "d": (1.0, 1.0, 1.0)})
    assert case_groups(workflow, same) == {}  # translation: inputs on their references' grids


def test_a_case_whose_files_are_gone_pools_the_cases(tmp_path: Path) -> None:
    workflow = load_workflow(WORKFLOW)
    record = evaluation(tmp_path, {"x2": (1.0, 1.0, 2.0), "x4": (1.0, 1.0, 4.0)})
    Path(record.cases[1].reference).unlink()
    assert case_groups(workflow, record) == {}


def test_source_target_pairs_are_summarized_apart(tmp_path: Path) -> None:
    rows = ["case,role,path,condition"]
    for case, condition in (("b-to-a", ""), ("c-to-a", "source_domain=C")):
        for role in ("source", "target"):
            path = volume(tmp_path / f"{case}_{role}.nii", (1.0, 1.0, 1.0))
            rows.append(f"{case},{role},{path},{condition if role == 'source' else ''}")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "wf.yaml").write_text(CSV_WORKFLOW)
    workflow = load_workflow(tmp_path / "wf.yaml")
    record = evaluation(tmp_path, {"b-to-a": (1.0, 1.0, 1.0), "c-to-a": (1.0, 1.0, 1.0)})
    assert case_groups(workflow, record) == {"b-to-a": "B → A", "c-to-a": "C → A"}
