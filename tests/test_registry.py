"""Tests of the registry: lookups, name clashes and isolation of bad registrations."""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from medi2i import Method, MethodClass, Task, VolumeSpec, hookimpl
from medi2i.errors import PluginError, UnknownMethodError
from medi2i.plugins import PluginWarning
from medi2i.testing import isolated_registry


class Alpha(Method):
    """Alpha: returns its input."""

    id = "alpha"
    tasks = (Task.TRANSLATION,)
    input_spec = output_spec = VolumeSpec()

    def predict(self, image: Any, context: Any) -> torch.Tensor:
        return image  # type: ignore[no-any-return]


class Beta(Alpha):
    """Beta: returns its input."""

    id = "beta"


class NoId(Method):
    """A method that forgot its id."""

    tasks = (Task.TRANSLATION,)
    input_spec = output_spec = VolumeSpec()

    def predict(self, image: Any, context: Any) -> torch.Tensor:
        return image  # type: ignore[no-any-return]


class BadId(Alpha):
    """A method whose id breaks the naming rule."""

    id = "Bad_Id"


class NoPredict(Method):
    """A method that leaves the abstract predict unimplemented."""

    id = "no-predict"
    tasks = (Task.TRANSLATION,)
    input_spec = output_spec = VolumeSpec()


class WordVersion(Alpha):
    """A method whose version the saved-model check could not compare."""

    id = "word-version"
    version = "one"


