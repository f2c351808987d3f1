"""EDSR in 3D (Lim et al. 2017) with a slice-axis upsampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from medi2i_super_resolution.edsr import (
    Edsr,
    EdsrNetwork,
    ResidualBlock,
    interpolate_slices,
    shuffle_slices,
)
from monai.data import MetaTensor

from medi2i import Grid, InferenceSettings, InputError, OptionsError, predict_tensor
from medi2i.data.cases import CaseSet
from medi2i.testing import (
    check_distributed_training,
    check_method_contract,
    check_training_contract,
    make_volume,
)
from medi2i.training import TrainingConfig, read_history, train

SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)
SMALL = {"features": 4, "blocks": 1, "roi_size": (12, 12, 6)}


@pytest.mark.parametrize("factor", [2, 4])
def test_keeps_the_method_contract(factor: int) -> None:
    check_method_contract(Edsr, options={**SMALL, "factor": factor})


def test_keeps_the_training_contract(tmp_path: Path) -> None:
    check_training_contract(Edsr, tmp_path, options=SMALL, patch_size=(8, 8, 4))


@pytest.mark.slow
def test_trains_with_ddp_under_torchrun(tmp_path: Path) -> None:
    check_distributed_training(Edsr, tmp_path, options=SMALL, patch_size=(8, 8, 4))


def test_the_network_has_no_batch_norm_and_scales_its_residuals() -> None:
    network = EdsrNetwork(factor=2, features=4, blocks=3, residual_scale=0.1, skip=False)

    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in network.modules())
    blocks = [m for m in network.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 3
    assert all(block.scale == 0.1 for block in blocks)
    assert network(torch.zeros(2, 1, 5, 5, 3)).shape == (2, 1, 5, 5, 6)


def test_the_shuffle_interleaves_feature_groups_into_sub_slices() -> None:
    features = torch.randn(1, 6, 2, 2, 3)  # 3 groups of 2 features, 3 slices

    thin = shuffle_slices(features, 3)

    assert thin.shape == (1, 2, 2, 2, 9)
    for group in range(3):
        torch.testing.assert_close(
            thin[:, :, :, :, group::3], features[:, 2 * group : 2 * group + 2]
        )


def test_slice_interpolation_lands_on_the_thick_slices_and_between_them() -> None:
    thick = torch.tensor([0.0, 4.0, 8.0]).reshape(1, 1, 1, 1, 3)

    thin = interpolate_slices(thick, 4)[0, 0, 0, 0].tolist()

    assert thin == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 8.0, 8.0, 8.0]


@pytest.mark.parametrize(
    ("spacing", "expected"),
    [((0.78, 0.78, 6.5), (0.78, 0.78, 3.25)), ((6.5, 0.78, 0.78), (3.25, 0.78, 0.78))],
)
def test_the_slice_axis_is_refined_wherever_it_lies(
    spacing: tuple[float, float, float], expected: tuple[float, float, float]
) -> None:
    shape = tuple(6 if s == 6.5 else 14 for s in spacing)
    image = make_volume(shape, spacing=spacing, seed=2)  # type: ignore[arg-type]

    output = predict_tensor(Edsr({**SMALL, "factor": 2}), image, settings=SETTINGS)

    np.testing.assert_allclose(Grid.of(output).spacing, expected, atol=1e-6)
    assert tuple(output.shape[1:]) == tuple(11 if s == 6.5 else 14 for s in spacing)


def test_an_untrained_skip_model_lands_on_the_thick_slices() -> None:
    """Every factor-th output slice lies on an input slice centre: with a zero tail
    the output is the linear interpolation, equal to the input there."""
    image = make_volume((12, 12, 5), spacing=(1.0, 1.0, 4.0), seed=3)
    method = Edsr({**SMALL, "factor": 4, "clip_margin": None})
    torch.nn.init.zeros_(method.network.tail.weight)
    torch.nn.init.zeros_(method.network.tail.bias)

    output = predict_tensor(method, image, settings=SETTINGS)

    assert tuple(output.shape[1:]) == (12, 12, 17)
    np.testing.assert_allclose(output[..., ::4].numpy(), image.numpy(), rtol=1e-5, atol=1e-3)


def test_a_target_on_the_centres_grid_is_padded_to_the_networks_output() -> None:
    method = Edsr({**SMALL, "factor": 4})
    target = MetaTensor(torch.arange(9.0).reshape(1, 1, 1, 9) + 1.0)

    padded = method.preprocess_target(target)

    assert padded.shape[-1] == 12
    assert torch.equal(padded[..., 9:], padded[..., 8:9].expand(1, 1, 1, 3))


def test_grids_far_from_the_trained_factor_are_refused() -> None:
    image = make_volume((12, 12, 4), spacing=(0.78, 0.78, 6.5), seed=1)
    method = Edsr({**SMALL, "factor": 2})

    with pytest.raises(OptionsError, match="trained to refine the slice axis ×2"):
        predict_tensor(method, image, settings=SETTINGS, condition={"slice_factor": 6.5})
    fine = predict_tensor(method, image, settings=SETTINGS, condition={"slice_factor": 2.5})
    # 3 intervals of 6.5 mm become round(3 × 2.5) = 8 intervals: the field of view is kept
    assert fine.shape[-1] == 9
    np.testing.assert_allclose(Grid.of(fine).spacing[2], 6.5 * 3 / 8, rtol=1e-6)


def test_training_on_pairs_without_the_factor_is_an_input_error() -> None:
    batch = {"source": torch.zeros(1, 1, 8, 8, 4), "target": torch.zeros(1, 1, 8, 8, 4)}
    with pytest.raises(InputError, match="times as many slices"):
        Edsr(SMALL).training_step(batch, trainer=None)  # type: ignore[arg-type]


def test_a_target_in_another_place_is_refused(tmp_path: Path, thick_thin_pairs: CaseSet) -> None:
    """Only the shape of a finer target used to be checked: one moved 40 mm trained."""
    import nibabel as nib

    from medi2i import GeometryError

    moved = thick_thin_pairs.cases[0].images["target"]
    image = nib.load(str(moved))
    affine = image.affine.copy()
    affine[:3, 3] += [40.0, -25.0, 60.0]
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine), str(moved))
    config = TrainingConfig(steps=1, batch_size=2, device="cpu", progress=False)
    with pytest.raises(GeometryError, match=r"case 'case-0': the target .*target\.nii\.gz does"):
        train(Edsr(SMALL), thick_thin_pairs, config=config, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "model").exists()


def test_learns_to_restore_thin_slices(tmp_path: Path, thick_thin_pairs: CaseSet) -> None:
    """On pairs of a blob volume and every second slice of it, the L1 loss of the plain
    network (no interpolation skip: it must learn the whole image) falls well below the
    untrained network's."""
    options = {**SMALL, "features": 8, "learning_rate": 2e-3, "interpolation_skip": False}
    config = TrainingConfig(steps=60, batch_size=4, device="cpu", log_every=1, progress=False)

    result = train(Edsr(options), thick_thin_pairs, config=config, run_dir=tmp_path / "run")

    losses = [r["losses"]["l1"] for r in read_history(result.history) if "losses" in r]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:5])


