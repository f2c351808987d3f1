"""``medi2i export`` of networks whose window may shrink: the exported program runs
every window size the engine may run, or takes the full window alone, and a program
that fails the check is refused in one line."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from medi2i.cli.main import build_cli
from medi2i.errors import ExportError
from medi2i.export import export_program
from medi2i.model_folder import save_model
from medi2i.registry import Registry

ONE_VOXEL_BOTTLENECK = {"filters": [1, 2, 4], "roi_size": [12, 8, 8]}
"""A U-Net with instance normalization and transposed convolutions whose window is
three steps of 4 long on the first axis and one step on the others: on the smallest
window the engine may run (4 x 8 x 8) its bottleneck is one voxel thick along the
first axis, as the 112 x 256 x 64 regression U-Nets' is on 16 x 32 x 32."""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()  # the first-party plugins (tests/conftest.py)


def _unet(registry: Registry) -> Any:
    torch.manual_seed(0)
    return registry.method("regression-unet")(ONE_VOXEL_BOTTLENECK)


def test_a_window_whose_bottleneck_becomes_one_voxel_thick_shrinks(
    registry: Registry, tmp_path: Path
) -> None:
    # the program assumed that axis was never one voxel thick and refused the smallest
    # window in medi2i's own check: "AssertionError: Guard failed: 1 + (-1 +
    # windows.size()[2]) // 4 != 1", a traceback blamed on a plugin
    method = _unet(registry)
    result = export_program(method, tmp_path / "model.pt2")
    assert json.loads(result.sidecar.read_text())["window"]["shrinks_by"] == [4, 8, 8]
    program = torch.export.load(str(result.path)).module()
    condition = method.parse_condition(None)
    for length in (4, 8, 12):
        windows = torch.randn(1, 1, length, 8, 8)
        with torch.no_grad():
            wanted = method.forward(windows, condition)
            torch.testing.assert_close(program(windows), wanted, rtol=0, atol=1e-4)


def test_a_program_that_refuses_a_shrunk_window_takes_the_full_window_alone(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # captured as torch does by default, the program refuses the 4-voxel window: the
    # export must not promise it (the engine pads to the full window instead)
    import medi2i.export as export

    monkeypatch.setattr(export, "_sizes_of_one_not_special", contextlib.nullcontext)
    method = _unet(registry)
    result = export_program(method, tmp_path / "model.pt2")
    assert json.loads(result.sidecar.read_text())["window"]["shrinks_by"] is None
    program = torch.export.load(str(result.path)).module()
    windows = torch.randn(1, 1, 12, 8, 8)
    with torch.no_grad():
        wanted = method.forward(windows, method.parse_condition(None))
        torch.testing.assert_close(program(windows), wanted, rtol=0, atol=1e-4)


def _failing(*_: Any, **__: Any) -> Any:
    """An export whose program fails as a guard does, with the full window alone."""
    from medi2i.export import _Exported

    def run(windows: torch.Tensor) -> torch.Tensor:
        raise AssertionError("Guard failed: 1 + (-1 + windows.size()[2]) // 16 != 1")

    return _Exported(program=None, run=run, onnx_model=None, steps=None)


def test_a_program_failing_on_the_check_windows_is_one_line_naming_the_model(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import medi2i.export as export

    monkeypatch.setattr(export, "_export_function", _failing)
    model = save_model(_unet(registry), tmp_path / "model")
    output = tmp_path / "model.pt2"
    done = CliRunner().invoke(build_cli(), ["export", str(model), str(output)])
    assert done.exit_code == 1
    (line,) = done.output.strip().splitlines()
    assert line.startswith(f"Error: model {model}: the exported program fails on the check")
    assert "AssertionError: Guard failed" in line
    assert "export it with --format onnx" in line
    assert "plugin" not in line
    assert not output.exists()
    assert not output.with_name("model.pt2.json").exists()
    with pytest.raises(ExportError, match="method 'regression-unet': the exported program"):
        export_program(_unet(registry), output)
