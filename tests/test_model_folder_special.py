"""A model folder member that is no regular file (a FIFO, a folder) is named as such."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medi2i.errors import ModelFormatError
from medi2i.model_folder import MANIFEST, WEIGHTS, load_model, read_model_card, save_model
from medi2i.registry import Registry
from medi2i.testing.example_methods import PointwiseNet


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return save_model(PointwiseNet({"hidden": 3}), tmp_path / "model")


@pytest.mark.parametrize("name", [MANIFEST, WEIGHTS])
def test_a_fifo_member_is_named_a_fifo_and_never_opened(
    model: Path, registry: Registry, name: str
) -> None:
    (model / name).unlink()
    os.mkfifo(model / name)
    with pytest.raises(ModelFormatError) as info:
        load_model(model, registry=registry)
    assert str(info.value) == (
        f"model folder {model}: {name} is a FIFO (named pipe), not a regular file; medi2i "
        f"does not open it; put the {name} that medi2i saved with the model in its place"
    )


def test_a_folder_under_the_manifest_name_is_named_a_folder(model: Path) -> None:
    (model / MANIFEST).unlink()
    (model / MANIFEST).mkdir()
    with pytest.raises(ModelFormatError, match=f"{MANIFEST} is a folder, not a regular file"):
        load_model(model)


def test_a_fifo_model_card_is_named_rather_than_ignored(model: Path) -> None:
    os.mkfifo(model / "card.yaml")
    with pytest.raises(ModelFormatError, match=r"card\.yaml is a FIFO"):
        read_model_card(model)
