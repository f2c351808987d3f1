"""``medi2i export``: a network method's window function as a torch.export program,
checked against medi2i's own forward."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from medi2i import DataKind
from medi2i.cli.main import build_cli
from medi2i.errors import ExportError
from medi2i.export import export_program
from medi2i.export_onnx import TORCH_ONNX_REGISTRATION_LOGGER
from medi2i.model_folder import save_model
from medi2i.registry import Registry

TINY: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "regression-unet": ({"filters": [4, 8, 16], "roi_size": [16, 16, 16]}, None),
    "pix2pix": (
        {
            "roi_size": [16, 16, 16],
            "generator_filters": 4,
            "generator_depth": 3,
            "discriminator_filters": 4,
            "discriminator_layers": 1,
        },
        None,
    ),
    "pix2pix-2.5d": (
        {
            "roi_size": [16, 16, 4],
            "generator_filters": 4,
            "generator_depth": 3,
            "discriminator_filters": 4,
            "discriminator_layers": 1,
        },
        None,
    ),
    "srcnn": ({"filters": [4, 4], "kernel_sizes": [3, 1, 3], "roi_size": [8, 8, 8]}, None),
    "intensity-inversion": ({"roi_size": [8, 8, 8]}, None),
    "edsr": ({"features": 4, "blocks": 1, "factor": 2, "roi_size": [8, 8, 4]}, None),
    "srgan": (
        {
            "features": 4,
            "blocks": 1,
            "factor": 4,
            "roi_size": [8, 8, 4],
            "discriminator_filters": 2,
        },
        None,
    ),
    "cyclegan": (
        {
            "roi_size": [16, 16, 16],
            "generator_filters": 2,
            "residual_blocks": 1,
            "outer_kernel": 3,
            "discriminator_filters": 2,
            "discriminator_layers": 1,
        },
        {"direction": "b2a"},
    ),
    "discogan": (
        {"roi_size": [16, 16, 16], "generator_filters": 2, "discriminator_filters": 2},
        {"direction": "a2b"},
    ),
    "cyclegan-2.5d": (
        {
            "roi_size": [16, 16, 4],
            "generator_filters": 2,
            "residual_blocks": 1,
            "discriminator_filters": 2,
            "discriminator_layers": 1,
        },
        {"direction": "a2b"},
    ),
    "discogan-2.5d": (
        {"roi_size": [16, 16, 4], "generator_filters": 2, "discriminator_filters": 2},
        {"direction": "b2a"},
    ),
    "unit": (
        {
            "roi_size": [16, 16, 16],
            "filters": 4,
            "blocks": 1,
            "discriminator_filters": 4,
            "discriminator_layers": 2,
        },
        {"direction": "b2a"},
    ),
    "stargan": (
        {
            "roi_size": [16, 16, 16],
            "generator_filters": 4,
            "residual_blocks": 1,
            "discriminator_filters": 4,
            "discriminator_layers": 2,
        },
        {"target_domain": "C"},
    ),
}
"""Each exportable method's tiny options and the condition its export is made for."""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()  # the first-party plugins (tests/conftest.py)


def ready(registry: Registry, method_id: str, options: dict[str, Any]) -> Any:
    """A new method with the domains training would give it (two, or three for a
    multi-domain method)."""
    method = registry.method(method_id)(options)
    if method.data is DataKind.UNPAIRED:
        method.use_domains(["mr", "ct"])
    elif method.data is DataKind.MULTI_DOMAIN:
        method.use_domains(["A", "B", "C"])
    return method


