"""The predict path holds as few whole volumes as it can: the input read from a file is
freed once preprocessed, NIfTI keeps its memory order from file to file."""

from __future__ import annotations

import gc
import types
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data.meta_tensor import MetaTensor

import medi2i.io
from medi2i.hookspecs import hookimpl
from medi2i.io import read_volume
from medi2i.method import DataKind, Method, PredictContext, Task, VolumeSpec
from medi2i.plugins import load_plugins
from medi2i.prediction import predict
from medi2i.registry import Registry
from medi2i.settings import InferenceSettings

QUIET = InferenceSettings(progress=False, device="cpu")
READ: list[weakref.ref[MetaTensor]] = []
FREED: list[bool] = []


class FreedProbe(Method):
    """Doubles in preprocess (a new volume), then asks whether the input still lives."""

    id = "test-freed-probe"
    tasks = (Task.TRANSLATION,)
    data = DataKind.NONE
    input_spec = VolumeSpec(modality="any")
    output_spec = VolumeSpec(modality="any")

    def preprocess(
        self, image: MetaTensor, *, domain: str | None = None, condition: object = None
    ) -> MetaTensor:
        return image * 2.0  # type: ignore[return-value]

    def predict(self, image: MetaTensor, context: PredictContext[Any]) -> torch.Tensor:
        gc.collect()
        FREED.append(READ[-1]() is None)
        return image + 1.0


@pytest.fixture
def registry() -> Registry:
    plugin = types.SimpleNamespace(__name__="freed-probe")

    @hookimpl
    def register_methods(register: Callable[[type[Method[Any, Any]]], None]) -> None:
        register(FreedProbe)

    plugin.register_methods = register_methods
    plugins = load_plugins()
    plugins.manager.register(plugin, name="freed-probe")
    return Registry(plugins)


def _ct(path: Path, shape: tuple[int, int, int] = (12, 10, 8)) -> np.ndarray:
    data = np.random.default_rng(0).integers(-1000, 2000, shape).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([0.7, 0.8, 2.0, 1.0])), path)
    return data


def test_the_input_read_by_predict_is_freed_once_preprocessed(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "ct.nii"
    data = _ct(source)
    reader = medi2i.io.read_volume

    def reading(*args: Any, **kwargs: Any) -> MetaTensor:
        volume = reader(*args, **kwargs)
        READ.append(weakref.ref(volume))
        return volume

    monkeypatch.setattr(medi2i.io, "read_volume", reading)
    FREED.clear()
    out = predict(
        source, tmp_path / "out.nii", method="test-freed-probe", settings=QUIET, registry=registry
    )
    assert FREED == [True]
    np.testing.assert_array_equal(nib.load(out).get_fdata(), data * 2.0 + 1.0)


def test_nifti_keeps_its_memory_order_and_values_from_file_to_file(
    tmp_path: Path, registry: Registry
) -> None:
    source = tmp_path / "ct.nii"
    data = _ct(source)
    volume = read_volume(source)
    assert volume.stride(1) < volume.stride(3)  # x fastest, as the file stores it
    np.testing.assert_array_equal(volume[0].numpy(), data)
    out = predict(
        source,
        tmp_path / "inverted.nii",
        method="intensity-inversion",
        options={"lower_percentile": 0.0, "upper_percentile": 100.0},
        settings=QUIET,
        registry=registry,
    )
    written = np.asanyarray(nib.load(out).dataobj)
    low, high = float(data.min()), float(data.max())
    np.testing.assert_allclose(written, low + high - data, atol=1e-3)
