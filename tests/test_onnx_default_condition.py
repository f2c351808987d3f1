"""``medi2i predict IN OUT --model model.onnx`` without ``-c`` runs the condition the
file was exported for.

The file can run only that condition, but without ``-c`` the method's own default was
asked for instead: a CycleGAN exported with ``-c direction=b2a`` was refused ("exported
for the condition b2a, this prediction asks for a2b") unless the user repeated the
condition the export already holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from medi2i import OptionsError
from medi2i.cli.main import build_cli
from medi2i.onnx_model import load_onnx_model
from medi2i.registry import Registry
from tests.test_onnx_predict import exported, volume_file

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def test_no_condition_given_runs_the_exported_one(registry: Registry, tmp_path: Path) -> None:
    _, onnx_file, condition = exported(registry, "cyclegan", tmp_path)
    assert condition == {"direction": "b2a"}
    source = volume_file(tmp_path, (12, 11, 10))
    out = tmp_path / "smr.nii.gz"
    done = CliRunner().invoke(
        build_cli(),
        ["predict", str(source), str(out), "--model", str(onnx_file), "--no-progress"],
    )
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / "smr.provenance.json").read_text())
    assert record["condition"] == {"direction": "b2a"}
    assert out.exists()


def test_another_condition_is_refused_before_any_work(registry: Registry, tmp_path: Path) -> None:
    _, onnx_file, _ = exported(registry, "cyclegan", tmp_path)
    method = load_onnx_model(onnx_file, registry=registry)
    assert method.parse_condition(None).model_dump() == {"direction": "b2a"}
    assert method.parse_condition({}).model_dump() == {"direction": "b2a"}
    with pytest.raises(OptionsError, match="exported for the condition"):
        method.parse_condition({"direction": "a2b"})
    assert method.parse_condition({"direction": "b2a"}).direction == "b2a"
