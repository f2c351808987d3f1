"""``medi2i evaluate`` refuses metrics in HU on files that cannot be a CT in HU, says why
a metric is n/a, and lists each preset's metrics in its help from the presets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.evaluation.air import AIR_MAE_MISSING, AIR_MAE_NO_MASK
from medi2i.evaluation.metric_objects import METRIC_PRESETS, describe_presets
from medi2i.plugins import load_plugins


def _run(*args: str) -> Result:
    return CliRunner().invoke(build_cli(load_plugins()), ["evaluate", *args])


def _write(path: Path, values: np.ndarray) -> str:
    from medi2i.io import write_volume
    from medi2i.io.base import volume_from_array

    return str(
        write_volume(volume_from_array(values.astype(np.float32), np.eye(4), path=path), path)
    )


def _ct(seed: int = 0) -> np.ndarray:
    """A body of soft tissue (about 40 HU) in air (-1000 HU)."""
    values = np.full((16, 16, 16), -1000.0)
    values[3:13, 3:13, 3:13] = 40.0 + np.random.default_rng(seed).normal(0, 20, (10, 10, 10))
    return values


@pytest.mark.parametrize(
    ("reference", "prediction", "refused"),
    [
        (np.random.default_rng(0).uniform(0, 255, (16, 16, 16)).round(), None, "ref"),  # MR
        (_ct(), (_ct(1) + 1024) / 4095, "pred"),  # a CT stored in [0, 1]
    ],
)
def test_hounsfield_metrics_on_data_that_is_not_hu_are_refused(
    tmp_path: Path, reference: np.ndarray, prediction: np.ndarray | None, refused: str
) -> None:
    """The default synthrad preset scored an MR in 0-255 and labelled the numbers HU."""
    files = {
        "ref": _write(tmp_path / "ref.nii.gz", reference),
        "pred": _write(tmp_path / "pred.nii.gz", reference if prediction is None else prediction),
    }
    result = _run("-r", files["ref"], "-p", files["pred"])
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert f"{files[refused]}: no voxel is at or below -500" in line
    assert "--metrics mr" in line
    assert "--force-modality" in line
    forced = _run("-r", files["ref"], "-p", files["pred"], "--force-modality")
    assert forced.exit_code == 0, forced.output
    assert _run("-r", files["ref"], "-p", files["pred"], "--metrics", "mr").exit_code == 0


def test_a_ct_in_hu_is_scored_and_air_mae_says_why_it_is_missing(tmp_path: Path) -> None:
    ref = _write(tmp_path / "ref.nii.gz", _ct())
    pred = _write(tmp_path / "pred.nii.gz", _ct(1))
    mask = np.zeros((16, 16, 16))
    mask[3:13, 3:13, 3:13] = 1
    mask_file = _write(tmp_path / "mask.nii.gz", mask)
    result = _run("-r", ref, "-p", pred, "-m", mask_file)  # no air 10 voxels from the mask
    assert result.exit_code == 0, result.output
    assert f"note: air_mae is n/a: {AIR_MAE_MISSING}" in result.output
    document = json.loads(_run("-r", ref, "-p", pred, "--json").output)
    assert document["metrics"]["air_mae"] is None
    assert AIR_MAE_NO_MASK in document["missing"]["air_mae"]  # the Python metric's reason


def test_the_help_lists_every_presets_metrics() -> None:
    """The help said super_resolution: psnr,ssim; the preset also has edge_sharpness."""
    shown = "".join(_run("--help").output.split())  # without the wrapping's spaces
    for preset, names in METRIC_PRESETS.items():
        assert f"{preset}:" in shown
        assert ",".join(names) in shown
    assert "super_resolution: psnr,ssim,edge_sharpness" in describe_presets()
    assert "synthrad: CT in HU," in describe_presets()
