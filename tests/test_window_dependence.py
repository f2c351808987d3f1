"""The checkerboard measure of ``benchmarks/quality/window_dependence.py``."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quality" / "window_dependence.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    if not SCRIPT.is_file():
        pytest.skip("benchmarks/quality/window_dependence.py is part of the medi2i repository")
    spec = importlib.util.spec_from_file_location("window_dependence", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _smooth() -> np.ndarray:
    x, y, _ = np.meshgrid(np.arange(32), np.arange(32), np.arange(32), indexing="ij")
    return 100.0 * np.sin(x / 7.0) + 50.0 * np.cos(y / 5.0)


def test_period_two_amplitude_reads_the_pattern_and_not_smooth_content(
    script: ModuleType,
) -> None:
    smooth = _smooth()
    everywhere = np.ones(smooth.shape, bool)
    index = np.indices(smooth.shape).sum(axis=0)
    pattern = 10.0 * (-1.0) ** index
    assert script.period_two_amplitude(smooth, everywhere) < 0.1
    assert script.period_two_amplitude(smooth + pattern, everywhere) == pytest.approx(
        10.0, rel=1e-6
    )
    # a pattern along one axis only counts for that axis: a third of the mean over axes
    along_x = 10.0 * (-1.0) ** np.indices(smooth.shape)[0]
    assert script.period_two_amplitude(smooth + along_x, everywhere) == pytest.approx(
        10 / 3, abs=0.05
    )


def test_period_two_amplitude_stays_small_for_noise_and_reads_inside_the_mask(
    script: ModuleType,
) -> None:
    smooth = _smooth()
    noise = np.random.default_rng(0).normal(0.0, 10.0, smooth.shape)
    everywhere = np.ones(smooth.shape, bool)
    assert script.period_two_amplitude(smooth + noise, everywhere) < 4.0
    # a checkerboard outside the mask is not read
    index = np.indices(smooth.shape).sum(axis=0)
    half = np.zeros(smooth.shape, bool)
    half[:16] = True
    outside_only = smooth + np.where(half, 0.0, 10.0 * (-1.0) ** index)
    assert script.period_two_amplitude(outside_only, half) < 0.1
    assert script.period_two_amplitude(outside_only, ~half) == pytest.approx(10.0, rel=1e-6)
