"""The example workflow of a new plugin: its comment says what its paths are relative to,
and the data its commands make lands where its layouts look (relative to the workflow)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest
import yaml

from medi2i.plugin_kit.generator import PLUGIN_KINDS, PluginNames, render_plugin


def _layout_paths(data: dict[str, object]) -> list[str]:
    paths: list[str] = []
    for key in ("layout", "validation_data"):
        layout = data.get(key)
        if isinstance(layout, dict):
            if "root" in layout:
                paths.append(layout["root"])
            paths += list(layout.get("folders", {}).values())
    return paths


@pytest.mark.parametrize("kind", PLUGIN_KINDS)
def test_the_example_workflow_says_its_paths_are_relative_to_itself(kind: str) -> None:
    text = render_plugin(PluginNames.of("my-method"), kind)["workflows/example.yaml"]
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))

    assert "run it from the plugin's folder" not in header
    assert "relative to this file's folder, so it runs from any folder" in header
    made = re.findall(r"^#\s+python -m \S+ (?:\S+ )?(workflows/\S+)$", header, re.MULTILINE)
    assert made
    workflow = yaml.safe_load(text)
    for path in _layout_paths(workflow["data"]):
        resolved = PurePosixPath("workflows") / path
        assert any(resolved.is_relative_to(folder) for folder in made), (path, made)


@pytest.mark.parametrize("kind", PLUGIN_KINDS)
def test_the_example_trains_validates_and_evaluates_on_one_generator_s_data(kind: str) -> None:
    """Validation and evaluation cases come from the generator of the training cases
    (held-out subjects), so they share its voxel spacing: no SpacingWarning, and metrics
    on inputs of the range trained on (the unpaired example once trained on 0.9×1.1×2 mm
    volumes and scored 7×8×7 mm phantoms)."""
    text = render_plugin(PluginNames.of("my-method"), kind)["workflows/example.yaml"]
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    made = re.findall(r"^#\s+python -m (\S+) (?:\S+ )?(workflows/\S+)$", header, re.MULTILINE)
    assert len(made) == 1, made
    workflow = yaml.safe_load(text)
    evaluation = workflow.get("evaluation", {})
    paths = _layout_paths(workflow["data"])
    if isinstance(evaluation.get("data"), dict):
        paths += _layout_paths(evaluation["data"])
    folder = PurePosixPath(made[0][1])
    for path in paths:
        assert (PurePosixPath("workflows") / path).is_relative_to(folder), (path, folder)
