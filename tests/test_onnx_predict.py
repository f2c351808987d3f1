"""``medi2i predict --model model.onnx``: an ONNX export run by onnxruntime inside
medi2i's own steps, against predicting with the model folder it was exported from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from medi2i import InferenceSettings, OptionsError
from medi2i.cli.main import build_cli
from medi2i.errors import ModelFormatError
from medi2i.export import export_program
from medi2i.hashing import file_sha256
from medi2i.model_folder import save_model
from medi2i.prediction import predict
from medi2i.registry import Registry
from tests.test_export import TINY, ready

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False, overlap=0.25)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()  # the first-party plugins (tests/conftest.py)


def volume_file(folder: Path, shape: tuple[int, int, int], seed: int = 0) -> Path:
    """A smooth, MR-like volume: a bright noisy ellipsoid in dark air."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    inside = sum(axis**2 for axis in grid) < 0.7
    data = np.where(inside, 300.0, 5.0) + rng.normal(0.0, 10.0, shape)
    path = folder / f"in-{'x'.join(map(str, shape))}.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([1.2, 1.0, 1.5, 1.0])), path)
    return path


def exported(
    registry: Registry, method_id: str, folder: Path
) -> tuple[Path, Path, dict[str, Any] | None]:
    """A tiny untrained method saved as a model folder and exported to ONNX from it."""
    options, condition = TINY[method_id]
    method = ready(registry, method_id, options)
    model = save_model(method, folder / "model")
    from medi2i.model_folder import load_model

    export_program(
        load_model(model, registry=registry), folder / "model.onnx", condition=condition, onnx=True
    )
    return model, folder / "model.onnx", condition


def both(
    registry: Registry,
    method_id: str,
    tmp_path: Path,
    shape: tuple[int, int, int],
    settings: InferenceSettings = SETTINGS,
) -> tuple[np.ndarray, np.ndarray]:
    model, onnx_file, condition = exported(registry, method_id, tmp_path)
    source = volume_file(tmp_path, shape)
    outputs = []
    for name, given in (("torch", model), ("onnx", onnx_file)):
        written = predict(
            source,
            tmp_path / f"{name}.nii.gz",
            model=given,
            settings=settings,
            condition=condition,
            registry=registry,
        )
        outputs.append(np.asarray(nib.load(written).dataobj, np.float32))
    return outputs[0], outputs[1]


def _predicted(
    registry: Registry,
    source: Path,
    folder: Path,
    condition: dict[str, Any] | None,
    **models: Path,
) -> list[np.ndarray]:
    """``source`` predicted with each model (a folder or an ONNX file), by name."""
    return [
        np.asarray(
            nib.load(
                predict(
                    source,
                    folder / f"{name}.nii.gz",
                    model=given,
                    settings=SETTINGS,
                    condition=condition,
                    registry=registry,
                )
            ).dataobj,
            np.float32,
        )
        for name, given in models.items()
    ]


@pytest.mark.parametrize("method_id", sorted(TINY))
def test_predicting_with_the_onnx_file_gives_the_model_folders_output(
    method_id: str, registry: Registry, tmp_path: Path
) -> None:
    # larger than the window along every axis: the same windows, blended the same way
    torch_out, onnx_out = both(registry, method_id, tmp_path, (21, 19, 18))
    assert onnx_out.shape == torch_out.shape
    # another runtime's float32 kernels, then medi2i's postprocessing (e.g. x 2000 to HU)
    tolerance = 1e-4 * max(1.0, float(np.abs(torch_out).max()))
    np.testing.assert_allclose(onnx_out, torch_out, rtol=0, atol=tolerance)
    assert np.ptp(torch_out) > 0  # not a constant that any runtime would match


