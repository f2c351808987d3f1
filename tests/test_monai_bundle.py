"""``medi2i export --format monai-bundle``: a MONAI bundle that MONAI's own bundle tools
verify and run to medi2i's outputs."""

from __future__ import annotations

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
from click.testing import CliRunner

from medi2i.bundle_export import export_bundle
from medi2i.cli.main import build_cli
from medi2i.errors import ExportError, OptionsError, OutputError
from medi2i.model_folder import load_model, save_model
from medi2i.prediction import predict
from medi2i.registry import Registry
from medi2i.settings import InferenceSettings

QUIET = InferenceSettings(device="cpu", progress=False)
TINY = {
    "srcnn": {"filters": [4, 4], "kernel_sizes": [3, 1, 3], "roi_size": [8, 8, 8]},
    "regression-unet": {"filters": [4, 8, 16], "roi_size": [16, 16, 16]},
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()  # the first-party plugins (tests/conftest.py)


def _model(registry: Registry, method_id: str, folder: Path) -> Path:
    torch.manual_seed(0)
    return save_model(registry.method(method_id)(TINY[method_id]), folder)


def _volume(path: Path) -> Path:
    data = np.random.default_rng(0).normal(100.0, 20.0, (30, 26, 20)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.2, 2.0, 1.0])), path)
    return path


def _run_bundle(bundle: Path, source: Path, output: Path) -> None:
    """``python -m monai.bundle run`` of ``bundle`` on ``source``, as its README says."""
    done = subprocess.run(
        [
            sys.executable, "-m", "monai.bundle", "run",
            "--config_file", str(bundle / "configs" / "inference.json"),
            "--meta_file", str(bundle / "configs" / "metadata.json"),
            "--bundle_root", str(bundle),
            "--input_path", str(source),
            "--output_path", str(output),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("method_id", sorted(TINY))
def test_monai_runs_the_bundle_to_medi2is_output(
    method_id: str, registry: Registry, tmp_path: Path
) -> None:
    model = _model(registry, method_id, tmp_path / "model")
    bundle = export_bundle(load_model(model, registry=registry), model, tmp_path / "bundle")
    source = _volume(tmp_path / "in.nii.gz")
    expected = predict(source, tmp_path / "medi2i.nii.gz", model=model, settings=QUIET)
    _run_bundle(bundle, source, tmp_path / "bundle.nii.gz")
    want = nib.load(expected).get_fdata()
    got = nib.load(tmp_path / "bundle.nii.gz").get_fdata()
    assert got.shape == want.shape
    # the exported network against medi2i's forward, blended alike: 1e-4 of the range
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_monais_verify_net_in_out_accepts_the_network(registry: Registry, tmp_path: Path) -> None:
    from monai.bundle import verify_net_in_out

    model = _model(registry, "srcnn", tmp_path / "model")
    bundle = export_bundle(load_model(model, registry=registry), model, tmp_path / "bundle")
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / "configs" / "inference.json"),
        bundle_root=str(bundle),
        device="cpu",
    )
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    image = metadata["network_data_format"]["inputs"]["image"]
    pred = metadata["network_data_format"]["outputs"]["pred"]
    assert image["spatial_shape"] == [8, 8, 8]
    assert pred["spatial_shape"] == [8, 8, 8]
    assert metadata["required_packages_version"]["medi2i-super-resolution"]


SCHEMA = os.environ.get("MEDI2I_MONAI_BUNDLE_SCHEMA")


@pytest.mark.skipif(
    not SCHEMA,
    reason="MONAI's verify_metadata downloads its schema; set MEDI2I_MONAI_BUNDLE_SCHEMA to a "
    "local copy of meta_schema_20240725.json to run it offline",
)
@pytest.mark.filterwarnings("ignore:No hash value provided")  # the local copy has none
def test_monais_verify_metadata_accepts_the_metadata(registry: Registry, tmp_path: Path) -> None:
    from monai.bundle import verify_metadata

    model = _model(registry, "regression-unet", tmp_path / "model")
    bundle = export_bundle(load_model(model, registry=registry), model, tmp_path / "bundle")
    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=SCHEMA)


