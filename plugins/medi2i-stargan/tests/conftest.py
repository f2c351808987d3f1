"""Make medi2i's test fixtures available to this plugin's tests.

The fixtures are imported rather than enabled with ``pytest_plugins`` because pytest
accepts ``pytest_plugins`` only in the top-level ``conftest.py``, and these tests also
run from the medi2i repository, where this file is not the top-level one. In a plugin
repository of your own, ``pytest_plugins = ["medi2i.testing.pytest_plugin"]`` works too.
"""

from __future__ import annotations

import pytest

from medi2i.testing.plugin_selection import load_only_plugins
from medi2i.testing.pytest_plugin import (  # noqa: F401 (fixtures are found by name)
    medi2i_registry,
    medi2i_volume,
    medi2i_volume_file,
)

PLUGIN_NAME = "stargan"
"""This distribution's entry-point name (group ``medi2i``)."""


def pytest_configure(config: pytest.Config) -> None:
    """Load this distribution's plugin, not every plugin installed beside it."""
    load_only_plugins(config, [PLUGIN_NAME])