def test_fitted_values_travel_in_the_description(registry: Registry, tmp_path: Path) -> None:
    # a CycleGAN's MR domain keeps the percentile scale it was trained on; the ONNX
    # description carries it, and the prediction uses it
    options, condition = TINY["cyclegan"]
    method = ready(registry, "cyclegan", options)
    method.scales.record("mr", torch.linspace(0.0, 900.0, 1000), (0.5, 99.5))
    model = save_model(method, tmp_path / "model")
    result = export_program(method, tmp_path / "model.onnx", condition=condition, onnx=True)
    state = json.loads(result.sidecar.read_text())["model"]["state"]
    assert state
    assert state == json.loads(json.dumps(method.state_values()))
    source = volume_file(tmp_path, (20, 18, 17))
    got = _predicted(registry, source, tmp_path, condition, torch=model, onnx=result.path)
    np.testing.assert_allclose(got[1], got[0], rtol=0, atol=1e-3 * np.abs(got[0]).max())


def test_a_volume_shorter_than_the_window_is_padded_to_it(
    registry: Registry, tmp_path: Path
) -> None:
    # 10 voxels along z under a 16-voxel window: the torch path shrinks the window, the
    # ONNX file takes only 16, so medi2i pads by replication and crops the output back
    torch_out, onnx_out = both(registry, "regression-unet", tmp_path, (20, 18, 10))
    assert onnx_out.shape == torch_out.shape == (20, 18, 10)
    assert np.isfinite(onnx_out).all()
    assert np.corrcoef(onnx_out.ravel(), torch_out.ravel())[0, 1] > 0.9


def test_the_command_predicts_with_an_onnx_file_and_names_it_in_the_provenance(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, onnx_file, _ = exported(registry, "srcnn", tmp_path)
    source = volume_file(tmp_path, (12, 11, 10))
    out = tmp_path / "sr.nii.gz"
    monkeypatch.chdir(onnx_file.parent)  # the model given by a relative path
    done = CliRunner().invoke(
        build_cli(),
        ["predict", str(source), str(out), "--model", onnx_file.name, "--no-progress"],
    )
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / "sr.provenance.json").read_text())
    assert record["model"] == str(onnx_file.resolve())  # absolute, as the input's path
    assert record["weights_sha256"] == file_sha256(onnx_file)
    assert np.isfinite(np.asarray(nib.load(out).dataobj)).all()


def test_what_does_not_fit_the_export_is_refused(registry: Registry, tmp_path: Path) -> None:
    _, onnx_file, _ = exported(registry, "cyclegan", tmp_path)  # exported for b2a
    source = volume_file(tmp_path, (20, 18, 17))

    def run(**given: Any) -> Path:
        settings = given.pop("settings", SETTINGS)
        return predict(
            source,
            tmp_path / "out.nii.gz",
            model=onnx_file,
            settings=settings,
            registry=registry,
            **given,
        )

    with pytest.raises(OptionsError, match="exported for the condition"):
        run(condition={"direction": "a2b"})
    with pytest.raises(OptionsError, match="--roi-size"):
        run(
            condition={"direction": "b2a"},
            settings=SETTINGS.model_copy(update={"roi_size": (8, 8, 8)}),
        )
    assert not (tmp_path / "out.nii.gz").exists()


def test_a_broken_pair_is_refused_with_what_to_do(registry: Registry, tmp_path: Path) -> None:
    _, onnx_file, _ = exported(registry, "srcnn", tmp_path)
    source = volume_file(tmp_path, (12, 11, 10))
    sidecar = tmp_path / "model.onnx.json"
    description = json.loads(sidecar.read_text())

    def run() -> Path:
        return predict(
            source, tmp_path / "o.nii.gz", model=onnx_file, settings=SETTINGS, registry=registry
        )

    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")  # another file than described
    with pytest.raises(ModelFormatError, match="SHA-256"):
        run()
    del description["model"]  # an export made before predict could use it
    sidecar.write_text(json.dumps(description))
    with pytest.raises(ModelFormatError, match="export the model again"):
        run()
    sidecar.unlink()
    with pytest.raises(ModelFormatError, match="is missing beside it"):
        run()
    assert not (tmp_path / "o.nii.gz").exists()


