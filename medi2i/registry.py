"""One registry of what the plugins provide: methods, readers, writers and metrics.

The registry calls each plugin's register hooks separately, so a plugin whose hook
raises is reported and skipped while the others still register. It is skipped whole:
a plugin whose ``register_methods`` raises, registers a class that breaks the
contract or returns what it should hand to ``register``, contributes no reader, writer
or metric either (nor commands to a command line built after that; one built before
keeps them, since the methods are registered only when first needed). Two plugins that
register the same name are an error that names both: for a method id when that method
is used (the other methods keep working), for a reader, writer or metric at once.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from medi2i.errors import PluginError, UnknownMethodError
from medi2i.plugins import (
    PluginSet,
    load_plugins,
    plugin_output_to_stderr,
    returned_value_reason,
)

if TYPE_CHECKING:
    from medi2i.io.base import VolumeReader, VolumeWriter
    from medi2i.method import MethodClass
    from medi2i.metrics import Metric


class _Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T")


class _Table(Generic[T]):
    """Items registered under unique names, remembering which plugin gave each."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: dict[str, T] = {}
        self.owners: dict[str, str] = {}
        self.clashes: dict[str, list[str]] = {}
        """Names two plugins register, with the plugins: used, they are an error that
        names both; every other name stays usable."""

    def add(self, name: str, item: T, owner: str) -> None:
        if name in self.clashes:
            self.clashes[name].append(owner)
        elif name in self.items:
            self.clashes[name] = [self.owners.pop(name), owner]
            del self.items[name]
        else:
            self.items[name] = item
            self.owners[name] = owner

    def require_unique(self, name: str) -> None:
        """Raise the clash error if two plugins register ``name``.

        Raises:
            PluginError: Names the plugins and how to keep one of them.
        """
        if name in self.clashes:
            owners = " and ".join(f"plugin {owner!r}" for owner in self.clashes[name])
            raise PluginError(
                f"{self.kind} {name!r} is registered by both {owners}; uninstall or disable "
                "one of them (MEDI2I_LOAD_PLUGINS selects which plugins load)"
            )


