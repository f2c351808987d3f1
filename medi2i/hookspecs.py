"""The hooks a medi2i plugin may implement.

A plugin is a module with functions marked ``@medi2i.hookimpl`` whose names are the
hooks below. Every hook is a *register* hook: medi2i calls it with a ``register``
callable and the plugin hands over what it provides. Built-in readers, writers and
metrics are registered through the same hooks, so a plugin is on equal footing with
the core. A hook returns ``None``: one that returns what it should have registered
(``return [MyMethod]``) is reported and its plugin skipped, as when a hook raises.

Keep the module that holds the hook implementations cheap to import (no ``torch`` or
``monai`` at its top level): medi2i imports it on every command, ``medi2i --help``
included. Import heavy modules inside the hook, as the reference plugin does.

A plugin declares the plugin API it was written for with a module-level
``MEDI2I_PLUGIN_API`` string, ``"MAJOR.MINOR"``, in the module its entry point names.
medi2i supports the API of :data:`PLUGIN_API_VERSION`: a plugin that declares another
MAJOR version is reported and skipped (fatal in strict mode), as a plugin that fails to
import is; one that declares nothing is loaded, and ``medi2i plugins`` shows its API as
"undeclared".

Example::

    import medi2i

    MEDI2I_PLUGIN_API = "2.0"

    @medi2i.hookimpl
    def register_methods(register):
        from .method import MyMethod

        register(MyMethod)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from medi2i.io.base import VolumeReader, VolumeWriter
    from medi2i.method import MethodClass
    from medi2i.metrics import Metric

PLUGIN_API_VERSION = "2.0"
"""The plugin API this medi2i provides, ``"MAJOR.MINOR"``: the hooks below and what they
receive. MINOR grows when something is added; MAJOR when a plugin written for the
previous version may no longer work."""

PLUGIN_API_ATTRIBUTE = "MEDI2I_PLUGIN_API"
"""The module-level name under which a plugin declares the API it was written for."""

PROJECT = "medi2i"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_methods(register: Callable[[MethodClass], None]) -> None:
    """Register translation, harmonization or super-resolution methods.

    Args:
        register: Call it once per :class:`medi2i.Method` subclass (the class, not an
            instance). Its ``id`` must be unique across all plugins.
    """


@hookspec
def register_readers(register: Callable[[VolumeReader], None]) -> None:
    """Register volume readers (file formats, DICOM folders, ...).

    Args:
        register: Call it with a :class:`medi2i.VolumeReader` instance. Readers are
            asked in registration order (built-ins first) whether they can read a path.
    """


@hookspec
def register_writers(register: Callable[[VolumeWriter], None]) -> None:
    """Register volume writers.

    Args:
        register: Call it with a :class:`medi2i.VolumeWriter` instance.
    """


@hookspec
def register_metrics(register: Callable[[Metric], None]) -> None:
    """Register image-quality metrics used by evaluation and benchmarks.

    Args:
        register: Call it with a :class:`medi2i.Metric` instance. Its ``name`` must
            be unique.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``medi2i`` command line.

    Called each time a command line is built (:func:`medi2i.cli.main.build_cli`), with a
    new top-level group: medi2i's own commands, which it adds through this hook too, are
    in it already; then each plugin's are added, in the order the plugins were loaded.
    Make a command group (one that holds subcommands) inside the hook, a new one each
    call, so that what is added to it belongs to that command line only.

    Args:
        cli: The top-level click group; add commands with ``@cli.command()`` or
            ``cli.add_command(...)``.
    """