SHRINKING: dict[str, tuple[dict[str, Any], dict[str, Any] | None, list[int]]] = {
    "cyclegan-2.5d": (
        {
            "roi_size": [48, 48, 4],
            "generator_filters": 2,
            "residual_blocks": 1,
            "discriminator_filters": 2,
            "discriminator_layers": 1,
        },
        {"direction": "a2b"},
        [16, 16, 4],
    ),
    "pix2pix": (
        {
            "roi_size": [48, 48, 16],
            "generator_filters": 2,
            "generator_depth": 3,
            "discriminator_filters": 2,
            "discriminator_layers": 1,
        },
        None,
        [16, 16, 16],
    ),
    "regression-unet": ({"filters": [4, 8, 16], "roi_size": [48, 48, 16]}, None, [16, 16, 16]),
}
"""Networks with instance normalization, a window larger than the test volume, the
condition they are exported for, and the steps their export may shrink by."""


@pytest.mark.parametrize("method_id", sorted(SHRINKING))
def test_a_volume_smaller_than_the_window_runs_the_windows_pytorch_runs(
    method_id: str, registry: Registry, tmp_path: Path
) -> None:
    # a 48 x 48 window over an 18 x 20 slice: the engine shrinks the window to 32 x 32;
    # the export leaves those sizes free, so onnxruntime runs the same windows, where
    # padding to 48 changed every instance normalization's statistics (a committed
    # Pix2Pix was 1802 HU off on a 40 x 50 x 30 MR, the 2.5D CycleGAN 2155 HU)
    options, condition, steps = SHRINKING[method_id]
    torch.manual_seed(0)
    method = ready(registry, method_id, options)
    model = save_model(method, tmp_path / "model")
    result = export_program(method, tmp_path / "model.onnx", condition=condition, onnx=True)
    assert json.loads(result.sidecar.read_text())["window"]["shrinks_by"] == steps
    source = volume_file(tmp_path, (18, 20, 9))
    outputs = _predicted(registry, source, tmp_path, condition, torch=model, onnx=result.path)
    tolerance = 1e-4 * max(1.0, float(np.abs(outputs[0]).max()))
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=0, atol=tolerance)
    assert np.ptp(outputs[0]) > 0


def test_an_onnx_export_of_an_opt_in_plugins_method_names_the_plugin(tmp_path: Path) -> None:
    from medi2i.plugins import load_plugins
    from medi2i.testing.trainable_examples import TinyRegression

    model = save_model(TinyRegression(), tmp_path / "model")
    plugin = ["--plugin", "medi2i.testing.trainable_examples"]
    exported = tmp_path / "tiny.onnx"
    args = [*plugin, "export", str(model), str(exported), "--format", "onnx"]
    result = CliRunner().invoke(build_cli(load_plugins()), args)
    assert result.exit_code == 0, result.output
    source = volume_file(tmp_path, (12, 12, 12))
    args = ["predict", str(source), str(tmp_path / "out.nii.gz"), "--model", str(exported)]
    result = CliRunner().invoke(build_cli(load_plugins()), args)
    assert result.exit_code != 0
    message = " ".join(result.output.split())
    assert str(exported) in message
    assert "whose plugin is not loaded" in message
    assert "medi2i.testing.trainable_examples" in message


def _predict_command(source: Path, out: Path, onnx_file: Path, *extra: str) -> list[str]:
    """``medi2i predict`` with ``onnx_file``: its output lines (exit status 1 asserted)."""
    args = ["predict", str(source), str(out), "--model", str(onnx_file), "--no-progress"]
    done = CliRunner().invoke(build_cli(), [*args, *extra])
    assert done.exit_code == 1, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1, done.output
    assert lines[0].startswith("Error:")
    return lines


def _edited(sidecar: Path, original: dict[str, Any], edit: Any) -> None:
    description = json.loads(json.dumps(original))
    edit(description)
    sidecar.write_text(json.dumps(description))


