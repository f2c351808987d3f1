"""Entry point of the ``medi2i`` command: the group, error handling and plugin loading.

:func:`main` loads the plugins and builds the command line afresh on every run
(:func:`build_cli`); every subcommand, medi2i's own included, is added by a plugin's
``register_commands`` hook.

User errors (:class:`medi2i.errors.Medi2iError`) print one line and exit non-zero;
``--debug`` (or ``MEDI2I_DEBUG=1``) shows the traceback instead. An interrupted command
(Ctrl-C, or SIGTERM through :func:`stop_on_sigterm`) names the outputs it completed
(:func:`interrupted_message`); an unexpected error ends with one line saying whose code
raised it (:func:`unexpected_error_summary`).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Collection, Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import click

from medi2i import __version__
from medi2i.errors import Medi2iError, PluginError, Terminated, out_of_memory
from medi2i.plugins import (
    BUILTIN_PLUGINS,
    PluginSet,
    PluginWarning,
    load_plugins,
    plugin_output_to_stderr,
    returned_value_reason,
)
from medi2i.text import message_lines


class Medi2iGroup(click.Group):
    """A click group that turns medi2i errors into one clear message, and an interrupt
    into one that names what the command completed."""

    def invoke(self, ctx: click.Context) -> Any:
        from medi2i.io.atomic import recording_published

        with recording_published() as placed:
            return self._invoke_reporting(ctx, placed)

    def _invoke_reporting(self, ctx: click.Context, placed: dict[Path, None]) -> Any:
        try:
            return super().invoke(ctx)
        except Medi2iError as exc:
            if _debug(ctx):
                raise
            click.secho(f"Error: {message_lines(str(exc))}", err=True, fg="red")
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            # a command that keeps something on purpose (a workflow run) says what
            said = message_lines(str(exc)) or interrupted_message(placed)
            click.echo(said, err=True)
            ctx.exit(143 if isinstance(exc, Terminated) else 130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # the reader went away (`medi2i methods | head -1`): click's main ends
            # quietly on it, as command-line tools do
            raise
        except Exception as exc:
            if _debug(ctx):
                raise
            if out_of_memory(exc):  # a limit of the machine, not a bug: no traceback
                summary = message_lines(out_of_memory_summary(exc, plugin_packages(ctx.obj)))
                click.secho(f"Error: {summary}", err=True, fg="red")
                ctx.exit(1)
            # a bug, not a user error: keep the traceback (it is what a report needs)
            # and end with one line that says whose code raised it
            traceback.print_exc()
            summary = message_lines(unexpected_error_summary(exc, plugin_packages(ctx.obj)))
            click.secho(f"Error: {summary}", err=True, fg="red")
            ctx.exit(1)


_LIBRARIES = frozenset(
    [
        "click",
        "monai",
        "nibabel",
        "numpy",
        "pluggy",
        "pydantic",
        "pydicom",
        "scipy",
        "SimpleITK",
        "skimage",
        "torch",
        "typing_extensions",
    ]
)


@dataclass(frozen=True)
class _Frame:
    """Whose code a traceback frame runs: ``kind`` is ``medi2i``, ``plugin``,
    ``library`` (an installed package that is no plugin) or ``other`` (a script, code
    outside any known package); ``package`` its top-level package."""

    kind: str
    package: str
    module: str
    filename: str
    line: int

    @property
    def where(self) -> str:
        """``medi2i.export, line 414``, or ``module, file.py line 3`` outside medi2i."""
        if self.kind == "medi2i":
            return f"{self.module}, line {self.line}"
        return f"{self.module}, {Path(self.filename).name} line {self.line}"


def unexpected_error_summary(exc: BaseException, plugins: Collection[str] = ()) -> str:
    """One line on an exception that is not a medi2i error: what it is, and whose code
    raised it. The innermost frame outside the standard library decides. In a library
    (torch, numpy, any installed package that is no plugin), the frame that called the
    library is named too, and decides whose error it is: medi2i's own code asks for a
    report; a plugin's (a package in ``plugins`` or of a ``medi2i`` entry point) is
    named as such, for its authors to fix.

    Args:
        exc: The exception.
        plugins: Top-level packages of the loaded plugins (:func:`plugin_packages`).

    Example:
        >>> try:
        ...     int("x")
        ... except ValueError as exc:
        ...     unexpected_error_summary(exc).startswith("ValueError: invalid literal")
        True
    """
    frames, what = _frames(exc, plugins), _what(exc)
    if not frames:
        return f"{what}; the traceback above shows where"
    raised = frames[-1]
    if raised.kind != "library":
        return f"{what} (in {raised.where}); {_whose(raised)}"
    caller = next((frame for frame in reversed(frames) if frame.kind != "library"), None)
    if caller is None:
        return f"{what} (in {raised.package}); the traceback above shows where"
    return f"{what} (in {raised.package}, raised while {caller.where} called it); {_whose(caller)}"


MEMORY_ADVICE = (
    "free memory (close other programs) or raise the process's limit; for a network, "
    "lower --sw-batch-size (windows per batch) or --roi-size; --debug shows the traceback"
)
"""What an out-of-memory error advises."""


def out_of_memory_summary(exc: BaseException, plugins: Collection[str] = ()) -> str:
    """One line on a failed memory allocation: the allocation, where it happened, and
    what to do; it is the machine's limit, so no traceback is asked for.

    Example:
        >>> out_of_memory_summary(MemoryError("Unable to allocate 600. MiB")).startswith(
        ...     "out of memory: MemoryError: Unable to allocate 600. MiB"
        ... )
        True
    """
    frames = _frames(exc, plugins)
    where = next((f" (in {f.where})" for f in reversed(frames) if f.kind != "library"), "")
    return f"out of memory: {_what(exc)}{where}; {MEMORY_ADVICE}"


def _frames(exc: BaseException, plugins: Collection[str]) -> list[_Frame]:
    """The frames of ``exc``'s traceback outside the standard library, outermost first."""
    known = set(plugins) | _entry_point_packages()
    walked = traceback.walk_tb(exc.__traceback__)
    return [found for found in (_classified(*step, known) for step in walked) if found]


