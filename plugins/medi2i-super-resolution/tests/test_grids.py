"""Tests of the finer output grids."""

from __future__ import annotations

import numpy as np
import pytest
from medi2i_super_resolution.grids import GridOptions, GridWarning, finer_grid

from medi2i import Grid, OptionsError
from medi2i.testing import make_volume

OBLIQUE = Grid.of(make_volume((20, 18, 16)))  # spacing 0.9 × 1.1 × 2.0 mm, rotated


def corners(grid: Grid, *, at: float) -> np.ndarray:
    """World positions (mm) of the first and last voxel, ``at`` voxels outwards."""
    first = np.array([-at, -at, -at, 1.0])
    last = np.array([n - 1 + at for n in grid.shape] + [1.0])
    return np.stack([grid.affine @ first, grid.affine @ last])[:, :3]


@pytest.mark.parametrize("scale", [(1.0, 1.0, 4.0), (2.0, 3.0, 1.0), (1.5, 1.0, 2.5)])
def test_edges_grid_is_grid_scaled(scale: tuple[float, float, float]) -> None:
    finer = finer_grid(OBLIQUE, scale=scale, align="edges")
    expected = OBLIQUE.scaled(scale)

    assert finer.grid.shape == expected.shape
    np.testing.assert_allclose(finer.grid.affine, expected.affine, atol=1e-9)


@pytest.mark.parametrize("scale", [(1.0, 1.0, 4.0), (2.0, 3.0, 1.0), (1.3, 1.0, 2.7)])
def test_edges_grid_keeps_the_outer_voxel_edges(scale: tuple[float, float, float]) -> None:
    finer = finer_grid(OBLIQUE, scale=scale, align="edges")

    np.testing.assert_allclose(corners(finer.grid, at=0.5), corners(OBLIQUE, at=0.5), atol=1e-9)


@pytest.mark.parametrize("scale", [(1.0, 1.0, 4.0), (2.0, 3.0, 1.0), (1.3, 1.0, 2.7)])
def test_centres_grid_keeps_the_outer_voxel_centres(scale: tuple[float, float, float]) -> None:
    finer = finer_grid(OBLIQUE, scale=scale, align="centres")

    np.testing.assert_allclose(corners(finer.grid, at=0.0), corners(OBLIQUE, at=0.0), atol=1e-9)


def test_integer_scales_give_whole_multiples_of_voxels() -> None:
    edges = finer_grid(OBLIQUE, scale=(1.0, 2.0, 4.0), align="edges")
    centres = finer_grid(OBLIQUE, scale=(1.0, 2.0, 4.0), align="centres")

    assert edges.grid.shape == (20, 36, 64)
    assert centres.grid.shape == (20, 35, 61)
    np.testing.assert_allclose(edges.grid.spacing, (0.9, 0.55, 0.5))
    np.testing.assert_allclose(centres.grid.spacing, (0.9, 0.55, 0.5))


def test_target_spacing_is_met_when_it_divides_the_field_of_view() -> None:
    grid = Grid((10, 10, 12), np.diag([1.0, 1.0, 3.0, 1.0]))

    finer = finer_grid(grid, target_spacing=(0.5, 1.0, 1.0))

    assert finer.grid.shape == (20, 10, 36)
    np.testing.assert_allclose(finer.grid.spacing, (0.5, 1.0, 1.0))


def test_a_half_voxel_count_rounds_the_same_in_metres_and_millimetres() -> None:
    """77 slices of 0.5 mm at 1 mm make 38.5 voxels: the same volume stored in metres
    (its spacing then a hair off 0.5 mm once converted) got 38 slices, in mm 39 (Python
    rounds a half to even, and float noise pushed it either side)."""
    for spacing in (0.5, 0.5e-3 * 1000.0, 0.5 * (1 + 1e-13), 0.5 * (1 - 1e-13)):
        grid = Grid((8, 8, 77), np.diag([1.0, 1.0, spacing, 1.0]))
        assert finer_grid(grid, target_spacing=(1.0, 1.0, 1.0)).grid.shape[2] == 39


def test_an_input_at_the_target_spacing_keeps_its_grid() -> None:
    for align in ("edges", "centres"):
        finer = finer_grid(OBLIQUE, target_spacing=OBLIQUE.spacing, align=align)  # type: ignore[arg-type]

        assert finer.is_identity(OBLIQUE.shape)
        assert finer.grid.same_as(OBLIQUE, atol=1e-9)


def test_scale_replaces_the_default_target_spacing() -> None:
    options = GridOptions.model_validate({"scale": (1, 1, 4)})

    assert options.target_spacing is None
    assert GridOptions.model_validate(options.model_dump()) == options


@pytest.mark.parametrize(
    "raw",
    [
        {"target_spacing": (1.0, 1.0, 1.0), "scale": (1.0, 1.0, 2.0)},
        {"scale": (1.0, 0.0, 2.0)},
        {"target_spacing": (1.0, -1.0, 1.0)},
        {"align": "corners"},
    ],
)
def test_invalid_grid_options_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="validation error"):
        GridOptions.model_validate(raw)


def test_finer_grid_needs_exactly_one_rule() -> None:
    with pytest.raises(OptionsError, match="exactly one"):
        finer_grid(OBLIQUE)


def test_the_default_target_spacing_never_coarsens_an_axis() -> None:
    """0.7 × 0.7 × 3 mm went to 1 × 1 × 1 mm: super-resolution shrank the image in-plane."""
    from medi2i_super_resolution.grids import output_grid_for

    grid = Grid((80, 40, 6), np.diag([0.7, 0.7, 3.0, 1.0]))

    default = output_grid_for(grid, GridOptions()).grid
    saved = output_grid_for(grid, GridOptions.model_validate(GridOptions().model_dump())).grid
    with pytest.warns(GridWarning, match=r"0\.7 × 0\.7 × 1 mm, not the 1 × 1 × 1 mm .*coarsen"):
        kept = output_grid_for(grid, GridOptions(target_spacing=(1.0, 1.0, 1.0)))
    coarser = output_grid_for(grid, GridOptions(target_spacing=(1.0, 1.0, 1.0), coarsen=True))

    assert default.shape == saved.shape == kept.grid.shape == (80, 40, 18)
    np.testing.assert_allclose(default.spacing, (0.7, 0.7, 1.0))
    assert coarser.grid.shape == (56, 28, 18)  # asked for with coarsen: coarser in-plane


@pytest.mark.parametrize("raw", [{"scale": (0.5, 1.0, 1.0)}, {"slice_factor": 0.5}])
def test_a_scale_below_one_is_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="at least 1 along every axis"):
        GridOptions.model_validate(raw)
    with pytest.raises(OptionsError, match="at least 1"):
        finer_grid(OBLIQUE, **raw)  # type: ignore[arg-type]
