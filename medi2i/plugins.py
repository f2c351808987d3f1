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

A plugin's code runs (import, register hooks) with ``sys.stdout`` sent to ``sys.stderr``
(:func:`plugin_output_to_stderr`), so that a plugin that prints cannot corrupt the
machine-readable output (``--json``) that commands write to stdout.

A workflow's ``plugins`` key selects among what is installed, by name
(:func:`add_installed_plugin`); it never imports a module it names, so validating a
workflow file runs no code the file brings along.

Plugin API: a plugin's entry-point module may declare the plugin API it was written
for, ``MEDI2I_PLUGIN_API = "2.0"`` (``"MAJOR.MINOR"``; see :mod:`medi2i.hookspecs`).
One that declares a MAJOR version other than that of
:data:`~medi2i.hookspecs.PLUGIN_API_VERSION`, or a value that is not such a string, is
reported and skipped like a plugin that fails to import (fatal in strict mode). One that
declares a newer MINOR version is loaded with a warning (hooks or options it relies on
may be missing). One that declares nothing is loaded; its API is listed as "undeclared".
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata
import inspect
import os
import re
import sys
import traceback
import warnings
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

import pluggy

from medi2i import hookspecs
from medi2i.errors import PluginError, out_of_memory
from medi2i.hookspecs import PLUGIN_API_ATTRIBUTE, PLUGIN_API_VERSION

ENTRY_POINT_GROUP = "medi2i"
BUILTIN_PLUGINS = ("medi2i.builtins",)
OPT_IN_PLUGINS = ("medi2i.testing.example_methods", "medi2i.testing.trainable_examples")
"""Plugins shipped inside medi2i that load only when a workflow names them (examples)."""


class PluginWarning(UserWarning):
    """A plugin failed to load or register and was skipped."""


UNDECLARED_API = "undeclared"
"""How the API of a plugin that declares none is shown."""
API_CHECK = "plugin API check"
"""The stage a plugin that declares an unsupported plugin API fails in."""
HOOK_VALIDATION = "hook validation"
"""The stage a plugin whose hook pluggy refuses (arguments the hook does not have)
fails in: it imported, so "import" would send its author to the wrong place."""
_API_PATTERN = re.compile(r"(\d+)\.(\d+)")


@dataclass(frozen=True)
class PluginInfo:
    """What ``medi2i plugins`` shows about one loaded plugin.

    ``api`` is the plugin API the plugin declares (``MEDI2I_PLUGIN_API``), ``None`` when
    it declares none; medi2i's built-in plugins have the current one.
    """

    name: str
    version: str | None
    distribution: str | None
    hooks: tuple[str, ...]
    builtin: bool
    api: str | None = None

    @property
    def api_shown(self) -> str:
        """The declared API, or ``"undeclared"``."""
        return self.api if self.api is not None else UNDECLARED_API


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that was skipped: its name, the stage that failed and the error."""

    name: str
    stage: str
    error: str

    def message(self, *, fatal: bool = False) -> str:
        if fatal:
            return f"plugin {self.name!r} failed during {self.stage}: {self.error}"
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

    @property
    def skipped(self) -> frozenset[str]:
        """Names of the plugins that failed: they contribute nothing, not even what
        their other hooks register."""
        return frozenset(failure.name for failure in self.failures)

    def fail(self, name: str, stage: str, exc: BaseException) -> None:
        """Record a failed plugin; raise in strict mode, warn otherwise. Running out of
        memory is the machine's limit, not the plugin's fault: it is raised, so that the
        command says so instead of going on without the plugin's readers and writers."""
        if out_of_memory(exc):
            raise exc
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        # where in the plugin's code it broke, so its author can go there: medi2i's own
        # frames (the checks that refused what the plugin registered) are no help to them
        frames = [
            frame
            for frame in traceback.extract_tb(exc.__traceback__)
            if not _inside_medi2i(frame.filename)
        ]
        if frames:
            error += f" (at {frames[-1].filename}, line {frames[-1].lineno})"
        self._record(PluginFailure(name=name, stage=stage, error=error), exc)

    def refuse(self, name: str, stage: str, reason: str) -> None:
        """Record a plugin skipped for ``reason``; raise in strict mode, warn otherwise."""
        self._record(PluginFailure(name=name, stage=stage, error=reason), None)

    def _record(self, failure: PluginFailure, cause: BaseException | None) -> None:
        if self.strict:
            raise PluginError(failure.message(fatal=True)) from cause
        self.failures.append(failure)
        warnings.warn(failure.message(), PluginWarning, stacklevel=4)


