"""Tests of the plugin itself: ``medi2i bench`` comes through the ``register_commands`` hook."""

from __future__ import annotations

import subprocess
import sys

import click
import medi2i_bench
import pluggy
from click.testing import CliRunner

import medi2i.builtins
from medi2i import PLUGIN_API_VERSION, hookspecs
from medi2i.cli.main import build_cli
from medi2i.plugins import PluginSet


def plugin_set(*plugins: object) -> PluginSet:
    """medi2i's built-in plugin and ``plugins``, nothing installed."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(medi2i.builtins, name="medi2i.builtins")
    for plugin in plugins:
        manager.register(plugin, name=getattr(plugin, "__name__", "plugin"))
    return PluginSet(manager, strict=True)


def test_the_hook_adds_the_bench_command_group() -> None:
    cli = build_cli(plugin_set(medi2i_bench))

    bench = cli.commands["bench"]
    assert isinstance(bench, click.Group)
    assert set(bench.commands) == {"run", "prepare"}
    result = CliRunner().invoke(cli, ["bench", "run", "--help"])
    assert result.exit_code == 0, result.output
    assert "--method" in result.output


def test_a_command_line_without_the_plugin_has_no_bench() -> None:
    cli = build_cli(plugin_set())

    assert "bench" not in cli.commands
    assert "cards" in cli.commands  # medi2i's own card check stays in the core
    result = CliRunner().invoke(cli, ["bench", "run"])
    assert result.exit_code == 2
    assert "No such command 'bench'" in result.output


def test_each_command_line_gets_its_own_bench_group() -> None:
    first, second = build_cli(plugin_set(medi2i_bench)), build_cli(plugin_set(medi2i_bench))

    assert first.commands["bench"] is not second.commands["bench"]


def test_declares_the_plugin_api_it_was_written_for() -> None:
    assert medi2i_bench.MEDI2I_PLUGIN_API == PLUGIN_API_VERSION


def test_hook_module_imports_no_benchmark_code() -> None:
    code = (
        "import sys, medi2i_bench; "
        "print(sorted(m for m in sys.modules if m.startswith(('torch', 'scipy', 'medi2i_bench.'))))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert imported.stdout.strip() == "[]"
