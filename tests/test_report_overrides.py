"""The report names the ``--set`` overrides a run applied beside the workflow's
description, which is the file's text and does not know them."""

from __future__ import annotations

from pathlib import Path

from medi2i.workflow.loader import load_workflow
from medi2i.workflow.reporting import _subtitle

WORKFLOW = Path(__file__).resolve().parent.parent / "workflows" / "demo_paired_tiny.yaml"


def test_the_report_subtitle_lists_the_overrides_applied() -> None:
    """The first line printed the description verbatim though --set changed the run."""
    plain = load_workflow(WORKFLOW)
    assert plain.overrides == ()
    assert _subtitle(plain) == plain.description.strip()
    overridden = load_workflow(WORKFLOW, overrides=["training.steps=7"])
    assert overridden.training.steps == 7
    assert overridden.overrides == ("training.steps=7",)
    subtitle = _subtitle(overridden)
    assert subtitle.startswith(plain.description.strip())
    assert "(run with --set training.steps=7, which this description does not reflect)" in subtitle
    copied = overridden.model_copy(update={"description": "other"})
    assert copied.overrides == ("training.steps=7",)  # kept through the runner's copies