def test_a_method_that_cannot_be_exported_leaves_no_bundle(
    registry: Registry, tmp_path: Path
) -> None:
    method: Any = registry.method("munit")({"roi_size": [16, 16, 16], "filters": 4, "blocks": 1})
    method.use_domains(["mr", "ct"])
    model = save_model(method, tmp_path / "model")
    with pytest.raises(ExportError, match="styles"):
        export_bundle(load_model(model, registry=registry), model, tmp_path / "bundle")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_the_command_writes_a_bundle_and_refuses_an_existing_folder(
    registry: Registry, tmp_path: Path
) -> None:
    model = _model(registry, "srcnn", tmp_path / "model")
    runner = CliRunner()
    args = ["export", str(model), str(tmp_path / "bundle"), "--format", "monai-bundle"]
    first = runner.invoke(build_cli(), args)
    assert first.exit_code == 0, first.output
    for part in ("configs/metadata.json", "configs/inference.json", "models/model.pt2"):
        assert (tmp_path / "bundle" / part).is_file()
    assert (tmp_path / "bundle" / "models" / "medi2i" / "medi2i-model.json").is_file()
    again = runner.invoke(build_cli(), args)
    assert again.exit_code != 0
    assert "exists" in again.output


def test_a_bundle_inside_the_model_folder_is_refused_and_the_model_kept(
    registry: Registry, tmp_path: Path
) -> None:
    # the bundle copies the model folder: inside it, the copy would copy itself, deeper
    # and deeper, until the path is too long
    model = _model(registry, "srcnn", tmp_path / "model")
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    args = ["export", str(model), str(model / "bundle"), "--format", "monai-bundle"]
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error:")
    assert "inside the input folder" in lines[0]
    assert len(lines[0]) < 300
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def test_a_zipped_model_goes_into_the_bundle_as_it_is_and_runs(
    registry: Registry, tmp_path: Path
) -> None:
    import shutil

    from monai.bundle import ConfigParser

    folder = _model(registry, "srcnn", tmp_path / "model")
    zipped = Path(shutil.make_archive(str(tmp_path / "model"), "zip", folder))
    bundle = export_bundle(load_model(zipped, registry=registry), zipped, tmp_path / "bundle")
    assert (bundle / "models" / "medi2i.zip").read_bytes() == zipped.read_bytes()
    assert not (bundle / "models" / "medi2i").exists()
    source = _volume(tmp_path / "in.nii.gz")
    expected = predict(source, tmp_path / "medi2i.nii.gz", model=zipped, settings=QUIET)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    parser["input_path"] = str(source)
    parser["output_path"] = str(tmp_path / "bundle.nii.gz")
    parser.get_parsed_content("run")
    np.testing.assert_allclose(
        nib.load(tmp_path / "bundle.nii.gz").get_fdata(), nib.load(expected).get_fdata(), atol=1e-4
    )


def test_the_metadata_of_a_method_from_a_plugin_loaded_by_name() -> None:
    """``medi2i --plugin MODULE export ... --format monai-bundle``: the method is not in
    the installed plugins' registry, which only names the packages the bundle needs."""
    from medi2i.bundle_export import _metadata
    from medi2i.testing.trainable_examples import TinyRegression

    method = TinyRegression()
    metadata = _metadata(method, method.parse_condition(None), [8, 8, 8], 0.0, "0.1.0")
    assert metadata["required_packages_version"]["medi2i"] == "0.1.0"


def test_a_volume_smaller_than_the_window_runs_the_windows_medi2i_runs(
    registry: Registry, tmp_path: Path
) -> None:
    # MONAI's inferer pads a short volume to the full window; an instance-normalized
    # network then sees other statistics than in medi2i's shrunk window (2000 HU off
    # on a real 2.5D CycleGAN); the bundle's run shrinks the window as medi2i does
    from monai.inferers import SlidingWindowInferer

    from medi2i.monai_bundle import predict_file

    torch.manual_seed(0)
    method = registry.method("cyclegan-2.5d")({"roi_size": [48, 48, 4], "generator_filters": 2,
                                               "residual_blocks": 1, "discriminator_filters": 2,
                                               "discriminator_layers": 1})  # fmt: skip
    method.use_domains(["mr", "ct"])
    model = save_model(method, tmp_path / "model")
    condition = {"direction": "a2b"}
    bundle = export_bundle(
        load_model(model, registry=registry), model, tmp_path / "bundle", condition=condition
    )
    program = torch.export.load(str(bundle / "models" / "model.pt2")).module()
    network = torch.fx.GraphModule(program, program.graph)
    inferer = SlidingWindowInferer(
        roi_size=[48, 48, 4], sw_batch_size=4, overlap=0.25, mode="gaussian",
        sigma_scale=0.125, padding_mode="replicate",
    )  # fmt: skip
    source = _volume(tmp_path / "in.nii.gz")  # 30 x 26 x 20 voxels
    expected = predict(
        source, tmp_path / "medi2i.nii.gz", model=model, settings=QUIET, condition=condition
    )
    copied = bundle / "models" / "medi2i"  # the bundle's run predicts with its own copy
    got = predict_file(
        copied, source, tmp_path / "bundle.nii.gz", network, inferer, condition=condition
    )
    want = nib.load(expected).get_fdata()
    np.testing.assert_allclose(
        nib.load(got).get_fdata(), want, rtol=0, atol=1e-4 * max(1.0, np.abs(want).max())
    )