_MEDI2I_FOLDER = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _inside_medi2i(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_MEDI2I_FOLDER)


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
        plugins.infos.append(
            _info(manager, module, module_name, None, None, builtin=True, api=PLUGIN_API_VERSION)
        )
    if not env_flag("MEDI2I_DISABLE_PLUGIN_AUTOLOAD"):
        for entry_point in _selected_entry_points(plugins):
            _load_entry_point(plugins, entry_point)
    _check_pending(plugins)
    return plugins


def _selected_entry_points(plugins: PluginSet) -> list[importlib.metadata.EntryPoint]:
    entry_points = sorted(
        importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name
    )
    wanted = os.environ.get("MEDI2I_LOAD_PLUGINS")
    if wanted is None:
        return list(entry_points)
    names = {name.strip() for name in wanted.split(",") if name.strip()}
    known = {ep.name for ep in entry_points} | {_dist_name(ep) for ep in entry_points}
    installed = ", ".join(sorted(ep.name for ep in entry_points)) or "none"
    for name in sorted(names - known):
        # a typo here would otherwise load nothing and say nothing
        plugins.refuse(
            name,
            "selection",
            "MEDI2I_LOAD_PLUGINS names it, but no installed medi2i plugin has that "
            f"entry-point or distribution name (installed: {installed}); "
            "fix the name, or install the plugin (pip install -e <its folder>)",
        )
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
        with plugin_output_to_stderr():
            module = entry_point.load()
    except Exception as exc:  # a broken plugin must not take the others down
        plugins.fail(name, "import", exc)
        return
    api, problem = declared_api(module)
    if problem is not None:
        plugins.refuse(name, API_CHECK, problem)
        return
    try:
        plugins.manager.register(module, name=name)
    except pluggy.PluginValidationError as exc:  # imported fine; pluggy refused a hook
        plugins.refuse(name, HOOK_VALIDATION, hook_arguments_reason(plugins.manager, module, exc))
        return
    except Exception as exc:
        plugins.fail(name, "registration", exc)
        return
    version = entry_point.dist.version if entry_point.dist is not None else None
    plugins.infos.append(
        _info(
            plugins.manager,
            module,
            name,
            version,
            _dist_name(entry_point),
            builtin=False,
            api=api,
        )
    )


def declared_api(plugin: object) -> tuple[str | None, str | None]:
    """The plugin API a plugin module declares, and why it cannot be loaded, if so.

    Args:
        plugin: The module (or object) an entry point names.

    Returns:
        ``(api, problem)``: the declared ``MEDI2I_PLUGIN_API`` (``None`` when the plugin
        declares none), and ``None`` or a one-line reason to skip the plugin: a MAJOR
        version other than that of :data:`~medi2i.hookspecs.PLUGIN_API_VERSION`, or a
        value that is not a ``"MAJOR.MINOR"`` string.
    """
    declared = getattr(plugin, PLUGIN_API_ATTRIBUTE, None)
    if declared is None:
        return None, None
    match = _API_PATTERN.fullmatch(declared) if isinstance(declared, str) else None
    if match is None:
        return None, (
            f"{PLUGIN_API_ATTRIBUTE} = {declared!r} is not a 'MAJOR.MINOR' string; this "
            f"medi2i supports plugin API {PLUGIN_API_VERSION}"
        )
    supported = PLUGIN_API_VERSION.split(".")[0]
    if match.group(1) != supported:
        return declared, (
            f"it declares plugin API {declared} ({PLUGIN_API_ATTRIBUTE}); this medi2i "
            f"supports plugin API {PLUGIN_API_VERSION}; install a release of the plugin "
            f"written for plugin API {supported}.x"
        )
    return declared, None


