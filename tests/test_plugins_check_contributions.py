"""``medi2i plugins --check`` reports a loaded plugin that contributes nothing it meant
to: a hook function without ``@medi2i.hookimpl``, no hook at all, or a
``register_methods`` hook that registers no method. A plugin that only adds commands
is fine.
"""

from __future__ import annotations

import json
import types
import warnings
from collections.abc import Callable

import click
import pytest
from click.testing import CliRunner

from medi2i.cli.main import build_cli
from medi2i.method import MethodClass
from medi2i.plugins import CONTRIBUTION_CHECK, load_plugins
from tests.fake_plugins import (
    Echo,
    FakeEntryPoint,
    install_fake_entry_points,
    plugin,
    registering,
)


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    return install_fake_entry_points(monkeypatch)


def check(*arguments: str) -> click.testing.Result:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "implements no medi2i hook", at load
        plugins = load_plugins()
    return CliRunner().invoke(build_cli(plugins), ["plugins", "--check", *arguments])


def unmarked_module(name: str) -> types.ModuleType:
    """A plugin module whose register_methods lacks @medi2i.hookimpl."""
    module = types.ModuleType(name)

    def register_methods(register: Callable[[MethodClass], None]) -> None:
        register(Echo)

    module.register_methods = register_methods  # type: ignore[attr-defined]
    return module


def test_a_register_methods_hook_that_registers_nothing_fails_the_check(
    installed: list[FakeEntryPoint],
) -> None:
    installed.append(FakeEntryPoint("empty", plugin("medi2i_empty")))  # registers no method

    result = check()

    assert result.exit_code == 1, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("failed: ")]
    assert line.startswith(f"failed: empty ({CONTRIBUTION_CHECK}): module 'medi2i_empty': ")
    assert "register_methods hook at " in line
    assert "registers no method; call register(MyMethod) in it" in line
    assert "empty (failed)" in result.output


def test_a_hook_without_the_decorator_fails_the_check(installed: list[FakeEntryPoint]) -> None:
    installed.append(FakeEntryPoint("nodeco", unmarked_module("medi2i_nodeco")))

    result = check("--json")

    assert result.exit_code == 1, result.output
    [failure] = json.loads(result.output)["failures"]
    assert (failure["name"], failure["stage"]) == ("nodeco", CONTRIBUTION_CHECK)
    assert failure["error"].startswith("module 'medi2i_nodeco' defines register_methods() at ")
    assert f"{__file__}, line " in failure["error"]
    assert failure["error"].endswith("mark each hook function with @medi2i.hookimpl")


def test_a_plugin_without_any_hook_fails_the_check(installed: list[FakeEntryPoint]) -> None:
    installed.append(FakeEntryPoint("bare", plugin("medi2i_bare", bare=True)))

    result = check()

    assert result.exit_code == 1, result.output
    assert "failed: bare (contribution check): module 'medi2i_bare' implements no medi2i hook" in (
        result.output
    )


def test_a_plugin_that_adds_only_commands_or_registers_a_method_passes(
    installed: list[FakeEntryPoint],
) -> None:
    def register_commands(cli: click.Group) -> None:
        cli.add_command(click.Command("hello", callback=lambda: None))

    installed.append(
        FakeEntryPoint("bench", plugin("medi2i_bench", register_commands=register_commands))
    )
    installed.append(
        FakeEntryPoint("echo", plugin("medi2i_echo", register_methods=registering(Echo)))
    )

    result = check()

    assert result.exit_code == 0, result.output
    assert "failed" not in result.output


def test_an_unknown_method_names_the_loaded_plugin_that_registered_nothing(
    installed: list[FakeEntryPoint],
) -> None:
    from medi2i.registry import Registry, UnknownMethodError

    installed.append(FakeEntryPoint("empty", plugin("medi2i_empty")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry = Registry(load_plugins())
    with pytest.raises(UnknownMethodError) as caught:
        registry.method("my-method")
    assert "plugin 'empty' adds nothing: module 'medi2i_empty': its register_methods" in str(
        caught.value
    )
