"""A method class refused at registration is named where its author defined it.

The refusal (no ``id``, an ``Options`` default of the wrong type) was reported "at"
medi2i's own ``method.py``, the line of the check that refused it, which no plugin
author can fix; it now names the class, its module, and its file and line.
"""

from __future__ import annotations

import inspect

import pytest

from medi2i import Method, Options, Task, VolumeSpec
from medi2i.plugins import PluginWarning, load_plugins
from medi2i.registry import Registry
from tests.fake_plugins import FakeEntryPoint, install_fake_entry_points, plugin, registering


class NoId(Method):
    """Forgets its id."""

    tasks = (Task.TRANSLATION,)
    input_spec = output_spec = VolumeSpec()


class WrongDefault(Method):
    """Gives a default of the wrong type."""

    id = "wrong-default"
    tasks = (Task.TRANSLATION,)
    input_spec = output_spec = VolumeSpec()

    class Options(Options):
        steps: int = "ten"  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("method_cls", "said"),
    [(NoId, "does not set 'id'"), (WrongDefault, "the default of Options field steps")],
    ids=["no-id", "wrong-default"],
)
def test_a_refused_method_is_named_where_it_is_defined(
    monkeypatch: pytest.MonkeyPatch, method_cls: type[Method], said: str
) -> None:
    installed = install_fake_entry_points(monkeypatch)
    installed.append(FakeEntryPoint("bad", plugin("bad", register_methods=registering(method_cls))))
    registry = Registry(load_plugins())
    with pytest.warns(PluginWarning, match="'bad' failed during register_methods"):
        assert "wrong-default" not in registry.methods
    [failure] = registry.plugins.failures
    line = inspect.getsourcelines(method_cls)[1]
    assert said in failure.error
    assert (
        f"(class {__name__}.{method_cls.__qualname__}, defined at {__file__}, line {line})"
        in failure.error
    )
    assert "method.py" not in failure.error
    assert "registry.py" not in failure.error
