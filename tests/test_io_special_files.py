"""An input or a model that is a FIFO (named pipe), a socket or a device is refused in
one line before anything opens it: opening a FIFO waits for a writer, so ``medi2i
predict pipe.nii.gz ...`` blocked for ever."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.errors import InputError, ModelFormatError
from medi2i.io import read_grid, read_volume, write_volume
from medi2i.io.base import special_file_kind
from medi2i.plugins import load_plugins

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A regression fails the test in 60 s instead of blocking the run for ever."""

    def stop(signum: int, frame: object) -> None:
        raise TimeoutError("blocked on a special file")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(60)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run(*args: str) -> Result:
    return CliRunner().invoke(build_cli(load_plugins()), list(args))


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.nii.gz"
    os.mkfifo(path)
    return path


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    from monai.data.meta_tensor import MetaTensor

    values = np.random.default_rng(0).normal(400.0, 100.0, (12, 10, 8)).astype(np.float32)
    path = tmp_path / "mr.nii.gz"
    write_volume(MetaTensor(values[None], affine=np.eye(4)), path)
    return path


def one_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


@pytest.mark.parametrize("command", ["predict", "mask"])
def test_a_fifo_as_input_is_refused_in_one_line(fifo: Path, tmp_path: Path, command: str) -> None:
    out = str(tmp_path / "o.nii.gz")
    extra = ["--method", "zscore", "--no-progress"] if command == "predict" else []
    line = one_error(run(command, str(fifo), out, *extra))
    assert line == (
        f"Error: {fifo} is a FIFO (named pipe), not a regular file or a folder; medi2i "
        "does not read it as an input (opening it could wait for ever): give the volume "
        "file or DICOM folder itself"
    )
    assert not (tmp_path / "o.nii.gz").exists()


def test_a_link_to_a_fifo_is_refused_too(fifo: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.nii"
    link.symlink_to(fifo)
    line = one_error(run("predict", str(link), str(tmp_path / "o.nii.gz"), "--method", "zscore"))
    assert f"{link} is a FIFO (named pipe)" in line


@pytest.mark.parametrize("name", ["model.zip", "model.onnx", "model"])
def test_a_fifo_as_the_model_is_refused(tmp_path: Path, volume: Path, name: str) -> None:
    model = tmp_path / name
    os.mkfifo(model)
    line = one_error(run("predict", str(volume), str(tmp_path / "o.nii.gz"), "--model", str(model)))
    assert f"{model} is a FIFO (named pipe)" in line
    assert "as a trained model" in line
    import medi2i

    with pytest.raises(ModelFormatError, match="FIFO"):
        medi2i.predict(volume, tmp_path / "p.nii.gz", model=model)


def test_the_python_readers_refuse_special_files(fifo: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"is a FIFO \(named pipe\)"):
        read_volume(fifo)
    assert read_grid(fifo) is None  # read_volume says why
    with socket.socket(socket.AF_UNIX) as server:
        where = tmp_path / "s.nii"
        try:
            server.bind(str(where))
        except OSError:  # a path too long for a socket address
            pytest.skip("cannot bind a socket under the temporary folder")
        with pytest.raises(InputError, match="is a socket"):
            read_volume(where)
    if Path("/dev/null").exists():
        with pytest.raises(InputError, match="is a character device"):
            read_volume("/dev/null")


def test_files_and_folders_are_not_special(volume: Path, tmp_path: Path) -> None:
    assert special_file_kind(volume) is None
    assert special_file_kind(tmp_path) is None
    assert special_file_kind(tmp_path / "missing") is None  # reading says it is missing
