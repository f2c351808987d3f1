"""Keep the plugins installed beside yours out of your test session.

Call :func:`load_only_plugins` from your ``conftest.py``::

    from medi2i.testing.plugin_selection import load_only_plugins


    def pytest_configure(config):
        load_only_plugins(config, ["my-plugin"])

It lives apart from :mod:`medi2i.testing.pytest_plugin` so that a ``conftest.py`` can
import it without importing the fixture module before pytest rewrites its asserts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

_SWITCHES = ("MEDI2I_LOAD_PLUGINS", "MEDI2I_DISABLE_PLUGIN_AUTOLOAD")


def load_only_plugins(config: pytest.Config, names: Sequence[str], *, extend: bool = True) -> None:
    """Load only the plugins ``names`` (entry-point names) for this test session.

    A third-party plugin installed in the same environment must not change what the
    tests see (a broken one warns, and with warnings as errors every test fails; a working
    one adds methods and readers). This sets ``MEDI2I_LOAD_PLUGINS`` for the session, and
    for the subprocesses it starts, until the session ends; a test that changes the
    switch with ``monkeypatch`` gets this value back afterwards.

    Args:
        config: The session's config, as ``pytest_configure`` receives it.
        names: Entry-point names (group ``medi2i``) to load.
        extend: Keep the names already selected (by the environment, or by another
            conftest of the same session, so several plugins' tests run together);
            ``False`` selects ``names`` alone.
    """
    saved = {name: os.environ.get(name) for name in _SWITCHES}
    config.add_cleanup(lambda: _restore(saved))
    os.environ.pop("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", None)
    selected = os.environ.get("MEDI2I_LOAD_PLUGINS", "") if extend else ""
    kept = [name.strip() for name in selected.split(",") if name.strip()]
    os.environ["MEDI2I_LOAD_PLUGINS"] = ",".join(dict.fromkeys([*kept, *names]))


def _restore(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
