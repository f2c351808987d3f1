"""``medi2i batch`` refuses a series beside a damaged DICOM file, as ``medi2i predict`` does.

The damaged file may be one of its slices (an end slice leaves no gap to notice): predict
refused such a folder, but batch translated the readable slices and recorded the study
``done``, a volume that may be a slice short.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.plugins import load_plugins
from medi2i.testing import example_methods
from medi2i.testing.dicom_series import write_series


def command(*args: str) -> Result:
    plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
    return CliRunner().invoke(build_cli(plugins), list(args))


def test_a_study_beside_a_damaged_file_fails_in_batch_as_in_predict(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    values = np.random.default_rng(0).integers(0, 800, size=(12, 10, 6)).astype(np.float64)
    files = write_series(root / "p1" / "t1", values, modality="MR", rescale=(1.0, 0.0))
    write_series(root / "p2" / "t1", values[:, :, :5], modality="MR", rescale=(1.0, 0.0))
    files[-1].write_bytes(files[-1].read_bytes()[:200])  # the last slice, cut short

    method = ["--method", "example-self-rescaling", "--no-progress", "--device", "cpu"]
    predicted = command("predict", str(root / "p1" / "t1"), str(tmp_path / "one"), *method)
    assert predicted.exit_code == 1
    assert "damaged DICOM file(s)" in predicted.output

    result = command("batch", str(root), str(out), *method)
    assert result.exit_code == 1, result.output
    assert "1 done, 0 skipped, 1 failed" in result.output
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    last = {record["study"]: record for record in records}
    assert last["p2/t1"]["status"] == "done"
    assert last["p1/t1"]["status"] == "failed"
    error = last["p1/t1"]["error"]
    assert error.startswith(f"{root / 'p1' / 't1'}: 1 damaged DICOM file(s) beside series ")
    assert files[-1].name in error
    assert not (out / "p1").exists()
