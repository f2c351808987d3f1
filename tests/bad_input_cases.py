"""What the bad-input corpus modules (``tests/test_bad_input_*.py``) share.

Each case builds its files in ``tmp_path`` (nothing binary is committed), runs one
command in process, and is held to what medi2i promises for bad input: a non-zero exit,
one line on stderr that starts with ``Error:`` and names the file (or option) at fault,
no traceback, no new file anywhere (no partial output, no temporary left behind), and
every file that existed before (inputs and earlier outputs) byte for byte unchanged.
:func:`check_bad_input` checks that promise; the builders here make the files that
cases of several kinds need. ``tests/conftest.py`` registers this module for pytest's
assertion rewriting.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.plugins import PluginWarning, load_plugins
from medi2i.testing import example_methods


@dataclass
class Case:
    """One bad input: the command's arguments and what its message must name."""

    args: list[str]
    names: str
    """Text the one-line message must contain (a file name, an option)."""
    cause: str = ""
    """Text (case-insensitive) that says the real cause."""
    absent: list[Path] = field(default_factory=list)
    """Paths that must still not exist afterwards (no partial output)."""
    plugins: dict[str, str] = field(default_factory=dict)
    """Plugins installed for the case: entry-point name -> module source."""


CaseBuilder = Callable[[Path], Case]
"""Builds a case's files in the folder it is given and returns the case."""


def case_registry(
    cases: dict[str, CaseBuilder],
) -> Callable[[str], Callable[[CaseBuilder], CaseBuilder]]:
    """The ``@case(name)`` decorator of one corpus module: adds a builder to ``cases``."""

    def case(name: str) -> Callable[[CaseBuilder], CaseBuilder]:
        def add(build: CaseBuilder) -> CaseBuilder:
            assert name not in cases, name
            cases[name] = build
            return build

        return add

    return case


# -- builders ------------------------------------------------------------------------------


def blobs(shape: tuple[int, int, int] = (16, 14, 12), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(400.0, 120.0, shape)).astype(np.float32)


def nifti(path: Path, values: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel warns about the broken headers made here
        image = nib.Nifti1Image(values, np.eye(4) if affine is None else affine, dtype=values.dtype)
        nib.save(image, str(path))
    return path


def sitk_file(path: Path, values: np.ndarray) -> Path:
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(
        sitk.GetImageFromArray(np.ascontiguousarray(values.transpose(2, 1, 0))), str(path)
    )
    return path


def predict(source: Path, output: Path, *extra: str) -> list[str]:
    return ["predict", str(source), str(output), "--method", "intensity-inversion",
            "--no-progress", *extra]  # fmt: skip


WORKFLOW = """\
data:
  kind: paired
  layout:
    type: synthrad
    root: cases
method:
  id: example-pointwise-net
"""


def workflow(tmp: Path, text: str, name: str = "workflow.yaml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


# -- the check -----------------------------------------------------------------------------


def hashes(root: Path) -> dict[Path, str]:
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            found[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def install(site: Path, plugins: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Install each plugin as a distribution with an entry point in group ``medi2i``."""
    site.mkdir()
    for name, source in plugins.items():
        (site / f"{name}.py").write_text(source)
        info = site / f"{name}-0.0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        (info / "entry_points.txt").write_text(f"[medi2i]\n{name} = {name}\n")
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("MEDI2I_LOAD_PLUGINS", ",".join(["invert", *plugins]))


def invoke(args: list[str]) -> Result:
    """Run one command in process, with the plugins the environment selects."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # the CLI prints these as Warning:
        plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
    return CliRunner().invoke(build_cli(plugins), args)


def check_bad_input(build: CaseBuilder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Build the case in ``tmp_path / "work"``, run it there, and check the promise."""
    monkeypatch.setenv("MEDI2I_LOAD_PLUGINS", "invert")
    monkeypatch.delenv("MEDI2I_DEBUG", raising=False)
    monkeypatch.delenv("MEDI2I_STRICT_PLUGINS", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    built = build(work)
    if built.plugins:
        install(tmp_path / "site", built.plugins, monkeypatch)
    before = hashes(work)
    missing_before = [path for path in built.absent if not path.exists()]

    result = invoke(built.args)

    stderr = result.stderr.strip()
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    lines = [line for line in stderr.splitlines() if not line.startswith("Warning:")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    assert built.names in lines[0], lines[0]
    assert built.cause.lower() in lines[0].lower(), lines[0]
    after = hashes(work)
    changed = [path for path, digest in before.items() if after.get(path) != digest]
    assert not changed, f"changed or removed: {changed}"
    assert not [path for path in missing_before if path.exists()]
    assert not set(after) - set(before), f"written: {sorted(set(after) - set(before))}"
