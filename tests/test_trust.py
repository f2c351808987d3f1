"""Trust boundaries: what a workflow, a card or a plugin's output may not do.

- A workflow's ``plugins`` key selects installed plugins by name; it imports nothing
  else, so validating a workflow file runs no code that came with it.
- Workflow and card YAML is read within limits (size, aliases, expanded values).
- What plugins print goes to stderr, so ``--json`` output on stdout stays JSON.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import medi2i
from medi2i.bounded_yaml import MAX_YAML_ALIASES, MAX_YAML_BYTES
from medi2i.cards import load_card
from medi2i.errors import InputError
from medi2i.plugins import OPT_IN_PLUGINS, load_plugins
from medi2i.registry import Registry
from medi2i.testing import trainable_examples, write_volume_file
from medi2i.workflow import WorkflowError, load_workflow

WORKFLOW = """\
plugins: [{plugin}]
data:
  kind: paired
  layout: {{type: synthrad, root: cases}}
method:
  id: {method}
"""

BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def write(folder: Path, text: str, name: str = "workflow.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


# -- the plugins key selects, it does not import -----------------------------------------


@dataclass
class FakeDistribution:
    name: str
    version: str


@dataclass
class FakeEntryPoint:
    name: str
    target: types.ModuleType
    dist: FakeDistribution | None = None
    value: str = "fake"

    def load(self) -> types.ModuleType:
        return self.target


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    """Installed entry points of group medi2i (none autoloaded); tests append to it."""
    monkeypatch.setenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "1")
    entry_points: list[FakeEntryPoint] = []

    def fake_entry_points(*, group: str) -> list[FakeEntryPoint]:
        return entry_points if group == "medi2i" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    return entry_points


def test_a_module_beside_the_workflow_is_never_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installed: list[FakeEntryPoint]
) -> None:
    marker = tmp_path / "ran.txt"
    write(tmp_path, f"open({str(marker)!r}, 'w').close()\n", name="evil_plugin.py")
    monkeypatch.syspath_prepend(str(tmp_path))  # as under `python -m medi2i` run there
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, WORKFLOW.format(plugin="evil_plugin", method="intensity-inversion"))

    with pytest.raises(WorkflowError) as info:
        load_workflow(path, registry=Registry(load_plugins()))

    assert not marker.exists(), "validation ran code named by the workflow"
    message = str(info.value)
    assert "line 1: plugins: no installed medi2i plugin is named 'evil_plugin'" in message
    assert "\n" not in message


def test_an_unknown_plugin_lists_the_installed_ones(
    tmp_path: Path, installed: list[FakeEntryPoint]
) -> None:
    installed.append(FakeEntryPoint("tiny", trainable_examples, FakeDistribution("medi2i-x", "1")))
    path = write(tmp_path, WORKFLOW.format(plugin="medi2i.workflow", method="x"))

    with pytest.raises(WorkflowError, match=r"plugins: no installed .*'medi2i\.workflow'") as info:
        load_workflow(path, registry=Registry(load_plugins()))

    for name in ("tiny", "medi2i-x", *OPT_IN_PLUGINS):
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["tiny", "medi2i-tiny"])
def test_an_installed_plugin_is_selected_by_entry_point_or_distribution_name(
    tmp_path: Path, installed: list[FakeEntryPoint], name: str
) -> None:
    module = types.ModuleType("tiny_plugin")
    module.register_methods = trainable_examples.register_methods  # type: ignore[attr-defined]
    installed.append(FakeEntryPoint("tiny", module, FakeDistribution("medi2i-tiny", "2.0")))
    path = write(tmp_path, WORKFLOW.format(plugin=name, method="example-tiny-regression"))
    registry = Registry(load_plugins())
    assert "example-tiny-regression" not in registry.methods  # autoload is off

    workflow = load_workflow(path, registry=registry)

    assert workflow.plugins == [name]
    assert "tiny" in [info.name for info in registry.plugins.infos]


# -- YAML within limits -------------------------------------------------------------------


def test_a_billion_laughs_workflow_is_refused_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, BOMB)
    assert len(BOMB) < 600

    start = time.perf_counter()
    with pytest.raises(WorkflowError, match="more than 100,000 values") as info:
        load_workflow(path)

    assert time.perf_counter() - start < 2.0
    assert str(info.value).startswith(f"{path}: refused: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: &a [1]\n" + "".join(f"k{i}: *a\n" for i in range(MAX_YAML_ALIASES + 1)), "aliases"),
        ("a: &a [*a]\n", "contains itself"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nests deeper"),
    ],
)
def test_yaml_beyond_the_limits_is_a_one_line_error(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(WorkflowError, match=problem) as info:
        load_workflow(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_an_oversized_workflow_is_not_read(tmp_path: Path) -> None:
    path = write(tmp_path, "# padding\n" * (MAX_YAML_BYTES // 10 + 1))
    with pytest.raises(WorkflowError, match=r"bytes is more than the 1,048,576"):
        load_workflow(path)


def test_an_override_cannot_smuggle_a_bomb(tmp_path: Path) -> None:
    path = write(tmp_path, WORKFLOW.format(plugin="x", method="y"))
    bomb = "{" + BOMB.strip().replace("\n", ", ") + "}"
    with pytest.raises(WorkflowError, match="--set"):
        load_workflow(path, overrides=[f"description={bomb}"])


def test_a_billion_laughs_card_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "card: data\n" + BOMB, name="bomb.yaml")
    with pytest.raises(InputError, match=r"bomb\.yaml refused: .*more than 100,000 values"):
        load_card(path)


def test_card_yaml_errors_are_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "card: data\nname: [unclosed\n", name="broken.yaml")
    with pytest.raises(InputError, match=r"broken\.yaml line \d+ is not valid YAML") as info:
        load_card(path)
    assert "\n" not in str(info.value)


# -- what plugins print goes to stderr ----------------------------------------------------

NOISY_MODULE = """
import medi2i