def plugin(name: str, **hooks: Callable[..., None]) -> types.ModuleType:
    """A plugin module named ``name`` implementing ``hooks`` (hook name → function)."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def methods_plugin(name: str, *registered: object) -> types.ModuleType:
    def register_methods(register: Callable[[object], None]) -> None:
        for item in registered:
            register(item)

    return plugin(name, register_methods=register_methods)


def test_a_method_is_found_by_id_with_its_owner() -> None:
    registry = isolated_registry(methods_plugin("first", Alpha), methods_plugin("second", Beta))

    assert registry.methods == {"alpha": Alpha, "beta": Beta}
    assert registry.method("beta") is Beta
    assert registry.method_owner("alpha") == "first"


def test_an_unknown_method_error_lists_the_known_ids() -> None:
    registry = isolated_registry(methods_plugin("first", Beta, Alpha))

    with pytest.raises(UnknownMethodError, match=r"'gamma'.*known: alpha, beta"):
        registry.method("gamma")


def test_a_misspelt_method_id_gets_the_closest_registered_ids() -> None:
    registry = isolated_registry(methods_plugin("first", Beta, Alpha))

    with pytest.raises(UnknownMethodError, match=r"'alhpa' is registered; did you mean 'alpha'\?"):
        registry.method("alhpa")
    with pytest.raises(UnknownMethodError, match=r"did you mean 'beta'\?"):
        registry.method("BETA")
    with pytest.raises(UnknownMethodError) as unrelated:
        registry.method("cyclegan")
    assert "did you mean" not in str(unrelated.value)


def test_a_misspelt_method_on_the_command_line_is_suggested(tmp_path: Path) -> None:
    from tests.bad_input_cases import blobs, invoke, nifti

    source = nifti(tmp_path / "in.nii.gz", blobs())
    args = ["predict", str(source), str(tmp_path / "out.nii.gz"), "--method", "zscroe"]
    result = invoke(args)
    assert result.exit_code != 0
    assert "did you mean 'zscore'?" in result.output


def test_an_unknown_method_error_says_when_none_is_registered() -> None:
    with pytest.raises(UnknownMethodError, match="known: none"):
        isolated_registry().method("alpha")


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("alpha", "expects Method subclasses"),
        (torch.nn.Identity, "expects Method subclasses"),
        (NoId, "does not set 'id'"),
        (BadId, "must be lowercase"),
        (NoPredict, "'no-predict' does not implement the abstract method(s) predict"),
        (WordVersion, "version 'one' is not MAJOR.MINOR.PATCH"),
    ],
)
def test_a_bad_registration_is_isolated_as_a_failure(bad: object, problem: str) -> None:
    registry = isolated_registry(methods_plugin("good", Alpha), methods_plugin("bad", bad))

    with pytest.warns(PluginWarning, match="'bad' failed during register_methods"):
        methods = registry.methods

    assert methods == {"alpha": Alpha}
    [failure] = registry.plugins.failures
    assert (failure.name, failure.stage) == ("bad", "register_methods")
    assert problem in failure.error


def test_a_failing_plugin_registers_nothing_even_what_came_before_the_failure() -> None:
    def register_methods(register: Callable[[MethodClass], None]) -> None:
        register(Beta)
        raise RuntimeError("model zoo unreachable")

    registry = isolated_registry(
        methods_plugin("good", Alpha), plugin("flaky", register_methods=register_methods)
    )

    with pytest.warns(PluginWarning, match="model zoo unreachable"):
        assert registry.methods == {"alpha": Alpha}
    # asked for, its method says that its plugin failed, not that it is not installed
    with pytest.raises(
        PluginError, match=r"'beta' comes from plugin 'flaky', which failed .*model zoo"
    ):
        registry.method("beta")


def test_a_bad_registration_is_an_error_in_strict_mode() -> None:
    registry = isolated_registry(methods_plugin("bad", NoId), strict=True)

    with pytest.raises(PluginError, match="'bad' failed during register_methods"):
        _ = registry.methods


@pytest.mark.parametrize(
    ("hook", "instead"),
    [
        ("register_methods", "register(cls) for each method class"),
        ("register_readers", "register(reader) for each reader"),
        ("register_writers", "register(writer) for each writer"),
        ("register_metrics", "register(metric) for each metric"),
    ],
)
def test_a_hook_that_returns_what_it_should_register_is_a_failure(hook: str, instead: str) -> None:
    """``return [MyMethod]`` registered nothing and passed ``plugins --check``, strict too."""

    def returning(register: Callable[[object], None]) -> list[object]:
        return [Beta]

    registry = isolated_registry(
        methods_plugin("good", Alpha), plugin("returner", **{hook: returning})
    )
    with pytest.warns(PluginWarning, match=f"'returner' failed during {hook}") as caught:
        assert registry.methods == {"alpha": Alpha}
    message = str(caught[0].message)
    assert "\n" not in message
    assert f"its {hook} hook returns [<class " in message
    assert f"call {instead} instead of returning it" in message
    if hook == "register_methods":  # asked for, it says why it is missing
        with pytest.raises(PluginError, match=r"'beta' comes from plugin 'returner'"):
            registry.method("beta")
    strict = isolated_registry(plugin("returner", **{hook: returning}), strict=True)
    with pytest.raises(PluginError, match=f"'returner' failed during {hook}: its {hook} hook"):
        _ = strict.methods


def test_one_method_id_from_two_plugins_is_an_error_naming_both() -> None:
    class AlphaAgain(Alpha):
        """Another alpha."""

    registry = isolated_registry(
        methods_plugin("first", Alpha), methods_plugin("second", AlphaAgain, Beta)
    )

    assert registry.method("beta") is Beta  # a clash stops only the id it is about
    assert registry.method_clashes == {"alpha": ["first", "second"]}
    strict = isolated_registry(
        methods_plugin("first", Alpha), methods_plugin("second", AlphaAgain), strict=True
    )
    with pytest.raises(PluginError, match=r"'alpha'.*'first'.*'second'"):
        _ = strict.methods  # --strict-plugins: any clash is fatal
    with pytest.raises(PluginError, match=r"'alpha'.*'first'.*'second'"):
        registry.method("alpha")


def test_readers_writers_and_metrics_are_tables_by_name() -> None:
    def item(name: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(name=name)

    def register_readers(register: Callable[[object], None]) -> None:
        register(item("nifti"))
        register(item("nrrd"))

    registry = isolated_registry(
        plugin(
            "formats",
            register_readers=register_readers,
            register_writers=lambda register: register(item("nifti")),
            register_metrics=lambda register: register(item("mae")),
        )
    )

    assert list(registry.readers) == ["nifti", "nrrd"]
    assert list(registry.writers) == ["nifti"]
    assert list(registry.metrics) == ["mae"]


def test_one_metric_name_from_two_plugins_is_an_error() -> None:
    def register_metrics(register: Callable[[object], None]) -> None:
        register(types.SimpleNamespace(name="mae"))

    registry = isolated_registry(
        plugin("first", register_metrics=register_metrics),
        plugin("second", register_metrics=register_metrics),
    )

    with pytest.raises(PluginError, match=r"metric 'mae'.*'first'.*'second'"):
        _ = registry.metrics


def test_hooks_are_called_once_per_registry() -> None:
    calls: list[str] = []

    def register_methods(register: Callable[[MethodClass], None]) -> None:
        calls.append("methods")
        register(Alpha)

    registry = isolated_registry(plugin("counted", register_methods=register_methods))

    assert registry.method("alpha") is Alpha
    assert registry.methods == {"alpha": Alpha}
    assert calls == ["methods"]