class Registry:
    """Methods, readers, writers and metrics contributed by the loaded plugins.

    Example:
        >>> registry = Registry()
        >>> method_cls = registry.method("intensity-inversion")  # doctest: +SKIP
    """

    def __init__(self, plugins: PluginSet | None = None) -> None:
        self.plugins = plugins if plugins is not None else load_plugins()
        self._methods: _Table[MethodClass] | None = None
        self._readers: _Table[VolumeReader] | None = None
        self._writers: _Table[VolumeWriter] | None = None
        self._metrics: _Table[Metric] | None = None
        self._lost_methods: dict[str, str] = {}
        """Method ids of plugins skipped for a failure, with the plugin: looking one up
        says that its plugin failed, not that nothing registers it."""

    def _collect(self) -> None:
        """Call every register hook of every plugin, then keep what came from the
        plugins that did not fail: a plugin that fails in one hook (a method class that
        breaks the contract) is skipped whole, so that none of its readers, writers or
        metrics is used either, as a plugin that fails to import contributes nothing."""
        tables: dict[str, _Table[Any]] = {hook: _Table(kind) for hook, kind, _ in _HOOKS}
        given: list[tuple[str, str, list[tuple[str, Any]]]] = []
        for hook_name, kind, key in _HOOKS:
            for impl in getattr(self.plugins.manager.hook, hook_name).get_hookimpls():
                owner = impl.plugin_name
                if owner in self.plugins.skipped:
                    continue
                collected: list[Any] = []
                problem: str | None = None
                try:
                    with plugin_output_to_stderr():
                        returned = impl.function(register=collected.append)
                    problem = returned_value_reason(hook_name, returned)
                    names, errors = ([], []) if problem else _checked_names(key, collected)
                    if problem is None and not errors:
                        _require_distinct(names, collected, owner, kind)
                except Exception as exc:  # isolate a broken plugin, as at import
                    errors = [exc]
                if errors:  # every broken class of the plugin, not only the first
                    for error in errors:
                        self.plugins.fail(owner, hook_name, error)
                    self._lost_methods.update(_declared_ids(hook_name, collected, owner))
                    continue
                if problem is not None:  # it returned its classes instead of registering
                    self.plugins.refuse(owner, hook_name, problem)
                    handed = [*collected, *_items(returned)]
                    self._lost_methods.update(_declared_ids(hook_name, handed, owner))
                    continue
                given.append((hook_name, owner, list(zip(names, collected, strict=True))))
        for hook_name, owner, named in given:
            if owner not in self.plugins.skipped:
                for name, item in named:
                    tables[hook_name].add(name, item, owner)
            elif hook_name == "register_methods":
                self._lost_methods.update((name, owner) for name, _ in named)
        for hook_name, table in tables.items():
            # a clash of method ids stops only that method; readers, writers and
            # metrics are used as a whole (by suffix, by preset), so a clash among
            # them stops everything, naming both plugins
            if hook_name != "register_methods" or self.plugins.strict:
                for name in table.clashes:  # (in strict mode a method clash too)
                    table.require_unique(name)
        for name, reader in tables["register_readers"].items.items():
            _READER_OWNERS[type(reader), name] = tables["register_readers"].owners[name]
        self._methods = tables["register_methods"]
        self._readers = tables["register_readers"]
        self._writers = tables["register_writers"]
        self._metrics = tables["register_metrics"]

    @property
    def methods(self) -> dict[str, MethodClass]:
        """Registered method classes by id."""
        if self._methods is None:
            self._collect()
        assert self._methods is not None
        return self._methods.items

    @property
    def readers(self) -> dict[str, VolumeReader]:
        """Registered volume readers by name, in registration order."""
        if self._readers is None:
            self._collect()
        assert self._readers is not None
        return self._readers.items

    @property
    def writers(self) -> dict[str, VolumeWriter]:
        """Registered volume writers by name, in registration order."""
        if self._writers is None:
            self._collect()
        assert self._writers is not None
        return self._writers.items

    @property
    def metrics(self) -> dict[str, Metric]:
        """Registered metrics by name."""
        if self._metrics is None:
            self._collect()
        assert self._metrics is not None
        return self._metrics.items

    @property
    def method_clashes(self) -> dict[str, list[str]]:
        """Method ids that two or more plugins register, with those plugins; none of
        them is usable until one plugin goes."""
        if self._methods is None:
            self._collect()
        assert self._methods is not None
        return dict(self._methods.clashes)

    def method_owner(self, method_id: str) -> str:
        """Name of the plugin that registered ``method_id``."""
        self.method(method_id)
        assert self._methods is not None
        return self._methods.owners[method_id]

    def method(self, method_id: str) -> MethodClass:
        """The method class registered under ``method_id``.

        Raises:
            UnknownMethodError: No plugin registers that id; the message lists those
                that exist.
            OptionsError: ``method_id`` is not a ``str`` (a method instance or class);
                the message says what to pass instead.
        """
        from medi2i.method_references import require_method_id

        require_method_id(method_id)
        methods = self.methods
        assert self._methods is not None
        self._methods.require_unique(method_id)
        try:
            return methods[method_id]
        except KeyError:
            if method_id in self._lost_methods:
                failures = {f.name: f for f in self.plugins.failures}
                owner = self._lost_methods[method_id]
                reason = failures[owner].error if owner in failures else "an error"
                raise PluginError(
                    f"method {method_id!r} comes from plugin {owner!r}, which failed to load "
                    f"and was skipped: {reason}; fix the plugin (`medi2i methods` shows the "
                    "failures of every plugin's registration)"
                ) from None
            known = ", ".join(sorted(self.methods)) or "none"
            guess = close_method_ids(method_id, self.methods)
            hint = f"; did you mean {' or '.join(map(repr, guess))}?" if guess else ""
            raise UnknownMethodError(
                f"no method {method_id!r} is registered{hint} (known: {known}); "
                f"{self._idle_plugins()}`medi2i methods` lists them, `medi2i plugins` shows "
                "the installed plugins; install the method's plugin, or load it with "
                "`medi2i --plugin NAME ...`"
            ) from None

    def _idle_plugins(self) -> str:
        """What a method error says of loaded plugins that registered nothing they meant
        to (:func:`medi2i.plugins.contribution_problems`), the method's perhaps."""
        from medi2i.plugins import contribution_problems

        owners = {self.method_owner(mid) for mid in self.methods}
        owners.update(owner for names in self.method_clashes.values() for owner in names)
        idle = contribution_problems(self.plugins, owners)
        return "".join(
            f"plugin {failure.name!r} adds nothing: {failure.error}; " for failure in idle
        )


