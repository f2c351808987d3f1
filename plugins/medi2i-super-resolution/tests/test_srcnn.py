"""Tests of the 3D SRCNN method."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from medi2i_super_resolution.interpolation import Interpolation
from medi2i_super_resolution.srcnn import SCALE_KEY, Srcnn, SrcnnNetwork
from monai.data import MetaTensor
from scipy import ndimage

import medi2i
from medi2i import Grid, InferenceSettings, InputError, OptionsError, predict_tensor
from medi2i.testing import check_method_contract, make_volume

SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)
SMALL = {"filters": (8, 4), "kernel_sizes": (5, 1, 3), "roi_size": (16, 16, 16)}
"""A network small enough to train in seconds on two CPU cores."""
SLICE_STEP = 4
THIN_SHAPE = (24, 24, 25)
"""Thin-slice test volumes: ``25 - 1`` slices is a multiple of the slice step, so the
kept slices 0, 4, ..., 24 come back exactly on this grid with ``align="centres"``."""


def thick_slices(thin: MetaTensor) -> MetaTensor:
    """Every 4th slice after a Gaussian slice profile of FWHM 4 slices."""
    sigma = SLICE_STEP / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    blurred = ndimage.gaussian_filter1d(thin[0].numpy(), sigma, axis=2, mode="nearest")
    affine = thin.affine.clone()
    affine[:3, 2] *= SLICE_STEP
    kept = np.ascontiguousarray(blurred[:, :, ::SLICE_STEP])
    return MetaTensor(torch.from_numpy(kept)[None], affine=affine)


def thin_volume(seed: int) -> MetaTensor:
    return make_volume(THIN_SHAPE, spacing=(1.0, 1.0, 1.0), seed=seed)


def interpolated(thick: MetaTensor) -> MetaTensor:
    return predict_tensor(Interpolation({"align": "centres"}), thick, settings=SETTINGS)


@pytest.mark.parametrize("grid", [{}, {"scale": (1, 1, 2), "align": "centres"}])
def test_keeps_the_method_contract(grid: dict[str, object]) -> None:
    check_method_contract(Srcnn, options={**SMALL, **grid})


def test_default_network_is_the_papers_base_network() -> None:
    network = Srcnn().network

    assert isinstance(network, SrcnnNetwork)
    sizes = [tuple(layer.weight.shape) for layer in network.children()]
    assert sizes == [(64, 1, 9, 9, 9), (32, 64, 1, 1, 1), (1, 32, 5, 5, 5)]


def test_with_a_zero_reconstruction_layer_it_is_interpolation() -> None:
    method = Srcnn({**SMALL, "align": "centres"})
    thick = thick_slices(thin_volume(seed=1))
    torch.nn.init.zeros_(method.network.reconstruction.weight)

    refined = predict_tensor(method, thick, settings=SETTINGS)

    np.testing.assert_allclose(refined.numpy(), interpolated(thick).numpy(), rtol=1e-5, atol=1e-3)


def test_thick_slices_come_back_on_the_thin_slice_grid() -> None:
    thin = thin_volume(seed=1)

    output = predict_tensor(
        Srcnn({**SMALL, "align": "centres"}), thick_slices(thin), settings=SETTINGS
    )

    assert Grid.of(output).same_as(Grid.of(thin), atol=1e-6)


def test_intensities_are_scaled_by_the_whole_volume() -> None:
    image = thin_volume(seed=2)
    method = Srcnn(SMALL)

    prepared = method.preprocess(image)
    restored = method.postprocess(prepared, prepared)

    assert prepared.meta[SCALE_KEY] == pytest.approx(float(image.abs().mean()))
    assert float(prepared.abs().mean()) == pytest.approx(1.0)
    np.testing.assert_allclose(restored.numpy(), image.numpy(), rtol=1e-5)


def test_training_on_unaligned_patches_is_an_input_error() -> None:
    method = Srcnn(SMALL)
    batch = {"source": torch.zeros(1, 1, 8, 8, 4), "target": torch.zeros(1, 1, 8, 8, 16)}

    with pytest.raises(InputError, match="interpolate the degraded"):
        method.training_step(batch, trainer=None)  # type: ignore[arg-type]


def test_learns_on_a_tiny_task_with_the_trainer(tmp_path: Path) -> None:
    training = pytest.importorskip("medi2i.training")
    from medi2i.data.cases import Case, CaseSet
    from medi2i.method import DataKind

    cases = []
    for seed in (1, 2):
        thin = thin_volume(seed)
        source = medi2i.write_volume(interpolated(thick_slices(thin)), tmp_path / f"s{seed}.nii.gz")
        target = medi2i.write_volume(thin, tmp_path / f"t{seed}.nii.gz")
        cases.append(Case(f"case{seed}", {"source": Path(source), "target": Path(target)}))
    config = training.TrainingConfig(
        steps=40,
        batch_size=2,
        device="cpu",
        amp=False,
        progress=False,
        log_every=1,
        augmentation=training.AugmentationConfig(enabled=False),
    )
    method = Srcnn({**SMALL, "learning_rate": 1e-3, "align": "centres"})

    result = training.train(
        method, CaseSet(DataKind.PAIRED, tuple(cases)), config=config, run_dir=tmp_path / "run"
    )

    records = [json.loads(line) for line in result.history.read_text().splitlines()]
    losses = [r["losses"]["mse"] for r in records if "losses" in r]
    assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:10])
    # on an unseen volume, the trained model beats the interpolation it refines
    unseen = thin_volume(seed=7)
    trained = medi2i.load_model(result.model_dir)
    errors = [
        float(((predict_tensor(m, thick_slices(unseen), settings=SETTINGS) - unseen) ** 2).mean())
        for m in (Interpolation({"align": "centres"}), trained)
    ]
    assert errors[1] < 0.9 * errors[0]


@pytest.mark.parametrize(
    "options",
    [
        {"kernel_sizes": (9, 2, 5)},
        {"filters": (0, 32)},
        {"learning_rate": 0.0},
        {"order": "nearest"},
        {"roi_size": (16, 0, 16)},
        {"layers": 3},
    ],
)
def test_invalid_options_are_an_options_error(options: dict[str, object]) -> None:
    with pytest.raises(OptionsError, match="srcnn"):
        Srcnn(options)
