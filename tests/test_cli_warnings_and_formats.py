"""How the command line shows warnings, and a ``--format`` that lists a format twice."""

from __future__ import annotations

import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from medi2i.cli import main as cli_main
from medi2i.cli.main import build_cli, is_user_warning
from medi2i.plugins import PluginWarning, load_plugins


def run(*args: str) -> Result:
    return CliRunner().invoke(build_cli(load_plugins()), list(args))


# -- warnings ---------------------------------------------------------------------------


def _warning_class(module: str, name: str = "GridWarning") -> type[Warning]:
    """A warning class defined in a module called ``module``, as a plugin defines one."""
    namespace = types.ModuleType(module)
    exec(f"class {name}(UserWarning):\n    pass\n", namespace.__dict__)
    found: type[Warning] = namespace.__dict__[name]
    assert found.__module__ == module
    return found


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Warnings shown as ``medi2i`` shows them (its main() installs the same hook)."""
    monkeypatch.setattr(warnings, "showwarning", cli_main._show_plugin_warning)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = cli_main._show_plugin_warning  # catch_warnings restores it
        yield


@pytest.mark.parametrize(
    "module",
    [
        "medi2i_super_resolution.grids",  # a plugin shipped with medi2i
        "medi2i_acme",  # a third party's, at the top of its package
        "medi2i_acme.sub.warnings",
        "medi2i.io.nifti",  # medi2i's own
        "medi2i",
    ],
)
def test_a_warning_of_medi2i_or_a_medi2i_plugin_is_one_line(
    shown: None, capsys: pytest.CaptureFixture[str], module: str
) -> None:
    category = _warning_class(module)
    warnings.warn("output spacing 0.9 mm, not the 1.0 mm asked for\x1b[2J", category, stacklevel=1)
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "Warning: output spacing 0.9 mm, not the 1.0 mm asked for\\x1b[2J"  # escaped
    ]
    assert __file__ not in err  # no source location, no source line


@pytest.mark.parametrize("module", ["numpy.acme", "acme_medi2i", "builtins"])
def test_other_warnings_keep_python_s_form(
    shown: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    passed: list[tuple[str, str, int]] = []

    def python_s(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: object = None,
        line: str | None = None,
    ) -> None:
        passed.append((str(message), filename, lineno))

    monkeypatch.setattr(cli_main, "_default_showwarning", python_s)
    category = UserWarning if module == "builtins" else _warning_class(module, "OtherWarning")
    warnings.warn("from another library", category, stacklevel=1)
    assert capsys.readouterr().err == ""
    assert len(passed) == 1  # shown as Python shows it, with where it came from
    assert passed[0][:2] == ("from another library", __file__)


def test_a_plugin_warning_is_one_line_wherever_it_is_defined() -> None:
    assert is_user_warning(PluginWarning)
    assert is_user_warning(_warning_class("acme_plugin", "Sub")) is False
    assert is_user_warning(type("Sub", (PluginWarning,), {"__module__": "acme_plugin"}))


def test_the_super_resolution_plugin_s_grid_warning_is_shown_as_one_line() -> None:
    grids = pytest.importorskip("medi2i_super_resolution.grids")
    assert is_user_warning(grids.GridWarning)


def test_main_installs_the_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    monkeypatch.setattr(sys, "argv", ["medi2i", "--version"])
    with pytest.raises(SystemExit):
        cli_main.main(["--version"])
    assert warnings.showwarning is cli_main._show_plugin_warning


# -- --format ---------------------------------------------------------------------------


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    import nibabel as nib

    values = np.random.default_rng(0).normal(400.0, 100.0, (12, 10, 8)).astype(np.float32)
    path = tmp_path / "mr.nii.gz"
    nib.save(nib.Nifti1Image(values, np.eye(4)), str(path))
    return path


@pytest.mark.parametrize("formats", ["nifti,nifti", "NIfTI,nifti", "dicom, nifti,DICOM"])
@pytest.mark.parametrize("command", ["predict", "batch"])
def test_a_format_listed_twice_is_refused(
    volume: Path, tmp_path: Path, formats: str, command: str
) -> None:
    """For one input and for a tree (predict or batch), before any work."""
    source = str(volume) if command == "predict" else str(tmp_path)
    out = str(tmp_path / ("o.nii.gz" if command == "predict" else "out"))
    result = run(command, source, out, "--method", "zscore", "--format", formats)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    twice = "dicom" if "dicom" in formats.lower() else "nifti"
    assert lines[0] == (
        f"Error: --format {formats!r} lists {twice} more than once; give each format once: "
        "dicom, nifti or dicom,nifti"
    )
    assert not (tmp_path / "o.nii.gz").exists()
    assert not (tmp_path / "out").exists()


def test_a_format_listed_once_is_still_taken(volume: Path, tmp_path: Path) -> None:
    done = run(
        "predict", str(volume), str(tmp_path / "o.nii.gz"), "--method", "zscore",
        "--format", "NIfTI", "--no-progress",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
