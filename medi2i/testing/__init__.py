"""Test helpers for medi2i method and plugin authors.

Example:
    >>> from medi2i.testing import make_volume
    >>> make_volume((8, 8, 8)).shape
    torch.Size([1, 8, 8, 8])

The pytest fixtures (``medi2i_volume``, ``medi2i_volume_file``, ``medi2i_registry``) live
in :mod:`medi2i.testing.pytest_plugin` (also reachable here, imported on first use);
enable them from a ``conftest.py`` with ``pytest_plugins = ["medi2i.testing.pytest_plugin"]``.
"""

from __future__ import annotations

from medi2i.testing.contract import check_method_contract, isolated_registry
from medi2i.testing.volumes import VolumeParameters, make_volume, volume_affine, write_volume_file

__all__ = [  # noqa: RUF022 (helpers first, then the fixtures)
    "VolumeParameters",
    "check_method_contract",
    "isolated_registry",
    "make_volume",
    "volume_affine",
    "write_volume_file",
    "medi2i_registry",
    "medi2i_volume",
    "medi2i_volume_file",
]

_FIXTURES = ("medi2i_volume", "medi2i_volume_file", "medi2i_registry")


def __getattr__(name: str) -> object:
    # the fixtures import pytest, which code using only the helpers should not need
    if name in _FIXTURES:
        from medi2i.testing import pytest_plugin

        return getattr(pytest_plugin, name)
    raise AttributeError(f"module 'medi2i.testing' has no attribute {name!r}")
