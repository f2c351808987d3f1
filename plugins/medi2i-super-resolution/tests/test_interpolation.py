"""Tests of the interpolation method."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from medi2i_super_resolution.grids import GridWarning, finer_grid
from medi2i_super_resolution.interpolation import Interpolation
from monai.data import MetaTensor

from medi2i import Grid, InferenceSettings, OptionsError, predict_tensor
from medi2i.testing import check_method_contract, make_volume

SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)
RAMP = (2.0, -3.0, 1.5)
"""Slope of the test ramp along each array axis, per voxel."""


def upsample(image: MetaTensor, **options: object) -> MetaTensor:
    return predict_tensor(Interpolation(options), image, settings=SETTINGS)


def ramp_volume(shape: tuple[int, int, int]) -> MetaTensor:
    index = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    values = 7.0 + sum(s * i for s, i in zip(RAMP, index, strict=True))
    affine = make_volume((2, 2, 2)).affine  # oblique, anisotropic
    return MetaTensor(torch.from_numpy(values.astype(np.float32))[None], affine=affine)


def ramp_at(image: MetaTensor, output: MetaTensor) -> np.ndarray:
    """The ramp's exact values at the output's voxel centres (input voxel coordinates)."""
    to_input = np.linalg.solve(np.asarray(image.affine), np.asarray(output.affine))
    index = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in output.shape[1:]), indexing="ij")
    at = [sum(to_input[a, b] * index[b] for b in range(3)) + to_input[a, 3] for a in range(3)]
    return np.asarray(7.0 + sum(s * i for s, i in zip(RAMP, at, strict=True)))


@pytest.mark.parametrize("order", ["linear", "bspline"])
def test_keeps_the_method_contract(order: str) -> None:
    check_method_contract(Interpolation, options={"order": order})


def test_keeps_the_contract_on_centres() -> None:
    check_method_contract(Interpolation, options={"scale": (2, 1, 3), "align": "centres"})


@pytest.mark.parametrize("scale", [(1.0, 1.0, 4.0), (2.0, 3.0, 1.0), (1.5, 2.0, 2.5)])
def test_linear_reproduces_a_ramp_exactly(scale: tuple[float, float, float]) -> None:
    image = ramp_volume((9, 8, 7))

    output = upsample(image, order="linear", scale=scale, align="centres")

    np.testing.assert_allclose(output[0].numpy(), ramp_at(image, output), atol=1e-4)


def test_linear_reproduces_a_ramp_inside_the_edge_voxel_centres() -> None:
    image = ramp_volume((9, 8, 7))

    output = upsample(image, order="linear", scale=(2.0, 2.0, 4.0))  # align="edges"

    expected = ramp_at(image, output)
    inner = (slice(1, -1), slice(1, -1), slice(2, -2))  # outside the outer centres: replicated
    np.testing.assert_allclose(output[0].numpy()[inner], expected[inner], atol=1e-4)
    assert float(output[0, 0, 0, 0]) == pytest.approx(float(image[0, 0, 0, 0]))


@pytest.mark.parametrize(
    ("scale", "align", "every"),
    [((2.0, 3.0, 4.0), "centres", (0, 0, 0)), ((3.0, 3.0, 3.0), "edges", (1, 1, 1))],
)
def test_bspline_is_exact_on_the_input_voxel_centres(
    scale: tuple[float, float, float], align: str, every: tuple[int, int, int]
) -> None:
    image = make_volume((10, 9, 8), seed=3)

    output = upsample(image, order="bspline", scale=scale, align=align)

    steps = [int(s) for s in scale]
    on_input = tuple(slice(start, None, step) for start, step in zip(every, steps, strict=True))
    np.testing.assert_allclose(output[0].numpy()[on_input], image[0].numpy(), rtol=1e-5)


def test_bspline_replicates_the_edge_voxel_beyond_the_outer_centres() -> None:
    """With ``align="edges"`` the first two and last two of ×4 slices lie past the outer
    slice centres: they take the edge slice's value, as linear does, where the spline
    continued past the last centre overshoots (it gave -2.84 and 2.5 for 10 here)."""
    profile = torch.tensor([10.0, 100.0, 20.0, 100.0, 20.0, 100.0])
    image = MetaTensor(profile.expand(1, 3, 3, 6).clone(), affine=torch.eye(4, dtype=torch.float64))

    output = upsample(image, order="bspline", scale=(1, 1, 4), clip_margin=None)[0, 1, 1]

    np.testing.assert_allclose(output[:2].numpy(), [10.0, 10.0], atol=1e-4)
    np.testing.assert_allclose(output[-2:].numpy(), [100.0, 100.0], atol=1e-4)


def test_bspline_is_smoother_than_linear_between_samples() -> None:
    # a smooth signal sampled every 4th voxel: the cubic spline follows it more closely
    fine = make_volume((12, 12, 41), spacing=(1.0, 1.0, 1.0), seed=5)
    coarse_values = fine[0].numpy()[:, :, ::4]
    affine = fine.affine.clone()
    affine[:3, 2] *= 4.0
    coarse = MetaTensor(torch.from_numpy(np.ascontiguousarray(coarse_values))[None], affine=affine)

    errors = {
        order: float(
            np.abs(upsample(coarse, order=order, scale=(1, 1, 4), align="centres") - fine).mean()
        )
        for order in ("linear", "bspline")
    }

    assert errors["bspline"] < 0.5 * errors["linear"]


def test_output_lies_on_the_finer_grid(medi2i_volume: MetaTensor) -> None:
    output = upsample(medi2i_volume, scale=(1, 2, 4))
    expected = Grid.of(medi2i_volume).scaled((1.0, 2.0, 4.0))

    assert tuple(output.shape) == (1, 24, 40, 64)
    assert Grid.of(output).same_as(expected, atol=1e-6)


def test_default_output_is_1_mm_where_the_input_is_coarser(medi2i_volume: MetaTensor) -> None:
    output = upsample(medi2i_volume)  # 0.9 × 1.1 × 2.0 mm in, 24 × 20 × 16 voxels

    assert tuple(output.shape[1:]) == (24, 22, 32)  # the 0.9 mm axis is kept, not coarsened
    np.testing.assert_allclose(Grid.of(output).spacing, (0.9, 20 * 1.1 / 22, 1.0))


def test_an_input_at_the_target_spacing_is_returned_as_is() -> None:
    image = make_volume((12, 10, 8), spacing=(1.0, 1.0, 1.0))

    output = upsample(image, target_spacing=(1.0, 1.0, 1.0))

    assert torch.equal(output.as_tensor(), image.as_tensor())
    assert Grid.of(output).same_as(Grid.of(image))


def test_thick_slices_come_back_on_the_thin_slice_grid_with_centres() -> None:
    thin = make_volume((10, 10, 21), spacing=(1.0, 1.0, 1.0), seed=2)
    affine = thin.affine.clone()
    affine[:3, 2] *= 4.0  # every 4th slice: 0, 4, ..., 20
    thick = MetaTensor(thin[:, :, :, ::4].as_tensor().contiguous(), affine=affine)

    output = upsample(thick, target_spacing=(1.0, 1.0, 1.0), align="centres")

    assert Grid.of(output).same_as(Grid.of(thin), atol=1e-6)
    np.testing.assert_allclose(output[0].numpy()[:, :, ::4], thick[0].numpy(), rtol=1e-5)


def test_channels_are_interpolated_separately() -> None:
    image = make_volume((8, 8, 6))
    two = MetaTensor(torch.cat([image.as_tensor(), -image.as_tensor()]), affine=image.affine)

    output = upsample(two, scale=(1, 1, 2))

    np.testing.assert_allclose(output[1].numpy(), -output[0].numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "options",
    [
        {"order": "cubic"},
        {"scale": (1.0, 1.0, 0.0)},
        {"scale": (1.0, 1.0, 2.0), "target_spacing": (1.0, 1.0, 1.0)},
        {"zoom": 2},
    ],
)
def test_invalid_options_are_an_options_error(options: dict[str, object]) -> None:
    with pytest.raises(OptionsError, match="interpolation"):
        Interpolation(options)


def test_output_grid_agrees_with_finer_grid(medi2i_volume: MetaTensor) -> None:
    grid = Grid.of(medi2i_volume)
    method = Interpolation({"target_spacing": (0.5, 0.5, 0.5), "align": "centres"})

    expected = finer_grid(grid, target_spacing=(0.5, 0.5, 0.5), align="centres").grid
    with pytest.warns(GridWarning, match=r"0\.504878 × 0\.497619 × 0\.5 mm, not the 0\.5"):
        assert method.output_grid(grid).same_as(expected)


def sine_volume(spacing_mm: float, cycles_per_mm: float) -> MetaTensor:
    """80 voxels along x of ``100 + 50 sin``; 0.7 × 0.7 × 3 mm voxels as a clinical MR."""
    x = np.arange(80) * spacing_mm
    line = 100.0 + 50.0 * np.sin(2 * np.pi * cycles_per_mm * x)
    values = np.broadcast_to(line[:, None, None], (80, 8, 6)).astype(np.float32)
    affine = torch.from_numpy(np.diag([spacing_mm, spacing_mm, 3.0, 1.0]))
    return MetaTensor(torch.from_numpy(values.copy())[None], affine=affine)


def test_the_default_grid_keeps_in_plane_detail_finer_than_1_mm() -> None:
    """A 0.6 cycles/mm pattern at 0.7 mm came back at 1 mm as 0.4 cycles/mm (aliased)."""
    image = sine_volume(0.7, 0.6)

    output = upsample(image, order="linear")

    np.testing.assert_allclose(Grid.of(output).spacing, (0.7, 0.7, 1.0), atol=1e-6)
    line = output[0, :, 4, 4].numpy().astype(np.float64)
    np.testing.assert_allclose(line, image[0, :, 4, 0].numpy(), atol=1e-3)


@pytest.mark.filterwarnings("ignore::medi2i_super_resolution.grids.GridWarning")  # 0.933 mm
def test_an_explicitly_coarser_spacing_is_blurred_not_aliased() -> None:
    image = sine_volume(0.7, 0.6)  # above the 0.5 cycles/mm a 1 mm grid can hold

    output = upsample(
        image, order="linear", target_spacing=(1.0, 1.0, 1.0), clip_margin=None, coarsen=True
    )

    assert Grid.of(output).spacing[0] == pytest.approx(1.0)
    line = output[0, 2:-2, 4, 4].numpy().astype(np.float64)
    assert (line.max() - line.min()) / 2 < 25.0  # was 47.7 of 50, at 0.4 cycles/mm
    smooth = upsample(
        sine_volume(0.7, 0.05), order="linear", target_spacing=(1.0, 1.0, 1.0), coarsen=True
    )
    kept = smooth[0, 2:-2, 4, 4].numpy()
    assert (kept.max() - kept.min()) / 2 > 45.0  # detail the 1 mm grid holds survives
