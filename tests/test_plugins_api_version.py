"""The plugin API version: public, declared by plugins and checked when they load.

A plugin that declares another major version (or a malformed one) is reported and
skipped, fatal when strict, and cannot be selected by a workflow; one of the same major
version, or that declares none, loads; ``medi2i plugins`` shows both versions. The
first-party plugins declare the current one and use the public ``hookimpl`` marker.
"""

from __future__ import annotations

import json
import types

import pytest
from click.testing import CliRunner

import medi2i
from medi2i import hookimpl, hookspecs
from medi2i.cli.main import build_cli
from medi2i.errors import PluginError
from medi2i.plugins import (
    API_CHECK,
    BUILTIN_PLUGINS,
    PluginWarning,
    add_installed_plugin,
    load_plugins,
)
from medi2i.registry import Registry
from tests.fake_plugins import (
    Echo,
    FakeEntryPoint,
    install_fake_entry_points,
    loaded_names,
    plugin,
    registering,
)


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    """The entry points ``load_plugins`` will see; tests append to it."""
    return install_fake_entry_points(monkeypatch)


def declaring(name: str, api: object) -> types.ModuleType:
    """A plugin module that registers :class:`Echo` and declares ``MEDI2I_PLUGIN_API``."""
    module = plugin(name, register_methods=registering(Echo))
    module.MEDI2I_PLUGIN_API = api  # type: ignore[attr-defined]
    return module


def test_the_plugin_api_version_is_public_and_major_dot_minor() -> None:
    assert medi2i.PLUGIN_API_VERSION == hookspecs.PLUGIN_API_VERSION
    assert "PLUGIN_API_VERSION" in medi2i.__all__
    major, minor = medi2i.PLUGIN_API_VERSION.split(".")
    assert major.isdigit()
    assert minor.isdigit()


def test_a_plugin_declaring_another_major_api_is_reported_and_skipped(
    installed: list[FakeEntryPoint],
) -> None:
    installed.append(FakeEntryPoint("old", declaring("old", "1.4")))
    installed.append(FakeEntryPoint("echo", plugin("echo", register_methods=registering(Echo))))

    with pytest.warns(PluginWarning, match="plugin 'old' failed during plugin API check") as caught:
        plugins = load_plugins()

    assert loaded_names(plugins) == [*BUILTIN_PLUGINS, "echo"]
    assert plugins.manager.get_plugin("old") is None
    [failure] = plugins.failures
    assert (failure.name, failure.stage) == ("old", API_CHECK)
    assert "plugin API 1.4" in failure.error
    assert f"supports plugin API {medi2i.PLUGIN_API_VERSION}" in failure.error
    [warning] = caught
    assert "\n" not in str(warning.message)
    assert Registry(plugins).methods == {"echo": Echo}


def test_a_plugin_declaring_another_major_api_is_fatal_in_strict_mode(
    installed: list[FakeEntryPoint],
) -> None:
    installed.append(FakeEntryPoint("future", declaring("future", "3.0")))

    with pytest.raises(PluginError, match=r"'future' failed during plugin API check.*API 3\.0"):
        load_plugins(strict=True)


def test_strict_plugins_on_the_command_line_refuses_an_api_mismatch(
    installed: list[FakeEntryPoint],
) -> None:
    installed.append(FakeEntryPoint("old", declaring("old", "1.0")))
    with pytest.warns(PluginWarning, match="'old' failed during plugin API check"):
        plugins = load_plugins()

    result = CliRunner().invoke(build_cli(plugins), ["--strict-plugins", "plugins"])
    assert result.exit_code == PluginError.exit_code
    assert "plugins failed to load: old (--strict-plugins is set)" in result.output
    assert CliRunner().invoke(build_cli(plugins), ["plugins"]).exit_code == 0


@pytest.mark.parametrize("api", [2.0, "2", "v2.0", "2.0.1", ""])
def test_a_plugin_api_that_is_not_major_dot_minor_is_reported_and_skipped(
    installed: list[FakeEntryPoint], api: object
) -> None:
    installed.append(FakeEntryPoint("odd", declaring("odd", api)))

    with pytest.warns(PluginWarning, match="'odd' failed during plugin API check"):
        plugins = load_plugins()

    assert loaded_names(plugins) == list(BUILTIN_PLUGINS)
    [failure] = plugins.failures
    assert "'MAJOR.MINOR' string" in failure.error