def _what(exc: BaseException) -> str:
    """``ValueError: its message`` on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _whose(frame: _Frame) -> str:
    """Who can fix an error that ``frame``'s code raised, or let happen in a library."""
    if frame.kind == "medi2i":
        return "an unexpected error inside medi2i: please report it with the traceback above"
    if frame.kind == "plugin":
        return (
            f"raised by a plugin's code, not by medi2i (package {frame.package}): the "
            "traceback above shows where (its authors can fix it)"
        )
    return "raised outside medi2i and its plugins: the traceback above shows where"


def _classified(frame: FrameType, line: int, plugins: Collection[str]) -> _Frame | None:
    """Whose code ``frame`` runs; ``None`` for the standard library's and for code that
    a library generated (``<string>``, ``<eval_with_key>.9``: torch's traced programs),
    which counts as the library's that runs it."""
    filename = frame.f_code.co_filename
    if filename.startswith("<"):
        return None
    module = str(frame.f_globals.get("__name__", "?"))
    package = module.split(".")[0]
    if package == "medi2i":
        return _Frame("medi2i", package, module, filename, line)
    if package in plugins:
        return _Frame("plugin", package, module, filename, line)
    installed = False
    with suppress(OSError, ValueError):
        path = Path(filename).resolve()
        installed = bool({"site-packages", "dist-packages"} & set(path.parts))
        if path.is_relative_to(_stdlib()) and not installed:
            return None
    kind = "library" if installed or package in _LIBRARIES else "other"
    return _Frame(kind, package, module, filename, line)


def _stdlib() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["stdlib"]).resolve()


def plugin_packages(plugins: object) -> set[str]:
    """Top-level packages of the plugins registered in ``plugins`` (a
    :class:`~medi2i.plugins.PluginSet`; anything else gives none): a plugin module's
    own, or the module that defines a plugin object's class."""
    if not isinstance(plugins, PluginSet):
        return set()
    packages = set()
    for _name, plugin in plugins.manager.list_name_plugin():
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        packages.add(str(module).split(".")[0])
    return packages - {"medi2i", "builtins"}


def _entry_point_packages() -> set[str]:
    """Top-level packages of the installed ``medi2i`` entry points (the plugins)."""
    import importlib.metadata

    from medi2i.plugins import ENTRY_POINT_GROUP

    try:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # a broken distribution must not hide the error being reported
        return set()
    return {entry_point.module.split(".")[0] for entry_point in entry_points} - {"medi2i"}


