"""One registry of what the plugins provide: methods, readers, writers and metrics.

The registry calls each plugin's register hook separately, so a plugin whose hook
raises is reported and skipped while the others still register. Two plugins that
register the same name are an error that names both.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from medi2i.errors import PluginError, UnknownMethodError
from medi2i.plugins import PluginSet, load_plugins, plugin_output_to_stderr

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

    def add(self, name: str, item: T, owner: str) -> None:
        if name in self.items:
            raise PluginError(
                f"{self.kind} {name!r} is registered by both plugin {self.owners[name]!r} "
                f"and plugin {owner!r}; uninstall or disable one of them "
                "(MEDI2I_LOAD_PLUGINS selects which plugins load)"
            )
        self.items[name] = item
        self.owners[name] = owner


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

    def _collect(self, hook_name: str, kind: str, key: Callable[[T], str]) -> _Table[T]:
        table: _Table[T] = _Table(kind)
        hook = getattr(self.plugins.manager.hook, hook_name)
        for impl in hook.get_hookimpls():
            owner = impl.plugin_name
            collected: list[T] = []
            try:
                with plugin_output_to_stderr():
                    impl.function(register=collected.append)
                names = [key(item) for item in collected]
            except Exception as exc:  # isolate a broken plugin, as at import
                self.plugins.fail(owner, hook_name, exc)
                continue
            for name, item in zip(names, collected, strict=True):
                table.add(name, item, owner)
        return table

    @property
    def methods(self) -> dict[str, MethodClass]:
        """Registered method classes by id."""
        if self._methods is None:
            self._methods = self._collect("register_methods", "method", _method_id)
        return self._methods.items

    @property
    def readers(self) -> dict[str, VolumeReader]:
        """Registered volume readers by name, in registration order."""
        if self._readers is None:
            self._readers = self._collect("register_readers", "reader", _name)
            for name, reader in self._readers.items.items():
                _READER_OWNERS[type(reader), name] = self._readers.owners[name]
        return self._readers.items

    @property
    def writers(self) -> dict[str, VolumeWriter]:
        """Registered volume writers by name, in registration order."""
        if self._writers is None:
            self._writers = self._collect("register_writers", "writer", _name)
        return self._writers.items

    @property
    def metrics(self) -> dict[str, Metric]:
        """Registered metrics by name."""
        if self._metrics is None:
            self._metrics = self._collect("register_metrics", "metric", _name)
        return self._metrics.items

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
        try:
            return self.methods[method_id]
        except KeyError:
            known = ", ".join(sorted(self.methods)) or "none"
            raise UnknownMethodError(
                f"no method {method_id!r} is registered (known: {known}); "
                "`medi2i methods` lists them, `medi2i plugins` shows the installed plugins; "
                "install the method's plugin, or load it with `medi2i --plugin NAME ...`"
            ) from None


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


def _name(item: _Named) -> str:
    return item.name
