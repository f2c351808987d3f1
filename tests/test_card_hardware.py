"""A model card records the device a run used, not the ``auto`` it was asked for."""

from __future__ import annotations

import torch

from medi2i.workflow.model_card import hardware_name


def test_auto_is_recorded_as_the_device_it_resolved_to() -> None:
    expected = "cpu" if not torch.cuda.is_available() else "cuda"
    assert hardware_name("auto").startswith(expected)
    assert hardware_name("auto") != "auto"


def test_cpu_is_recorded_as_cpu() -> None:
    assert hardware_name("cpu") == "cpu"
