"""One ``medi2i batch`` at a time per output root, none inside another's root
(medi2i.batch_lock.batch_lock), and what an interrupted batch says."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from monai.data.meta_tensor import MetaTensor

from medi2i.batch import run_batch
from medi2i.errors import InputError, OutputError
from medi2i.method import PredictContext
from tests.test_batch import SELECT_T1, SETTINGS, STUDIES, DoubleToCT, _tree
from tests.test_batch import _run as run_doubled

_HOLD = (
    "import fcntl, sys, time\n"
    "handles = [open(path, 'a') for path in sys.argv[2:]]\n"
    "fcntl.flock(handles[0], getattr(fcntl, sys.argv[1]))\n"
    "for handle in handles[1:]:\n"
    "    fcntl.flock(handle, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def holder() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.kill()
        process.communicate()


def _hold(started: list[subprocess.Popen[str]], mode: str, *paths: Path) -> int:
    """Another process holding ``paths[0]`` locked (``LOCK_EX`` or ``LOCK_SH``) and the
    others exclusively, as a running batch does; its process id."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD, mode, *map(str, paths)], stdout=subprocess.PIPE, text=True
    )
    started.append(process)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    return process.pid


def _run(root: Path, out: Path, **kwargs: object) -> list[str]:
    return [f"{record.study} {record.status}" for record in run_doubled(root, out, **kwargs)]


LOCK = ".medi2i-batch.lock"


def test_a_second_batch_into_a_running_batch_s_root_is_refused(
    tmp_path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    pid = _hold(holder, "LOCK_EX", out / LOCK)
    with pytest.raises(OutputError) as refused:
        _run(root, out)
    message = str(refused.value)
    assert message.count("\n") == 0
    assert f"another medi2i batch (pid {pid}) is writing {out}" in message
    assert "wait for it to finish, or give another output root" in message
    assert sorted(path.name for path in out.iterdir()) == [LOCK]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_second_batch_with_its_own_manifest_is_refused_too(
    tmp_path: Path, holder: list[subprocess.Popen[str]], overwrite: bool
) -> None:
    # the lock is the root's, not the manifest's: another --manifest does not escape it,
    # and the refusal comes before advice to pass --overwrite
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    pid = _hold(holder, "LOCK_EX", out / LOCK, out / "manifest.jsonl")
    (out / "study1").mkdir()  # the running batch's first output
    with pytest.raises(OutputError) as refused:
        _run(root, out, manifest=tmp_path / "m2.jsonl", overwrite=overwrite)
    assert f"another medi2i batch (pid {pid}) is writing {out};" in str(refused.value)
    assert sorted(path.name for path in out.iterdir()) == [LOCK, "manifest.jsonl", "study1"]
    assert not (tmp_path / "m2.jsonl").exists()


def test_a_running_batch_s_manifest_is_not_appended_to(
    tmp_path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    pid = _hold(holder, "LOCK_EX", tmp_path / "m.jsonl")  # its root is elsewhere
    with pytest.raises(OutputError, match=f"another medi2i batch \\(pid {pid}\\)"):
        _run(root, out, manifest=tmp_path / "m.jsonl")
    assert not out.exists()
    assert (tmp_path / "m.jsonl").read_text() == ""


def test_a_batch_inside_a_running_batch_s_root_is_refused(
    tmp_path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    pid = _hold(holder, "LOCK_EX", out / LOCK)
    with pytest.raises(OutputError) as refused:
        _run(root, out / "sub", manifest=tmp_path / "m.jsonl")
    assert (
        f"another medi2i batch (pid {pid}) is writing {out}, which holds {out / 'sub'}; "
        "nothing was done: wait for it to finish, or give an output root outside it"
    ) == str(refused.value)
    assert sorted(path.name for path in out.iterdir()) == [LOCK]


def test_a_batch_around_a_running_batch_s_root_is_refused(
    tmp_path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    pid = _hold(holder, "LOCK_EX", out / "deep" / "sub" / LOCK)
    with pytest.raises(OutputError) as refused:
        _run(root, out, overwrite=True)
    message = str(refused.value)
    assert f"another medi2i batch (pid {pid}) is writing {out / 'deep' / 'sub'}" in message
    assert f", inside {out}; nothing was done" in message
    assert sorted(path.name for path in out.iterdir()) == ["deep"]


def test_a_lock_left_by_a_killed_batch_blocks_nothing(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    out.mkdir()
    (out / LOCK).touch()  # a batch killed (kill -9) before it recorded a study
    (out / ".medi2i-batch.rank0.lock").touch()
    records = _run(root, out, manifest=tmp_path / "m.jsonl")  # the root is no other data
    assert records[0] == f"{STUDIES[0]} done"
    assert not (out / LOCK).exists()  # a finished batch leaves no lock file behind
    assert _run(root, out, manifest=tmp_path / "m.jsonl")[0] == f"{STUDIES[0]} skipped"


def test_ranks_of_one_launch_share_the_root_and_a_second_launch_is_refused(
    tmp_path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    _hold(holder, "LOCK_SH", out / LOCK, out / ".medi2i-batch.rank0.lock")  # rank 0 runs
    assert len(_run(root, out, shard=(1, 2))) > 0  # rank 1 of the same launch
    with pytest.raises(OutputError, match="another medi2i batch"):
        _run(root, out, shard=(0, 2))  # rank 0 of another launch
    with pytest.raises(OutputError, match="another medi2i batch"):
        _run(root, out)  # a batch of one process
    with pytest.raises(OutputError, match="another medi2i batch"):
        _run(root, out, shard=(0, 2), manifest=tmp_path / "m.jsonl", overwrite=True)


def test_a_launch_of_another_size_is_refused_beside_a_running_one(
    tmp_path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    # rank 2 of a launch of 3 beside a launch of 2: no rank lock clashes, yet both
    # launches would take study 2 (every third, every second): it translated it twice
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    pid = _hold(holder, "LOCK_SH", out / ".medi2i-batch.world2.lock")  # a launch of 2 runs
    (out / "manifest.jsonl").touch()  # its manifest
    with pytest.raises(OutputError, match=f"another medi2i batch \\(pid {pid}\\)"):
        _run(root, out, shard=(2, 3))
    assert len(_run(root, out, shard=(1, 2))) > 0  # a rank of the running launch's size


def test_a_batch_refused_after_the_lock_leaves_no_trace(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    with pytest.raises(InputError):
        _run(root, out)  # no study: refused once the lock is taken
    assert not out.exists()


def test_batches_one_after_the_other_are_not_refused(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    assert _run(root, out)[0] == f"{STUDIES[0]} done"
    assert _run(root, out)[0] == f"{STUDIES[0]} skipped"


class InterruptedOnSecond(DoubleToCT):
    """Ctrl-C (or SIGTERM) while the second study is predicted."""

    id = "test-double"

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        if len(DoubleToCT.calls) == 1:
            raise KeyboardInterrupt
        return super().predict(image, context)


def test_an_interrupted_batch_says_what_it_kept_and_how_to_go_on(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    DoubleToCT.calls.clear()
    with pytest.raises(KeyboardInterrupt) as stopped:
        run_batch(root, out, method=InterruptedOnSecond(), settings=SETTINGS, selector=SELECT_T1)
    message = str(stopped.value)
    assert message.startswith(f"Interrupted; {out} keeps 1 study translated by this run")
    assert "run the same batch again to finish it" in message
    assert _run(root, out) == [
        f"{STUDIES[0]} skipped",  # done before the interrupt
        f"{STUDIES[1]} done",  # interrupted, redone
        f"{STUDIES[2]} failed",  # damaged
    ]
