"""The methods ``medi2i plugin new`` writes for domain data keep their domains' units.

An unpaired method used for a harmonization (two MR domains) wrote its outputs in the
network's range; these tests import the generated module in this process and train it
for two steps.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from medi2i import DomainSpec, InferenceSettings, Method, predict_tensor, read_volume
from medi2i.plugin_kit import PluginNames, generate_plugin
from medi2i.testing import train_briefly

SMALL = {"roi_size": (16, 16, 16), "hidden": 4}
SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)
SCANNERS = (
    DomainSpec(name="scanner-a", modality="MR"),
    DomainSpec(name="scanner-b", modality="MR"),
)
TO_SCANNER_A = {
    "unpaired": {"direction": "b2a"},
    "multi-domain": {"target_domain": "scanner-a"},
}


@pytest.fixture
def generated_method(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], type[Method[Any, Any]]]]:
    """Generates a plugin of a kind and imports its method class."""
    packages: list[str] = []

    def load(kind: str) -> type[Method[Any, Any]]:
        names = PluginNames.of(f"units-{kind}")
        folder = generate_plugin(names.name, kind, tmp_path / names.distribution)
        monkeypatch.syspath_prepend(str(folder / "src"))
        packages.append(names.package)
        module = importlib.import_module(f"{names.package}.method")
        method_class: type[Method[Any, Any]] = getattr(module, names.class_name)
        return method_class

    yield load
    for module in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[module]


@pytest.mark.parametrize("kind", sorted(TO_SCANNER_A))
def test_a_harmonization_is_written_in_the_target_domain_s_units(
    generated_method: Callable[[str], type[Method[Any, Any]]], tmp_path: Path, kind: str
) -> None:
    method = generated_method(kind)(SMALL)
    domains = SCANNERS if kind == "unpaired" else (*SCANNERS, "scanner-c")
    data = train_briefly(method, tmp_path / "run", steps=2, domains=domains)
    volumes = {case.domain: read_volume(case.images["image"]) for case in data.cases}
    target = volumes["scanner-a"]  # scanner b's intensities are about 1.5 times a's

    output = predict_tensor(
        method, volumes["scanner-b"], settings=SETTINGS, condition=TO_SCANNER_A[kind]
    )

    low, high = float(target.min()), float(target.max())
    margin = 0.05 * (high - low)
    assert low - margin <= float(output.min()) <= float(output.max()) <= high + margin
    assert float(output.max()) - float(output.min()) > 2.0  # scanner units, not [-1, 1]
