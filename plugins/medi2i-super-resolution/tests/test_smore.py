"""Self-supervised through-plane super-resolution (``smore``): grids, the in-plane
degradation against the thick-slice simulator, reproducibility, the time budget, and
that fitting on the input's own slices beats cubic interpolation."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from medi2i_super_resolution.grids import OutputGrid
from medi2i_super_resolution.interpolation import Interpolation
from medi2i_super_resolution.smore import Smore, degrade_axis, sample_phase
from monai.data.meta_tensor import MetaTensor
from scipy import ndimage

from medi2i import Grid, InferenceSettings, OptionsError, predict_tensor
from medi2i.evaluation.image_metrics import masked_psnr
from medi2i.io import read_volume, write_volume
from medi2i.synth import thick_slices
from medi2i.testing import check_method_contract

TINY = {"features": 8, "blocks": 1, "batch_size": 4, "patch_size": 16}


def phantom(size: int = 40, seed: int = 0) -> np.ndarray:
    """Sharp-edged ellipsoids of random intensities on a 1 mm grid: the same kind of
    structure along every axis, as a brain's is at this scale."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.arange(size),) * 3, indexing="ij"), axis=-1)
    volume = np.zeros((size,) * 3, np.float32)
    for _ in range(30):
        centre = rng.uniform(4, size - 4, 3)
        radii = rng.uniform(2, 8, 3)
        inside = (((grid - centre) / radii) ** 2).sum(-1) <= 1
        volume[inside] = rng.uniform(20, 100)
    return ndimage.gaussian_filter(volume, 0.6)


def thick_input(volume: np.ndarray, step: int = 4) -> MetaTensor:
    thick = thick_slices(volume, affine=np.eye(4), axis=2, slice_spacing_mm=float(step))
    return MetaTensor(torch.from_numpy(thick.data)[None], affine=torch.from_numpy(thick.affine))


def test_keeps_the_method_contract() -> None:
    check_method_contract(Smore, options={**TINY, "steps": 2})


def test_output_grid_refines_the_slice_axis_to_the_in_plane_spacing() -> None:
    thick = Grid((10, 64, 64), np.diag([6.5, 0.78, 0.78, 1.0]))

    default = Smore().output_grid(thick)
    asked = Smore().output_grid(thick, Smore.Condition(slice_factor=2))  # type: ignore[call-arg]

    assert default.shape[1:] == (64, 64)
    assert default.spacing[0] == pytest.approx(0.78, rel=0.01)
    assert asked.spacing == pytest.approx((3.25, 0.78, 0.78))
    assert Smore({"slice_factor": 4}).output_grid(thick).spacing[0] == pytest.approx(1.625)


def test_an_input_without_thick_slices_is_refused() -> None:
    with pytest.raises(OptionsError, match="'smore' refines only a thick-slice axis"):
        Smore().output_grid(Grid((8, 8, 8), np.eye(4)))
    with pytest.raises(OptionsError, match="use --method interpolation"):  # whatever grid
        Smore().output_grid(Grid((8, 8, 8), np.eye(4)), OutputGrid(scale=(1, 1, 2)))


def test_training_phase_follows_the_output_grid() -> None:
    thick = Grid((5, 8, 8), np.diag([4.0, 1.0, 1.0, 1.0]))
    centres = Smore({"align": "centres"}).restored_grid(thick)
    edges = Smore({"align": "edges"}).restored_grid(thick)

    assert sample_phase(thick, centres, 0) == pytest.approx(0.0)
    assert sample_phase(thick, edges, 0) == pytest.approx(1.5)  # slice 0 between voxels 1 and 2


def test_in_plane_degradation_samples_what_a_thick_slice_acquisition_keeps() -> None:
    volume = phantom(size=33)
    acquired = thick_slices(volume, affine=np.eye(4), axis=2, slice_spacing_mm=4.0).data

    # the same profile along an in-plane axis, read at the kept positions
    degraded = degrade_axis(
        np.moveaxis(volume, 2, 0), along=0, spacing_mm=1.0, slice_spacing_mm=4.0, thickness_mm=4.0
    )
    kept = np.moveaxis(degraded[::4], 0, 2)

    scale = float(np.abs(volume).max())
    assert np.abs(kept - acquired).max() < 0.02 * scale


