"""What predict and batch may replace, what they repair, and what a killed writer leaves.

The refusals themselves are cases of the bad-input corpus (``test_bad_input_outputs.py``
and ``test_bad_input_dicom.py``); these tests show the other side: consented replacement
works, policies repair what they say, leftovers go.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.errors import InputError, OutputError
from medi2i.io.atomic import atomic_path, temporary_sibling
from medi2i.plugins import load_plugins
from medi2i.testing import example_methods, make_volume
from medi2i.voxel_checks import checked_input


def run(*args: str) -> Result:
    plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
    return CliRunner().invoke(build_cli(plugins), list(args))


def nifti(path: Path, values: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(values.astype(np.float32), np.eye(4)), str(path))
    return path


def blobs(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(400.0, 100.0, (12, 10, 8)).astype(np.float32)


def translate(source: Path, output: Path, *extra: str) -> Result:
    args = ["predict", str(source), str(output), "--method", "example-self-rescaling"]
    return run(*args, "--no-progress", *extra)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha", ""])
def test_overwrite_replaces_an_earlier_output_of_any_format(tmp_path: Path, suffix: str) -> None:
    first = nifti(tmp_path / "a.nii.gz", blobs(0))
    second = nifti(tmp_path / "b.nii.gz", blobs(1))
    output = tmp_path / f"out{suffix}"
    assert translate(first, output).exit_code == 0
    refused = translate(second, output)
    assert refused.exit_code == 1
    assert "--overwrite" in refused.output
    replaced = translate(second, output, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    sidecar = json.loads((tmp_path / "out.provenance.json").read_text())
    assert sidecar["input"]["path"] == str(second.resolve())


@pytest.mark.parametrize("suffix", [".mhd", ".nhdr"])
def test_an_output_never_replaces_the_data_file_a_detached_input_reads(
    tmp_path: Path, suffix: str
) -> None:
    """An input header naming an earlier output's data file (a copy of that header with
    its spacing fixed): writing that output name again, even with --overwrite, would
    replace the input's voxels; so would writing over the data file itself."""
    earlier = tmp_path / f"out{suffix}"
    assert translate(nifti(tmp_path / "a.nii.gz", blobs(0)), earlier).exit_code == 0
    written = {earlier, tmp_path / "out.provenance.json"}
    (data,) = [p for p in tmp_path.iterdir() if p.name.startswith("out.") and p not in written]
    copy = tmp_path / f"fixed{suffix}"
    copy.write_bytes(earlier.read_bytes())  # names out's data file, relative to its folder
    kept = data.read_bytes()
    refused = translate(copy, earlier, "--overwrite")
    assert refused.exit_code == 1
    assert f"would replace {data.name}, which holds the voxels of the input {copy}" in (
        refused.output
    )
    assert data.read_bytes() == kept
    # a header whose data file has a name medi2i writes: that name is refused as output
    renamed = tmp_path / f"renamed{suffix}"
    renamed.write_text(earlier.read_text(encoding="latin-1").replace(data.name, "data.nrrd"))
    (tmp_path / "data.nrrd").write_bytes(kept)
    refused = translate(renamed, tmp_path / "data.nrrd", "--overwrite")
    assert refused.exit_code == 1
    assert f"which holds the voxels of the input {renamed}" in refused.output
    assert (tmp_path / "data.nrrd").read_bytes() == kept


def test_an_empty_folder_takes_a_dicom_series_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "sct").mkdir()
    result = translate(nifti(tmp_path / "a.nii.gz", blobs()), tmp_path / "sct")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "sct").glob("*.dcm"))) == 8


def test_a_full_disk_while_writing_a_series_is_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = []

    def full(dataset: object, path: Path) -> None:
        written.append(path)
        if len(written) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        path.write_bytes(b"slice")

    monkeypatch.setattr("medi2i.dicom.writing.derived_series._save", full)
    source = nifti(tmp_path / "a.nii.gz", blobs())
    result = translate(source, tmp_path / "sct")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot write {tmp_path / 'sct'}: No space left on device; nothing was written "
        "there (free disk space, or choose a folder you can write to)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]


