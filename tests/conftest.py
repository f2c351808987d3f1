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

import pytest

pytest_plugins = ["medi2i.testing.pytest_plugin"]

FIRST_PARTY_PLUGINS = ("harmonization", "invert", "pix2pix", "regression-unet", "super-resolution")
"""Entry-point names (group ``medi2i``) of the distributions under ``plugins/``."""
_SWITCHES = ("MEDI2I_LOAD_PLUGINS", "MEDI2I_DISABLE_PLUGIN_AUTOLOAD")


def pytest_configure(config: pytest.Config) -> None:
    """Load only the first-party plugins in this session, whatever else is installed."""
    saved = {name: os.environ.get(name) for name in _SWITCHES}
    config.add_cleanup(lambda: _restore(saved))
    os.environ.pop("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", None)
    os.environ["MEDI2I_LOAD_PLUGINS"] = ",".join(FIRST_PARTY_PLUGINS)


def _restore(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