def test_a_bundle_of_an_opt_in_plugins_method_loads_that_plugin_to_run(tmp_path: Path) -> None:
    # `medi2i --plugin medi2i.testing.trainable_examples export ...`: the bundle's run
    # loads the plugin by that name; it failed with "whose plugin is not loaded"
    from medi2i.plugins import add_installed_plugin, load_plugins
    from medi2i.testing.trainable_examples import TinyRegression

    plugin = "medi2i.testing.trainable_examples"
    loaded = load_plugins()
    add_installed_plugin(loaded, plugin)
    registry = Registry(loaded)
    torch.manual_seed(0)
    model = save_model(TinyRegression(), tmp_path / "model")
    args = ["--plugin", plugin, "export", str(model), str(tmp_path / "bundle")]
    result = CliRunner().invoke(build_cli(load_plugins()), [*args, "--format", "monai-bundle"])
    assert result.exit_code == 0, result.output
    bundle = tmp_path / "bundle"
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    assert inference["plugins"] == [plugin]
    source = _volume(tmp_path / "in.nii.gz")
    expected = predict(
        source, tmp_path / "medi2i.nii.gz", model=model, settings=QUIET, registry=registry
    )
    _run_bundle(bundle, source, tmp_path / "bundle.nii.gz")
    want = nib.load(expected).get_fdata()
    got = nib.load(tmp_path / "bundle.nii.gz").get_fdata()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(1.0, np.abs(want).max()))


def _cyclegan_bundle(registry: Registry, tmp_path: Path, direction: str) -> Path:
    torch.manual_seed(0)
    method = registry.method("cyclegan")({"roi_size": [16, 16, 16], "generator_filters": 2,
                                          "residual_blocks": 1, "outer_kernel": 3,
                                          "discriminator_filters": 2,
                                          "discriminator_layers": 1})  # fmt: skip
    method.use_domains(["mr", "ct"])
    model = save_model(method, tmp_path / "model")
    condition = {"direction": direction}
    return export_bundle(
        load_model(model, registry=registry), model, tmp_path / "bundle", condition=condition
    )


def test_a_bundle_refuses_another_condition_than_its_programs(
    registry: Registry, tmp_path: Path
) -> None:
    # `monai.bundle run ... --condition '{"direction":"a2b"}'` on a b2a bundle ran the
    # b2a network on a2b-preprocessed input (3458 HU off), its provenance saying a2b
    from monai.inferers import SlidingWindowInferer

    from medi2i.monai_bundle import predict_file

    bundle = _cyclegan_bundle(registry, tmp_path, "b2a")
    program = torch.export.load(str(bundle / "models" / "model.pt2")).module()
    network = torch.fx.GraphModule(program, program.graph)
    inferer = SlidingWindowInferer(roi_size=[16, 16, 16], padding_mode="replicate")
    source = _volume(tmp_path / "in.nii.gz")
    copied = bundle / "models" / "medi2i"
    out = tmp_path / "out.nii.gz"
    with pytest.raises(OptionsError, match=r"was exported for the condition \{'direction': 'b2a'"):
        predict_file(copied, source, out, network, inferer, condition={"direction": "a2b"})
    assert not out.exists()
    for given in (None, {"direction": "b2a"}):  # none given runs the exported one
        out.unlink(missing_ok=True)
        predict_file(copied, source, out, network, inferer, condition=given)
        record = json.loads((tmp_path / "out.provenance.json").read_text())
        assert record["condition"] == {"direction": "b2a"}


@pytest.mark.parametrize("content", [["precious.txt"], []], ids=["with-a-file", "empty"])
def test_a_folder_made_at_the_bundle_path_during_the_export_is_kept(
    content: list[str], registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the export checks the folder is free, then works for seconds: a folder made there
    # meanwhile was moved aside and deleted, with the user's file in it
    import medi2i.bundle_export as bundle_export

    model = _model(registry, "srcnn", tmp_path / "model")
    bundle = tmp_path / "bundle"
    copy_model = bundle_export._copy_model

    def meanwhile(model: Path, models: Path) -> str:
        bundle.mkdir()
        for name in content:
            (bundle / name).write_text("user data")
        return copy_model(model, models)

    monkeypatch.setattr(bundle_export, "_copy_model", meanwhile)
    with pytest.raises(OutputError, match="appeared while this output was being made"):
        export_bundle(load_model(model, registry=registry), model, bundle)
    assert sorted(p.name for p in bundle.iterdir()) == content
    assert all((bundle / name).read_text() == "user data" for name in content)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "model"]  # no staging


