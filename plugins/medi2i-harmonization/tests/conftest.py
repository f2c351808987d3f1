"""Fixtures of the harmonization tests: medi2i's, and a T1-like three-tissue phantom.

medi2i's fixtures are imported rather than enabled with ``pytest_plugins`` because
pytest accepts ``pytest_plugins`` only in the top-level ``conftest.py``, and these tests
also run from the medi2i repository, where this file is not the top-level one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medi2i.testing.plugin_selection import load_only_plugins
from medi2i.testing.pytest_plugin import (  # noqa: F401 (fixtures are found by name)
    medi2i_registry,
    medi2i_volume,
    medi2i_volume_file,
)

PLUGIN_NAME = "harmonization"
"""This distribution's entry-point name (group ``medi2i``)."""

T1_TISSUES = {"csf": (300.0, 0.15), "grey": (600.0, 0.40), "white": (900.0, 0.45)}
"""Tissue → (mean intensity, share of the head) of the phantom: white matter brightest,
as on a T1-weighted image."""

Phantom = Callable[..., np.ndarray]


def t1_phantom(
    *,
    shape: tuple[int, int, int] = (32, 32, 32),
    tissues: dict[str, tuple[float, float]] | None = None,
    noise: float = 30.0,
    seed: int = 0,
) -> np.ndarray:
    """A head of tissues with Gaussian noise in an exactly zero background.

    The inner half of the volume (a centred box) is head; each head voxel is drawn
    from the tissues by share.
    """
    rng = np.random.default_rng(seed)
    chosen = tissues or T1_TISSUES
    means = np.array([mean for mean, _ in chosen.values()])
    shares = np.array([share for _, share in chosen.values()])
    volume = np.zeros(shape)
    head = tuple(slice(n // 4, n - n // 4) for n in shape)
    size = volume[head].shape
    labels = rng.choice(len(means), size=size, p=shares / shares.sum())
    volume[head] = means[labels] + rng.normal(0.0, noise, size)
    return volume


@pytest.fixture
def phantom() -> Phantom:
    """:func:`t1_phantom`, to call with other tissues, noise or seeds."""
    return t1_phantom


@pytest.fixture
def data_dir() -> Path:
    """The shared folder of real volumes (``MEDI2I_DATA_DIR``); skips when unset."""
    value = os.environ.get("MEDI2I_DATA_DIR", "")
    if not value or not Path(value).is_dir():
        pytest.skip("MEDI2I_DATA_DIR is not set to the folder of real volumes")
    return Path(value)


def pytest_configure(config: pytest.Config) -> None:
    """Load this distribution's plugin, not every plugin installed beside it."""
    load_only_plugins(config, [PLUGIN_NAME])
