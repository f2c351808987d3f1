"""The kit for plugin authors: the pytest plugin and ``medi2i plugin new``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def run_python(code: str, *, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# -- the pytest plugin -------------------------------------------------------------------------


def test_the_fixtures_are_a_pytest_plugin_by_entry_point() -> None:
    project = (REPOSITORY / "pyproject.toml").read_text(encoding="utf-8")

    section = project.split("[project.entry-points.pytest11]\n", 1)[1].split("\n\n", 1)[0]

    assert section.strip() == 'medi2i = "medi2i.testing.pytest_plugin"'


def test_the_pytest_plugin_imports_nothing_heavy_and_loads_no_plugin(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import json, sys
        import medi2i.testing.pytest_plugin
        heavy = ("torch", "monai", "numpy", "medi2i.plugins", "medi2i.registry", "medi2i.method")
        print(json.dumps([name for name in heavy if name in sys.modules]))
        """
    )
    assert json.loads(run_python(code, cwd=tmp_path)) == []


def test_a_plugin_repository_gets_the_fixtures_without_a_conftest(tmp_path: Path) -> None:
    (tmp_path / "test_uses_fixtures.py").write_text(
        textwrap.dedent(
            """
            def test_fixtures(medi2i_volume, medi2i_volume_file):
                assert medi2i_volume.shape == (1, 24, 20, 16)
                assert medi2i_volume_file.name == "input.nii.gz"
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": ""},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