def test_same_seed_same_output_and_the_seed_matters() -> None:
    image = thick_input(phantom(size=24))
    method = Smore({**TINY, "steps": 5})

    first = predict_tensor(method, image, settings=InferenceSettings(progress=False, seed=3))
    again = predict_tensor(method, image, settings=InferenceSettings(progress=False, seed=3))
    other = predict_tensor(method, image, settings=InferenceSettings(progress=False, seed=4))

    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_the_time_budget_stops_the_fitting_and_names_the_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    image = thick_input(phantom(size=24))
    settings = InferenceSettings(progress=False, seed=1)
    budgeted = Smore({**TINY, "steps": 10_000, "time_budget_s": 1e-9})

    with caplog.at_level(logging.WARNING):
        stopped = predict_tensor(budgeted, image, settings=settings)
    replay = predict_tensor(Smore({**TINY, "steps": 1}), image, settings=settings)

    assert "after 1 of 10000 steps" in caplog.text
    assert "steps=1 to reproduce" in caplog.text
    assert torch.equal(stopped, replay)


def test_the_provenance_records_the_steps_the_time_budget_stopped_at(tmp_path: Path) -> None:
    """``options.steps`` says 10000; the sidecar also says the 1 step actually run."""
    import json

    import medi2i

    source = write_volume(thick_input(phantom(size=24)), tmp_path / "thick.nii.gz")
    options = {**TINY, "steps": 10_000, "time_budget_s": 1e-9}
    settings = InferenceSettings(progress=False, seed=1, device="cpu")

    output = medi2i.predict(
        source, tmp_path / "fine.nii.gz", method="smore", options=options, settings=settings
    )

    record = json.loads(output.with_name("fine.provenance.json").read_text())
    assert record["options"]["steps"] == 10_000
    assert record["run"] == {"steps_run": 1}


def test_output_is_clipped_to_the_input_range() -> None:
    image = thick_input(phantom(size=24))
    output = predict_tensor(Smore({**TINY, "steps": 3}), image)

    width = float(image.max() - image.min())
    assert float(output.min()) >= float(image.min()) - 0.05 * width - 1e-4
    assert float(output.max()) <= float(image.max()) + 0.05 * width + 1e-4
    assert torch.isfinite(output).all()


def test_fitting_on_the_input_beats_cubic_interpolation() -> None:
    volume = phantom(size=40, seed=5)
    image = thick_input(volume)  # 10 slices 4 mm apart, kept from 40 at 1 mm
    options = {"features": 16, "blocks": 2, "batch_size": 8, "patch_size": 24}
    settings = InferenceSettings(progress=False, seed=0)

    cubic = predict_tensor(
        Interpolation({"align": "centres", "slice_factor": 4}), image, settings=settings
    )
    untrained = predict_tensor(Smore({**options, "align": "centres", "steps": 0}), image)
    fitted = predict_tensor(
        Smore({**options, "align": "centres", "steps": 300}), image, settings=settings
    )

    reference = volume[:, :, : cubic.shape[-1]]  # the centres grid: slices 0 ... 36
    mask = np.ones_like(reference)
    mask[:, :, :2] = mask[:, :, -2:] = 0  # away from the replicated ends
    psnr_cubic = masked_psnr(reference, cubic[0].numpy(), mask)
    psnr_untrained = masked_psnr(reference, untrained[0].numpy(), mask)
    psnr_fitted = masked_psnr(reference, fitted[0].numpy(), mask)
    assert abs(psnr_untrained - psnr_cubic) < 0.1  # the untrained network is the identity
    assert psnr_fitted > psnr_cubic + 1.0, (psnr_cubic, psnr_fitted)


def test_medi2i_predict_runs_it_on_a_file(tmp_path: Path) -> None:
    source, output = tmp_path / "thick.nii.gz", tmp_path / "fine.nii.gz"
    image = thick_input(phantom(size=24))
    write_volume(image, source)
    command = [sys.executable, "-m", "medi2i", "predict", str(source), str(output)]
    command += [
        "--method",
        "smore",
        "--device",
        "cpu",
        "--option",
        "steps=3",
        "-c",
        "slice_factor=2",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)

    assert run.returncode == 0, run.stderr
    result = read_volume(output)
    assert tuple(result.shape[-3:]) == (24, 24, 12)
    assert Grid.of(result).spacing == pytest.approx((1.0, 1.0, 2.0))
