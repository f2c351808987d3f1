"""A run under torchrun whose other process stops: the collective that fails is one
line naming the checkpoint to resume from, not the traceback of Gloo or NCCL."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import torch.distributed as dist

from medi2i.data.cases import CaseSet
from medi2i.errors import TrainingError
from medi2i.testing.trainable_examples import TinyRegression, write_paired_cases
from medi2i.training import run as run_module
from medi2i.training import train
from medi2i.training.distributed import DistributedContext, collective_failure
from tests.training_helpers import quick

GLOO_RESET = (
    "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
    "[127.0.0.1]:41202: Connection reset by peer"
)
GLOO_ADVICE = (
    ". This is typically caused by a remote worker hanging or bugs in the application. "
    "Check the logs of the remote worker before reporting an error."
)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> CaseSet:
    return write_paired_cases(tmp_path_factory.mktemp("cases"), count=2, shape=(16, 16, 16))


def test_an_all_reduce_failing_after_a_checkpoint_names_it_and_the_run_folder(
    cases: CaseSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    averaged = run_module.average_across_processes

    def failing(values: Mapping[str, float], context: DistributedContext) -> dict[str, float]:
        if len(calls) == 4:
            raise dist.DistBackendError("NCCL communicator was aborted on rank 0")
        calls.append(1)
        return averaged(values, context)

    calls: list[int] = []
    monkeypatch.setattr(run_module, "average_across_processes", failing)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingError) as caught:
        train(TinyRegression(), cases, config=quick(), run_dir=run_dir)
    message = str(caught.value)
    assert "another process of the run stopped" in message
    assert "NCCL communicator was aborted" in message
    assert f"--run-dir {run_dir}" in message
    assert "checkpoint of step 3" in message
    assert "\n" not in message


def test_a_barrier_reset_by_gloo_before_any_checkpoint_says_training_restarts(
    cases: CaseSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def reset(self: DistributedContext) -> None:
        raise RuntimeError(GLOO_RESET + GLOO_ADVICE)

    monkeypatch.setattr(DistributedContext, "barrier", reset)
    with pytest.raises(TrainingError, match="another process of the run stopped") as caught:
        train(TinyRegression(), cases, config=quick(checkpoint_every=100), run_dir=tmp_path)
    assert "Connection reset by peer" in str(caught.value)
    assert "typically caused" not in str(caught.value)
    assert "no checkpoint was written yet" in str(caught.value)


def test_other_runtime_errors_are_not_taken_for_a_stopped_process() -> None:
    assert collective_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    assert collective_failure(ValueError(GLOO_RESET)) is None
    assert collective_failure(RuntimeError(GLOO_RESET + GLOO_ADVICE)) == GLOO_RESET
