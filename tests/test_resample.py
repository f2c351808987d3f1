from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from monai.data.meta_tensor import MetaTensor

from medi2i.errors import GeometryError, OptionsError
from medi2i.grid import Grid, SpatialPlan
from medi2i.resample import apply_spatial_plan, resample_to_grid

# array axes run (A→P, S→I, L→R) with 1, 1.5 and 2 mm voxels: an LPS-like, permuted layout
_PERMUTED_AFFINE = np.array(
    [
        [0.0, 0.0, 2.0, -20.0],
        [-1.0, 0.0, 0.0, 15.0],
        [0.0, -1.5, 0.0, 30.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def _volume(data: torch.Tensor, affine: np.ndarray) -> MetaTensor:
    return MetaTensor(data, affine=torch.as_tensor(affine, dtype=torch.float64))


def _world(grid: Grid) -> torch.Tensor:
    """World coordinates (3, X, Y, Z) of the grid's voxel centres, in mm."""
    axes = [torch.arange(n, dtype=torch.float64) for n in grid.shape]
    index = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    affine = torch.as_tensor(grid.affine)
    world: torch.Tensor = torch.einsum("ij,jxyz->ixyz", affine[:3, :3], index)
    return world + affine[:3, 3, None, None, None]


def _ramp(grid: Grid) -> torch.Tensor:
    """A linear function of world position, which trilinear interpolation reproduces exactly."""
    x, y, z = _world(grid)
    ramp: torch.Tensor = 0.03 * x - 0.02 * y + 0.05 * z + 1.0
    return ramp[None]


def _translated(shape: tuple[int, int, int], spacing: float = 1.0) -> Grid:
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = (3.0, -2.0, 5.0)
    return Grid(shape, affine)


def test_same_grid_is_returned_exactly() -> None:
    data = torch.randn(2, 8, 9, 10)
    volume = _volume(data, _PERMUTED_AFFINE)
    volume.meta["modality"] = "MR"
    out = resample_to_grid(volume, Grid.of(volume))
    assert isinstance(out, MetaTensor)
    assert torch.equal(out.as_tensor(), data)
    assert np.allclose(np.asarray(out.affine), _PERMUTED_AFFINE)
    assert out.meta["modality"] == "MR"


def test_orientation_round_trip_is_bitwise_exact() -> None:
    data = torch.randn(2, 8, 9, 10)
    # a NaN would spread to its neighbours under any interpolation, however exact the weights
    data[0, 3, 4, 5] = float("nan")
    volume = _volume(data, _PERMUTED_AFFINE)
    ras = apply_spatial_plan(volume, SpatialPlan(orientation="RAS"))
    assert np.allclose(np.diag(np.asarray(ras.affine))[:3], [2.0, 1.0, 1.5])
    back = resample_to_grid(ras, Grid.of(volume))
    finite = ~torch.isnan(data)
    assert torch.equal(torch.isnan(back.as_tensor()), ~finite)
    assert torch.equal(back.as_tensor()[finite], data[finite])
    assert np.allclose(np.asarray(back.affine), _PERMUTED_AFFINE)


def test_spacing_round_trip_recovers_a_linear_ramp() -> None:
    grid = _translated((24, 20, 22))
    ramp = _ramp(grid)
    coarse = apply_spatial_plan(_volume(ramp.float(), grid.affine), SpatialPlan(spacing=(2, 2, 2)))
    assert Grid.of(coarse).spacing == pytest.approx((2.0, 2.0, 2.0))
    back = resample_to_grid(coarse, grid)
    assert back.shape == ramp.shape
    # the last voxel or two lie beyond the coarse grid's last centre, where the edge is repeated
    interior = (slice(None), slice(1, -2), slice(1, -2), slice(1, -2))
    torch.testing.assert_close(back[interior].double(), ramp[interior], atol=1e-4, rtol=0)


def test_orientation_and_spacing_plan_round_trip_recovers_a_ramp() -> None:
    grid = Grid((20, 16, 12), _PERMUTED_AFFINE)
    ramp = _ramp(grid)
    plan = SpatialPlan(orientation="RAS", spacing=(2.0, 2.0, 2.0))
    working = apply_spatial_plan(_volume(ramp.float(), grid.affine), plan)
    back = resample_to_grid(working, grid)
    interior = (slice(None), slice(2, -2), slice(2, -2), slice(2, -2))
    torch.testing.assert_close(back[interior].double(), ramp[interior], atol=1e-4, rtol=0)


def test_large_outputs_are_interpolated_in_slabs(monkeypatch: pytest.MonkeyPatch) -> None:
    source = _translated((20, 20, 20))
    volume = _volume(torch.randn(2, 20, 20, 20), source.affine)
    target = source.scaled((1.5, 1.5, 1.5))
    whole = resample_to_grid(volume, target)
    monkeypatch.setattr("medi2i.resample._SLAB_VOXELS", 100)
    assert torch.equal(resample_to_grid(volume, target).as_tensor(), whole.as_tensor())


def test_linear_resampling_interpolates_rather_than_picks_values() -> None:
    torch.manual_seed(3)
    grid = _translated((16, 16, 16))
    data = torch.randint(0, 10, (1, 16, 16, 16)).float()
    coarse = resample_to_grid(_volume(data, grid.affine), _translated((8, 8, 8), spacing=2.0))
    linear = resample_to_grid(coarse, grid, mode="linear")
    nearest = resample_to_grid(coarse, grid, mode="nearest")
    source_values = set(data.flatten().tolist())
    assert not set(linear.as_tensor().flatten().tolist()) <= source_values
    assert set(nearest.as_tensor().flatten().tolist()) <= source_values


def test_oblique_grid_is_interpolated_in_world_coordinates() -> None:
    source = _translated((20, 20, 20))
    angle = np.deg2rad(20.0)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.2, 0.8, 1.0])
    affine[:3, 3] = source.affine[:3, 3] + 6.0
    target = Grid((8, 10, 8), affine)
    out = resample_to_grid(_volume(_ramp(source).float(), source.affine), target)
    torch.testing.assert_close(out.double(), _ramp(target), atol=1e-5, rtol=0)


def _edge_corners(grid: Grid) -> np.ndarray:
    corners = [
        [-0.5 if low else n - 0.5 for low, n in zip(pick, grid.shape, strict=True)] + [1.0]
        for pick in itertools.product([True, False], repeat=3)
    ]
    return np.sort((grid.affine @ np.array(corners).T)[:3], axis=1)


def test_super_resolution_grid_keeps_the_field_of_view() -> None:
    source = Grid((12, 10, 6), _PERMUTED_AFFINE)
    target = source.scaled((1.0, 2.0, 4.0))
    assert target.shape == (12, 20, 24)
    np.testing.assert_allclose(_edge_corners(target), _edge_corners(source), atol=1e-9)
    out = resample_to_grid(_volume(_ramp(source).float(), source.affine), target)
    assert tuple(out.shape[1:]) == target.shape
    np.testing.assert_allclose(np.asarray(out.affine), target.affine)
    # inside the outer half voxel of the source, trilinear interpolation is exact on a ramp
    interior = (slice(None), slice(1, -1), slice(2, -2), slice(4, -4))
    torch.testing.assert_close(out[interior].double(), _ramp(target)[interior], atol=1e-5, rtol=0)


def test_empty_plan_is_the_identity() -> None:
    volume = _volume(torch.randn(1, 4, 5, 6), _PERMUTED_AFFINE)
    assert apply_spatial_plan(volume, SpatialPlan()) is volume


def test_nearest_keeps_label_dtype() -> None:
    labels = torch.randint(0, 4, (1, 8, 8, 8), dtype=torch.int64)
    out = resample_to_grid(_volume(labels, np.eye(4)), _translated((4, 4, 4)), mode="nearest")
    assert out.dtype == torch.int64


def test_invalid_inputs_are_reported() -> None:
    volume = _volume(torch.randn(1, 4, 4, 4), np.eye(4))
    with pytest.raises(OptionsError, match="'linear' or 'nearest'"):
        resample_to_grid(volume, _translated((4, 4, 4)), mode="cubic")  # type: ignore[arg-type]
    with pytest.raises(GeometryError, match="channel-first"):
        resample_to_grid(torch.randn(4, 4, 4), _translated((4, 4, 4)))
    with pytest.raises(GeometryError, match="singular"):
        resample_to_grid(_volume(torch.randn(1, 4, 4, 4), np.zeros((4, 4))), _translated((4, 4, 4)))


def test_the_working_grid_reaches_the_last_input_voxel_centre() -> None:
    """20 slices of 2.5 mm at 1 mm gave 48 working slices, the last 0.5 mm short of the
    last input slice, whose round trip then copied the value from 0.5 mm inside."""
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    ramp = torch.arange(20, dtype=torch.float32).mul(12.5).expand(1, 4, 4, 20).clone()
    volume = _volume(ramp, affine)

    working = apply_spatial_plan(volume, SpatialPlan(spacing=(1.0, 1.0, 1.0)))
    back = resample_to_grid(working, Grid.of(volume))

    assert tuple(working.shape[1:]) == (4, 4, 49)  # reaches 48 mm, past 47.5 mm
    assert float((back - ramp).abs().max()) <= 1.25 + 1e-4  # was 2.5 (5 per mm × 0.5 mm)


def test_an_input_at_the_working_spacing_keeps_its_shape_and_values() -> None:
    grid = _translated((24, 20, 22))
    ramp = _ramp(grid).float()
    working = apply_spatial_plan(_volume(ramp, grid.affine), SpatialPlan(spacing=grid.spacing))
    assert tuple(working.shape[1:]) == grid.shape
    torch.testing.assert_close(working.as_tensor(), ramp, atol=1e-4, rtol=0)
