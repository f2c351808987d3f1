"""What a run in several processes records: its log line, the model folder's training
facts, the result, ``run.json``, and the refusal to resume it in another number."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch.distributed as dist

import medi2i.training.run as run_module
from medi2i.testing.trainable_examples import TinyRegression, write_paired_cases
from medi2i.training import CheckpointError, TrainingConfig, train
from medi2i.training.distributed import DistributedContext, TrainingScale
from medi2i.training.outputs import TRAINING_FACTS
from medi2i.workflow.run_folder import RunFolder, RunState

CONFIG = TrainingConfig(
    steps=2,
    batch_size=2,
    patch_size=(16, 16, 16),
    checkpoint_every=2,
    log_every=1,
    device="cpu",
    progress=False,
)


def test_the_scale_says_the_patches_of_every_process() -> None:
    scale = TrainingScale(world_size=2, batch_size=4, accumulation_steps=3)
    assert scale.patches_per_step == 24
    assert scale.record() == {
        "world_size": 2,
        "batch_size": 4,
        "accumulation_steps": 3,
        "patches_per_step": 24,
    }
    note = scale.note()
    assert note is not None
    assert note.startswith(
        "training on 2 processes (torchrun): 2 × batch_size 4 × accumulation_steps 3 = "
        "24 patches per step"
    )
    assert "torchrun --nproc_per_node 2" in note
    assert TrainingScale(world_size=1, batch_size=4).note() is None


@pytest.fixture
def two_processes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A training that believes it runs in 2 processes: a process group of this one
    process (its collectives and DDP work) under a context of world size 2."""
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )

    def joined(*, device: object) -> DistributedContext:
        return DistributedContext(rank=0, world_size=2)

    monkeypatch.setattr(run_module, "join_process_group", joined)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.usefixtures("two_processes")
def test_a_run_in_two_processes_records_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cases = write_paired_cases(tmp_path / "cases", count=1, shape=(16, 16, 16))
    with caplog.at_level(logging.INFO, logger="medi2i.training"):
        result = train(TinyRegression(), cases, config=CONFIG, run_dir=tmp_path / "run")
    assert (result.world_size, result.patches_per_step) == (2, 4)
    facts = json.loads((Path(result.model_dir) / TRAINING_FACTS).read_text())
    assert facts["world_size"] == 2
    assert facts["patches_per_step"] == 4
    assert "training on 2 processes (torchrun): 2 × batch_size 2 = 4 patches per step" in (
        caplog.text
    )


def test_a_run_in_one_process_records_one(tmp_path: Path) -> None:
    cases = write_paired_cases(tmp_path / "cases", count=1, shape=(16, 16, 16))
    result = train(TinyRegression(), cases, config=CONFIG, run_dir=tmp_path / "run")
    assert (result.world_size, result.patches_per_step) == (1, 2)
    facts = json.loads((Path(result.model_dir) / TRAINING_FACTS).read_text())
    assert (facts["world_size"], facts["patches_per_step"]) == (1, 2)


def test_a_checkpoint_of_two_processes_is_not_resumed_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = write_paired_cases(tmp_path / "cases", count=1, shape=(16, 16, 16))
    run_dir = tmp_path / "run"
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        with monkeypatch.context() as patched:
            patched.setattr(run_module, "join_process_group", lambda **_: DistributedContext(0, 2))
            train(TinyRegression(), cases, config=CONFIG, run_dir=run_dir)
    finally:
        dist.destroy_process_group()
    longer = CONFIG.model_copy(update={"steps": 4})
    with pytest.raises(CheckpointError) as refused:
        train(TinyRegression(), cases, config=longer, run_dir=run_dir)
    message = str(refused.value)
    assert "world_size: 2 → 1" in message
    assert "(2 processes: torchrun --nproc_per_node 2)" in message


def test_run_json_records_the_processes_of_a_training(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    scale = TrainingScale(world_size=2, batch_size=4).record()
    RunState.read(run).finished(run, "train", model=tmp_path / "model", scale=scale)
    raw = json.loads(run.state.read_text())
    assert (raw["world_size"], raw["patches_per_step"]) == (2, 8)
    state = RunState.read(run).finished(run, "evaluate")  # kept by later stages
    assert (state.world_size, state.patches_per_step) == (2, 8)
    fitted = state.finished(run, "train", model=tmp_path / "model")  # a fitted model
    assert (fitted.world_size, fitted.patches_per_step) == (None, None)
    assert "world_size" not in json.loads(run.state.read_text())
