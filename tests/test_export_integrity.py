"""What an export is run with must be what it was exported with and what it records:
a MONAI bundle's model folder and inferer settings, an ONNX file's description, the
output paths ``medi2i export`` takes and replaces, and the plugin a hint names."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from medi2i.bundle_export import export_bundle
from medi2i.cli.main import build_cli
from medi2i.errors import ModelFormatError, OptionsError
from medi2i.export import export_program, model_sha256
from medi2i.model_folder import load_model, save_model
from medi2i.monai_bundle import inferer_settings, load_program, predict_file
from medi2i.registry import Registry

SRCNN = {"filters": [4, 4], "kernel_sizes": [3, 1, 3], "roi_size": [8, 8, 8]}
UNET = {"filters": [4, 8, 16], "roi_size": [16, 16, 16]}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()  # the first-party plugins (tests/conftest.py)


def _model(registry: Registry, folder: Path, *, seed: int = 0, **options: Any) -> Path:
    torch.manual_seed(seed)
    return save_model(registry.method("srcnn")({**SRCNN, **options}), folder)


def _volume(path: Path) -> Path:
    data = np.random.default_rng(0).normal(100.0, 20.0, (20, 18, 12)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.2, 2.0, 1.0])), path)
    return path


def _bundle(registry: Registry, tmp_path: Path) -> tuple[Path, Path]:
    model = _model(registry, tmp_path / "model")
    return model, export_bundle(load_model(model, registry=registry), model, tmp_path / "B")


def _inferer(**given: Any) -> Any:
    from monai.inferers import SlidingWindowInferer

    settings = {"roi_size": [8, 8, 8], "sw_batch_size": 4, "overlap": 0.25, "mode": "gaussian"}
    return SlidingWindowInferer(
        **{**settings, **given}, padding_mode="replicate", device=torch.device("cpu")
    )


# 1: the provenance of a bundle's run records the inferer it ran


@pytest.mark.filterwarnings("ignore:parsing config_file")  # MONAI's note on trusting configs
def test_a_bundle_run_records_the_inferer_settings_it_ran(
    registry: Registry, tmp_path: Path
) -> None:
    from monai.bundle import run

    _, bundle = _bundle(registry, tmp_path)
    config = bundle / "configs" / "inference.json"
    inference = json.loads(config.read_text())
    inference["inferer"].update(overlap=0.5, mode="constant", sw_batch_size=2)
    config.write_text(json.dumps(inference))
    output = tmp_path / "out.nii.gz"
    run(
        config_file=str(config),
        meta_file=str(bundle / "configs" / "metadata.json"),
        bundle_root=str(bundle),
        input_path=str(_volume(tmp_path / "in.nii.gz")),
        output_path=str(output),
    )
    record = json.loads((tmp_path / "out.provenance.json").read_text())
    settings = record["settings"]
    assert settings["overlap"] == 0.5
    assert settings["blend"] == "constant"
    assert settings["sw_batch_size"] == 2
    assert settings["roi_size"] == [8, 8, 8]
    assert settings["amp"] is False  # the bundle runs float32
    assert record["window"] == [8, 8, 8]
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert record["ran_on"] == {"device": device, "amp": False}


def test_the_inferers_device_is_the_one_recorded() -> None:
    network = torch.nn.Conv3d(1, 1, 1)
    assert inferer_settings(_inferer(sw_device="cuda:0"), network).device == "cuda:0"
    assert inferer_settings(_inferer(), network).device == "cpu"  # the network's
    with pytest.raises(OptionsError, match="differs by axis"):
        inferer_settings(_inferer(overlap=[0.25, 0.5, 0.25]), network)


# 2: a bundle runs only with the model folder it was exported from


@pytest.mark.parametrize("other", ["same-method", "other-method"])
def test_a_bundle_refuses_another_model_folder(
    other: str, registry: Registry, tmp_path: Path
) -> None:
    model, bundle = _bundle(registry, tmp_path)
    description = json.loads((bundle / "models" / "model.pt2.json").read_text())
    assert description["model_sha256"] == model_sha256(model)
    if other == "same-method":
        swapped = _model(registry, tmp_path / "other", seed=1, filters=[4, 2])
    else:
        swapped = save_model(registry.method("regression-unet")(UNET), tmp_path / "other")
    shutil.rmtree(bundle / "models" / "medi2i")
    shutil.copytree(swapped, bundle / "models" / "medi2i")
    network = load_program(bundle)
    with pytest.raises(ModelFormatError) as refused:
        predict_file(
            bundle / "models" / "medi2i",
            _volume(tmp_path / "in.nii.gz"),
            tmp_path / "out.nii.gz",
            network,
            _inferer(),
        )
    message = str(refused.value)
    assert "not the model folder the bundle was exported with" in message
    assert "export the bundle again" in message
    assert "\n" not in message
    assert not (tmp_path / "out.nii.gz").exists()


# 3: an ONNX description's options and fitted values are the file's


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["options"].update(body_contour=not d["options"]["body_contour"]),
        lambda d: d["options"].update(mr_normalization="percentile"),
        lambda d: d["model"]["state"].update(ct_scale=[0.0, 1.0]),
    ],
    ids=["body_contour", "mr_normalization", "fitted-value"],
)
def test_an_onnx_description_with_edited_options_is_refused(
    edit: Any, registry: Registry, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    from tests.test_onnx_predict import volume_file

    torch.manual_seed(0)
    method = registry.method("regression-unet")(UNET)
    result = export_program(method, tmp_path / "m.onnx", onnx=True)
    original = json.loads(result.sidecar.read_text())
    description = json.loads(result.sidecar.read_text())
    edit(description)
    result.sidecar.write_text(json.dumps(description))
    source = volume_file(tmp_path, (12, 11, 10))
    args = ["predict", str(source), str(tmp_path / "o.nii.gz"), "--model", str(result.path)]
    done = CliRunner().invoke(build_cli(), [*args, "--no-progress"])
    assert done.exit_code == 1, done.output
    (line,) = done.output.strip().splitlines()
    assert f"{result.sidecar}: its method, options or fitted values are not those" in line
    assert "export the model again" in line
    result.sidecar.write_text(json.dumps(original))  # the pair as exported runs
    done = CliRunner().invoke(build_cli(), [*args, "--no-progress"])
    assert done.exit_code == 0, done.output


# 4: the hint for a model whose opt-in plugin is not loaded names that plugin


def test_the_hint_names_only_the_opt_in_plugin_that_registers_the_method(
    tmp_path: Path,
) -> None:
    from medi2i.model_checks import opt_in_plugins_of
    from medi2i.testing.trainable_examples import TinyRegression

    assert opt_in_plugins_of(TinyRegression.id) == ["medi2i.testing.trainable_examples"]
    assert len(opt_in_plugins_of("no-such-method")) == 2  # unknown: both, as before
    model = save_model(TinyRegression(), tmp_path / "model")
    done = CliRunner().invoke(
        build_cli(), ["export", str(model), str(tmp_path / "t.onnx"), "--format", "onnx"]
    )
    assert done.exit_code != 0
    message = " ".join(done.output.split())
    assert "medi2i --plugin medi2i.testing.trainable_examples ..." in message
    assert "example_methods" not in message


# 5: --overwrite


def _export(*args: str) -> Any:
    return CliRunner().invoke(build_cli(), ["export", *args])


@pytest.mark.parametrize("suffix", [".pt2", ".onnx"])
def test_overwrite_replaces_an_export_and_a_lone_description(
    suffix: str, registry: Registry, tmp_path: Path
) -> None:
    if suffix == ".onnx":
        pytest.importorskip("onnxruntime")
    fmt = ["--format", "onnx"] if suffix == ".onnx" else []
    first, second = _model(registry, tmp_path / "a"), _model(registry, tmp_path / "b", seed=1)
    out = tmp_path / f"e{suffix}"
    sidecar = out.with_name(out.name + ".json")
    assert _export(str(first), str(out), *fmt).exit_code == 0
    refused = _export(str(second), str(out), *fmt)
    assert refused.exit_code != 0
    assert "pass --overwrite" in refused.output
    done = _export(str(second), str(out), *fmt, "--overwrite")
    assert done.exit_code == 0, done.output
    assert json.loads(sidecar.read_text())["model_sha256"] == model_sha256(second)
    out.unlink()  # a description left alone
    assert "pass --overwrite" in _export(str(first), str(out), *fmt).output
    done = _export(str(first), str(out), *fmt, "--overwrite")
    assert done.exit_code == 0, done.output
    assert json.loads(sidecar.read_text())["model_sha256"] == model_sha256(first)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a", "b", out.name, sidecar.name])


def test_a_failed_overwrite_keeps_the_old_export(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model(registry, tmp_path / "model")
    out = tmp_path / "e.pt2"
    assert _export(str(model), str(out)).exit_code == 0
    before = out.read_bytes(), out.with_name("e.pt2.json").read_bytes()

    def broken(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("medi2i.export.torch.export.save", broken)
    done = _export(str(model), str(out), "--overwrite")
    assert done.exit_code != 0
    assert (out.read_bytes(), out.with_name("e.pt2.json").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.pt2", "e.pt2.json", "model"]


def test_overwrite_replaces_a_bundle_and_nothing_else(registry: Registry, tmp_path: Path) -> None:
    model = _model(registry, tmp_path / "model")
    other = _model(registry, tmp_path / "other", seed=1)
    bundle = tmp_path / "B"
    assert _export(str(model), str(bundle), "--format", "monai-bundle").exit_code == 0
    assert "pass --overwrite" in _export(str(other), str(bundle), "--format", "monai-bundle").output
    done = _export(str(other), str(bundle), "--format", "monai-bundle", "--overwrite")
    assert done.exit_code == 0, done.output
    description = json.loads((bundle / "models" / "model.pt2.json").read_text())
    assert description["model_sha256"] == model_sha256(other)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["B", "model", "other"]
    # a folder that is not a bundle is not deleted, nor the model folder written into
    keep = tmp_path / "keep"
    (keep / "notes").mkdir(parents=True)
    done = _export(str(model), str(keep), "--format", "monai-bundle", "--overwrite")
    assert done.exit_code != 0
    assert "replaces only a bundle folder" in done.output
    assert (keep / "notes").is_dir()
    before = sorted(p.name for p in model.iterdir())
    for inside in (model / "B", model / "e.pt2"):
        fmt = ["--format", "monai-bundle"] if inside.suffix == "" else []
        done = _export(str(model), str(inside), *fmt, "--overwrite")
        assert done.exit_code != 0
        assert "lies inside the input folder" in done.output
    done = _export(str(model), str(model), "--format", "monai-bundle", "--overwrite")
    assert done.exit_code != 0
    assert sorted(p.name for p in model.iterdir()) == before


def test_export_program_refuses_an_existing_file_without_overwrite(
    registry: Registry, tmp_path: Path
) -> None:
    method = load_model(_model(registry, tmp_path / "model"), registry=registry)
    (tmp_path / "e.pt2.json").write_text("{}")
    with pytest.raises(OptionsError, match=r"e\.pt2\.json exists.*overwrite=True"):
        export_program(method, tmp_path / "e.pt2")
    export_program(method, tmp_path / "e.pt2", overwrite=True)
    assert json.loads((tmp_path / "e.pt2.json").read_text())["format"] == "medi2i-torch-export/1"


# 6: a bundle folder is not named like a file


@pytest.mark.parametrize("name", ["bundle.onnx", "bundle.pt2", "bundle.zip", "b.nii.gz"])
def test_a_bundle_folder_named_like_a_file_is_refused(
    name: str, registry: Registry, tmp_path: Path
) -> None:
    model = _model(registry, tmp_path / "model")
    done = _export(str(model), str(tmp_path / name), "--format", "monai-bundle")
    assert done.exit_code != 0
    (line,) = done.output.strip().splitlines()
    assert "--format monai-bundle writes a folder" in line
    assert not (tmp_path / name).exists()
    method = load_model(model, registry=registry)
    with pytest.raises(OptionsError, match="a file's suffix"):
        export_bundle(method, model, tmp_path / name)


# 9: a bundle run from outside its folder


def test_a_missing_program_says_to_pass_the_bundle_root(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="run from the bundle folder or pass --bundle_root"):
        load_program(tmp_path)


def test_a_bundle_run_from_outside_its_folder_prints_one_line(
    registry: Registry, tmp_path: Path
) -> None:
    _, bundle = _bundle(registry, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [
            sys.executable, "-m", "monai.bundle", "run",
            "--config_file", str(bundle / "configs" / "inference.json"),
            "--meta_file", str(bundle / "configs" / "metadata.json"),
            "--input_path", str(_volume(tmp_path / "in.nii.gz")),
            "--output_path", str(tmp_path / "out.nii.gz"),
        ],
        capture_output=True, text=True, check=False, cwd=elsewhere,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1
    assert "run from the bundle folder or pass --bundle_root BUNDLE" in lines[0]
    assert "--bundle_root" in (bundle / "docs" / "README.md").read_text()
