"""``--progress/--no-progress``: a bar on a terminal, none in a log or a pipe unless asked."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from medi2i.cli import options
from medi2i.cli.options import progress_option


@click.command()
@progress_option
def shows(progress: bool) -> None:
    click.echo(repr(progress))


def test_no_bar_by_default_when_standard_error_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(options, "stderr_is_terminal", lambda: False)
    runner = CliRunner()
    assert runner.invoke(shows, []).output == "False\n"
    assert runner.invoke(shows, ["--progress"]).output == "True\n"


def test_a_bar_by_default_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(options, "stderr_is_terminal", lambda: True)
    runner = CliRunner()
    assert runner.invoke(shows, []).output == "True\n"
    assert runner.invoke(shows, ["--no-progress"]).output == "False\n"