@contextlib.contextmanager
def plugin_output_to_stderr() -> Iterator[None]:
    """Send what plugin code prints to stderr: stdout carries machine-readable output."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def installed_plugin_names() -> list[str]:
    """Names a workflow's ``plugins`` key may use: the installed entry points of group
    ``medi2i`` (entry-point and distribution names) and :data:`OPT_IN_PLUGINS`."""
    names: set[str] = set(OPT_IN_PLUGINS)
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        names.add(entry_point.name)
        names.update(filter(None, [_dist_name(entry_point)]))
    return sorted(names)


def add_installed_plugin(plugins: PluginSet, name: str) -> bool:
    """Load the installed plugin called ``name`` into ``plugins`` unless it is loaded.

    ``name`` is an entry-point name or a distribution name of group ``medi2i``, or one
    of :data:`OPT_IN_PLUGINS`; nothing else is imported, so a name can only select
    code that was installed, never bring new code in.

    Returns:
        Whether a plugin was added (a registry made before must be made again).

    Raises:
        PluginError: No installed plugin has that name (the message lists those that
            do), or the plugin fails to load.
    """
    if name in OPT_IN_PLUGINS:
        if plugins.manager.get_plugin(name) is not None:
            return False
        with plugin_output_to_stderr():
            module = importlib.import_module(name)  # shipped with medi2i, like the built-ins
        return _register_selected(plugins, name, module, None, "medi2i")
    entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    matches = [ep for ep in entry_points if name in (ep.name, _dist_name(ep))]
    if not matches:
        raise PluginError(
            f"no installed medi2i plugin is named {name!r} "
            f"(installed: {', '.join(installed_plugin_names())}); install its distribution "
            "or use its entry-point name (`medi2i plugins` lists them)"
        )
    added = False
    for entry_point in matches:
        if plugins.manager.get_plugin(entry_point.name) is not None:
            continue
        try:
            with plugin_output_to_stderr():
                module = entry_point.load()
        except Exception as exc:
            raise PluginError(f"plugin {name!r} cannot be loaded: {exc}") from None
        version = entry_point.dist.version if entry_point.dist is not None else None
        dist = _dist_name(entry_point)
        added |= _register_selected(plugins, entry_point.name, module, version, dist)
    return added


def _register_selected(
    plugins: PluginSet, name: str, module: object, version: str | None, dist: str | None
) -> bool:
    api, problem = declared_api(module)
    if problem is not None:
        raise PluginError(f"plugin {name!r} cannot be loaded: {problem}")
    try:
        plugins.manager.register(module, name=name)
        plugins.manager.check_pending()
    except Exception as exc:  # invalid hooks: report with the name the workflow used
        reason: object = exc
        if isinstance(exc, pluggy.PluginValidationError) and exc.plugin is module:
            if plugins.manager.get_plugin(name) is None:  # refused by register: arguments
                reason = hook_arguments_reason(plugins.manager, module, exc)
            else:
                reason = unknown_hooks_reason(plugins.manager, module)
        if plugins.manager.get_plugin(name) is not None:
            plugins.manager.unregister(name=name)
        raise PluginError(f"plugin {name!r} cannot be registered: {reason}") from None
    plugins.infos.append(
        _info(plugins.manager, module, name, version, dist, builtin=False, api=api)
    )
    return True


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
    api: str | None,
) -> PluginInfo:
    hooks = tuple(sorted(caller.name for caller in manager.get_hookcallers(module) or []))
    if api is not None and _minor(api) > _minor(PLUGIN_API_VERSION):
        warnings.warn(
            PluginWarning(
                f"plugin {name!r} declares plugin API {api}, newer than this medi2i's "
                f"{PLUGIN_API_VERSION}: what it needs from the newer API may be missing; "
                "upgrade medi2i"
            ),
            stacklevel=2,
        )
    if not hooks and not builtin:
        warnings.warn(
            PluginWarning(
                f"plugin {name!r} implements no medi2i hook, so it adds nothing; mark its "
                "hook functions with @medi2i.hookimpl"
            ),
            stacklevel=2,
        )
    return PluginInfo(name, version, distribution, hooks, builtin, api)


_REGISTER_INSTEAD = {
    "register_methods": "register(cls) for each method class",
    "register_readers": "register(reader) for each reader",
    "register_writers": "register(writer) for each writer",
    "register_metrics": "register(metric) for each metric",
    "register_commands": "cli.add_command(command) for each command",
}
"""How each hook hands over what it provides, for a hook that returns it instead."""


def returned_value_reason(hook: str, returned: object) -> str | None:
    """Why a hook that returned ``returned`` is refused, or ``None`` when it returned
    nothing: medi2i takes only what a hook hands to ``register`` (or adds to ``cli``),
    so a hook that returns its classes instead of registering them added nothing, in
    silence.

    Example:
        >>> returned_value_reason("register_methods", None) is None
        True
    """
    if returned is None:
        return None
    shown = repr(returned)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return (
        f"its {hook} hook returns {shown}, which medi2i ignores; call "
        f"{_REGISTER_INSTEAD.get(hook, 'register(...)')} instead of returning it"
    )


def _minor(api: str) -> int:
    """The MINOR of a ``"MAJOR.MINOR"`` API version (checked by :func:`declared_api`)."""
    return int(api.split(".")[1])


def _check_pending(plugins: PluginSet) -> None:
    """Catch hook implementations whose name matches no hook (a misspelling)."""
    try:
        plugins.manager.check_pending()
    except pluggy.PluginValidationError as exc:
        name = plugins.manager.get_name(exc.plugin) or repr(exc.plugin)
        reason = unknown_hooks_reason(plugins.manager, exc.plugin)
        if plugins.strict or name in BUILTIN_PLUGINS:
            raise PluginError(f"plugin {name!r} implements an unknown hook: {reason}") from exc
        plugins.manager.unregister(exc.plugin)
        plugins.infos = [info for info in plugins.infos if info.name != name]
        plugins.refuse(name, "validation", reason)
        _check_pending(plugins)


def unknown_hooks_reason(manager: pluggy.PluginManager, plugin: object) -> str:
    """Why ``plugin`` fails ``check_pending``: which of its hooks medi2i does not have,
    the nearest hook name to each, and medi2i's hooks (pluggy's message names the
    module's repr and a line inside pluggy, neither of which helps its author)."""
    callers = vars(manager.hook)
    known = sorted(hook for hook, caller in callers.items() if caller.has_spec())
    unknown = sorted(
        hook
        for hook, caller in callers.items()
        if not caller.has_spec() and any(i.plugin is plugin for i in caller.get_hookimpls())
    )
    parts = []
    for hook in unknown:
        close = difflib.get_close_matches(hook, known, n=1)
        parts.append(f"{hook!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    verb = "is no medi2i hook" if len(parts) == 1 else "are no medi2i hooks"
    return f"{', '.join(parts)} {verb}; medi2i's hooks are {', '.join(known)}"


def hook_arguments_reason(
    manager: pluggy.PluginManager, plugin: object, exc: pluggy.PluginValidationError
) -> str:
    """Why pluggy refused ``plugin``'s hook implementations, in one line: the hook whose
    parameters it does not have, where that function is, and the parameter names the
    hook reference gives (pluggy's three lines name only a line inside pluggy)."""
    problems = []
    for attr in dir(plugin):
        options = manager.parse_hookimpl_opts(plugin, attr)
        caller = getattr(manager.hook, attr, None)
        spec = getattr(caller, "spec", None)
        if options is None or spec is None:
            continue
        function = getattr(plugin, attr)
        taken = _parameter_names(function)
        unknown = [arg for arg in taken if arg not in spec.argnames]
        if not unknown:
            continue
        expected = ", ".join(spec.argnames)
        problems.append(
            f"its hook {attr}({', '.join(taken)}) at {_where(function)} takes "
            f"{', '.join(map(repr, unknown))}, which {attr} does not pass; name its "
            f"parameter{'s' if len(spec.argnames) > 1 else ''} as the hook reference does: "
            f"def {attr}({expected})"
        )
    if not problems:  # not an argument mismatch: pluggy's own words, on one line
        return " ".join(str(exc).split())
    return "; ".join(problems)


def _parameter_names(function: object) -> list[str]:
    """The named parameters of a hook implementation (``*args``/``**kwargs`` aside)."""
    try:
        parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _where(function: object) -> str:
    """``file, line N`` of a function, or its name when Python cannot tell."""
    code = getattr(function, "__code__", None)
    if code is None:
        return repr(function)
    return f"{code.co_filename}, line {code.co_firstlineno}"


CONTRIBUTION_CHECK = "contribution check"
"""The stage of a loaded plugin that contributes nothing it meant to (``plugins --check``)."""


def contribution_problems(
    plugins: PluginSet, method_owners: Collection[str]
) -> list[PluginFailure]:
    """The loaded plugins that contribute nothing they meant to, each as a failure
    naming its module and what to do: a function named like a medi2i hook but not
    marked ``@medi2i.hookimpl`` (medi2i never calls it), no hook at all, or a
    ``register_methods`` hook that registered no method. A plugin that only adds
    commands (``register_commands``) or readers is fine.

    Args:
        plugins: The loaded plugins, after their register hooks ran (a registry's
            ``methods``), so that failed ones are already among ``plugins.failures``.
        method_owners: The plugins that registered a method (one that clashes too).

    Returns:
        One failure per such plugin, in load order.
    """
    hooks = sorted(name for name, caller in vars(plugins.manager.hook).items() if caller.has_spec())
    problems = []
    for info in plugins.infos:
        module = plugins.manager.get_plugin(info.name)
        if info.builtin or info.name in plugins.skipped or module is None:
            continue
        reason = _contribution_reason(plugins.manager, module, info, hooks, method_owners)
        if reason is not None:
            problems.append(PluginFailure(info.name, CONTRIBUTION_CHECK, reason))
    return problems


def _contribution_reason(
    manager: pluggy.PluginManager,
    module: object,
    info: PluginInfo,
    hooks: list[str],
    method_owners: Collection[str],
) -> str | None:
    where = f"module {getattr(module, '__name__', module)!r}"
    unmarked = [
        f"{name}() at {_where(getattr(module, name))}"
        for name in hooks
        if callable(getattr(module, name, None))
        and manager.parse_hookimpl_opts(module, name) is None
        and getattr(getattr(module, name), f"{hookspecs.PROJECT}_spec", None) is None
    ]
    if unmarked:
        return (
            f"{where} defines {', '.join(unmarked)} without @medi2i.hookimpl, so medi2i never "
            "calls it; mark each hook function with @medi2i.hookimpl"
        )
    if not info.hooks:
        return (
            f"{where} implements no medi2i hook, so the plugin adds nothing; define its hooks "
            f"({', '.join(hooks)}) with @medi2i.hookimpl, or uninstall it"
        )
    if "register_methods" in info.hooks and info.name not in method_owners:
        impls = manager.hook.register_methods.get_hookimpls()
        found = [impl.function for impl in impls if impl.plugin_name == info.name]
        at = f" at {_where(found[0])}" if found else ""
        return (
            f"{where}: its register_methods hook{at} registers no method; call "
            "register(MyMethod) in it for each method class, or remove the hook"
        )
    return None
