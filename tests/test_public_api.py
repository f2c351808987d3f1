"""Plugins use medi2i's public API only: ``medi2i`` and ``medi2i.testing``.

First-party plugins are built exactly as a third-party plugin would be, so they may
import nothing else of medi2i. A plugin that reaches into ``medi2i.method`` or
``medi2i.intensity`` works today and breaks on the next internal change; this test
fails as soon as one does.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import medi2i

REPOSITORY = Path(__file__).resolve().parent.parent
PLUGIN_SOURCES = sorted((REPOSITORY / "plugins").glob("*/src/**/*.py"))
PUBLIC_MODULES = ("medi2i", "medi2i.testing")
BENCH_INTERNALS = (
    "medi2i.cli.options",
    "medi2i.data.cases",
    "medi2i.evaluation",
    "medi2i.hashing",
    "medi2i.io",
    "medi2i.model_folder",
    "medi2i.report.figures",
    "medi2i.resample",
    "medi2i.synth",
    "medi2i.training.routes",
)
"""What medi2i-bench, and no method plugin, may import beyond the public API: it is the
repository's research tool, pinned to the medi2i it ships with (``medi2i==<version>``),
and builds the benchmarks from medi2i's simulators, metrics, report figures and CLI
options, fits methods through the train stage's own functions (on medi2i's case sets)
and reads what a model folder records of its training. Everything else it uses is
public."""


def private_imports(path: Path) -> list[str]:
    """``module.name`` of every import of medi2i in ``path`` outside the public API."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
            names = [""]
        else:
            continue
        for module in modules:
            public = module in PUBLIC_MODULES or module.startswith("medi2i.testing.")
            if module.split(".")[0] == "medi2i" and not public:
                found += [f"{module}.{name}".rstrip(".") for name in names]
            if module == "medi2i" and isinstance(node, ast.ImportFrom):
                found += [f"medi2i.{n}" for n in names if n not in medi2i.__all__]
    return found


def test_there_are_plugin_sources_to_check() -> None:
    assert len(PLUGIN_SOURCES) >= 10


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: str(p.relative_to(REPOSITORY)))
def test_first_party_plugins_import_only_public_names(path: Path) -> None:
    found = private_imports(path)
    if path.is_relative_to(REPOSITORY / "plugins" / "medi2i-bench"):
        found = [name for name in found if not name.startswith(BENCH_INTERNALS)]
    assert found == [], (
        f"{path.relative_to(REPOSITORY)} imports private medi2i names; export what plugins "
        "need from medi2i/__init__.py or medi2i.testing"
    )


def test_the_check_finds_private_imports(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text(
        "from medi2i.method import TrainerAPI\nimport medi2i.intensity\n"
        "from medi2i import Method, NotExported\nfrom medi2i.testing import make_volume\n"
    )
    assert private_imports(module) == [
        "medi2i.method.TrainerAPI",
        "medi2i.intensity",
        "medi2i.NotExported",
    ]


def test_every_public_name_resolves() -> None:
    missing = [name for name in medi2i.__all__ if not hasattr(medi2i, name)]
    assert missing == []