@pytest.mark.parametrize("method_id", sorted(TINY))
def test_the_export_reproduces_medi2is_forward(
    method_id: str, registry: Registry, tmp_path: Path
) -> None:
    options, condition = TINY[method_id]
    method = ready(registry, method_id, options)
    result = export_program(method, tmp_path / "model.pt2", condition=condition)

    loaded = torch.export.load(str(result.path)).module()
    windows = torch.randn(3, 1, *method.roi_size(), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = method.forward(windows, method.parse_condition(condition))
        got = loaded(windows)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    description = json.loads(result.sidecar.read_text())
    assert description["method"]["id"] == method_id
    assert description["window"]["input_shape"] == ["batch", 1, *method.roi_size()]
    assert description["check"]["max_abs_difference"] <= description["check"]["tolerance"]
    if condition:
        assert description["condition"].items() >= condition.items()


def test_the_condition_picks_the_traced_direction(registry: Registry, tmp_path: Path) -> None:
    options, _ = TINY["cyclegan"]
    method = ready(registry, "cyclegan", options)
    windows = torch.randn(1, 1, 16, 16, 16)
    outputs = {}
    for direction in ("a2b", "b2a"):
        path = export_program(
            method, tmp_path / f"{direction}.pt2", condition={"direction": direction}
        ).path
        with torch.no_grad():
            outputs[direction] = torch.export.load(str(path)).module()(windows)
    assert not torch.allclose(outputs["a2b"], outputs["b2a"])


@pytest.mark.parametrize(
    ("method_id", "options", "condition", "match"),
    [
        ("interpolation", {}, None, "no network on sliding windows"),
        (
            "regression-unet",
            {"filters": [4, 8, 16], "roi_size": [16, 16, 16], "norm": "batch"},
            {"statistics": "input"},
            "statistics=input",
        ),
        ("munit", {"roi_size": [16, 16, 16], "filters": 4, "blocks": 1}, None, "styles"),
        (
            "stargan",
            {"roi_size": [16, 16, 16], "generator_filters": 2, "discriminator_filters": 2},
            None,
            r"-c target_domain=NAME \(one of A, B, C\)",
        ),
    ],
    ids=["interpolation", "adabn-on-input", "munit", "stargan-without-target"],
)
def test_what_cannot_be_exported_says_why(
    method_id: str,
    options: dict[str, Any],
    condition: dict[str, Any] | None,
    match: str,
    registry: Registry,
    tmp_path: Path,
) -> None:
    method = ready(registry, method_id, options)
    with pytest.raises(ExportError, match=match):
        export_program(method, tmp_path / "model.pt2", condition=condition)
    assert not any(tmp_path.iterdir())


def test_the_command_exports_a_model_folder_and_refuses_to_overwrite(
    registry: Registry, tmp_path: Path
) -> None:
    options, _ = TINY["srcnn"]
    model = save_model(registry.method("srcnn")(options), tmp_path / "model")
    cli = build_cli()
    runner = CliRunner()

    first = runner.invoke(cli, ["export", str(model), str(tmp_path / "srcnn.pt2")])
    assert first.exit_code == 0, first.output
    assert "wrote" in first.output
    assert (tmp_path / "srcnn.pt2").is_file()
    assert (tmp_path / "srcnn.pt2.json").is_file()
    again = runner.invoke(cli, ["export", str(model), str(tmp_path / "srcnn.pt2")])
    assert again.exit_code != 0
    assert "exists" in again.output


def test_the_command_refuses_a_wrong_suffix_and_a_path_inside_the_model(
    registry: Registry, tmp_path: Path
) -> None:
    options, _ = TINY["srcnn"]
    model = save_model(registry.method("srcnn")(options), tmp_path / "model")
    before = sorted(p.name for p in model.iterdir())
    cli, runner = build_cli(), CliRunner()
    for output, extra, message in [
        (tmp_path / "srcnn.txt", [], "--format torch-export writes a .pt2 file"),
        (tmp_path / "srcnn.pt2", ["--format", "onnx"], "--format onnx writes a .onnx file"),
        (model / "srcnn.pt2", [], "lies inside the input folder"),
    ]:
        done = runner.invoke(cli, ["export", str(model), str(output), *extra])
        assert done.exit_code != 0
        assert message in done.output
        assert not output.exists()
    assert sorted(p.name for p in model.iterdir()) == before


@pytest.mark.parametrize("method_id", sorted(TINY))
def test_the_onnx_export_reproduces_medi2is_forward_in_onnxruntime(
    method_id: str, registry: Registry, tmp_path: Path
) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    options, condition = TINY[method_id]
    method = ready(registry, method_id, options)
    result = export_program(method, tmp_path / "model.onnx", condition=condition, onnx=True)

    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["windows"]
    windows = torch.randn(3, 1, *method.roi_size(), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = method.forward(windows, method.parse_condition(condition))
    got = torch.from_numpy(session.run(None, {"windows": windows.numpy()})[0])
    # float32 kernels of another runtime: 1e-4 of the output's largest magnitude
    tolerance = 1e-4 * max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(got, expected, rtol=0, atol=tolerance)
    description = json.loads(result.sidecar.read_text())
    assert description["format"] == "medi2i-onnx/1"
    assert description["check"]["max_abs_difference"] <= description["check"]["tolerance"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]


def test_the_onnx_lowering_keeps_a_background_channels_statistics() -> None:
    # a channel whose mean is 300 times its spread, as a background channel of a real
    # window has it: onnxruntime's float32 instance normalization lost it (1e-4 off here,
    # 0.01 in a trained Pix2Pix on a real volume), so its statistics are computed wide
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from types import SimpleNamespace

    from medi2i.export_onnx import onnx_runner, precise_instance_norms

    network = torch.nn.Sequential(torch.nn.InstanceNorm3d(1, affine=True)).eval()
    window = -0.6 + 0.002 * torch.randn(
        2, 1, 64, 64, 64, generator=torch.Generator().manual_seed(0)
    )
    exact = torch.nn.functional.instance_norm(window.double()).float()
    with precise_instance_norms(network):
        program = torch.export.export(network, (window,))
        run, _ = onnx_runner(SimpleNamespace(id="layer"), program, window)
    assert isinstance(network[0], torch.nn.InstanceNorm3d)  # the layer is back
    assert float((run(window) - exact).abs().max()) < 1e-5


def test_the_check_windows_hold_an_image_like_window() -> None:
    from medi2i.export import _check_windows

    windows = _check_windows((2, 1, 16, 16, 8), torch.Generator().manual_seed(0))
    image = windows[1]
    assert float((image.round(decimals=1) == -1.0).float().mean()) > 0.05  # background
    assert len(torch.unique(image.round(decimals=1))) > 2  # and boxes on it


def test_an_onnx_name_without_format_onnx_is_refused(tmp_path: Path) -> None:
    done = CliRunner().invoke(
        build_cli(), ["export", str(tmp_path / "model"), str(tmp_path / "srcnn.onnx")]
    )
    assert done.exit_code != 0
    assert "--format onnx" in done.output
    assert not (tmp_path / "srcnn.onnx").exists()


def test_the_command_writes_onnx(registry: Registry, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    options, _ = TINY["srcnn"]
    model = save_model(registry.method("srcnn")(options), tmp_path / "model")
    done = CliRunner().invoke(
        build_cli(), ["export", str(model), str(tmp_path / "srcnn.onnx"), "--format", "onnx"]
    )
    assert done.exit_code == 0, done.output
    assert (tmp_path / "srcnn.onnx").is_file()
    assert json.loads((tmp_path / "srcnn.onnx.json").read_text())["format"] == "medi2i-onnx/1"


def test_the_onnx_export_prints_no_torchvision_notes(registry: Registry, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    options, _ = TINY["srcnn"]
    method = ready(registry, "srcnn", options)
    logged: list[str] = []
    collect = logging.Handler()
    collect.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    # torch's "torch" handler holds the stderr of its import, which capfd cannot see
    logger = logging.getLogger(TORCH_ONNX_REGISTRATION_LOGGER)
    logger.addHandler(collect)
    try:
        export_program(method, tmp_path / "model.onnx", onnx=True)
    finally:
        logger.removeHandler(collect)

    assert not [line for line in logged if "torchvision" in line]


@pytest.mark.parametrize("export_format", ["torchscript", "onnx"])
def test_a_model_with_nan_weights_is_not_exported(
    export_format: str, registry: Registry, tmp_path: Path
) -> None:
    """A NaN difference used to pass the agreement check (NaN > tolerance is false)."""
    options, _ = TINY["srcnn"]
    method = ready(registry, "srcnn", options)
    with torch.no_grad():
        next(method.network.parameters()).view(-1)[0] = float("nan")
    output = tmp_path / ("model.onnx" if export_format == "onnx" else "model.pt2")
    with pytest.raises(ExportError, match="NaN or infinite values on the check windows"):
        export_program(method, output, onnx=export_format == "onnx")
    assert not any(tmp_path.iterdir())


class _Doubles(torch.nn.Module):
    """Doubles positive windows, halves the others: by a Python branch on a value (which
    the guide says torch.export cannot capture) or by ``torch.where`` (which it can)."""

    def __init__(self, branching: bool) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.branching = branching

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        if self.branching:
            return windows * (2.0 if windows.mean() > 0 else 0.5) * self.scale
        return windows * torch.where(windows.mean() > 0, 2.0, 0.5) * self.scale


@pytest.mark.parametrize("branching", [True, False], ids=["python-branch", "torch-where"])
def test_a_forward_branching_on_tensor_values_is_not_exported(
    branching: bool, tmp_path: Path
) -> None:
    """What docs/writing-a-method.md ("Exporting a network method") tells plugin authors."""
    from medi2i import PatchNetworkMethod, Task, VolumeSpec

    class Doubling(PatchNetworkMethod):
        id = "doubling"
        tasks = (Task.TRANSLATION,)
        input_spec = output_spec = VolumeSpec()
        default_roi_size = (8, 8, 8)

        def build_network(self) -> torch.nn.Module:
            return _Doubles(branching)

    if branching:
        with pytest.raises(ExportError, match=r"torch\.export cannot capture its forward"):
            export_program(Doubling(), tmp_path / "model.pt2")
        assert not any(tmp_path.iterdir())
    else:
        assert export_program(Doubling(), tmp_path / "model.pt2").max_difference == 0.0


@pytest.mark.parametrize("appears", ["srcnn.pt2", "srcnn.pt2.json"])
def test_a_file_made_at_the_export_path_during_the_export_is_kept(
    appears: str, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the paths are checked free, then the export works for seconds: a file written at
    # either path meanwhile was replaced without a word
    import medi2i.export as export

    options, _ = TINY["srcnn"]
    model = save_model(registry.method("srcnn")(options), tmp_path / "model")
    out = tmp_path / "out"
    check_windows = export._check_windows

    def meanwhile(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        (out / appears).write_text("user data")
        return check_windows(shape, generator)

    monkeypatch.setattr(export, "_check_windows", meanwhile)
    out.mkdir()
    result = CliRunner().invoke(build_cli(), ["export", str(model), str(out / "srcnn.pt2")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "appeared while this output was being made" in lines[0]
    assert (out / appears).read_text() == "user data"
    assert sorted(p.name for p in out.iterdir()) == [appears]  # both or neither


def test_the_description_holds_the_programs_sha256(registry: Registry, tmp_path: Path) -> None:
    # a MONAI bundle ran whatever models/model.pt2 it held: nothing recorded the program
    import hashlib

    options, _ = TINY["srcnn"]
    result = export_program(registry.method("srcnn")(options), tmp_path / "model.pt2")
    description = json.loads(result.sidecar.read_text())
    assert description["sha256"] == hashlib.sha256(result.path.read_bytes()).hexdigest()
    torch.export.load(str(result.path))  # still a program torch loads


def test_an_unwritable_folder_is_refused_before_the_export_runs(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a read-only or full target was found only after the whole export had run
    import os
    import tempfile

    import medi2i.export as export

    options, _ = TINY["srcnn"]
    model = save_model(registry.method("srcnn")(options), tmp_path / "model")

    def refused(*_: object, **__: object) -> tuple[int, str]:
        raise OSError(30, os.strerror(30))  # EROFS: a read-only file system

    def never(*_: object, **__: object) -> torch.Tensor:
        raise AssertionError("the export ran")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    monkeypatch.setattr(export, "_check_windows", never)
    target = tmp_path / "ro" / "srcnn.pt2"
    for command in (
        ["export", str(model), str(target)],
        ["export", str(model), str(tmp_path / "ro" / "bundle"), "--format", "monai-bundle"],
    ):
        result = CliRunner().invoke(build_cli(), command)
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, result.output
        assert "is not writable (Read-only file system); nothing was exported" in lines[0]
    assert not (tmp_path / "ro").exists()


def test_missing_folders_of_the_export_path_are_created(registry: Registry, tmp_path: Path) -> None:
    options, _ = TINY["srcnn"]
    model = save_model(registry.method("srcnn")(options), tmp_path / "model")
    target = tmp_path / "new" / "deeper" / "srcnn.pt2"
    result = CliRunner().invoke(build_cli(), ["export", str(model), str(target)])
    assert result.exit_code == 0, result.output
    assert target.is_file()
    help_text = " ".join(CliRunner().invoke(build_cli(), ["export", "--help"]).output.split())
    assert "Folders missing on OUTPUT's path are created" in help_text


def test_the_readme_lists_the_methods_the_tests_export() -> None:
    # the README said the tests predict with "all ten exports" of twelve methods
    import re

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    listed = readme.split("Exported:", 1)[1].split("(one target domain", 1)[0]
    assert set(re.findall(r"`([a-z0-9.-]+)`", listed)) == set(TINY)
    assert "all ten exports" not in readme


def test_the_readme_names_every_method_export_refuses(registry: Registry, tmp_path: Path) -> None:
    # the README said "intensity mappings" are refused, yet intensity-inversion (a
    # network method) exports; every registered method is either exported by the tests
    # (and listed as exported) or refused by export and named among the refused
    import re

    from medi2i.patch_network import PatchNetworkMethod

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    refused_text = readme.split("Refused, with the reason:", 1)[1].split("TorchScript", 1)[0]
    refused = set(re.findall(r"`([a-z0-9.-]+)`", refused_text))
    for method_id in sorted(registry.methods):
        if method_id in TINY:
            assert method_id not in refused
            continue
        assert method_id in refused, f"{method_id} is neither exported nor listed as refused"
        method_cls = registry.method(method_id)
        if not issubclass(method_cls, PatchNetworkMethod):
            with pytest.raises(ExportError, match="runs no network on sliding windows"):
                export_program(method_cls(), tmp_path / "m.pt2")