def test_a_bundle_refuses_a_program_other_than_its_own(registry: Registry, tmp_path: Path) -> None:
    # the a2b program copied into a b2a bundle ran silently (up to 819 off), its
    # provenance saying b2a and naming the hash of models/medi2i
    import hashlib
    import shutil

    from monai.inferers import SlidingWindowInferer

    from medi2i.errors import ModelFormatError
    from medi2i.monai_bundle import predict_file

    bundle = _cyclegan_bundle(registry, tmp_path / "b2a", "b2a")
    other = _cyclegan_bundle(registry, tmp_path / "a2b", "a2b")
    program_path = bundle / "models" / "model.pt2"
    program = torch.export.load(str(program_path)).module()
    network = torch.fx.GraphModule(program, program.graph)
    inferer = SlidingWindowInferer(roi_size=[16, 16, 16], padding_mode="replicate")
    source = _volume(tmp_path / "in.nii.gz")
    copied = bundle / "models" / "medi2i"
    out = tmp_path / "out.nii.gz"
    predict_file(copied, source, out, network, inferer)
    record = json.loads((tmp_path / "out.provenance.json").read_text())
    sha256 = hashlib.sha256(program_path.read_bytes()).hexdigest()
    assert record["weights_sha256"] == sha256  # the program that ran, not models/medi2i
    assert record["program"] == {"path": str(program_path), "sha256": sha256}

    shutil.copyfile(other / "models" / "model.pt2", program_path)
    out.unlink()
    with pytest.raises(ModelFormatError, match=r"model\.pt2: its SHA-256 is not the one") as info:
        predict_file(copied, source, out, network, inferer)
    assert "export the bundle again" in str(info.value)
    assert len(str(info.value).splitlines()) == 1
    assert not out.exists()


def _bundle_run(bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "monai.bundle", "run",
            "--config_file", str(bundle / "configs" / "inference.json"),
            "--meta_file", str(bundle / "configs" / "metadata.json"),
            "--bundle_root", str(bundle), *args,
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def _medi2i_line(stderr: str) -> str:
    """The one line a refused bundle run prints, the last on stderr (MONAI's own config
    warning may come first), with no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "Failed to evaluate" not in stderr
    lines = stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("Error: ")] == lines[-1:], stderr[-3000:]
    return lines[-1]


def test_a_bundle_run_overwrites_and_forces_the_modality_when_told(
    registry: Registry, tmp_path: Path
) -> None:
    # the run said "pass --overwrite (overwrite=True in Python)", which neither its
    # predict entry nor monai.bundle run took, had no --force-modality, and buried the
    # line in MONAI's "Failed to evaluate" traceback
    model = _model(registry, "regression-unet", tmp_path / "model")
    bundle = export_bundle(load_model(model, registry=registry), model, tmp_path / "bundle")
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    assert inference["overwrite"] is False
    assert inference["force_modality"] is False
    data = np.full((30, 26, 20), -1000.0, np.float32)  # a CT in HU: mostly air
    data[8:22, 8:18, 5:15] = np.random.default_rng(0).normal(40.0, 20.0, (14, 10, 10))
    source = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), source)
    out = tmp_path / "out.nii.gz"
    paths = ("--input_path", str(source), "--output_path", str(out))

    done = _bundle_run(bundle, *paths)
    assert done.returncode == 1
    line = _medi2i_line(done.stderr)
    assert "pass --force_modality true to monai.bundle run (force_modality=True in Python)" in line
    assert not out.exists()
    done = _bundle_run(bundle, *paths, "--force_modality", "true")
    assert done.returncode == 0, done.stderr[-3000:]
    first = out.stat().st_mtime_ns

    done = _bundle_run(bundle, *paths, "--force_modality", "true")
    assert done.returncode == 1
    line = _medi2i_line(done.stderr)
    assert line.startswith(f"Error: {out} is an existing file")
    assert "pass --overwrite true to monai.bundle run (overwrite=True in Python)" in line
    assert out.stat().st_mtime_ns == first
    done = _bundle_run(bundle, *paths, "--force_modality", "true", "--overwrite", "true")
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.stat().st_mtime_ns != first
