"""Tests of the plugin as installed: registration, light hook module, card."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import medi2i_super_resolution
import pytest
import yaml
from medi2i_super_resolution.edsr import Edsr
from medi2i_super_resolution.interpolation import Interpolation
from medi2i_super_resolution.smore import Smore
from medi2i_super_resolution.srcnn import Srcnn
from medi2i_super_resolution.srgan import Srgan

from medi2i import DataKind, Method, Registry, Task
from medi2i.testing import isolated_registry

METHODS: dict[str, type[Method]] = {
    "interpolation": Interpolation,
    "srcnn": Srcnn,
    "edsr": Edsr,
    "smore": Smore,
    "srgan": Srgan,
}


def test_registers_its_methods() -> None:
    registry = isolated_registry(medi2i_super_resolution, strict=True)

    assert {name: registry.method(name) for name in METHODS} == METHODS


def test_is_registered_by_the_installed_plugin(medi2i_registry: Registry) -> None:
    for name, method in METHODS.items():
        assert medi2i_registry.method(name) is method
        assert medi2i_registry.method_owner(name) == "super-resolution"


def test_methods_declare_what_they_need() -> None:
    assert all(m.tasks == (Task.SUPER_RESOLUTION,) for m in METHODS.values())
    assert Interpolation.data is DataKind.NONE
    assert Srcnn.data is DataKind.PAIRED
    assert Edsr.data is DataKind.PAIRED
    assert Srgan.data is DataKind.PAIRED
    assert Smore.data is DataKind.NONE
    assert Smore.fits_at_predict


def test_hook_module_imports_no_torch() -> None:
    code = (
        "import sys, medi2i_super_resolution; print('torch' in sys.modules, 'scipy' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_card_describes_the_method(name: str) -> None:
    text = resources.files("medi2i_super_resolution").joinpath("card.yaml").read_text()
    entries = {entry["id"]: entry for entry in yaml.safe_load(text)["methods"]}

    assert entries[name]["version"] == METHODS[name].version
    assert "clinical" in entries[name]["intended_use"]["out_of_scope"].lower()
