"""The last step of an atomic write: a destination another writer put in place
meanwhile is refused, and an output's provenance sidecar is renamed with it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medi2i.errors import OutputError
from medi2i.io.atomic import atomic_path


def _write_while_another_writes(target: Path, *, folder: bool) -> None:
    """An atomic write of ``target`` during which another writer puts it in place."""
    from medi2i.io.atomic import refusing_existing

    with refusing_existing(), atomic_path(target) as tmp:
        if folder:
            tmp.mkdir()
            (tmp / "1.dcm").write_text("mine")
            target.mkdir()
            (target / "1.dcm").write_text("theirs")
        else:
            tmp.write_text("mine")
            target.write_text("theirs")  # the other writer finished first


def test_a_destination_written_meanwhile_is_refused_and_kept(tmp_path: Path) -> None:
    # two processes writing one new output: the second rename must not replace the first
    from medi2i.io.atomic import refusing_existing

    target = tmp_path / "out.nii.gz"
    with pytest.raises(OutputError, match="appeared while"):
        _write_while_another_writes(target, folder=False)
    assert target.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]  # no temporary left
    series = tmp_path / "series"
    with pytest.raises(OutputError, match="appeared while"):
        _write_while_another_writes(series, folder=True)
    assert (series / "1.dcm").read_text() == "theirs"
    with atomic_path(tmp_path / "free.nii.gz") as tmp, refusing_existing():
        tmp.write_text("mine")
    assert (tmp_path / "free.nii.gz").read_text() == "mine"


def test_an_interrupt_between_output_and_sidecar_waits_for_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C right after the output's rename arrived before the sidecar's: an
    # interrupted overwrite left a new output beside the old output's sidecar
    import signal

    from medi2i.io import atomic
    from medi2i.provenance import sidecar_path, staged_sidecar

    output = tmp_path / "out.nii.gz"
    output.write_text("old output")
    sidecar_path(output).write_text("old sidecar")
    real_replace = atomic._replace

    def replace_then_interrupt(temporary: Path, path: Path) -> None:
        real_replace(temporary, path)
        os.kill(os.getpid(), signal.SIGINT)

    def overwrite() -> None:
        with staged_sidecar(output, {"method": "new"}), atomic.atomic_path(output) as tmp:
            tmp.write_text("new output")

    monkeypatch.setattr(atomic, "_replace", replace_then_interrupt)
    # a process started in the background by a shell inherits SIGINT ignored, and Python
    # then installs no handler: give it Python's, as a terminal's process has
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            overwrite()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert output.read_text() == "new output"
    assert '"new"' in sidecar_path(output).read_text()


def test_a_file_its_writer_made_private_gets_the_mode_open_gives(tmp_path: Path) -> None:
    """Writers that go through mkstemp (safetensors: checkpoints, weights) made 0600
    files; an atomic write gives the mode of a plain open(): 0666 less the umask."""
    previous = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "step.safetensors") as tmp:
            tmp.write_bytes(b"x")
            os.chmod(tmp, 0o600)
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(previous)
    assert (tmp_path / "step.safetensors").stat().st_mode & 0o777 == 0o640
    assert plain.stat().st_mode & 0o777 == 0o640
