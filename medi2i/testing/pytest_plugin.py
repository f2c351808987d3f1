"""pytest fixtures for method and plugin authors.

pytest loads this module in every session of an environment where medi2i is installed
(entry point ``medi2i`` of group ``pytest11``), so a plugin repository needs no copied
``conftest.py``. Under ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``, or with ``-p no:medi2i``,
opt in from a ``conftest.py``::

    pytest_plugins = ["medi2i.testing.pytest_plugin"]

Since it is loaded into sessions that may not test medi2i at all, importing it costs
no torch, MONAI or plugin discovery: fixtures import what they need when a test asks
for them, and nothing here loads or selects plugins. To keep plugins installed beside
yours out of your tests, see :func:`medi2i.testing.plugin_selection.load_only_plugins`.

Fixtures:
    medi2i_volume: A small single-channel ``MetaTensor`` on an oblique grid.
    medi2i_volume_file: Path of that volume written as NIfTI in ``tmp_path``.
    medi2i_registry: A fresh :class:`medi2i.Registry` of the installed plugins.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.registry import Registry


@pytest.fixture
def medi2i_volume() -> MetaTensor:
    """A (1, 24, 20, 16) float32 volume of blobs on an oblique, anisotropic grid."""
    from medi2i.testing.volumes import make_volume

    return make_volume()


@pytest.fixture
def medi2i_volume_file(tmp_path: Path) -> Path:
    """Path of ``input.nii.gz`` in ``tmp_path``, holding the ``medi2i_volume`` image."""
    from medi2i.testing.volumes import write_volume_file

    return write_volume_file(tmp_path)


@pytest.fixture
def medi2i_registry() -> Registry:
    """A fresh registry: plugins are discovered again, honouring the environment switches."""
    from medi2i.registry import Registry

    return Registry()
