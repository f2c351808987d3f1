"""Plugin loading in-process, with fake entry points.

Built-ins come first; a plugin that fails to import, raises in its register hook,
misspells a hook or takes the wrong arguments is skipped and reported (or fatal when
strict); the autoload and selection switches decide what loads; a method id or a plugin
name used twice is an error; every load makes a new plugin manager.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import pytest

from medi2i.errors import PluginError
from medi2i.method import MethodClass
from medi2i.plugins import BUILTIN_PLUGINS, PluginWarning, add_installed_plugin, load_plugins
from medi2i.registry import Registry
from tests.fake_plugins import (
    Echo,
    FakeDistribution,
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


def test_builtins_come_first_and_are_marked_builtin(installed: list[FakeEntryPoint]) -> None:
    installed.append(FakeEntryPoint("echo", plugin("echo", register_methods=registering(Echo))))

    plugins = load_plugins()

    assert loaded_names(plugins) == [*BUILTIN_PLUGINS, "echo"]
    assert [info.builtin for info in plugins.infos] == [True, False]


def test_a_plugin_whose_register_hook_raises_is_skipped(installed: list[FakeEntryPoint]) -> None:
    def register_methods(register: Callable[[MethodClass], None]) -> None:
        raise RuntimeError("weights server is down")

    installed.append(FakeEntryPoint("echo", plugin("echo", register_methods=registering(Echo))))
    installed.append(FakeEntryPoint("flaky", plugin("flaky", register_methods=register_methods)))
    registry = Registry(load_plugins())

    with pytest.warns(PluginWarning, match=r"'flaky' failed during register_methods.*server"):
        assert registry.methods == {"echo": Echo}
    [failure] = registry.plugins.failures
    assert (failure.name, failure.stage) == ("flaky", "register_methods")
    assert "RuntimeError: weights server is down" in failure.error
    # where the plugin's code raised, for its author
    assert f"(at {__file__}, line " in failure.error


def test_a_failed_import_is_fatal_when_strict_is_asked(installed: list[FakeEntryPoint]) -> None:
    installed.append(FakeEntryPoint("broken", ImportError("no module named 'onnx'")))

    with pytest.raises(PluginError, match=r"'broken' failed during import.*onnx") as error:
        load_plugins(strict=True)
    assert "skipped" not in str(error.value)  # it was not: the command stops


def test_autoload_can_be_disabled(
    installed: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    installed.append(FakeEntryPoint("echo", plugin("echo", register_methods=registering(Echo))))
    monkeypatch.setenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "1")

    assert loaded_names(load_plugins()) == list(BUILTIN_PLUGINS)


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ("first", ["first"]),
        ("medi2i-second", ["second"]),
        ("first,second", ["first", "second"]),
        ("", []),
    ],
)
def test_load_plugins_loads_only_the_named_ones(
    installed: list[FakeEntryPoint],
    monkeypatch: pytest.MonkeyPatch,
    selection: str,
    expected: list[str],
) -> None:
    installed.append(
        FakeEntryPoint("first", plugin("first"), FakeDistribution("medi2i-first", "1"))
    )
    installed.append(
        FakeEntryPoint("second", plugin("second"), FakeDistribution("medi2i-second", "2"))
    )
    monkeypatch.setenv("MEDI2I_LOAD_PLUGINS", selection)

    assert loaded_names(load_plugins()) == [*BUILTIN_PLUGINS, *expected]


def test_a_selected_name_that_nothing_installed_has_is_reported(
    installed: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    installed.append(
        FakeEntryPoint("first", plugin("first"), FakeDistribution("medi2i-first", "1"))
    )
    monkeypatch.setenv("MEDI2I_LOAD_PLUGINS", "medi2i-first,frist")

    with pytest.warns(PluginWarning, match=r"'frist' failed during selection.*installed: first"):
        plugins = load_plugins()
    assert loaded_names(plugins) == [*BUILTIN_PLUGINS, "first"]
    with pytest.raises(PluginError, match="'frist' failed during selection"):
        load_plugins(strict=True)


def misspelled_plugin() -> types.ModuleType:
    return plugin("typo", register_method=registering(Echo))  # not register_methods


def test_a_misspelled_hook_is_reported_and_the_plugin_skipped(
    installed: list[FakeEntryPoint],
) -> None:
    installed.append(FakeEntryPoint("typo", misspelled_plugin()))
    installed.append(FakeEntryPoint("echo", plugin("echo", register_methods=registering(Echo))))

    with pytest.warns(PluginWarning, match="'typo' failed during validation"):
        plugins = load_plugins()

    assert loaded_names(plugins) == [*BUILTIN_PLUGINS, "echo"]
    [failure] = plugins.failures
    assert failure.stage == "validation"
    assert plugins.manager.get_plugin("typo") is None
    # what to rename it to, not pluggy's module repr and a line inside pluggy
    assert failure.error.startswith(
        "'register_method' (did you mean 'register_methods'?) is no medi2i hook; "
        "medi2i's hooks are register_commands, register_methods,"
    )
    assert "pluggy" not in failure.error


def test_a_misspelled_hook_is_fatal_in_strict_mode(
    installed: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    installed.append(FakeEntryPoint("typo", misspelled_plugin()))
    monkeypatch.setenv("MEDI2I_STRICT_PLUGINS", "1")

    with pytest.raises(PluginError, match=r"'typo' implements an unknown hook.*register_method"):
        load_plugins()


def test_a_misspelled_hook_named_by_a_workflow_says_what_to_rename(
    installed: list[FakeEntryPoint],
) -> None:
    plugins = load_plugins()
    installed.append(FakeEntryPoint("typo", misspelled_plugin()))

    with pytest.raises(PluginError) as caught:
        add_installed_plugin(plugins, "typo")

    assert str(caught.value).startswith(
        "plugin 'typo' cannot be registered: 'register_method' (did you mean "
        "'register_methods'?) is no medi2i hook"
    )
    assert plugins.manager.get_plugin("typo") is None


def test_a_hook_with_wrong_arguments_is_reported_and_skipped(
    installed: list[FakeEntryPoint],
) -> None:
    def register_methods(registrar: Callable[[MethodClass], None]) -> None:
        registrar(Echo)

    def register_metrics(register: Callable[[object], None]) -> None:
        register(types.SimpleNamespace(name="half-registered"))

    odd = plugin("odd", register_methods=register_methods, register_metrics=register_metrics)
    installed.append(FakeEntryPoint("odd", odd))

    # it imported: pluggy's check of the hook's arguments is what refused it
    with pytest.warns(PluginWarning, match="(?s)'odd' failed during hook validation.*registrar"):
        plugins = load_plugins()

    assert [(f.name, f.stage) for f in plugins.failures] == [("odd", "hook validation")]
    assert loaded_names(plugins) == list(BUILTIN_PLUGINS)
    assert plugins.manager.get_plugin("odd") is None, "a half-registered plugin was left behind"


def test_one_method_id_from_two_plugins_is_an_error_naming_both(
    installed: list[FakeEntryPoint],
) -> None:
    class EchoAgain(Echo):
        """Another echo."""

    installed.append(FakeEntryPoint("one", plugin("one", register_methods=registering(Echo))))
    installed.append(FakeEntryPoint("two", plugin("two", register_methods=registering(EchoAgain))))
    registry = Registry(load_plugins())

    assert "echo" not in registry.methods  # listed by neither; the others keep working
    with pytest.raises(
        PluginError, match=r"method 'echo' is registered by both plugin 'one' and plugin 'two'"
    ):
        registry.method("echo")


def test_one_method_id_twice_in_one_plugin_is_an_error_naming_the_plugin(
    installed: list[FakeEntryPoint],
) -> None:
    class EchoAgain(Echo):
        """Another echo."""

    installed.append(
        FakeEntryPoint("one", plugin("one", register_methods=registering(Echo, EchoAgain)))
    )
    registry = Registry(load_plugins())

    with pytest.warns(PluginWarning, match=r"plugin 'one' registers method 'echo' twice"):
        assert "echo" not in registry.methods  # the plugin is skipped, not every command
    with pytest.raises(PluginError, match=r"comes from plugin 'one', which failed to load"):
        registry.method("echo")


def test_two_plugins_with_one_name_are_an_error(installed: list[FakeEntryPoint]) -> None:
    installed.append(FakeEntryPoint("echo", plugin("echo_a"), FakeDistribution("medi2i-a", "1")))
    installed.append(FakeEntryPoint("echo", plugin("echo_b"), FakeDistribution("medi2i-b", "1")))

    with pytest.raises(PluginError, match="two plugins are named 'echo'"):
        load_plugins()


def test_every_plugin_manager_is_new(installed: list[FakeEntryPoint]) -> None:
    assert load_plugins().manager is not load_plugins().manager


def test_a_plugin_without_hook_implementations_is_warned_about(
    installed: list[FakeEntryPoint],
) -> None:
    """Forgetting @medi2i.hookimpl used to make a plugin's methods vanish in silence."""
    installed.append(FakeEntryPoint("bare", plugin("bare", bare=True)))
    with pytest.warns(PluginWarning, match=r"plugin 'bare' implements no medi2i hook"):
        load_plugins()


def test_a_plugin_that_runs_out_of_memory_is_not_skipped_silently() -> None:
    import pluggy

    from medi2i.plugins import PluginSet, PluginWarning

    plugins = PluginSet(manager=pluggy.PluginManager("medi2i"), strict=False)
    with pytest.raises(MemoryError):  # the command says "out of memory", not "no writer"
        plugins.fail("medi2i.builtins", "register_readers", MemoryError("600 MiB"))
    assert not plugins.failures
    with pytest.warns(PluginWarning, match="failed during import and was skipped"):
        plugins.fail("broken", "import", ImportError("no module named x"))  # still skipped
    assert plugins.skipped == {"broken"}
