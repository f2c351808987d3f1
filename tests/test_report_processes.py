"""A run trained in several processes says so in its report (facts and the rerun
command) and in its model card's hardware."""

from __future__ import annotations

import json
from pathlib import Path

from medi2i.training.outputs import TRAINING_FACTS
from medi2i.workflow.model_card import _processes
from medi2i.workflow.reporting import _rerun_section
from medi2i.workflow.run_folder import RunFolder


def test_the_rerun_command_of_a_two_process_run_launches_two_processes(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    section = _rerun_section(run, 2)
    assert section.code is not None
    assert section.code.splitlines()[0].startswith("torchrun --nproc_per_node 2 -m medi2i run ")
    assert "2 processes" in (section.text or "")
    single = _rerun_section(run, 1)
    assert single.code is not None
    assert single.code.startswith("medi2i run ")


def test_the_card_names_the_processes_a_model_trained_in(tmp_path: Path) -> None:
    facts = {"world_size": 2, "batch_size": 2, "accumulation_steps": 1, "patches_per_step": 4}
    (tmp_path / TRAINING_FACTS).write_text(json.dumps(facts))
    assert _processes(tmp_path) == ", 2 processes (torchrun), 4 patches per step"
    (tmp_path / TRAINING_FACTS).write_text(json.dumps({**facts, "world_size": 1}))
    assert _processes(tmp_path) == ""
    (tmp_path / TRAINING_FACTS).unlink()
    assert _processes(tmp_path) == ""


def test_the_rerun_text_of_a_run_without_training_steps_does_not_promise_a_resume(
    tmp_path: Path,
) -> None:
    section = _rerun_section(RunFolder(tmp_path))
    assert "it trained no steps" in (section.text or "")
    assert "resumes from its last checkpoint" not in (section.text or "")
