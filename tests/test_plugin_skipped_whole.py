"""A skipped plugin contributes nothing, as the README promises.

The registry skipped only the hook that failed: a plugin whose register_methods
registered a class that breaks the contract was reported as skipped, yet its reader
still read the user's files (and one whose command hook failed still had its methods).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from medi2i import Method, Task, VolumeReader, VolumeSpec
from medi2i.cli.main import build_cli
from medi2i.plugins import PluginWarning, load_plugins
from medi2i.registry import Registry
from tests.fake_plugins import (
    Echo,
    FakeEntryPoint,
    install_fake_entry_points,
    plugin,
    registering,
)


class NoId(Method):
    """Breaks the contract: no id."""

    tasks = (Task.TRANSLATION,)
    input_spec = output_spec = VolumeSpec()


class OwnFormat(VolumeReader):
    name = "own-format"
    description = "a made-up format (.own)"
    suffixes = (".own",)

    def read(self, path: Path):  # type: ignore[no-untyped-def]
        raise AssertionError("a skipped plugin's reader must not read")


def registering_reader(register: Callable[[VolumeReader], None]) -> None:
    register(OwnFormat())


def failing(*args: object, **kwargs: object) -> None:
    raise RuntimeError("broken hook")


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    return install_fake_entry_points(monkeypatch)


def test_a_plugin_with_a_broken_method_has_no_reader_either(
    installed: list[FakeEntryPoint], tmp_path: Path
) -> None:
    installed.append(
        FakeEntryPoint(
            "half",
            plugin("half", register_methods=registering(NoId), register_readers=registering_reader),
        )
    )
    registry = Registry(load_plugins())
    with pytest.warns(PluginWarning, match="'half' failed during register_methods"):
        readers = registry.readers  # what read_volume asks, before any method is needed
    assert "own-format" not in readers
    assert "nifti" in readers
    assert [failure.name for failure in registry.plugins.failures] == ["half"]


@pytest.mark.parametrize("hook", ["register_readers", "register_writers", "register_metrics"])
def test_a_plugin_failing_in_any_register_hook_has_no_methods(
    installed: list[FakeEntryPoint], hook: str
) -> None:
    hooks = {"register_methods": registering(Echo), hook: failing}
    installed.append(FakeEntryPoint("half", plugin("half", **hooks)))
    registry = Registry(load_plugins())
    with pytest.warns(PluginWarning, match=f"'half' failed during {hook}"):
        assert "echo" not in registry.methods
    assert "nifti" in registry.readers


def test_a_plugin_whose_command_hook_fails_adds_no_command_and_no_method(
    installed: list[FakeEntryPoint],
) -> None:
    def register_commands(cli: click.Group) -> None:
        cli.add_command(click.Command("half-command", callback=lambda: None))
        raise RuntimeError("broken after adding one command")

    installed.append(
        FakeEntryPoint(
            "half",
            plugin("half", register_methods=registering(Echo), register_commands=register_commands),
        )
    )
    plugins = load_plugins()
    with pytest.warns(PluginWarning, match="'half' failed during register_commands"):
        cli = build_cli(plugins)
    assert "half-command" not in cli.commands
    assert "predict" in cli.commands
    assert "echo" not in Registry(plugins).methods
    listed = CliRunner().invoke(cli, ["methods", "--json"])
    assert listed.exit_code == 0, listed.output
    assert '"echo"' not in listed.stdout


def test_a_command_hook_that_returns_its_command_is_a_failure(
    installed: list[FakeEntryPoint],
) -> None:
    """A command returned instead of added was dropped without a word."""

    def register_commands(cli: click.Group) -> click.Command:
        return click.Command("returned-command", callback=lambda: None)

    installed.append(
        FakeEntryPoint(
            "half",
            plugin("half", register_methods=registering(Echo), register_commands=register_commands),
        )
    )
    plugins = load_plugins()
    with pytest.warns(
        PluginWarning,
        match=r"'half' failed during register_commands .*call cli\.add_command\(command\) for "
        "each command instead of returning it",
    ):
        cli = build_cli(plugins)
    assert "returned-command" not in cli.commands
    assert "echo" not in Registry(plugins).methods  # skipped whole, as when it raises
