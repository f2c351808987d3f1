"""An output named through ``..`` after a folder that does not exist yet.

The system cannot follow ``sub/..`` while ``sub`` is missing, so checks that asked it
(does ``sub/../x.provenance.json`` exist? is it medi2i's record?) saw nothing there;
writing then created ``sub`` and replaced ``x.provenance.json``, another output's
record. The path is now resolved as it will be once the folder exists, the checks look
at what will be replaced, and no folder is created.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.errors import OutputError
from medi2i.io import write_volume
from medi2i.io.destinations import as_output_path, check_destination, settled_path
from medi2i.plugins import load_plugins
from medi2i.prediction import check_sidecar_destination
from medi2i.registry import Registry


def run(*args: str) -> Result:
    return CliRunner().invoke(build_cli(load_plugins()), list(args))


def predict(source: Path, output: str, *extra: str) -> Result:
    args = ["predict", str(source), output, "--method", "intensity-inversion"]
    return run(*args, "--device", "cpu", "--no-progress", *extra)


def mask(source: Path, output: str, *extra: str) -> Result:
    return run("mask", str(source), output, *extra)


@pytest.fixture
def body(tmp_path: Path) -> Path:
    """A box of tissue in air, which predict and mask both take."""
    from monai.data.meta_tensor import MetaTensor

    values = np.zeros((20, 20, 20), np.float32)
    values[5:15, 5:15, 5:15] = 400.0
    values += np.random.default_rng(0).normal(0.0, 5.0, values.shape).astype(np.float32)
    path = tmp_path / "mr.nii.gz"
    write_volume(MetaTensor(values[None], affine=np.eye(4)), path)
    return path


def record_of(sidecar: Path) -> str:
    return str(json.loads(sidecar.read_text())["output"]["modality"])


def test_mask_through_a_missing_folder_keeps_predict_s_record(body: Path) -> None:
    root = body.parent
    assert predict(body, str(root / "x.nii")).exit_code == 0
    sidecar = root / "x.provenance.json"
    before = sidecar.read_bytes()

    refused = mask(body, str(root / "sub" / ".." / "x.mha"))

    assert refused.exit_code == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.output
    assert f"{sidecar}, where the provenance of {root / 'x.mha'} is written" in lines[0]
    assert f"the existing output {root / 'x.nii'}" in lines[0]
    assert sidecar.read_bytes() == before
    assert not (root / "sub").exists()  # no folder made before (or by) the checks
    assert not (root / "x.mha").exists()


def test_predict_through_a_missing_folder_keeps_the_mask_s_record(body: Path) -> None:
    root = body.parent
    assert mask(body, str(root / "w.nii.gz")).exit_code == 0
    sidecar = root / "w.provenance.json"
    assert record_of(sidecar) == "mask"

    refused = predict(body, str(root / "nosuch" / ".." / "w.nrrd"))

    assert refused.exit_code == 1
    assert "is the provenance of the existing output" in refused.output
    assert record_of(sidecar) == "mask"
    assert not (root / "nosuch").exists()
    assert not (root / "w.nrrd").exists()


def test_a_relative_path_through_a_missing_folder_is_written_where_it_leads(
    body: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(body.parent)
    done = predict(Path("mr.nii.gz"), "sub/../y.nii.gz")
    assert done.exit_code == 0, done.output
    assert done.output.strip() == "wrote y.nii.gz"
    assert Path("y.nii.gz").is_file()
    assert Path("y.provenance.json").is_file()
    assert not Path("sub").exists()
    # an existing output reached that way is refused without --overwrite, before any work
    again = predict(Path("mr.nii.gz"), "sub/../y.nii.gz")
    assert again.exit_code == 1
    assert "y.nii.gz is an existing file" in again.output
    assert not Path("sub").exists()


@pytest.mark.parametrize("command", ["predict", "mask"])
def test_an_output_through_a_missing_folder_that_names_the_input_is_refused(
    body: Path, command: str
) -> None:
    given = str(body.parent / "missing" / ".." / body.name)
    before = body.read_bytes()
    runner = predict if command == "predict" else mask
    refused = runner(body, given, "--overwrite")
    assert refused.exit_code == 1
    assert f"is the input {body}" in refused.output
    assert body.read_bytes() == before
    assert not (body.parent / "missing").exists()


def test_the_python_api_resolves_the_path_too(body: Path) -> None:
    import medi2i

    root = body.parent
    written = medi2i.predict(body, root / "a" / "b" / ".." / ".." / "z.nii.gz", method="zscore")
    assert written == root / "z.nii.gz"
    assert (root / "z.provenance.json").is_file()
    assert not (root / "a").exists()


def test_the_checks_resolve_a_path_given_to_them_directly(body: Path) -> None:
    root = body.parent
    assert mask(body, str(root / "v.nii.gz")).exit_code == 0
    writers = list(Registry().writers.values())
    with pytest.raises(OutputError, match="is the provenance of the existing output"):
        check_sidecar_destination(root / "gone" / ".." / "v.nrrd", [body], writers, overwrite=False)
    with pytest.raises(OutputError, match="is an existing file"):
        check_destination(root / "gone" / ".." / "v.nii.gz", inputs=[body], overwrite=False)
    with pytest.raises(OutputError, match="is the input"):
        check_destination(root / "gone" / ".." / body.name, inputs=[body], overwrite=True)
    assert not (root / "gone").exists()


def test_settled_path_follows_what_exists_and_leaves_plain_paths_alone(tmp_path: Path) -> None:
    (tmp_path / "real" / "deep").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "deep")
    # after a link, ".." is the parent of the link's target, as the system takes it
    assert settled_path(tmp_path / "link" / ".." / "x.nii") == tmp_path / "real" / "x.nii"
    assert settled_path(tmp_path / "no" / "such" / ".." / "x.nii") == tmp_path / "no" / "x.nii"
    plain = tmp_path / "link" / "x.nii"  # no "..": kept as given (a link stays a link)
    assert settled_path(plain) == plain
    assert settled_path(Path("x/..")) == Path("x/..")  # no name of its own: refused later
    assert as_output_path(str(tmp_path / "m" / ".." / "o.nii.gz")) == tmp_path / "o.nii.gz"