class _InterpolationWithInPlaneRamp(torch.nn.Module):
    """Linear interpolation between slices (mirror-symmetric along the slice axis) plus
    each voxel's position along the network's first in-plane axis (not symmetric)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(x.shape[2], dtype=x.dtype).reshape(1, 1, -1, 1, 1)
        return interpolate_slices(x, 2) + ramp


def test_mirroring_along_the_inputs_slice_axis_keeps_the_thin_slices_in_place() -> None:
    """Slices on array axis 0 of the input: ``mirror_axes=(0,)`` mirrors that axis (the
    network's last), and the mirrored pass comes back on the same thin slices, so a
    network symmetric along it predicts the same with and without mirroring."""
    image = make_volume((5, 12, 12), spacing=(4.0, 1.0, 1.0), seed=4)
    method = Edsr({**SMALL, "factor": 2, "clip_margin": None})
    method._network = _InterpolationWithInPlaneRamp()
    settings = {"device": "cpu", "amp": False, "progress": False, "roi_size": (12, 12, 6)}

    plain = predict_tensor(method, image, settings=settings)
    mirrored = predict_tensor(method, image, settings={**settings, "mirror_axes": (0,)})

    assert tuple(mirrored.shape[1:]) == (9, 12, 12)
    torch.testing.assert_close(mirrored.as_tensor(), plain.as_tensor(), atol=1e-4, rtol=0)


def test_training_never_flips_patches_along_the_slice_axis(
    tmp_path: Path, thick_thin_pairs: CaseSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default augmentation flips along every axis; a flipped pair would put the
    target's thin slices off where the network writes them, so the slice axis is left out."""
    import medi2i.training.run as run_module

    seen = []
    sampler = run_module.PatchSampler

    def recording(*args: object, **kwargs: object) -> object:
        seen.append(kwargs["augmentation"])
        return sampler(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(run_module, "PatchSampler", recording)
    config = TrainingConfig(steps=1, batch_size=2, device="cpu", progress=False)
    assert config.augmentation.flip_axes == (0, 1, 2)

    train(Edsr(SMALL), thick_thin_pairs, config=config, run_dir=tmp_path / "run")

    assert [augmentation.flip_axes for augmentation in seen] == [(0, 1)]
