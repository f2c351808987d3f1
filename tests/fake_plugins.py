"""Plugins installed in-process through fake entry points, for the plugin-loading tests.

``install_fake_entry_points`` makes ``importlib.metadata.entry_points`` return a list the
test fills with :class:`FakeEntryPoint` objects; :func:`plugin` and :func:`registering`
build the modules those entry points load.
"""

from __future__ import annotations

import importlib.metadata
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from medi2i import Method, Task, VolumeSpec, hookimpl
from medi2i.method import MethodClass
from medi2i.plugins import PluginSet

ENV_SWITCHES = ("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "MEDI2I_LOAD_PLUGINS", "MEDI2I_STRICT_PLUGINS")
"""The environment variables that change which plugins load; the tests clear them."""


class Echo(Method):
    """Echo: returns its input."""

    id = "echo"
    tasks = (Task.TRANSLATION,)
    input_spec = output_spec = VolumeSpec()

    def predict(self, image: Any, context: Any) -> torch.Tensor:
        return image  # type: ignore[no-any-return]


@dataclass
class FakeDistribution:
    name: str
    version: str


@dataclass
class FakeEntryPoint:
    """Quacks like ``importlib.metadata.EntryPoint`` for ``medi2i.plugins``."""

    name: str
    target: types.ModuleType | Exception
    dist: FakeDistribution | None = None

    @property
    def value(self) -> str:
        return f"fake_{self.name}"

    def load(self) -> types.ModuleType:
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


def plugin(name: str, *, bare: bool = False, **hooks: Callable[..., None]) -> types.ModuleType:
    """A plugin module with these hooks; with none, one that registers nothing (a plugin
    without any hook is warned about), unless ``bare``."""
    module = types.ModuleType(name)
    if not hooks and not bare:
        hooks = {"register_methods": registering()}
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def registering(*methods: MethodClass) -> Callable[[Callable[[MethodClass], None]], None]:
    def register_methods(register: Callable[[MethodClass], None]) -> None:
        for method in methods:
            register(method)

    return register_methods


def install_fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    """Clear the plugin switches; ``load_plugins`` then sees only the returned list."""
    for name in ENV_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    entry_points: list[FakeEntryPoint] = []

    def fake_entry_points(*, group: str) -> list[FakeEntryPoint]:
        return entry_points if group == "medi2i" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    return entry_points


def loaded_names(plugins: PluginSet) -> list[str]:
    return [info.name for info in plugins.infos]
