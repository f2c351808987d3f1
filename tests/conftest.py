"""Shared pytest configuration of the core tests.

The tests load medi2i's own plugins only: a third-party plugin installed in the same
environment (a broken one warns, and warnings are errors here; a working one adds
methods, readers and commands) must not change what they see. ``MEDI2I_LOAD_PLUGINS``
is set to the first-party entry-point names for the whole session, before collection
(some test modules build a registry at import) and for subprocesses the tests start;
a test that changes the switch with ``monkeypatch`` gets this value back afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medi2i.plugins import load_plugins
from medi2i.registry import Registry
from medi2i.testing import example_methods
from medi2i.testing.plugin_selection import load_only_plugins

# the fixtures are imported, not enabled with pytest_plugins, like the plugins' conftests
# do: a module imported before pytest_plugins names it cannot be assert-rewritten, and
# pytest turns that warning into an error when a plugin's tests are collected first
from medi2i.testing.pytest_plugin import (  # noqa: F401 (fixtures are found by name)
    medi2i_registry,
    medi2i_volume,
    medi2i_volume_file,
)
from tests.dicom_node_support import node, storescp  # noqa: F401 (the DICOM node's fixtures)

# pytest rewrites the asserts of test modules only; these modules hold checks that several
# test modules share, and a failed check there should show its values too
pytest.register_assert_rewrite("tests.bad_input_cases", "tests.reader_fuzzing")

FIRST_PARTY_PLUGINS = (
    "bench",
    "cyclegan",
    "harmonization",
    "invert",
    "pix2pix",
    "regression-unet",
    "stargan",
    "super-resolution",
    "unit",
)
"""Entry-point names (group ``medi2i``) of the distributions under ``plugins/``."""


def pytest_configure(config: pytest.Config) -> None:
    """Load only the first-party plugins in this session, whatever else is installed."""
    load_only_plugins(config, FIRST_PARTY_PLUGINS, extend=False)


@pytest.fixture
def registry() -> Registry:
    """The first-party plugins and the example methods of ``medi2i.testing`` (a test
    module may define its own ``registry``, which then wins)."""
    plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
    return Registry(plugins)


@pytest.fixture
def locked(monkeypatch: pytest.MonkeyPatch) -> set[Path]:
    """Folders whose listing a test refuses, as that of a folder without read permission
    is refused (``chmod 000`` does not bite when the tests run as root)."""
    refused: set[Path] = set()
    listing = os.scandir

    def scandir(path: str | os.PathLike[str] = ".") -> object:
        if Path(path) in refused:
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return refused
