"""Make medi2i's test fixtures available to this plugin's tests.

The fixtures are imported rather than enabled with ``pytest_plugins`` because pytest
accepts ``pytest_plugins`` only in the top-level ``conftest.py``, and these tests also
run from the medi2i repository, where this file is not the top-level one. In a plugin
repository of your own, ``pytest_plugins = ["medi2i.testing.pytest_plugin"]`` works too.
"""

from __future__ import annotations

import os

import pytest

from medi2i.testing.pytest_plugin import (  # noqa: F401 (fixtures are found by name)
    medi2i_registry,
    medi2i_volume,
    medi2i_volume_file,
)

PLUGIN_NAME = "regression-unet"
"""This distribution's entry-point name (group ``medi2i``)."""
_SWITCHES = ("MEDI2I_LOAD_PLUGINS", "MEDI2I_DISABLE_PLUGIN_AUTOLOAD")


def pytest_configure(config: pytest.Config) -> None:
    """Load this distribution's plugin, not every plugin installed beside it.

    A third-party plugin in the same environment must not change what these tests see
    (a broken one warns, and warnings are errors). Names another conftest of the same
    session selected are kept, so the core tests and several plugins' tests can run
    together; a test that changes the switch with ``monkeypatch`` gets it back after.
    """
    saved = {name: os.environ.get(name) for name in _SWITCHES}
    config.add_cleanup(lambda: _restore(saved))
    os.environ.pop("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", None)
    selected = os.environ.get("MEDI2I_LOAD_PLUGINS", "")
    names = [name.strip() for name in selected.split(",") if name.strip()]
    os.environ["MEDI2I_LOAD_PLUGINS"] = ",".join(dict.fromkeys([*names, PLUGIN_NAME]))


def _restore(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