print("noisy plugin imported")


@medi2i.hookimpl
def register_methods(register):
    print("noisy plugin registers methods")


@medi2i.hookimpl
def register_metrics(register):
    print("noisy plugin registers metrics")


@medi2i.hookimpl
def register_commands(cli):
    print("noisy plugin registers commands")
"""


@pytest.fixture(scope="module")
def noisy_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a plugin distribution that prints, as pip would install it."""
    site = tmp_path_factory.mktemp("noisy-site")
    (site / "medi2i_noisy.py").write_text(NOISY_MODULE)
    info = site / "medi2i_noisy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: medi2i-noisy\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[medi2i]\nnoisy = medi2i_noisy\n")
    return site


def json_commands(folder: Path) -> dict[str, list[str]]:
    from medi2i.testing.dicom_series import write_series

    volume = write_volume_file(folder, "ct.nii.gz")
    write_series(folder / "series", np.zeros((8, 8, 4), dtype=np.float32))
    return {
        "plugins": ["plugins", "--json"],
        "methods": ["methods", "--json"],
        "dicom ls": ["dicom", "ls", "--json", str(folder / "series")],
        "evaluate": ["evaluate", "--json", "-p", str(volume), "-r", str(volume), "--metrics=mae"],
    }


@pytest.mark.parametrize("command", ["plugins", "methods", "dicom ls", "evaluate"])
def test_json_output_stays_clean_with_a_plugin_that_prints(
    noisy_site: Path, tmp_path: Path, command: str
) -> None:
    args = json_commands(tmp_path)[command]
    env = {k: v for k, v in os.environ.items() if k != "MEDI2I_DISABLE_PLUGIN_AUTOLOAD"}
    if "MEDI2I_LOAD_PLUGINS" in env:  # the suite's selection of plugins, and this one
        env["MEDI2I_LOAD_PLUGINS"] += ",noisy"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(noisy_site), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "medi2i", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)  # nothing but JSON
    assert "noisy plugin imported" in result.stderr
    if command == "plugins":
        names = [plugin["name"] for plugin in json.loads(result.stdout)["plugins"]]
        assert "noisy" in names


def test_plugins_print_to_stderr_in_process(
    installed: list[FakeEntryPoint],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("loud")

    @medi2i.hookimpl
    def register_methods(register: object) -> None:
        print("loud registers")

    module.register_methods = register_methods  # type: ignore[attr-defined]
    installed.append(FakeEntryPoint("loud", module))
    monkeypatch.delenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.delenv("MEDI2I_LOAD_PLUGINS", raising=False)

    assert Registry(load_plugins()).methods == {}  # the register hook ran, registering none
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "loud registers" in captured.err
