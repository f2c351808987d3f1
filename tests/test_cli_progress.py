"""``--progress/--no-progress``: a bar on a terminal, none in a log or a pipe unless asked."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import medi2i
from medi2i import settings
from medi2i.cli import options
from medi2i.cli.options import progress_option
from medi2i.settings import InferenceSettings
from medi2i.testing.volumes import write_volume_file
from medi2i.training.config import TrainingConfig


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


def test_python_calls_and_workflows_show_a_bar_only_on_a_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``medi2i.predict`` and a workflow's training decide as the commands do: the
    defaults draw no bar into a log or a pipe, and ``progress=True`` still does."""
    assert InferenceSettings().progress is None
    assert TrainingConfig().progress is None
    source = write_volume_file(tmp_path, "t1.nii.gz")
    medi2i.predict(source, tmp_path / "quiet.nii.gz", method="intensity-inversion")
    assert "it/s" not in capfd.readouterr().err
    monkeypatch.setattr(settings, "stderr_is_terminal", lambda: True)
    assert settings.wants_progress(None)
    assert not settings.wants_progress(False)
