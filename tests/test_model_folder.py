"""Trained-model folders: round trips, zips, damage detection, no unpickling."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from medi2i.errors import InputError, ModelFormatError, UnknownMethodError
from medi2i.model_folder import load_model, read_manifest, save_model
from medi2i.plugins import load_plugins
from medi2i.registry import Registry
from medi2i.testing import example_methods
from medi2i.testing.example_methods import PointwiseNet


@pytest.fixture
def registry() -> Registry:
    plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
    return Registry(plugins)


@pytest.fixture
def trained(tmp_path: Path) -> tuple[PointwiseNet, Path]:
    method = PointwiseNet({"hidden": 3})
    with torch.no_grad():
        for parameter in method.network.parameters():
            parameter.add_(0.5)  # differs from a fresh build, so loading must really load
    return method, save_model(method, tmp_path / "model", metrics={"mae": 1.5}, data_cards=["d1"])


def test_weights_and_options_round_trip(
    trained: tuple[PointwiseNet, Path], registry: Registry
) -> None:
    method, folder = trained
    loaded = load_model(folder, registry=registry)
    assert loaded.options == method.options
    for key, value in method.network.state_dict().items():
        torch.testing.assert_close(loaded.network.state_dict()[key], value)
    manifest = read_manifest(folder)
    assert manifest.data_cards == ["d1"]
    assert json.loads((folder / "metrics.json").read_text()) == {"mae": 1.5}
    assert "example-pointwise-net" in (folder / "README.md").read_text()


def test_a_zip_of_the_folder_loads(trained: tuple[PointwiseNet, Path], registry: Registry) -> None:
    method, folder = trained
    archive = Path(shutil.make_archive(str(folder), "zip", folder.parent, folder.name))
    loaded = load_model(archive, registry=registry)
    torch.testing.assert_close(
        next(iter(loaded.network.parameters())), next(iter(method.network.parameters()))
    )


def test_damaged_weights_are_detected(
    trained: tuple[PointwiseNet, Path], registry: Registry
) -> None:
    _, folder = trained
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="SHA-256"):
        load_model(folder, registry=registry)


def test_a_pickle_is_never_loaded(trained: tuple[PointwiseNet, Path], registry: Registry) -> None:
    _, folder = trained
    weights = folder / "weights.safetensors"
    weights.write_bytes(pickle.dumps({"network.0.weight": torch.zeros(3, 1, 1, 1, 1)}))
    manifest = json.loads((folder / "medi2i-model.json").read_text())
    import hashlib

    manifest["weights"]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (folder / "medi2i-model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="not readable"):
        load_model(folder, registry=registry)


def test_weights_for_other_options_are_refused(
    trained: tuple[PointwiseNet, Path], registry: Registry
) -> None:
    _, folder = trained
    manifest = json.loads((folder / "medi2i-model.json").read_text())
    manifest["options"]["hidden"] = 5
    (folder / "medi2i-model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="do not fit"):
        load_model(folder, registry=registry)


def test_missing_or_invalid_parts_are_clear_errors(tmp_path: Path, registry: Registry) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "nothing", registry=registry)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFormatError, match=r"medi2i-model\.json"):
        load_model(tmp_path / "empty", registry=registry)
    (tmp_path / "empty" / "medi2i-model.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        load_model(tmp_path / "empty", registry=registry)


def test_an_uninstalled_method_names_itself(trained: tuple[PointwiseNet, Path]) -> None:
    _, folder = trained
    with pytest.raises(UnknownMethodError, match="example-pointwise-net"):
        load_model(folder, registry=Registry(load_plugins()))


def test_an_existing_folder_is_not_overwritten_by_default(
    trained: tuple[PointwiseNet, Path],
) -> None:
    method, folder = trained
    with pytest.raises(InputError, match="already exists"):
        save_model(method, folder)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["model"]  # no staging left behind