def close_method_ids(method_id: str, known: Iterable[str]) -> list[str]:
    """Up to three registered ids close to the misspelt ``method_id``, closest first
    (letter case ignored).

    Example:
        >>> close_method_ids("zscroe", ["zscore", "percentile", "nyul"])
        ['zscore']
    """
    by_folded = {name.lower(): name for name in sorted(known)}
    matches = difflib.get_close_matches(method_id.lower(), list(by_folded), n=3, cutoff=0.6)
    return [by_folded[match] for match in matches]


_READER_OWNERS: dict[tuple[type, str], str] = {}
"""The plugin that registered each reader, by the reader's class and name: the readers
reach :func:`medi2i.read_volume` as a bare list, and its message about a reader that
fails should name the plugin to report it to. Classes and names are few, so it stays
small however many registries a long batch makes."""


def reader_owner(reader: VolumeReader) -> str | None:
    """The plugin that registered ``reader`` in the latest registry that holds it, or
    ``None`` for a reader no registry holds (one a caller made itself)."""
    return _READER_OWNERS.get((type(reader), reader.name))


def _method_id(method_cls: MethodClass) -> str:
    from medi2i.method import Method

    if not (isinstance(method_cls, type) and issubclass(method_cls, Method)):
        raise TypeError(f"register_methods expects Method subclasses, got {method_cls!r}")
    try:
        method_cls.validate_class()
    except TypeError as exc:
        # the traceback ends in medi2i's own checks; the author needs their class
        raise TypeError(f"{exc} (class {class_location(method_cls)})") from exc
    return method_cls.id


def class_location(cls: type) -> str:
    """``module.Class``, with the file and line that define it when Python can tell
    (not for a class made at run time, or one whose source is not installed)."""
    where = f"{cls.__module__}.{cls.__qualname__}"
    try:
        source = inspect.getsourcefile(cls)
        _, line = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return where
    return f"{where}, defined at {source}, line {line}" if source else where


def _checked_names(
    key: Callable[[Any], str], collected: list[Any]
) -> tuple[list[str], list[Exception]]:
    """The name of each registered item, and the errors of all the items that ``key``
    refuses: ``medi2i plugins --check`` lists every broken class, not the first."""
    names: list[str] = []
    errors: list[Exception] = []
    for item in collected:
        try:
            names.append(key(item))
        except Exception as exc:
            errors.append(exc)
    return names, errors


def _require_distinct(names: list[str], items: list[Any], owner: str, kind: str) -> None:
    """Refuse one plugin's hook registering a name twice (the plugin is skipped)."""
    for name in names:
        if names.count(name) > 1:
            same = [_item_location(item) for n, item in zip(names, items, strict=True) if n == name]
            times = "twice" if len(same) == 2 else f"{len(same)} times"
            raise PluginError(
                f"plugin {owner!r} registers {kind} {name!r} {times} "
                f"({'; '.join(same)}); give each of its {kind}s its own id"
            )


def _item_location(item: object) -> str:
    """Where a registered item is defined: its class (for a method, the class itself)."""
    return class_location(item if isinstance(item, type) else type(item))


def _declared_ids(hook_name: str, collected: list[Any], owner: str) -> dict[str, str]:
    """The ids that the method classes a failed ``register_methods`` call gave declare
    (read as plain attributes: the classes may be broken)."""
    if hook_name != "register_methods":
        return {}
    ids = (getattr(item, "id", None) for item in collected)
    return {method_id: owner for method_id in ids if isinstance(method_id, str)}


def _items(returned: object) -> list[Any]:
    """What a hook returned instead of registering it, as a list (for the ids of the
    methods it meant to register)."""
    return list(returned) if isinstance(returned, (list, tuple, set)) else [returned]


def _name(item: _Named) -> str:
    return item.name


_HOOKS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("register_methods", "method", _method_id),
    ("register_readers", "reader", _name),
    ("register_writers", "writer", _name),
    ("register_metrics", "metric", _name),
)
"""The register hooks the registry calls, what each registers, and its name."""
