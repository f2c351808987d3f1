"""Bad trained-model folders and archives given to ``medi2i predict --model``.

A missing or unreadable manifest, weights outside the folder (absolute, ``..``,
symlinked, an escaping zip member), unknown or newer methods and medi2i versions,
oversized options, corrupt weights, and options that clash with a model. The
promise each case is held to is stated in ``bad_input_cases.py``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.bad_input_cases import (
    Case,
    CaseBuilder,
    blobs,
    case_registry,
    check_bad_input,
    nifti,
)

CASES: dict[str, CaseBuilder] = {}
case = case_registry(CASES)


def model(tmp: Path, edit: Callable[[dict[str, object]], None] | None = None) -> Path:
    from medi2i.model_folder import save_model
    from medi2i.testing.example_methods import PointwiseNet

    folder = save_model(PointwiseNet(), tmp / "model")
    if edit is not None:
        manifest = folder / "medi2i-model.json"
        data = json.loads(manifest.read_text())
        edit(data)
        manifest.write_text(json.dumps(data))
    return folder


def predict_model(tmp: Path, folder: Path | str) -> list[str]:
    source = nifti(tmp / "t1.nii.gz", blobs())
    return [
        "predict",
        str(source),
        str(tmp / "out.nii.gz"),
        "--model",
        str(folder),
        "--no-progress",
    ]


@case("model-missing")
def _(tmp: Path) -> Case:
    return Case(predict_model(tmp, tmp / "no-model"), "no-model")


@case("model-without-manifest")
def _(tmp: Path) -> Case:
    folder = model(tmp)
    (folder / "medi2i-model.json").unlink()
    return Case(predict_model(tmp, folder), "model")


@case("model-manifest-not-json")
def _(tmp: Path) -> Case:
    folder = model(tmp)
    (folder / "medi2i-model.json").write_text("{not json")
    return Case(predict_model(tmp, folder), "medi2i-model.json")


@case("model-weights-absolute-path")
def _(tmp: Path) -> Case:
    def edit(data: dict[str, object]) -> None:
        data["weights"] = {"file": str(tmp / "elsewhere.safetensors"), "sha256": "0" * 64}

    folder = model(tmp, edit)
    (tmp / "elsewhere.safetensors").write_bytes((folder / "weights.safetensors").read_bytes())
    return Case(predict_model(tmp, folder), "model")


@case("model-weights-dotdot")
def _(tmp: Path) -> Case:
    def edit(data: dict[str, object]) -> None:
        data["weights"] = {"file": "../../stolen.safetensors", "sha256": "0" * 64}

    return Case(predict_model(tmp, model(tmp, edit)), "model")


@case("model-weights-symlink-out")
def _(tmp: Path) -> Case:
    folder = model(tmp)
    outside = tmp / "outside.safetensors"
    (folder / "weights.safetensors").rename(outside)
    (folder / "weights.safetensors").symlink_to(outside)
    return Case(predict_model(tmp, folder), "model")


@case("model-unknown-method")
def _(tmp: Path) -> Case:
    def edit(data: dict[str, object]) -> None:
        data["method"] = {"id": "no-such-method", "version": "0.1.0"}

    return Case(predict_model(tmp, model(tmp, edit)), "no-such-method")


@case("model-newer-major-method")
def _(tmp: Path) -> Case:
    def edit(data: dict[str, object]) -> None:
        data["method"] = {"id": "example-pointwise-net", "version": "9.9.9"}

    return Case(predict_model(tmp, model(tmp, edit)), "9.9.9")


@case("model-newer-medi2i")
def _(tmp: Path) -> Case:
    def edit(data: dict[str, object]) -> None:
        data["medi2i_version"] = "7.0.0"

    return Case(predict_model(tmp, model(tmp, edit)), "7.0.0")


@case("model-huge-options")
def _(tmp: Path) -> Case:
    def edit(data: dict[str, object]) -> None:
        data["options"] = {"roi_size": [16, 16, 16], "hidden": 200000}

    return Case(predict_model(tmp, model(tmp, edit)), "model")


@case("model-corrupt-weights")
def _(tmp: Path) -> Case:
    folder = model(tmp)
    (folder / "weights.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0{garbage")
    return Case(predict_model(tmp, folder), "model")


@case("model-zip-with-escaping-member")
def _(tmp: Path) -> Case:
    folder = model(tmp)
    archive = tmp / "model.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for part in folder.iterdir():
            zipped.write(part, f"model/{part.name}")
        zipped.writestr("../evil.txt", "x")
    return Case(predict_model(tmp, archive), "model.zip", absent=[tmp / "evil.txt"])


@case("model-is-a-torch-export")
def _(tmp: Path) -> Case:
    program = tmp / "model.pt2"  # what medi2i export writes: a zip without a manifest
    with zipfile.ZipFile(program, "w") as zipped:
        zipped.writestr("model/archive_format", "pt2")
    return Case(predict_model(tmp, program), "model.pt2", "torch.export program")


@case("model-and-method-both")
def _(tmp: Path) -> Case:
    args = predict_model(tmp, model(tmp))
    return Case([*args, "--method", "intensity-inversion"], "--method", "not both")


@case("model-with-options")
def _(tmp: Path) -> Case:
    args = predict_model(tmp, model(tmp))
    return Case([*args, "-o", "hidden=3"], "model", "options are fixed")


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_one_line_and_changes_nothing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_bad_input(CASES[name], tmp_path, monkeypatch)