def test_a_malformed_description_is_refused_in_one_line(registry: Registry, tmp_path: Path) -> None:
    # a key missing or of the wrong type was a KeyError, ValueError or TypeError:
    # "an unexpected error inside medi2i" with a traceback
    _, onnx_file, _ = exported(registry, "srcnn", tmp_path)
    sidecar = tmp_path / "model.onnx.json"
    original = json.loads(sidecar.read_text())
    source = volume_file(tmp_path, (12, 11, 10))
    cases = [
        ("window.input_shape", lambda d: d["window"].pop("input_shape")),
        ("window.input_shape", lambda d: d["window"].update(input_shape="abc")),
        ("window.input_shape", lambda d: d["window"].update(input_shape=["batch", 1, 8, 8])),
        ("method.version", lambda d: d["method"].pop("version")),
        ("model.medi2i", lambda d: d["model"].update(medi2i=3)),
    ]
    for where, edit in cases:
        _edited(sidecar, original, edit)
        (line,) = _predict_command(source, tmp_path / "o.nii.gz", onnx_file)
        assert f"{sidecar}: not a valid medi2i ONNX description ({where}" in line
        assert "export the model again" in line
    assert not (tmp_path / "o.nii.gz").exists()


def test_a_description_whose_window_is_not_the_files_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    # the SHA-256 covers the ONNX file, not its description: a window edited to another
    # size ran the network on windows it was not exported for (1014 HU off)
    import onnx

    torch.manual_seed(0)
    method = ready(registry, "regression-unet", {"filters": [4, 8, 16], "roi_size": [48, 48, 16]})
    result = export_program(method, tmp_path / "model.onnx", onnx=True)
    original = json.loads(result.sidecar.read_text())
    assert original["window"]["shrinks_by"] == [16, 16, 16]  # 48 free, 16 fixed
    source = volume_file(tmp_path, (12, 11, 10))
    out = tmp_path / "o.nii.gz"

    def window(shape: list[int], steps: list[int] | None = None) -> Any:
        def edit(d: dict[str, Any]) -> None:
            d["window"]["input_shape"] = ["batch", 1, *shape]
            if steps is not None:
                d["window"]["shrinks_by"] = steps

        return edit

    # a size the graph allows (a multiple of its step): the file's own record refuses it
    _edited(result.sidecar, original, window([80, 48, 16]))
    (line,) = _predict_command(source, out, result.path)
    assert f"{result.sidecar}: its window does not fit model.onnx" in line
    for edit in (
        window([16, 48, 16]),  # the reviewer's 64 -> 32: fixed where the file is free
        window([48, 48, 32], [16, 16, 32]),  # the file fixes 16
        window([48, 48, 16], [5, 5, 5]),  # not the steps the engine shrinks by
    ):
        _edited(result.sidecar, original, edit)
        (line,) = _predict_command(source, out, result.path)
        assert f"{result.sidecar}: its window does not fit model.onnx" in line
    _edited(result.sidecar, original, lambda d: None)  # the pair as exported still runs
    predict(source, out, model=result.path, settings=SETTINGS, registry=registry)
    assert out.is_file()
    # an export without that record (made before medi2i wrote it) cannot be checked
    proto = onnx.load(str(result.path))
    del proto.metadata_props[:]
    onnx.save(proto, str(result.path))
    original["model"]["onnx_sha256"] = file_sha256(result.path)
    _edited(result.sidecar, original, lambda d: None)
    (line,) = _predict_command(source, tmp_path / "o2.nii.gz", result.path)
    assert "export the model again with medi2i export --format onnx" in line


def test_a_description_whose_condition_is_not_the_files_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    _, onnx_file, _ = exported(registry, "cyclegan", tmp_path)  # exported for b2a
    sidecar = tmp_path / "model.onnx.json"
    original = json.loads(sidecar.read_text())
    _edited(sidecar, original, lambda d: d["condition"].update(direction="a2b"))
    source = volume_file(tmp_path, (20, 18, 17))
    (line,) = _predict_command(source, tmp_path / "o.nii.gz", onnx_file)
    assert "exported for the condition {'direction': 'b2a'}" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch that sees no CUDA device")
def test_a_device_torch_cannot_use_is_refused_with_an_onnx_file_too(
    registry: Registry, tmp_path: Path
) -> None:
    # onnxruntime runs the windows on the CPU, but medi2i's steps around them run on
    # --device, as the README says
    _, onnx_file, _ = exported(registry, "srcnn", tmp_path)
    source = volume_file(tmp_path, (12, 11, 10))
    (line,) = _predict_command(source, tmp_path / "o.nii.gz", onnx_file, "--device", "cuda")
    assert "torch sees no CUDA device" in line
