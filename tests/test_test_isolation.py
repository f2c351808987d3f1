"""The test suite is isolated from plugins installed beside medi2i, and such a plugin
that is broken is reported, never fatal.

A throwaway distribution whose module raises at import is "installed" by putting its
``.dist-info`` (with an ``entry_points.txt`` in group ``medi2i``) on ``sys.path``,
which is all ``importlib.metadata`` looks at.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from medi2i.cli.main import build_cli
from medi2i.plugins import PluginWarning, load_plugins
from medi2i.registry import Registry

REPOSITORY = Path(__file__).resolve().parents[1]
BROKEN = "env-broken"


def first_party_entry_points() -> set[str]:
    """The names in each ``[project.entry-points.medi2i]`` table under ``plugins/``."""
    names: set[str] = set()
    for project in sorted((REPOSITORY / "plugins").glob("*/pyproject.toml")):
        table = project.read_text().split("[project.entry-points.medi2i]", 1)[1]
        for line in table.split("\n[", 1)[0].splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                names.add(line.split("=", 1)[0].strip().strip('"'))
    return names


@pytest.fixture
def broken_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A distribution in group ``medi2i`` whose module raises on import, on ``sys.path``."""
    site = tmp_path / "site"
    info = site / "medi2i_env_broken-0.0.1.dist-info"
    info.mkdir(parents=True)
    (site / "medi2i_env_broken.py").write_text(
        "raise ImportError(\"No module named 'a_dependency_never_installed'\")\n"
    )
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: medi2i-env-broken\nVersion: 0.0.1\n"
    )
    (info / "entry_points.txt").write_text(f"[medi2i]\n{BROKEN} = medi2i_env_broken\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "medi2i_env_broken", raising=False)
    return BROKEN


def test_the_session_loads_exactly_the_first_party_plugins() -> None:
    selected = {name for name in os.environ["MEDI2I_LOAD_PLUGINS"].split(",") if name}
    assert selected == first_party_entry_points()
    assert "MEDI2I_DISABLE_PLUGIN_AUTOLOAD" not in os.environ


def test_a_broken_environment_plugin_does_not_reach_the_tests(broken_plugin: str) -> None:
    """The way first-party tests build a registry is untouched: no warning, no failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry = Registry(load_plugins())

    loaded = {info.name for info in registry.plugins.infos if not info.builtin}
    assert loaded == first_party_entry_points()
    assert registry.plugins.failures == []
    assert broken_plugin not in loaded
    assert "medi2i_env_broken" not in sys.modules, "the broken module was imported"


def test_a_broken_environment_plugin_is_reported_and_not_fatal(
    broken_plugin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(
        "MEDI2I_LOAD_PLUGINS", raising=False
    )  # as a user's environment: load everything

    with pytest.warns(PluginWarning, match=f"plugin '{broken_plugin}' failed during import"):
        plugins = load_plugins()

    [failure] = plugins.failures
    assert (failure.name, failure.stage) == (broken_plugin, "import")
    assert "a_dependency_never_installed" in failure.error
    assert first_party_entry_points() <= {info.name for info in plugins.infos}
    cli = build_cli(plugins)
    listing = CliRunner().invoke(cli, ["plugins", "--json"])
    assert listing.exit_code == 0, listing.output
    assert [f["name"] for f in json.loads(listing.output)["failures"]] == [broken_plugin]
    table = CliRunner().invoke(cli, ["plugins"])
    assert f"failed: {broken_plugin} (import)" in table.output
    methods = CliRunner().invoke(cli, ["methods", "--json"])
    assert methods.exit_code == 0, methods.output
    assert json.loads(methods.output), "the other plugins' methods are still listed"


def test_monkeypatched_switches_are_restored_to_the_session_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = os.environ["MEDI2I_LOAD_PLUGINS"]
    with monkeypatch.context() as patch:
        patch.setenv("MEDI2I_LOAD_PLUGINS", "")
        assert [info.name for info in load_plugins().infos if not info.builtin] == []
    assert os.environ["MEDI2I_LOAD_PLUGINS"] == before
