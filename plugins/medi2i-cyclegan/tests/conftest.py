"""Make medi2i's test fixtures available to this plugin's tests.

The fixtures are imported rather than enabled with ``pytest_plugins`` because pytest
accepts ``pytest_plugins`` only in the top-level ``conftest.py``, and these tests also
run from the medi2i repository, where this file is not the top-level one. In a plugin
repository of your own, ``pytest_plugins = ["medi2i.testing.pytest_plugin"]`` works too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from medi2i import Method
from medi2i.testing.plugin_selection import load_only_plugins
from medi2i.testing.pytest_plugin import (  # noqa: F401 (fixtures are found by name)
    medi2i_registry,
    medi2i_volume,
    medi2i_volume_file,
)

PLUGIN_NAME = "cyclegan"
"""This distribution's entry-point name (group ``medi2i``)."""


def pytest_configure(config: pytest.Config) -> None:
    """Load this distribution's plugin, not every plugin installed beside it."""
    load_only_plugins(config, [PLUGIN_NAME])


class RecordingTrainer:
    """The trainer API on the CPU, recording which optimizers stepped and the rate."""

    def __init__(self, method: Method, step_index: int = 0, total_steps: int = 10) -> None:
        self.modules = method.training_modules()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.step_index, self.total_steps = step_index, total_steps
        self.stepped: list[tuple[str, float]] = []
        self.watched: list[str] = []

    def add_optimizer(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        self.optimizers[name] = optimizer

    @contextmanager
    def autocast(self) -> Iterator[None]:
        yield

    def backward(self, loss: torch.Tensor, name: str) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad()
        loss.backward()

    def step(self, name: str) -> None:
        optimizer = self.optimizers[name]
        optimizer.step()
        self.stepped.append((name, optimizer.param_groups[0]["lr"]))

    def watch_generated(self, name: str, generated: torch.Tensor, real: torch.Tensor) -> None:
        self.watched.append(name)


@pytest.fixture
def recording_trainer() -> type[Any]:
    """The :class:`RecordingTrainer` class, for tests of one training step."""
    return RecordingTrainer
