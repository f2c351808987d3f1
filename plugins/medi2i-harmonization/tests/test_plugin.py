"""Tests of the plugin as installed: registration, light hook module, card."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import medi2i_harmonization
import pytest
import yaml
from medi2i_harmonization.nyul import NyulStandardization
from medi2i_harmonization.whitestripe import WhiteStripe
from medi2i_harmonization.zscore import ZScore

from medi2i import DataKind, Method, Registry, Task
from medi2i.testing import isolated_registry

METHODS: dict[str, type[Method]] = {
    "zscore": ZScore,
    "whitestripe": WhiteStripe,
    "nyul": NyulStandardization,
}


def test_registers_its_methods() -> None:
    registry = isolated_registry(medi2i_harmonization, strict=True)

    assert {name: registry.method(name) for name in METHODS} == METHODS


def test_is_registered_by_the_installed_plugin(medi2i_registry: Registry) -> None:
    for name, method in METHODS.items():
        assert medi2i_registry.method(name) is method
        assert medi2i_registry.method_owner(name) == "harmonization"


def test_methods_declare_what_they_need() -> None:
    assert all(m.tasks == (Task.HARMONIZATION,) for m in METHODS.values())
    assert ZScore.data is DataKind.NONE
    assert WhiteStripe.data is DataKind.NONE
    assert WhiteStripe.fits_at_predict
    assert NyulStandardization.data is DataKind.SINGLE_DOMAIN


def test_hook_module_imports_no_torch() -> None:
    code = "import sys, medi2i_harmonization; print('torch' in sys.modules, 'scipy' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_card_describes_the_method(name: str) -> None:
    text = resources.files("medi2i_harmonization").joinpath("card.yaml").read_text()
    entries = {entry["id"]: entry for entry in yaml.safe_load(text)["methods"]}

    assert entries[name]["version"] == METHODS[name].version
    assert "clinical" in entries[name]["intended_use"]["out_of_scope"].lower()
