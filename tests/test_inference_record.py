"""The inference settings a run's metrics and card record: what the predictions used."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medi2i.workflow import load_workflow
from medi2i.workflow.evaluation import inference_record

WORKFLOW = """\
data:
  kind: paired
  layout: {type: synthrad, root: cases}
method: {id: identity}
inference: {device: DEVICE, amp: true, progress: false}
output: {root: runs}
"""


def _record(tmp_path: Path, device: str) -> dict[str, object]:
    path = tmp_path / "w.yaml"
    path.write_text(WORKFLOW.replace("DEVICE", device))
    return inference_record(load_workflow(path))


def test_amp_is_recorded_false_for_predictions_on_the_cpu(tmp_path: Path) -> None:
    record = _record(tmp_path, "cpu")
    assert record["amp"] is False  # inference.amp is true, but AMP runs on CUDA only
    assert record["device"] == "cpu"
    assert record["device_used"] == "cpu"
    assert "progress" not in record


def test_amp_is_recorded_true_for_predictions_on_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medi2i.engine

    monkeypatch.setattr(medi2i.engine, "resolve_device", lambda name: torch.device("cuda", 0))
    record = _record(tmp_path, "auto")
    assert record["amp"] is True
    assert record["device"] == "auto"  # the setting, beside the device it resolved to
    assert record["device_used"] == "cuda:0"


def test_an_unavailable_device_records_no_amp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medi2i.errors import DeviceError

    def refuse(name: str) -> torch.device:
        raise DeviceError(f"device {name!r} was requested but torch sees no CUDA device")

    monkeypatch.setattr("medi2i.engine.resolve_device", refuse)
    record = _record(tmp_path, "cuda")
    assert record["amp"] is False
    assert record["device_used"] is None
