"""An output on a read-only file system (a ``:ro`` volume, a read-only share) fails with
one line, not a traceback.

On such a file system even removing a temporary file that was never made raises
``EROFS`` rather than ``ENOENT``; the clean-up after the failed write must not replace
the write's own one-line error.
"""

from __future__ import annotations

import errno
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medi2i.errors import Medi2iError, OutputError
from medi2i.io.atomic import atomic_path


def read_only(*args: object, **kwargs: object) -> None:
    raise OSError(errno.EROFS, "Read-only file system")


@pytest.fixture
def read_only_unlink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Path, "unlink", read_only)


def test_a_failed_write_on_a_read_only_file_system_is_one_output_error(
    tmp_path: Path, read_only_unlink: None
) -> None:
    with (
        pytest.raises(OutputError, match="Read-only file system; nothing was written"),
        atomic_path(tmp_path / "out.nii.gz") as temporary,
    ):
        raise OSError(errno.EROFS, "Read-only file system", str(temporary))


def test_write_volume_to_a_read_only_file_system_names_the_output(
    tmp_path: Path, read_only_unlink: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medi2i

    source = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(60, dtype=np.float32).reshape(5, 4, 3), np.eye(4)), source)
    image = medi2i.read_volume(source)
    monkeypatch.setattr(nib.Nifti1Image, "to_filename", read_only)
    with pytest.raises(Medi2iError, match=r"cannot write .*out\.nii\.gz.*Read-only file system"):
        medi2i.write_volume(image, tmp_path / "out.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]


def test_batch_into_a_read_only_output_root_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli
    from medi2i.plugins import load_plugins
    from medi2i.testing import example_methods
    from medi2i.testing.dicom_series import write_series

    root, out = tmp_path / "in", tmp_path / "ro" / "out"
    values = np.random.default_rng(0).integers(0, 800, size=(12, 10, 5)).astype(np.float64)
    write_series(root / "p1" / "t1", values, modality="MR", rescale=(1.0, 0.0))
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    mkdir = Path.mkdir

    def read_only_below_ro(self: Path, *args: object, **kwargs: object) -> None:
        if self.is_relative_to(tmp_path / "ro"):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(Path, "mkdir", read_only_below_ro)
    plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
    args = ["batch", str(root), str(out), "--method", "example-self-rescaling"]
    result = CliRunner().invoke(build_cli(plugins), [*args, "--no-progress", "--device", "cpu"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot write the batch manifest {out / 'manifest.jsonl'}: Read-only file "
        "system; the batch records every study there, so give an output folder (or "
        "--manifest) you can write to, with free space"
    ]
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
