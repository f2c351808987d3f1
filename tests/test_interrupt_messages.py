"""What an interrupted command says it kept, SIGTERM at exit, and whose code raised an
unexpected error (medi2i.cli.main, medi2i.io.atomic)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

import medi2i
from medi2i import hookimpl
from medi2i.cli.main import build_cli, interrupted_message, plugin_packages
from medi2i.cli.main import unexpected_error_summary as summary_of
from medi2i.errors import Terminated
from medi2i.io import atomic
from medi2i.io.atomic import atomic_path, placed_with, recording_published
from medi2i.plugins import load_plugins


class WritingCommand:
    """A plugin whose command writes ``a.txt`` and ``a.json`` (a pair placed together),
    then is interrupted as the signal named by ``STOP`` says."""

    stop: type[KeyboardInterrupt] | None = KeyboardInterrupt

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        @cli.command("write")
        @click.argument("folder", type=click.Path(path_type=Path))
        @click.option("--before", is_flag=True)
        def write(folder: Path, before: bool) -> None:
            """Write a pair, then stop."""
            if before and self.stop is not None:
                raise self.stop
            staged = folder / ".a.staged.json"
            folder.mkdir(exist_ok=True)
            staged.write_text("{}")
            pair = placed_with(staged, folder / "a.json", output=folder / "a.txt")
            with pair, atomic_path(folder / "a.txt") as tmp:
                tmp.write_text("new")
            if self.stop is not None:
                raise self.stop
            click.echo("wrote")


def _invoke(plugin: WritingCommand, *args: str) -> tuple[int, str]:
    plugins = load_plugins()
    plugins.manager.register(plugin, name="writing")
    result = CliRunner().invoke(build_cli(plugins), ["write", *args])
    return result.exit_code, result.output


def test_an_interrupt_after_a_write_names_what_was_completed(tmp_path: Path) -> None:
    code, output = _invoke(WritingCommand(), str(tmp_path / "out"))
    assert code == 130
    out = tmp_path / "out"
    assert (
        f"Interrupted after writing {out / 'a.txt'} and {out / 'a.json'} (complete); "
        "nothing partial was kept." in output
    )
    assert "no partial output was kept" not in output


def test_sigterm_before_any_write_says_nothing_was_kept(tmp_path: Path) -> None:
    plugin = WritingCommand()
    plugin.stop = Terminated
    code, output = _invoke(plugin, str(tmp_path / "out"), "--before")
    assert code == 143
    assert "Interrupted; no partial output was kept." in output


def test_the_message_leaves_out_what_is_gone_or_inside_another_output(tmp_path: Path) -> None:
    series = tmp_path / "series"
    series.mkdir()
    (series / "1.dcm").write_bytes(b"")
    placed = [series / "1.dcm", series, tmp_path / "removed.nii.gz"]
    assert interrupted_message(placed) == (
        f"Interrupted after writing {series} (complete); nothing partial was kept."
    )
    many = [tmp_path / f"{index}.txt" for index in range(6)]
    for path in many:
        path.write_text("x")
    assert f"{many[2]} and 3 more (complete)" in interrupted_message(many)


def test_an_interrupt_during_the_rename_still_records_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C right after the rename, before the record: held off until both are done
    renamed = atomic._replace

    def rename_then_ctrl_c(temporary: Path, path: Path) -> None:
        renamed(temporary, path)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(atomic, "_replace", rename_then_ctrl_c)
    target = tmp_path / "out.txt"
    # Ctrl-C as Python handles it (a shell's background job starts with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with (
            recording_published() as placed,
            pytest.raises(KeyboardInterrupt),
            atomic_path(target) as tmp,
        ):
            tmp.write_text("new")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert list(placed) == [target]
    assert target.read_text() == "new"


def test_sigterm_while_exiting_after_the_command_prints_no_traceback() -> None:
    # a SIGTERM that arrives during Python's exit callbacks (torch's, after an export)
    script = (
        "import atexit, os, signal, sys, time\n"
        "def late():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(0.2)\n"
        "atexit.register(late)\n"
        "sys.argv = ['medi2i', '--version']\n"
        "from medi2i.cli.main import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "medi2i, version" in done.stdout


def _raised_through(caller: str, filename: str) -> AssertionError:
    """An assertion that torch raises in code it generated (a torch.export guard),
    called from a function of module ``caller`` in ``filename``."""
    generated: dict[str, object] = {"torch": torch}
    exec(
        compile("def guard(x):\n    torch._assert(x, 'Guard failed')\n", "<string>", "exec"),
        generated,
    )
    namespace: dict[str, object] = {"__name__": caller}
    exec(compile("def call(guard):\n    guard(False)\n", filename, "exec"), namespace)
    try:
        namespace["call"](generated["guard"])  # type: ignore[operator]
    except AssertionError as exc:
        return exc
    raise AssertionError("no error")


def test_an_error_inside_torch_called_by_medi2i_is_medi2i_s() -> None:
    export = str(Path(medi2i.__file__).parent / "export.py")
    summary = summary_of(_raised_through("medi2i.export", export))
    assert summary.startswith("AssertionError: Guard failed (in torch, raised while ")
    assert "medi2i.export, line 2 called it)" in summary
    assert "an unexpected error inside medi2i: please report it" in summary
    assert "plugin" not in summary


def test_an_error_inside_torch_called_by_a_plugin_is_the_plugin_s(tmp_path: Path) -> None:
    network = str(tmp_path / "medi2i_made_up" / "network.py")
    summary = summary_of(_raised_through("medi2i_made_up.network", network), {"medi2i_made_up"})
    assert "(in torch, raised while medi2i_made_up.network, network.py line 2 called it)" in summary
    assert "raised by a plugin's code, not by medi2i (package medi2i_made_up)" in summary


def test_code_of_no_plugin_is_not_called_a_plugin_s(tmp_path: Path) -> None:
    script = str(tmp_path / "script.py")
    summary = summary_of(_raised_through("script", script))
    assert "raised outside medi2i and its plugins" in summary
    assert "plugin's code" not in summary


def test_plugin_packages_are_those_of_the_registered_plugins() -> None:
    plugins = load_plugins()
    plugins.manager.register(WritingCommand(), name="writing")
    assert "tests" in plugin_packages(plugins)
    assert "medi2i" not in plugin_packages(plugins)
    assert plugin_packages(None) == set()


def test_a_sigterm_in_python_s_last_exit_steps_is_ignored_too() -> None:
    # Python gives signals handled in Python their default action back at the very end
    script = (
        "import os, signal\n"
        "from medi2i.cli.main import _ignored_to_the_end, ignore_stops_while_exiting\n"
        "ignore_stops_while_exiting()\n"
        "_ignored_to_the_end()\n"
        "assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "print('still here')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "still here\n"