def interrupted_message(placed: Iterable[Path]) -> str:
    """What an interrupted command says it kept: the outputs it completed (atomic
    writes put in place, :func:`medi2i.io.atomic.recording_published`) that are still
    there, or that nothing was kept.

    Example:
        >>> interrupted_message([])
        'Interrupted; no partial output was kept.'
    """
    complete = _complete(placed)
    if not complete:
        return "Interrupted; no partial output was kept."
    shown = [str(path) for path in complete[:3]]
    if len(complete) > 4:
        shown.append(f"{len(complete) - 3} more")
    elif len(complete) == 4:
        shown.append(str(complete[3]))
    listed = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    return f"Interrupted after writing {listed} (complete); nothing partial was kept."


def _complete(placed: Iterable[Path]) -> list[Path]:
    """The paths of ``placed`` still there, less those inside another of them (a file
    of a series folder) or inside a temporary folder that never got its final name."""
    from medi2i.io.atomic import is_temporary

    there = [
        path
        for path in placed
        if (path.exists() or path.is_symlink()) and not any(map(is_temporary, path.parts))
    ]
    return [
        path
        for path in there
        if not any(other != path and path.is_relative_to(other) for other in there)
    ]


def stop_on_sigterm() -> None:
    """Make SIGTERM (``kill``, a job scheduler's time limit) stop a command as Ctrl-C
    does: Python's default ends the process at once, leaving the hidden temporary file
    of a write in progress behind; as an interrupt, every write removes its temporary,
    and a workflow run keeps its last checkpoint and says how to continue it."""

    def interrupt(signum: int, frame: object) -> None:
        raise Terminated

    with suppress(ValueError):  # not the main thread: leave the handler alone
        signal.signal(signal.SIGTERM, interrupt)


def ignore_stops_while_exiting() -> None:
    """Once the command has returned, ignore the first SIGTERM or Ctrl-C that arrives
    while Python shuts down (its exit callbacks, torch's among them): the command's work
    is done and said, so its exit status stands and no traceback follows its last line.
    A second one ends the process at once."""
    with suppress(ValueError):  # not the main thread: leave the handlers alone
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, _second_ends)


def _second_ends(signum: int, frame: object) -> None:
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)


def _ignored_to_the_end() -> None:
    """The last exit callback: Python then gives a signal handled in Python its default
    action back (SIGTERM would end the process by the signal after all), so one that has
    not arrived yet is ignored outright from here on."""
    with suppress(ValueError):
        if signal.getsignal(signal.SIGTERM) is _second_ends:
            for number in (signal.SIGINT, signal.SIGTERM):
                signal.signal(number, signal.SIG_IGN)


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.params.get("debug")) or os.environ.get("MEDI2I_DEBUG", "") == "1"


def _show_plugin_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    # medi2i's and its plugins' warnings are written for the user: one line, no source
    # location; any other library's keep Python's form, which says where they come from
    if is_user_warning(category):
        click.secho(f"Warning: {message_lines(str(message))}", err=True, fg="yellow")
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def is_user_warning(category: type[Warning]) -> bool:
    """Whether a warning of ``category`` is shown as one ``Warning: ...`` line: a
    :class:`~medi2i.plugins.PluginWarning`, or a class defined in a module whose
    top-level package name starts with ``medi2i`` (medi2i itself,
    ``medi2i_super_resolution``, a third-party ``medi2i_*`` plugin). Warnings of other
    classes (Python's own ``UserWarning``, numpy's, torch's) are shown as Python shows
    them, with the file and line that raised them.

    Example:
        >>> GridWarning = type("GridWarning", (UserWarning,), {"__module__": "medi2i_sr.grids"})
        >>> is_user_warning(GridWarning), is_user_warning(UserWarning)
        (True, False)
    """
    if issubclass(category, PluginWarning):
        return True
    module = getattr(category, "__module__", None)
    return isinstance(module, str) and module.split(".")[0].startswith("medi2i")


_default_showwarning = warnings.showwarning


