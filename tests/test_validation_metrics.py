"""Training validation scores with the metric objects of ``medi2i evaluate``'s presets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from monai.data.meta_tensor import MetaTensor

from medi2i.evaluation import image_metrics, synthrad
from medi2i.method_spec import Output, VolumeSpec
from medi2i.settings import InferenceSettings
from medi2i.training.validation import ValidationCase, validate


class _Fixed:
    """A stand-in method whose output has ``units``; predict is patched below."""

    def __init__(self, units: str) -> None:
        self.units = units

    def parse_condition(self, condition: Mapping[str, object]) -> Mapping[str, object]:
        return condition

    def outputs(self, condition: object) -> tuple[Output, ...]:
        return (Output("", VolumeSpec(units=self.units)),)


@pytest.mark.parametrize("units", ["HU", "arbitrary"])
def test_validation_psnr_is_the_evaluate_presets(
    units: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation used the generic PSNR over the reference's range, so a report showed
    19.81 (validation) and 20.23 (synthrad_psnr) for one model and case."""
    rng = np.random.default_rng(0)
    reference = rng.uniform(-1000, 1500, (16, 16, 16))
    predicted = reference + rng.normal(0, 150, reference.shape)
    mask = np.zeros(reference.shape, dtype=bool)
    mask[2:14, 2:14, 2:14] = True
    monkeypatch.setattr(
        "medi2i.prediction.predict_tensor",
        lambda *a, **k: MetaTensor(torch.as_tensor(predicted)[None]),
    )
    case = ValidationCase("c", MetaTensor(torch.zeros(1, 16, 16, 16)), reference, mask)
    method: Any = _Fixed(units)
    values = validate(method, [case], settings=InferenceSettings(device="cpu"))
    if units == "HU":
        assert values["psnr"] == pytest.approx(synthrad.psnr(reference, predicted, mask))
        assert values["mae"] == pytest.approx(synthrad.mae(reference, predicted, mask))
    else:
        assert values["psnr"] == pytest.approx(
            image_metrics.masked_psnr(reference, predicted, mask)
        )
    assert set(values) == {"mae", "psnr"}  # the names checkpoint selection and cards use