@pytest.mark.parametrize("failing", ["sidecar", "volume"])
def test_an_output_and_its_provenance_are_replaced_together_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """A full disk while writing the sidecar used to leave the new volume beside the old
    provenance (naming another method) after saying nothing was written."""
    output, sidecar = tmp_path / "out.nii.gz", tmp_path / "out.provenance.json"
    assert translate(nifti(tmp_path / "a.nii.gz", blobs(0)), output).exit_code == 0
    before = output.read_bytes(), sidecar.read_bytes()
    second = nifti(tmp_path / "b.nii.gz", blobs(1))
    real_write_text = Path.write_text

    def full_disk_text(self: Path, *args: Any, **kwargs: Any) -> int:
        if self.name.endswith(".provenance.json"):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write_text(self, *args, **kwargs)

    def full_disk_save(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")  # the volume's own writer

    if failing == "sidecar":
        monkeypatch.setattr(Path, "write_text", full_disk_text)
    else:
        monkeypatch.setattr(nib.Nifti1Image, "to_filename", full_disk_save)
    result = translate(second, output, "--overwrite")
    assert result.exit_code == 1
    assert "No space left on device" in result.output
    assert (output.read_bytes(), sidecar.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.nii.gz",
        "b.nii.gz",
        "out.nii.gz",
        "out.provenance.json",
    ]


_LIMITED = """
import resource, signal, sys
from medi2i.cli.main import build_cli
from medi2i.plugins import load_plugins
from medi2i.testing import example_methods
plugins = load_plugins()
plugins.manager.register(example_methods, name="examples")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (5000, resource.RLIM_INFINITY))
build_cli(plugins).main(sys.argv[1:], prog_name="medi2i")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE, Linux")
@pytest.mark.parametrize("output", ["out.mha", "series"])
def test_a_write_that_runs_out_of_room_says_so_in_one_line(tmp_path: Path, output: str) -> None:
    """Files capped at 5000 bytes fail as a full disk does: ITK's MetaIO used to print its
    own line to standard error, and pydicom put a whole traceback in its message."""
    volume = np.random.default_rng(0).normal(400.0, 100.0, (64, 64, 8))
    source = nifti(tmp_path / "a.nii.gz", volume)
    args = ["predict", str(source), str(tmp_path / output), "--method"]
    args += ["example-self-rescaling", "--no-progress"]
    done = subprocess.run(
        [sys.executable, "-c", _LIMITED, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert f"cannot write {tmp_path / output}" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]


def test_sigterm_during_a_write_leaves_nothing_behind(tmp_path: Path) -> None:
    # the command line's handler: SIGTERM stops a command as Ctrl-C does
    script = (
        "import os, signal, sys, time; from pathlib import Path\n"
        "from medi2i.cli.main import stop_on_sigterm\n"
        "from medi2i.io.atomic import atomic_path\n"
        "stop_on_sigterm()\n"
        "with atomic_path(Path(sys.argv[1])) as tmp:\n"
        "    tmp.write_bytes(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(60)\n"
    )
    stopped = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "out.nii.gz")], capture_output=True
    )
    assert stopped.returncode != 0
    assert b"Terminated" in stopped.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_next_write_removes_what_a_killed_writer_left(tmp_path: Path) -> None:
    # a writer killed with SIGKILL inside its atomic write
    script = (
        "import os, signal, sys; from pathlib import Path; "
        "from medi2i.io.atomic import atomic_path\n"
        "with atomic_path(Path(sys.argv[1])) as tmp:\n"
        "    tmp.write_bytes(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out.nii.gz")])
    assert killed.returncode == -9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1
    assert left[0].startswith(".out.medi2i-tmp-")
    busy = temporary_sibling(tmp_path / "busy.nii.gz")  # this process, still writing
    busy.write_bytes(b"in progress")
    (tmp_path / ".hidden-notes.txt").write_text("not ours")

    with atomic_path(tmp_path / "other.nii.gz") as tmp:
        tmp.write_bytes(b"done")

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [busy.name, ".hidden-notes.txt", "other.nii.gz"]
    )


@pytest.mark.parametrize(
    "name",
    [
        ".scan.tmp-backup.nii.gz",  # a user's backup, however old
        ".notes.tmp-backup1",
        ".x.tmp-99999-abcdef.nii.gz",  # medi2i's old form, from a process long gone
        ".x.medi2i-tmp-99999-abcdef.nii.gz",  # six hex digits: not medi2i's
        ".x.medi2i-tmp-99999-0123456789.nii.gz",
        "x.medi2i-tmp-99999-01234567.nii.gz",  # not hidden
    ],
)
@pytest.mark.parametrize("folder", [False, True])
def test_only_medi2i_s_own_temporaries_are_cleaned_up(
    tmp_path: Path, name: str, folder: bool
) -> None:
    kept = tmp_path / name
    if folder:
        kept.mkdir()
        (kept / "00001.dcm").write_bytes(b"a user's series")
    else:
        kept.write_bytes(b"a user's file")
    os.utime(kept, (0, 0))
    dead = tmp_path / ".out.medi2i-tmp-99999999-0badc0de.nii.gz"  # no such process
    dead.write_bytes(b"half")

    with atomic_path(tmp_path / "result.nii.gz") as tmp:
        tmp.write_bytes(b"done")

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "result.nii.gz"])


def nan_volume() -> torch.Tensor:
    volume = make_volume((10, 10, 10))
    volume[0, 4, 5, 6] = float("nan")
    volume[0, 0, 0, 0] = float("inf")
    return volume


def test_nonfinite_zero_sets_the_bad_voxels_to_zero() -> None:
    volume = nan_volume()
    repaired = checked_input(volume, "zero")  # type: ignore[arg-type]
    assert repaired[0, 4, 5, 6] == 0
    assert repaired[0, 0, 0, 0] == 0
    assert torch.isnan(volume[0, 4, 5, 6]), "the caller's volume was changed"
    assert torch.equal(repaired.affine, volume.affine)


def test_nonfinite_nearest_copies_a_neighbour() -> None:
    volume = nan_volume()
    repaired = checked_input(volume, "nearest")  # type: ignore[arg-type]
    assert bool(torch.isfinite(repaired).all())
    neighbours = {
        float(volume[0, 4 + di, 5 + dj, 6 + dk])
        for di, dj, dk in [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
    }
    assert float(repaired[0, 4, 5, 6]) in neighbours
    assert float(repaired[0, 0, 0, 0]) in {float(volume[0, 1, 0, 0]), float(volume[0, 0, 1, 0]),
                                           float(volume[0, 0, 0, 1])}  # fmt: skip


def test_nonfinite_error_names_count_and_place() -> None:
    with pytest.raises(
        InputError, match=r"2 voxel\(s\) are NaN or infinite \(first at voxel \(0, 0, 0\)\)"
    ):
        checked_input(nan_volume())


def test_the_policy_reaches_the_command_line_and_the_provenance(tmp_path: Path) -> None:
    values = blobs()
    values[2, 3, 4] = np.nan
    source = nifti(tmp_path / "a.nii.gz", values)
    result = translate(source, tmp_path / "out.nii.gz", "--nonfinite", "nearest")
    assert result.exit_code == 0, result.output
    written = np.asarray(nib.load(str(tmp_path / "out.nii.gz")).dataobj)
    assert np.isfinite(written).all()
    sidecar = json.loads((tmp_path / "out.provenance.json").read_text())
    assert sidecar["settings"]["nonfinite"] == "nearest"


@pytest.mark.parametrize(
    ("poison", "message"),
    [
        (float("nan"), "NaN or infinite"),
        (3e20, r"values reach \S+ \(first at voxel \(0, 0, 3\)\), beyond the safe range"),
    ],
)
def test_a_method_that_returns_nan_writes_nothing(
    tmp_path: Path, poison: float, message: str
) -> None:
    from medi2i.prediction import predict
    from medi2i.registry import Registry

    source = nifti(tmp_path / "a.nii.gz", blobs())
    plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
    registry = Registry(plugins)
    method = registry.method("intensity-inversion")
    original = method.predict

    def poisoned(self: object, image: torch.Tensor, context: object) -> torch.Tensor:
        out = original(self, image, context)  # type: ignore[arg-type]
        out[..., 3] = poison
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(method, "predict", poisoned)
        with pytest.raises(
            OutputError, match=message + r".*a bug in the method.*nothing was written"
        ):
            predict(source, tmp_path / "out.nii.gz", method=method.id, registry=registry)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]


def test_a_selection_matching_one_study_of_a_tree_writes_a_file(tmp_path: Path) -> None:
    from medi2i.testing.dicom_series import write_series

    volume = np.random.default_rng(0).normal(400.0, 100.0, (12, 10, 6)).round()
    write_series(tmp_path / "tree" / "mr", volume.astype(np.float32), modality="MR")
    write_series(tmp_path / "tree" / "ct", volume[::-1].astype(np.float32), modality="CT")
    args = ["predict", str(tmp_path / "tree"), str(tmp_path / "o.nii.gz"), "--method"]
    args += ["example-self-rescaling", "--no-progress"]
    refused = run(*args)
    assert refused.exit_code == 1
    assert "2 DICOM studies" in refused.output
    assert "--modality" in refused.output
    done = run(*args, "--modality", "MR")
    assert done.exit_code == 0, done.output
    alone = ["predict", str(tmp_path / "tree" / "mr"), str(tmp_path / "mr.nii.gz"), *args[3:]]
    assert run(*alone).exit_code == 0
    picked, expected = (nib.load(str(tmp_path / n)).get_fdata() for n in ("o.nii.gz", "mr.nii.gz"))
    np.testing.assert_array_equal(picked, expected)
    assert run(*args, "--modality", "PT", "--overwrite").exit_code == 1  # matches nothing


def test_force_modality_translates_a_series_of_another_modality(tmp_path: Path) -> None:
    from medi2i.testing.dicom_series import write_series

    volume = np.random.default_rng(0).normal(0.0, 100.0, (12, 10, 6)).round().astype(np.float32)
    write_series(tmp_path / "ct", volume, modality="CT")
    args = ["predict", str(tmp_path / "ct"), str(tmp_path / "o.nii.gz")]
    args += ["--method", "example-self-rescaling", "--no-progress"]
    assert run(*args).exit_code == 1
    forced = run(*args, "--force-modality")
    assert forced.exit_code == 0, forced.output


def test_batch_picks_the_series_of_the_method_input_modality(tmp_path: Path) -> None:
    from medi2i.testing.dicom_series import write_series

    volume = np.random.default_rng(0).normal(300.0, 50.0, (12, 10, 6)).round().astype(np.float32)
    study = "1.2.826.0.1.3680043.8.498.1"
    write_series(tmp_path / "in" / "p1" / "mr", volume, modality="MR", study_uid=study)
    write_series(tmp_path / "in" / "p1" / "ct", volume, modality="CT", study_uid=study)
    result = run(
        "batch",
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        "--method",
        "example-self-rescaling",
        "--format",
        "nifti",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records[-1]["status"] == "done"
    assert records[-1]["input"].endswith("mr")
    rerun = run(
        "batch",
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        "--method",
        "example-self-rescaling",
        "--format",
        "nifti",
        "--no-progress",
    )
    assert rerun.exit_code == 0, rerun.output
    assert "1 already done" in rerun.output, rerun.output


def test_a_series_the_writer_would_refuse_is_refused_before_the_inference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medi2i.testing.example_methods import SelfRescaling

    sheared = np.eye(4)
    sheared[0, 1] = 0.5  # columns not perpendicular to rows: no DICOM slice geometry
    source = tmp_path / "sheared.nii.gz"
    nib.save(nib.Nifti1Image(blobs(), sheared), str(source))

    def never(*args: object) -> object:
        raise AssertionError("the method ran although its output cannot be written")

    monkeypatch.setattr(SelfRescaling, "predict", never)
    result = translate(source, tmp_path / "sct")
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    assert str(tmp_path / "sct") in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheared.nii.gz"]


@pytest.mark.parametrize("suffix", [".mhd", ".nhdr"])
def test_a_header_and_data_output_never_replaces_a_data_file_it_does_not_own(
    tmp_path: Path, suffix: str
) -> None:
    from medi2i.io import write_volume

    volume = make_volume((6, 5, 4))
    first = write_volume(volume, tmp_path / f"first{suffix}")
    [data] = [p for p in tmp_path.iterdir() if p.name.startswith("first.") and p != first]
    # another volume's (or the input's) data file under the name the new output would use
    precious = tmp_path / data.name.replace("first", "second")
    precious.write_bytes(b"someone else's voxels")

    with pytest.raises(OutputError, match="exists and is not the data file"):
        write_volume(volume, tmp_path / f"second{suffix}")
    assert precious.read_bytes() == b"someone else's voxels"
    assert not (tmp_path / f"second{suffix}").exists()
    # replacing an earlier output of the same name replaces its data file too
    write_volume(volume * 2, first, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [first.name, data.name, precious.name]
    )


def test_a_user_file_at_the_provenance_path_is_kept_unless_overwrite(tmp_path: Path) -> None:
    source = nifti(tmp_path / "in.nii.gz", blobs(0))
    user = tmp_path / "out.provenance.json"
    user.write_text('{"user": "precious"}')

    refused = translate(source, tmp_path / "out.nii.gz")
    assert refused.exit_code == 1
    assert "out.provenance.json" in refused.output
    assert "--overwrite" in refused.output
    assert user.read_text() == '{"user": "precious"}'
    assert not (tmp_path / "out.nii.gz").exists()
    # medi2i's own record of an output since deleted is simply replaced
    assert translate(source, tmp_path / "other.nii.gz").exit_code == 0
    (tmp_path / "other.nii.gz").unlink()
    assert translate(source, tmp_path / "other.nii.gz").exit_code == 0


def test_a_name_too_long_for_medi2i_s_temporary_file_is_refused_before_any_work(
    tmp_path: Path,
) -> None:
    source = nifti(tmp_path / "in.nii.gz", blobs(0))
    output = tmp_path / ("a" * 221 + ".nii.gz")  # legal (228 bytes), its sidecar's temporary not

    refused = translate(source, output)

    assert refused.exit_code == 1
    assert "shorten the name" in refused.output
    assert "Traceback" not in refused.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]
    assert translate(source, tmp_path / ("a" * 180 + ".nii.gz")).exit_code == 0


@pytest.mark.parametrize("command", ["predict", "mask"])
def test_a_file_name_ending_in_a_slash_is_refused_not_written_as_a_file(
    tmp_path: Path, command: str
) -> None:
    source = nifti(tmp_path / "in.nii.gz", blobs(0))
    asked = f"{tmp_path / 'out.nii.gz'}/"
    args = [command, str(source), asked] + (
        ["--method", "example-self-rescaling", "--no-progress"] if command == "predict" else []
    )

    refused = run(*args)

    assert refused.exit_code == 2
    assert "ends in '/'" in refused.output
    assert "drop the '/'" in refused.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]


def test_the_python_api_refuses_a_file_name_ending_in_a_slash(tmp_path: Path) -> None:
    import medi2i

    source = nifti(tmp_path / "in.nii.gz", blobs(0))
    with pytest.raises(OutputError, match="ends in '/'"):
        medi2i.predict(source, f"{tmp_path / 'out.nii.gz'}/", method="intensity-inversion")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]


def test_a_folder_name_ending_in_a_slash_still_takes_a_dicom_series(tmp_path: Path) -> None:
    written = run(
        "predict",
        str(nifti(tmp_path / "a.nii.gz", blobs())),
        f"{tmp_path / 'sct2'}/",
        "--method",
        "example-self-rescaling",
        "--no-progress",
    )
    assert written.exit_code == 0, written.output
    assert len(list((tmp_path / "sct2").glob("*.dcm"))) == 8


@pytest.mark.parametrize("name", ["out.v2/", "out.v2", "1.2.840.10008/"])
def test_a_folder_name_with_a_dot_takes_a_dicom_series(tmp_path: Path, name: str) -> None:
    written = run(
        "predict",
        str(nifti(tmp_path / "a.nii.gz", blobs())),
        f"{tmp_path}/{name}",
        "--method",
        "example-self-rescaling",
        "--no-progress",
    )
    assert written.exit_code == 0, written.output
    folder = tmp_path / name.rstrip("/")
    assert len(list(folder.glob("*.dcm"))) == 8
    # its provenance is its own, not that of a sibling out.v1 or out.nii.gz
    assert (tmp_path / f"{folder.name}.provenance.json").is_file()


def test_an_unknown_file_suffix_is_still_refused(tmp_path: Path) -> None:
    import medi2i

    source = nifti(tmp_path / "in.nii.gz", blobs(0))
    with pytest.raises(InputError, match=r"no writer for .*out\.xyz"):
        medi2i.predict(source, tmp_path / "out.xyz", method="intensity-inversion")
    with pytest.raises(OutputError, match="ends in '/'"):
        medi2i.predict(source, f"{tmp_path / 'out.xyz'}/", method="intensity-inversion")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]


def test_a_batch_root_keeps_out_of_a_file_the_condition_reads(tmp_path: Path) -> None:
    from medi2i.errors import OutputError
    from medi2i.io.destinations import check_batch_root

    studies, reference_folder = tmp_path / "studies", tmp_path / "references"
    studies.mkdir()
    reference_folder.mkdir()
    reference = reference_folder / "style.nii.gz"
    reference.write_bytes(b"not read here")
    manifest = reference_folder / "manifest.jsonl"
    for root in (reference_folder, reference):  # holds it, is it
        with pytest.raises(OutputError, match="input"):
            check_batch_root(
                root,
                input_root=studies,
                overwrite=True,
                manifest=manifest,
                other_inputs=[reference],
            )
    check_batch_root(
        tmp_path / "out",
        input_root=studies,
        overwrite=False,
        manifest=manifest,
        other_inputs=[reference],
    )
