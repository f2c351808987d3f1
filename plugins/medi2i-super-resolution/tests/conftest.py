"""Make medi2i's test fixtures available to this plugin's tests.

The fixtures are imported rather than enabled with ``pytest_plugins`` because pytest
accepts ``pytest_plugins`` only in the top-level ``conftest.py``, and these tests also
run from the medi2i repository, where this file is not the top-level one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medi2i.testing.plugin_selection import load_only_plugins
from medi2i.testing.pytest_plugin import (  # noqa: F401 (fixtures are found by name)
    medi2i_registry,
    medi2i_volume,
    medi2i_volume_file,
)

PLUGIN_NAME = "super-resolution"
"""This distribution's entry-point name (group ``medi2i``)."""


def pytest_configure(config: pytest.Config) -> None:
    """Load this distribution's plugin, not every plugin installed beside it."""
    load_only_plugins(config, [PLUGIN_NAME])


@pytest.fixture
def thick_thin_pairs(tmp_path: Path) -> object:
    """Two training pairs: a blob volume on a 1 mm grid (20 × 20 × 24, the target) and
    every second slice of it (the 2 mm source), as a paired case set."""
    from monai.data.meta_tensor import MetaTensor

    from medi2i import DataKind
    from medi2i.data.cases import Case, CaseSet
    from medi2i.io import write_volume
    from medi2i.testing import make_volume

    cases = []
    for index in range(2):
        thin = make_volume((20, 20, 24), spacing=(1.0, 1.0, 1.0), seed=10 + index)
        thick = MetaTensor(thin.as_tensor()[..., ::2].clone(), affine=thin.affine.clone())
        thick.affine[:3, 2] *= 2
        folder = tmp_path / "pairs" / f"case-{index}"
        paths = {
            "source": write_volume(thick, folder / "source.nii.gz"),
            "target": write_volume(thin, folder / "target.nii.gz"),
        }
        cases.append(Case(id=f"case-{index}", images=paths))
    return CaseSet(kind=DataKind.PAIRED, cases=tuple(cases))
