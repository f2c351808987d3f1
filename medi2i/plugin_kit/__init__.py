"""The plugin kit: start a new method plugin distribution from templates.

``medi2i plugin new NAME --kind KIND`` (or :func:`generate_plugin`) writes a
distribution a stranger could publish: ``pyproject.toml`` with the ``medi2i`` entry
point, the hook module declaring ``MEDI2I_PLUGIN_API``, a small working method of the
kind, a README with a model-card skeleton, tests that run medi2i's contract checks, and
an example workflow. See ``docs/writing-a-method.md``.

Example:
    >>> from medi2i.plugin_kit import generate_plugin
    >>> generate_plugin("my-method", "paired", tmp_path / "medi2i-my-method")  # doctest: +SKIP
"""

from __future__ import annotations

from medi2i.plugin_kit.generator import (
    PLUGIN_API,
    PLUGIN_KINDS,
    PluginKind,
    PluginNames,
    generate_plugin,
    render_plugin,
)

__all__ = [
    "PLUGIN_API",
    "PLUGIN_KINDS",
    "PluginKind",
    "PluginNames",
    "generate_plugin",
    "render_plugin",
]
