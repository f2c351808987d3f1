"""Helpers of the tests of DICOM trees (``batch``, ``dicom ls``, the scan): a CLI with
the example methods, a small MR series, the last manifest record of each study (the
fixture ``locked``, of folders whose listing is refused, is in ``conftest.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.plugins import load_plugins
from medi2i.testing import example_methods
from medi2i.testing.dicom_series import write_series

VALUES = np.random.default_rng(0).integers(0, 800, size=(12, 10, 5)).astype(np.float64)
METHOD = ["--method", "example-self-rescaling", "--no-progress", "--device", "cpu"]


def command(*args: str) -> Result:
    """``medi2i ARGS`` with medi2i's example methods loaded."""
    plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
    return CliRunner().invoke(build_cli(plugins), list(args))


def mr(folder: Path) -> None:
    """A small MR series of :data:`VALUES` in ``folder``."""
    write_series(folder, VALUES, modality="MR", rescale=(1.0, 0.0))


def last_records(out: Path) -> dict[str, dict[str, object]]:
    """The last manifest record of each study of the batch in ``out``."""
    lines = (out / "manifest.jsonl").read_text().splitlines()
    return {record["study"]: record for record in map(json.loads, lines)}
