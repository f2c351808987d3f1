"""Trained-model folders: round trips, zips, damage detection, no unpickling."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from medi2i.errors import InputError, ModelFormatError, UnknownMethodError
from medi2i.model_checks import ModelVersionWarning, newer_release
from medi2i.model_folder import load_model, read_manifest, save_model
from medi2i.plugins import load_plugins
from medi2i.registry import Registry
from medi2i.testing.example_methods import PointwiseNet


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


def test_weights_the_method_rejects_are_one_line_naming_the_folder(
    trained: tuple[PointwiseNet, Path], registry: Registry
) -> None:
    from safetensors.torch import save_file

    _, folder = trained
    weights = folder / "weights.safetensors"
    save_file({"network.0.weight": torch.zeros(3, 1, 1, 1, 1)}, str(weights))  # too few
    edit_manifest(folder, weights__sha256=hashlib.sha256(weights.read_bytes()).hexdigest())
    with pytest.raises(ModelFormatError, match="do not fit") as info:
        load_model(folder, registry=registry)
    assert str(info.value).startswith(f"{folder}: ")
    assert "\n" not in str(info.value)


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
    with pytest.raises(UnknownMethodError, match="example-pointwise-net") as error:
        load_model(folder, registry=Registry(load_plugins()))
    # the manifest names the distribution whose code made it (the examples ship with medi2i)
    assert read_manifest(folder).method.distribution == "medi2i"
    assert "of the distribution 'medi2i'" in str(error.value)
    # medi2i is installed: the advice is to load the one plugin that registers it, not
    # to install medi2i
    assert "medi2i --plugin medi2i.testing.example_methods ...`" in str(error.value)
    assert "trainable_examples" not in str(error.value)
    assert "(it is not loaded by default)" in str(error.value)
    assert "pip install medi2i" not in str(error.value)


def test_a_method_of_a_distribution_not_installed_says_to_install_it(
    trained: tuple[PointwiseNet, Path],
) -> None:
    _, folder = trained
    manifest = folder / "medi2i-model.json"
    text = manifest.read_text().replace(
        '"distribution": "medi2i"', '"distribution": "no-such-dist"'
    )
    manifest.write_text(text)
    with pytest.raises(UnknownMethodError, match=r"pip install no-such-dist"):
        load_model(folder, registry=Registry(load_plugins()))


def test_an_existing_folder_is_not_overwritten_by_default(
    trained: tuple[PointwiseNet, Path],
) -> None:
    method, folder = trained
    with pytest.raises(InputError, match="already exists"):
        save_model(method, folder)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["model"]  # no staging left behind


# -- trust: a model folder is data from elsewhere ----------------------------------------


def edit_manifest(folder: Path, **changes: object) -> None:
    path = folder / "medi2i-model.json"
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        target = manifest
        *parents, last = key.split("__")
        for parent in parents:
            target = target[parent]
        target[last] = value
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.safetensors", "a/../../x"])
def test_weights_outside_the_folder_are_refused(
    trained: tuple[PointwiseNet, Path], registry: Registry, name: str
) -> None:
    _, folder = trained
    outside = folder.parent / "outside.safetensors"
    shutil.copy(folder / "weights.safetensors", outside)  # same hash: only the path is wrong
    edit_manifest(folder, weights__file=name)
    with pytest.raises(ModelFormatError, match=r"weights\.file .*outside the model folder") as info:
        load_model(folder, registry=registry)
    assert str(folder) in str(info.value)
    assert name in str(info.value)


def test_a_symlink_out_of_the_folder_is_refused(
    trained: tuple[PointwiseNet, Path], registry: Registry
) -> None:
    _, folder = trained
    outside = folder.parent / "outside.safetensors"
    (folder / "weights.safetensors").rename(outside)
    (folder / "weights.safetensors").symlink_to(outside)
    with pytest.raises(ModelFormatError, match=r"link to .*outside the model folder"):
        load_model(folder, registry=registry)


def test_a_zip_with_a_member_outside_the_model_is_refused(
    trained: tuple[PointwiseNet, Path], registry: Registry, tmp_path: Path
) -> None:
    import zipfile

    _, folder = trained
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for member in folder.iterdir():
            zipped.write(member, f"model/{member.name}")
        zipped.writestr("../../escaped.txt", "x")
    with pytest.raises(ModelFormatError, match=r"evil\.zip holds '\.\./\.\./escaped\.txt'"):
        load_model(archive, registry=registry)


def test_options_larger_than_the_weights_are_refused_before_building(
    trained: tuple[PointwiseNet, Path], registry: Registry
) -> None:
    _, folder = trained
    edit_manifest(folder, options__hidden=2_000_000_000)  # 6e9 numbers, 24 GB as float32
    with pytest.raises(ModelFormatError, match=r"hidden=2000000000.*more than the") as info:
        load_model(folder, registry=registry)
    assert str(folder) in str(info.value)
    assert "\n" not in str(info.value)
    edit_manifest(folder, options__hidden=7)
    with pytest.raises(ModelFormatError, match=r"do not fit.*hidden=7.*network\.0\.weight"):
        load_model(folder, registry=registry)


def test_a_network_without_weights_is_refused(
    trained: tuple[PointwiseNet, Path], registry: Registry
) -> None:
    _, folder = trained
    edit_manifest(folder, weights=None)
    with pytest.raises(ModelFormatError, match="names no weights file"):
        load_model(folder, registry=registry)  # it would predict with an untrained network


FIRST_PARTY_HUGE = [
    ("unit", {"filters": 4, "blocks": 1, "roi_size": [16, 16, 16]}, "filters"),
    ("munit", {"filters": 4, "blocks": 1, "roi_size": [16, 16, 16]}, "filters"),
    ("regression-unet", {"filters": [4, 8, 16], "roi_size": [16, 16, 16]}, "filters"),
    ("pix2pix", {"generator_filters": 4, "generator_depth": 2}, "generator_filters"),
    ("srcnn", {"filters": [4, 4]}, "filters"),
    ("cyclegan", {"generator_filters": 2, "residual_blocks": 1}, "generator_filters"),
    ("discogan", {"generator_filters": 2, "discriminator_filters": 2}, "generator_filters"),
]


@pytest.mark.parametrize(("method_id", "small", "option"), FIRST_PARTY_HUGE)
def test_huge_options_of_first_party_methods_are_one_line_errors(
    tmp_path: Path, method_id: str, small: dict[str, object], option: str
) -> None:
    installed = Registry()
    if method_id not in installed.methods:
        pytest.skip(f"the plugin with {method_id} is not installed")
    folder = save_model(installed.method(method_id)(small), tmp_path / "model")
    value = small[option]
    huge = [200_000, *value[1:]] if isinstance(value, list) else 200_000
    edit_manifest(folder, **{f"options__{option}": huge})
    with pytest.raises(ModelFormatError) as info:
        load_model(folder, registry=installed)
    message = str(info.value)
    assert "\n" not in message
    assert str(folder) in message
    assert f"{option}=" in message
    assert "200000" in message


def test_a_newer_release_series_is_refused_with_what_to_install(
    trained: tuple[PointwiseNet, Path], registry: Registry
) -> None:
    _, folder = trained
    edit_manifest(folder, method__version="9.9.9")
    with pytest.raises(ModelFormatError, match=r"example-pointwise-net' 9\.9\.9.*pip install"):
        load_model(folder, registry=registry)
    edit_manifest(folder, method__version="0.1.0", medi2i_version="7.0.0")
    with pytest.raises(ModelFormatError, match=r"medi2i 7\.0\.0, but 0\.1\.0 .*pip install -U"):
        load_model(folder, registry=registry)
    edit_manifest(folder, medi2i_version="0.2.0")  # under 0.x every minor is a new series
    with pytest.raises(ModelFormatError, match=r"medi2i 0\.2\.0"):
        load_model(folder, registry=registry)


def test_a_newer_feature_release_warns(
    trained: tuple[PointwiseNet, Path], registry: Registry
) -> None:
    _, folder = trained
    edit_manifest(folder, medi2i_version="0.1.7")
    with pytest.warns(ModelVersionWarning, match=r"medi2i 0\.1\.7, newer than the installed"):
        load_model(folder, registry=registry)
    edit_manifest(folder, medi2i_version="0.0.3")  # older models load silently
    load_model(folder, registry=registry)


@pytest.mark.parametrize(
    ("recorded", "installed", "expected"),
    [
        ("2.0.0", "1.9.9", "series"),
        ("1.3.0", "1.2.9", "feature"),
        ("1.2.9", "1.2.0", None),
        ("0.2.0", "0.1.9", "series"),
        ("0.1.3", "0.1.0", "feature"),
        ("1.0.0", "2.0.0", None),
        ("0.9.0", "1.0.0", None),
        ("1.1.0rc1", "1.0.0", "feature"),
        ("unknown", "1.0.0", None),
    ],
)
def test_version_comparison(recorded: str, installed: str, expected: str | None) -> None:
    assert newer_release(recorded, installed) == expected


def test_an_invalid_manifest_is_a_one_line_error(
    trained: tuple[PointwiseNet, Path], registry: Registry
) -> None:
    _, folder = trained
    edit_manifest(folder, method__version=3, surprise=True)
    with pytest.raises(ModelFormatError, match=r"method\.version: .*; surprise: ") as info:
        load_model(folder, registry=registry)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_the_weights_file_has_the_mode_of_the_folders_other_files(
    umask: int, tmp_path: Path
) -> None:
    """safetensors wrote weights.safetensors 0600, unreadable to the other users who
    can read the manifest and card beside it."""
    import os

    previous = os.umask(umask)
    try:
        folder = save_model(PointwiseNet({"hidden": 3}), tmp_path / "model")
    finally:
        os.umask(previous)
    modes = {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir()}
    assert modes["weights.safetensors"] == 0o666 & ~umask
    assert len(set(modes.values())) == 1, modes
