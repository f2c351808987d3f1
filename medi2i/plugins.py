"""Plugin discovery: a fresh plugin manager per run, built-ins first, then entry points.

Plugins are found through the ``medi2i`` entry-point group. A plugin that fails to
import or to register is reported (its name and the error) and skipped, so the rest
keeps working; strict mode makes any such failure fatal.

Environment switches:

``MEDI2I_DISABLE_PLUGIN_AUTOLOAD``
    Set to ``1`` to load no entry-point plugins (built-ins only).
``MEDI2I_LOAD_PLUGINS``
    Comma-separated entry-point or distribution names: load only these. An empty
    value loads none.
``MEDI2I_STRICT_PLUGINS``
    Set to ``1`` to turn a plugin that fails to load or register into an error.
"""

from __future__ import annotations

import importlib.metadata
import os
import traceback
import warnings
from dataclasses import dataclass, field

import pluggy

from medi2i import hookspecs
from medi2i.errors import PluginError

ENTRY_POINT_GROUP = "medi2i"
BUILTIN_PLUGINS = ("medi2i.builtins",)


class PluginWarning(UserWarning):
    """A plugin failed to load or register and was skipped."""


@dataclass(frozen=True)
class PluginInfo:
    """What ``medi2i plugins`` shows about one loaded plugin."""

    name: str
    version: str | None
    distribution: str | None
    hooks: tuple[str, ...]
    builtin: bool


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that was skipped: its name, the stage that failed and the error."""

    name: str
    stage: str
    error: str

    def message(self) -> str:
        return (
            f"plugin {self.name!r} failed during {self.stage} and was skipped: {self.error}"
            " (set MEDI2I_STRICT_PLUGINS=1 to make this fatal)"
        )


@dataclass
class PluginSet:
    """A plugin manager with the plugins loaded into it and the ones that failed."""

    manager: pluggy.PluginManager
    strict: bool
    infos: list[PluginInfo] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)

    def fail(self, name: str, stage: str, exc: BaseException) -> None:
        """Record a failed plugin; raise in strict mode, warn otherwise."""
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        failure = PluginFailure(name=name, stage=stage, error=error)
        if self.strict:
            raise PluginError(failure.message().split(" (set")[0]) from exc
        self.failures.append(failure)
        warnings.warn(failure.message(), PluginWarning, stacklevel=3)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def load_plugins(*, strict: bool | None = None) -> PluginSet:
    """Build a new plugin manager with the built-ins and the installed plugins.

    Args:
        strict: Make a failing plugin an error. ``None`` reads ``MEDI2I_STRICT_PLUGINS``.

    Returns:
        The loaded plugins, with the failures that were skipped.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    plugins = PluginSet(manager, env_flag("MEDI2I_STRICT_PLUGINS") if strict is None else strict)
    for module_name in BUILTIN_PLUGINS:
        module = __import__(module_name, fromlist=["_"])
        manager.register(module, name=module_name)
        plugins.infos.append(_info(manager, module, module_name, None, None, builtin=True))
    if not env_flag("MEDI2I_DISABLE_PLUGIN_AUTOLOAD"):
        for entry_point in _selected_entry_points():
            _load_entry_point(plugins, entry_point)
    _check_pending(plugins)
    return plugins


def _selected_entry_points() -> list[importlib.metadata.EntryPoint]:
    entry_points = sorted(
        importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name
    )
    wanted = os.environ.get("MEDI2I_LOAD_PLUGINS")
    if wanted is None:
        return list(entry_points)
    names = {name.strip() for name in wanted.split(",") if name.strip()}
    return [ep for ep in entry_points if ep.name in names or _dist_name(ep) in names]


def _dist_name(entry_point: importlib.metadata.EntryPoint) -> str | None:
    return entry_point.dist.name if entry_point.dist is not None else None


def _load_entry_point(plugins: PluginSet, entry_point: importlib.metadata.EntryPoint) -> None:
    name = entry_point.name
    if plugins.manager.get_plugin(name) is not None:
        other = plugins.manager.get_plugin(name)
        raise PluginError(
            f"two plugins are named {name!r}: {_describe(entry_point)} and "
            f"{getattr(other, '__name__', other)!r}; uninstall one of them"
        )
    try:
        module = entry_point.load()
        plugins.manager.register(module, name=name)
    except Exception as exc:  # a broken plugin must not take the others down
        plugins.fail(name, "import", exc)
        return
    version = entry_point.dist.version if entry_point.dist is not None else None
    plugins.infos.append(
        _info(plugins.manager, module, name, version, _dist_name(entry_point), builtin=False)
    )


def _describe(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = _dist_name(entry_point)
    return f"{entry_point.value!r} from distribution {dist!r}" if dist else repr(entry_point.value)


def _info(
    manager: pluggy.PluginManager,
    module: object,
    name: str,
    version: str | None,
    distribution: str | None,
    *,
    builtin: bool,
) -> PluginInfo:
    hooks = tuple(sorted(caller.name for caller in manager.get_hookcallers(module) or []))
    return PluginInfo(name, version, distribution, hooks, builtin)


def _check_pending(plugins: PluginSet) -> None:
    """Catch hook implementations whose name matches no hook (a misspelling)."""
    try:
        plugins.manager.check_pending()
    except pluggy.PluginValidationError as exc:
        name = plugins.manager.get_name(exc.plugin) or repr(exc.plugin)
        if plugins.strict or name in BUILTIN_PLUGINS:
            raise PluginError(f"plugin {name!r} implements an unknown hook: {exc}") from exc
        plugins.manager.unregister(exc.plugin)
        plugins.infos = [info for info in plugins.infos if info.name != name]
        plugins.fail(name, "validation", exc)
        _check_pending(plugins)