def build_cli(plugins: PluginSet | None = None) -> click.Group:
    """A new ``medi2i`` group holding the commands that ``plugins`` register.

    Every call makes a new group: the commands are those added by the
    ``register_commands`` hook of the plugins in ``plugins`` (medi2i's own commands come
    through that hook too, from :mod:`medi2i.builtins`), so a command of a plugin that
    is not in ``plugins`` is never part of it. A plugin whose hook raises is reported
    and skipped (fatal in strict mode), like a plugin that fails to import: none of
    its commands is added, and a :class:`~medi2i.registry.Registry` of ``plugins``
    takes none of its methods, readers, writers or metrics.

    The group runs with ``plugins`` as its context object, so it can be invoked as is,
    e.g. ``CliRunner().invoke(build_cli(plugins), ["methods"])``.

    Args:
        plugins: The loaded plugins; ``None`` loads them (:func:`medi2i.plugins.load_plugins`).

    Returns:
        The top-level click group.
    """
    if plugins is None:
        plugins = load_plugins()
    group = _new_group(plugins)
    impls = plugins.manager.hook.register_commands.get_hookimpls()
    # medi2i's own commands first, so that a plugin may add to its groups
    for impl in sorted(impls, key=lambda impl: impl.plugin_name not in BUILTIN_PLUGINS):
        if impl.plugin_name in plugins.skipped:  # it failed in another hook already
            continue
        before = dict(group.commands)
        try:
            with plugin_output_to_stderr():
                returned = impl.function(cli=group)
        except Exception as exc:  # a broken plugin command must not break the CLI
            if impl.plugin_name in BUILTIN_PLUGINS:
                raise
            group.commands = before  # a skipped plugin adds nothing, not half its commands
            plugins.fail(impl.plugin_name, "register_commands", exc)
            continue
        problem = returned_value_reason("register_commands", returned)
        if problem is not None:  # it returned its commands instead of adding them
            group.commands = before
            plugins.refuse(impl.plugin_name, "register_commands", problem)
    return group


def _new_group(plugins: PluginSet) -> click.Group:
    """The top-level group with its own options and no subcommands yet."""

    @click.group(
        "medi2i",
        cls=Medi2iGroup,
        context_settings={"help_option_names": ["-h", "--help"], "obj": plugins},
    )
    @click.version_option(__version__, prog_name="medi2i")
    @click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
    @click.option(
        "--strict-plugins",
        is_flag=True,
        help="Fail if any plugin fails to load or register (also MEDI2I_STRICT_PLUGINS=1).",
    )
    @click.option(
        "--plugin",
        "extra_plugins",
        multiple=True,
        metavar="NAME",
        help="Also load this installed plugin (entry-point or distribution name, or a "
        "medi2i example plugin such as medi2i.testing.trainable_examples), as a "
        "workflow's plugins key does; repeatable. Adds its methods, readers, writers "
        "and metrics.",
    )
    @click.pass_context
    def root(
        ctx: click.Context, debug: bool, strict_plugins: bool, extra_plugins: tuple[str, ...]
    ) -> None:
        """medi2i: translate 3D medical volumes (MR to synthetic CT, cross-scanner
        harmonization, super-resolution).

        Plugins are loaded from the "medi2i" entry-point group; see "medi2i plugins".
        """
        from medi2i.plugins import add_installed_plugin

        loaded: PluginSet = ctx.obj
        for name in extra_plugins:
            add_installed_plugin(loaded, name)
        if strict_plugins and loaded.failures:
            names = ", ".join(f.name for f in loaded.failures)
            raise PluginError(f"plugins failed to load: {names} (--strict-plugins is set)")
        if strict_plugins:
            loaded.strict = True  # a register hook that fails later is fatal too

    return root


def main(argv: list[str] | None = None) -> None:
    """Run the command line (``argv`` defaults to ``sys.argv[1:]``).

    Run as the ``medi2i`` program (``argv`` not given), the process ends with the
    command: a SIGTERM or Ctrl-C after the command returned is ignored
    (:func:`ignore_stops_while_exiting`). A caller that passes ``argv`` keeps running,
    and keeps its Ctrl-C.
    """
    warnings.showwarning = _show_plugin_warning
    stop_on_sigterm()
    if argv is None:
        atexit.register(_ignored_to_the_end)  # before the commands' own: it runs after them
    try:
        cli = build_cli(load_plugins())
    except Medi2iError as exc:  # e.g. a plugin that fails in strict mode
        click.secho(f"Error: {message_lines(str(exc))}", err=True, fg="red")
        sys.exit(exc.exit_code)
    try:
        cli.main(args=argv, prog_name="medi2i")
    finally:
        if argv is None:
            ignore_stops_while_exiting()


if __name__ == "__main__":  # pragma: no cover
    main()
