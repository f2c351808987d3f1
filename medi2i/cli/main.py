"""Entry point of the ``medi2i`` command: the group, error handling and plugin loading.

:func:`main` loads the plugins and builds the command line afresh on every run
(:func:`build_cli`); every subcommand, medi2i's own included, is added by a plugin's
``register_commands`` hook.

User errors (:class:`medi2i.errors.Medi2iError`) print one line and exit non-zero;
``--debug`` (or ``MEDI2I_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
import warnings
from contextlib import suppress
from pathlib import Path
from typing import Any

import click

from medi2i import __version__
from medi2i.errors import Medi2iError, PluginError, Terminated
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
    """A click group that turns medi2i errors into one clear message."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Medi2iError as exc:
            if _debug(ctx):
                raise
            click.secho(f"Error: {message_lines(str(exc))}", err=True, fg="red")
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            # a command that keeps something on purpose (a workflow run) says what
            said = message_lines(str(exc)) or "Interrupted; no partial output was kept."
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
            # a bug, not a user error: keep the traceback (it is what a report needs)
            # and end with one line that says whose code raised it
            traceback.print_exc()
            summary = message_lines(unexpected_error_summary(exc))
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


def unexpected_error_summary(exc: BaseException) -> str:
    """One line on an exception that is not a medi2i error: what it is, and whose code
    raised it. The innermost frame outside the standard library and medi2i's
    dependencies decides: code of a plugin is named as such (its authors can fix it);
    medi2i's own code asks for a report.

    Example:
        >>> try:
        ...     int("x")
        ... except ValueError as exc:
        ...     print(unexpected_error_summary(exc).split(" (in ")[0])
        ValueError: invalid literal for int() with base 10: 'x'
    """
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    owner: tuple[str, str, int] | None = None
    for frame, line in traceback.walk_tb(exc.__traceback__):
        module = str(frame.f_globals.get("__name__", "?"))
        if module.split(".")[0] in _LIBRARIES:
            continue
        with suppress(OSError, ValueError):
            path = Path(frame.f_code.co_filename).resolve()
            installed = {"site-packages", "dist-packages"} & set(path.parts)
            if path.is_relative_to(stdlib) and not installed:
                continue
        owner = (module, frame.f_code.co_filename, line)
    text = " ".join(str(exc).split())
    what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if owner is None:
        return f"{what}; the traceback above shows where"
    module, filename, line = owner
    if module == "medi2i" or module.startswith("medi2i."):
        return (
            f"{what} (in {module}, line {line}); an unexpected error inside medi2i: please "
            "report it with the traceback above"
        )
    return (
        f"{what} (in {module}, {Path(filename).name} line {line}); raised by a plugin's "
        "code, not by medi2i: the traceback above shows where (its authors can fix it)"
    )


def stop_on_sigterm() -> None:
    """Make SIGTERM (``kill``, a job scheduler's time limit) stop a command as Ctrl-C
    does: Python's default ends the process at once, leaving the hidden temporary file
    of a write in progress behind; as an interrupt, every write removes its temporary,
    and a workflow run keeps its last checkpoint and says how to continue it."""

    def interrupt(signum: int, frame: object) -> None:
        raise Terminated

    with suppress(ValueError):  # not the main thread: leave the handler alone
        signal.signal(signal.SIGTERM, interrupt)


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
    """Run the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    warnings.showwarning = _show_plugin_warning
    stop_on_sigterm()
    try:
        cli = build_cli(load_plugins())
    except Medi2iError as exc:  # e.g. a plugin that fails in strict mode
        click.secho(f"Error: {message_lines(str(exc))}", err=True, fg="red")
        sys.exit(exc.exit_code)
    cli.main(args=argv, prog_name="medi2i")


if __name__ == "__main__":  # pragma: no cover
    main()