def test_plugins_of_the_same_major_api_or_none_declared_are_loaded(
    installed: list[FakeEntryPoint],
) -> None:
    major = medi2i.PLUGIN_API_VERSION.split(".")[0]
    installed.append(FakeEntryPoint("current", declaring("current", medi2i.PLUGIN_API_VERSION)))
    installed.append(FakeEntryPoint("newer", declaring("newer", f"{major}.99")))
    installed.append(FakeEntryPoint("silent", plugin("silent")))

    with pytest.warns(
        PluginWarning, match=rf"'newer' declares plugin API {major}\.99, newer"
    ) as seen:
        plugins = load_plugins()

    assert len(seen) == 1  # the current and the undeclared ones load without a word
    apis = {info.name: (info.api, info.api_shown) for info in plugins.infos}
    assert apis == {
        "medi2i.builtins": (medi2i.PLUGIN_API_VERSION, medi2i.PLUGIN_API_VERSION),
        "current": (medi2i.PLUGIN_API_VERSION, medi2i.PLUGIN_API_VERSION),
        "newer": (f"{major}.99", f"{major}.99"),
        "silent": (None, "undeclared"),
    }
    assert plugins.failures == []


def test_the_plugins_command_shows_the_supported_and_the_declared_apis(
    installed: list[FakeEntryPoint],
) -> None:
    installed.append(FakeEntryPoint("current", declaring("current", medi2i.PLUGIN_API_VERSION)))
    installed.append(FakeEntryPoint("silent", plugin("silent")))
    installed.append(FakeEntryPoint("old", declaring("old", "1.0")))
    with pytest.warns(PluginWarning):
        plugins = load_plugins()
    cli = build_cli(plugins)

    listing = CliRunner().invoke(cli, ["plugins", "--json"])
    assert listing.exit_code == 0, listing.output
    document = json.loads(listing.output)
    assert document["plugin_api"] == medi2i.PLUGIN_API_VERSION
    apis = {entry["name"]: entry["api"] for entry in document["plugins"]}
    assert apis == {
        "medi2i.builtins": medi2i.PLUGIN_API_VERSION,
        "current": medi2i.PLUGIN_API_VERSION,
        "silent": "undeclared",
    }
    [failure] = document["failures"]
    assert (failure["name"], failure["stage"]) == ("old", API_CHECK)

    table = CliRunner().invoke(cli, ["plugins"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0] == f"plugin API: {medi2i.PLUGIN_API_VERSION}"
    assert lines[1].split() == ["plugin", "version", "api", "hooks"]
    assert lines[3].split()[:3] == ["current", "?", medi2i.PLUGIN_API_VERSION]
    assert lines[4].split()[:3] == ["silent", "?", "undeclared"]
    assert "failed: old (plugin API check): it declares plugin API 1.0" in table.output


def test_a_workflow_cannot_select_a_plugin_of_another_major_api(
    installed: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    installed.append(FakeEntryPoint("old", declaring("old", "1.0")))
    monkeypatch.setenv("MEDI2I_LOAD_PLUGINS", "")  # loaded by name only, as a workflow does
    plugins = load_plugins()

    with pytest.raises(PluginError, match=r"plugin 'old' cannot be loaded: .*plugin API 1\.0"):
        add_installed_plugin(plugins, "old")
    assert plugins.manager.get_plugin("old") is None


def test_the_first_party_plugins_declare_the_current_api() -> None:
    plugins = load_plugins()
    first_party = [info for info in plugins.infos if not info.builtin]

    assert first_party, "the tests load the first-party plugins"
    assert {info.name: info.api for info in first_party} == {
        info.name: medi2i.PLUGIN_API_VERSION for info in first_party
    }


def test_the_public_hookimpl_marker_is_the_one_plugins_use() -> None:
    assert medi2i.hookimpl is hookimpl
    assert medi2i.hookimpl.project_name == "medi2i"
