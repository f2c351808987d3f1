"""Geometry of medi2i.grid: scaled grids, the one same-grid check, LPS and RAS; and the
streaming file hash of medi2i.hashing."""

from __future__ import annotations

import doctest
import hashlib
import itertools
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data.meta_tensor import MetaTensor

import medi2i
import medi2i.grid
import medi2i.hashing
import medi2i.method
from medi2i.cli.evaluate_commands import LoadedVolume
from medi2i.cli.evaluate_commands import require_same_grid as require_same_files_grid
from medi2i.errors import GeometryError
from medi2i.grid import GRID_TOLERANCE_MM, Grid, SpatialPlan, lps_to_ras, ras_to_lps
from medi2i.hashing import BLOCK_BYTES, file_sha256
from medi2i.io import read_volume
from medi2i.resample import resample_to_grid
from medi2i.testing.volumes import volume_affine
from medi2i.workflow.evaluation import require_same_grid

OBLIQUE = volume_affine(
    spacing=(0.8, 1.2, 3.0), origin=(-40.0, 12.5, 7.0), rotation_deg=(20, -8, 35)
)
# an oblique ITK direction (columns are the index axes, LPS): about 30 degrees about z,
# then 15 about x
_C30, _S30 = np.cos(np.radians(30)), np.sin(np.radians(30))
_C15, _S15 = np.cos(np.radians(15)), np.sin(np.radians(15))
ITK_DIRECTION = np.array([[1, 0, 0], [0, _C15, -_S15], [0, _S15, _C15]]) @ np.array(
    [[_C30, -_S30, 0], [_S30, _C30, 0], [0, 0, 1]]
)


def edge_corners(grid: Grid) -> np.ndarray:
    """World positions (8, 3) of the outer corners of the grid's corner voxels."""
    corners = [
        [-0.5 if high == 0 else n - 0.5 for high, n in zip(pick, grid.shape, strict=True)]
        for pick in itertools.product((0, 1), repeat=3)
    ]
    index = np.c_[np.array(corners), np.ones(8)]
    world: np.ndarray = (grid.affine @ index.T).T[:, :3]
    return world


def shifted(grid: Grid, row: int, column: int, by: float) -> Grid:
    affine = grid.affine.copy()
    affine[row, column] += by
    return Grid(grid.shape, affine)


def volume_on(grid: Grid, name: str = "reference.nii.gz") -> MetaTensor:
    values = torch.arange(float(np.prod(grid.shape))).reshape(1, *grid.shape)
    return MetaTensor(values, affine=torch.as_tensor(grid.affine), meta={"filename_or_obj": name})


# -- the move -----------------------------------------------------------------------------


def test_grid_and_spatial_plan_are_one_class_wherever_imported() -> None:
    assert medi2i.Grid is medi2i.method.Grid is medi2i.grid.Grid
    assert medi2i.SpatialPlan is medi2i.method.SpatialPlan is medi2i.grid.SpatialPlan
    assert SpatialPlan(spacing=(1.0, 1.0, 2.0)).spacing == (1.0, 1.0, 2.0)


@pytest.mark.parametrize("module", [medi2i.grid, medi2i.hashing])
def test_module_examples(module: ModuleType) -> None:
    failed, attempted = doctest.testmod(module, raise_on_error=False)
    assert attempted > 0
    assert failed == 0


# -- scaled grids -------------------------------------------------------------------------


def test_scaled_grid_by_hand() -> None:
    """3 mm slices centred at z = 0, 3, 6 cover -1.5 to 7.5 mm; 1 mm slices centre at -1 to 7."""
    grid = Grid((2, 2, 3), np.diag([1.0, 1.0, 3.0, 1.0]))
    finer = grid.scaled((1, 1, 3))
    assert finer.shape == (2, 2, 9)
    np.testing.assert_allclose(finer.affine, np.diag([1.0, 1.0, 1.0, 1.0]) + _at((0, 0, -1)))
    coarser = grid.scaled((0.5, 1, 1))  # two 1 mm voxels become one 2 mm voxel at 0.5
    assert coarser.shape == (1, 2, 3)
    np.testing.assert_allclose(coarser.affine[:3, 3], (0.5, 0.0, 0.0))
    np.testing.assert_allclose(coarser.spacing, (2.0, 1.0, 3.0))


def _at(origin: tuple[float, float, float]) -> np.ndarray:
    translation = np.zeros((4, 4))
    translation[:3, 3] = origin
    return translation


@pytest.mark.parametrize("factors", [(2.0, 1.0, 3.0), (1.5, 2.5, 1.0), (0.5, 1.0, 0.25)])
def test_scaled_grid_keeps_the_outer_voxel_edges(factors: tuple[float, float, float]) -> None:
    grid = Grid((8, 6, 4), OBLIQUE)
    finer = grid.scaled(factors)
    assert finer.shape == tuple(round(n * f) for n, f in zip(grid.shape, factors, strict=True))
    np.testing.assert_allclose(edge_corners(finer), edge_corners(grid), atol=1e-9)
    np.testing.assert_allclose(
        finer.spacing, np.array(grid.spacing) / np.array(factors), rtol=1e-12
    )
    # the axes keep their directions
    np.testing.assert_allclose(finer.affine[:3, :3] * factors, grid.affine[:3, :3], atol=1e-12)


# -- the same-grid check ------------------------------------------------------------------


def test_grid_tolerance_is_a_micrometre() -> None:
    assert GRID_TOLERANCE_MM == 1e-3


@pytest.mark.parametrize(("row", "column"), [(0, 3), (1, 3), (2, 3)])
def test_same_grid_on_both_sides_of_the_tolerance(row: int, column: int) -> None:
    grid = Grid((8, 6, 4), OBLIQUE)
    assert grid.same_as(Grid(grid.shape, grid.affine.copy()))
    for sign in (1.0, -1.0):
        assert grid.same_as(shifted(grid, row, column, sign * 0.9 * GRID_TOLERANCE_MM))
        assert not grid.same_as(shifted(grid, row, column, sign * 1.1 * GRID_TOLERANCE_MM))
    assert grid.affine_gap(shifted(grid, row, column, 0.25)) == pytest.approx(0.25)


def test_same_grid_tolerance_is_absolute_far_from_the_origin() -> None:
    """A relative tolerance would let far-off grids drift by more than a micrometre."""
    affine = OBLIQUE.copy()
    affine[:3, 3] = (5000.0, -5000.0, 5000.0)
    grid = Grid((8, 6, 4), affine)
    assert not grid.same_as(shifted(grid, 0, 3, 2 * GRID_TOLERANCE_MM))


def test_same_grid_needs_the_same_shape_and_finite_affines() -> None:
    grid = Grid((8, 6, 4), OBLIQUE)
    assert not grid.same_as(Grid((8, 6, 5), OBLIQUE))
    assert not grid.same_as(Grid((6, 8, 4), OBLIQUE))
    broken = OBLIQUE.copy()
    broken[0, 3] = np.nan
    assert not Grid(grid.shape, broken).same_as(Grid(grid.shape, broken))


def test_a_stricter_tolerance_can_be_asked_for() -> None:
    grid = Grid((8, 6, 4), OBLIQUE)
    near = shifted(grid, 0, 3, 1e-5)
    assert grid.same_as(near)
    assert not grid.same_as(near, atol=1e-6)


def test_evaluation_checks_use_the_one_tolerance() -> None:
    grid = Grid((5, 4, 3), OBLIQUE)
    reference = volume_on(grid)
    require_same_grid(volume_on(shifted(grid, 1, 3, 0.9 * GRID_TOLERANCE_MM)), reference, what="x")
    with pytest.raises(GeometryError, match=r"^y is not on the grid of reference reference\.nii"):
        require_same_grid(
            volume_on(shifted(grid, 1, 3, 1.1 * GRID_TOLERANCE_MM)), reference, what="y"
        )

    def loaded(on: Grid, name: str) -> LoadedVolume:
        return LoadedVolume(Path(name), np.zeros(on.shape), on.affine)

    truth = loaded(grid, "ct.nii.gz")
    require_same_files_grid(loaded(shifted(grid, 2, 3, 0.9 * GRID_TOLERANCE_MM), "a"), truth)
    with pytest.raises(GeometryError, match=r"affines differ by up to 0\.0011 mm"):
        require_same_files_grid(loaded(shifted(grid, 2, 3, 1.1 * GRID_TOLERANCE_MM), "b"), truth)


@pytest.mark.parametrize(("row", "column"), [(1, 0), (2, 2), (0, 1)])
def test_same_grid_measures_how_far_the_field_of_view_moves(row: int, column: int) -> None:
    """A change of an axis entry moves the far end of the axis by the entry times its
    length: each entry within 1e-3 let a 0.05° tilt of 400 voxels move them 0.36 mm."""
    grid = Grid((8, 6, 4), OBLIQUE)
    lever = np.linalg.norm([grid.shape[column] - 0.5, 0.0])  # the far voxel edge
    assert grid.same_as(shifted(grid, row, column, 0.9 * GRID_TOLERANCE_MM / lever))
    assert not grid.same_as(shifted(grid, row, column, 1.1 * GRID_TOLERANCE_MM / lever))
    assert grid.world_gap(shifted(grid, row, column, 0.01)) == pytest.approx(0.01 * lever)

    long = Grid((400, 8, 8), np.eye(4))
    tilted = long.affine.copy()
    tilted[1, 0] = 9e-4  # 0.05°
    with pytest.raises(GeometryError, match=r"voxels up to 0\.3595 mm from the reference's"):
        require_same_grid(volume_on(Grid(long.shape, tilted)), volume_on(long), what="p")


def test_a_flipped_or_permuted_copy_of_the_grid_is_not_called_a_displacement() -> None:
    """A prediction stored with x flipped was refused as 'affines differ by up to
    153 mm', which reads as a misplaced volume; it is the same voxels, read otherwise."""
    grid = Grid((5, 4, 3), OBLIQUE)
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1.0, grid.shape[0] - 1
    flipped = Grid(grid.shape, grid.affine @ flip)
    swap = np.eye(4)[[1, 0, 2, 3]]
    swapped = Grid((4, 5, 3), grid.affine @ swap)
    for other in (flipped, swapped):
        with pytest.raises(GeometryError, match=r"same voxels in the world, stored with its axes"):
            require_same_grid(volume_on(other), volume_on(grid), what="p")
    with pytest.raises(GeometryError, match=r"affines differ by up to"):
        require_same_grid(volume_on(shifted(grid, 0, 3, 1.0)), volume_on(grid), what="p")


def test_resampling_onto_the_same_grid_copies_voxels() -> None:
    grid = Grid((5, 4, 3), OBLIQUE)
    volume = volume_on(grid)
    within = shifted(grid, 0, 3, 0.9 * GRID_TOLERANCE_MM)
    moved = resample_to_grid(volume, within)
    assert torch.equal(moved.as_tensor(), volume.as_tensor())
    np.testing.assert_array_equal(np.asarray(moved.affine), within.affine)
    beyond = shifted(grid, 0, 0, 0.05)  # voxels 5% longer along x: interpolated
    assert not torch.equal(resample_to_grid(volume, beyond).as_tensor(), volume.as_tensor())


# -- LPS and RAS --------------------------------------------------------------------------


def oblique_itk_image() -> sitk.Image:
    """A small oblique, anisotropic image as SimpleITK describes it (LPS)."""
    values = np.arange(6 * 5 * 4, dtype=np.int16).reshape(4, 5, 6)  # [z, y, x]
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.7, 1.3, 2.5))
    image.SetOrigin((31.0, -17.5, 64.25))
    image.SetDirection(tuple(ITK_DIRECTION.ravel()))
    return image


def itk_lps_affine(image: sitk.Image) -> np.ndarray:
    """ITK's index-to-physical map: ``origin + direction @ diag(spacing) @ index`` (LPS)."""
    affine = np.eye(4)
    direction = np.reshape(image.GetDirection(), (3, 3))
    affine[:3, :3] = direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return affine


def test_lps_affine_of_itk_maps_indices_as_itk_does() -> None:
    image = oblique_itk_image()
    affine = itk_lps_affine(image)
    for index in [(0, 0, 0), (5, 0, 0), (0, 4, 0), (0, 0, 3), (5, 4, 3), (2, 1, 3)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(index))
        np.testing.assert_allclose((affine @ [*index, 1.0])[:3], lps, atol=1e-9)


def test_lps_to_ras_agrees_with_itk_and_nibabel(tmp_path: Path) -> None:
    """ITK writes its LPS image as NIfTI, whose world is RAS: nibabel's affine of that
    file must be our conversion of ITK's own map."""
    image = oblique_itk_image()
    sitk.WriteImage(image, str(tmp_path / "oblique.nii"))
    sitk.WriteImage(image, str(tmp_path / "oblique.nrrd"))
    nifti_ras = np.asarray(nib.load(tmp_path / "oblique.nii").affine, dtype=np.float64)

    ras = lps_to_ras(itk_lps_affine(image))
    np.testing.assert_allclose(ras, nifti_ras, atol=1e-4)  # NIfTI stores float32
    # right (+x) and anterior (+y) in RAS are left and posterior in LPS; up stays up
    np.testing.assert_allclose(ras[:3, 3], (-31.0, 17.5, 64.25))
    for index in [(0, 0, 0), (5, 4, 3), (2, 1, 3)]:
        lps = image.TransformIndexToPhysicalPoint(index)
        np.testing.assert_allclose(lps_to_ras(lps), (nifti_ras @ [*index, 1.0])[:3], atol=1e-4)
        np.testing.assert_allclose(ras_to_lps((ras @ [*index, 1.0])[:3]), lps, atol=1e-9)
    # medi2i's ITK reader (NRRD, kept in LPS) lands on the same RAS grid
    volume = read_volume(tmp_path / "oblique.nrrd")
    np.testing.assert_allclose(np.asarray(volume.affine), ras, atol=1e-9)


def test_lps_ras_round_trip_of_an_itk_grid() -> None:
    lps = itk_lps_affine(oblique_itk_image())
    ras = lps_to_ras(lps)
    np.testing.assert_array_equal(ras_to_lps(ras), lps)
    np.testing.assert_array_equal(lps_to_ras(ras_to_lps(OBLIQUE)), OBLIQUE)
    np.testing.assert_array_equal(ras[2:], lps[2:])  # z and the homogeneous row untouched
    # the ITK direction is recovered from the RAS affine as a proper rotation
    back = ras_to_lps(ras)[:3, :3] / np.array(oblique_itk_image().GetSpacing())
    np.testing.assert_allclose(back, ITK_DIRECTION, atol=1e-12)
    assert np.linalg.det(back) == pytest.approx(1.0)


def test_lps_to_ras_makes_new_arrays_and_rejects_other_shapes() -> None:
    lps = np.eye(4)
    ras = lps_to_ras(lps)
    assert ras is not lps
    np.testing.assert_array_equal(lps, np.eye(4))
    assert np.signbit(lps_to_ras(np.zeros(3))).sum() == 0  # no -0.0 to write into headers
    with pytest.raises(ValueError, match="3 or 4 rows"):
        lps_to_ras(np.ones(2))
    with pytest.raises(ValueError, match="3 or 4 rows"):
        ras_to_lps(np.float64(1.0))


# -- file hashes --------------------------------------------------------------------------


def test_block_size_is_one_mebibyte() -> None:
    assert BLOCK_BYTES == 1 << 20


@pytest.mark.parametrize(
    "size", [0, 1, BLOCK_BYTES - 1, BLOCK_BYTES, BLOCK_BYTES + 1, 2 * BLOCK_BYTES + 12345]
)
def test_file_hash_is_sha256_of_the_content(tmp_path: Path, size: int) -> None:
    content = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "blocks.bin"
    path.write_bytes(content)
    assert file_sha256(path) == hashlib.sha256(content).hexdigest()
    assert file_sha256(str(path)) == file_sha256(path)


def test_file_hash_reads_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    content = b"medi2i" * (BLOCK_BYTES // 2)  # three blocks
    path = tmp_path / "large.bin"
    path.write_bytes(content)
    monkeypatch.setattr(medi2i.hashing, "BLOCK_BYTES", 1000)
    sizes: list[int] = []
    real_open = open

    class CountingFile:
        def __init__(self, name: Path, mode: str) -> None:
            self._stream = real_open(name, mode)

        def __enter__(self) -> CountingFile:
            return self

        def __exit__(self, *exc: object) -> None:
            self._stream.close()

        def read(self, size: int = -1) -> bytes:
            block: bytes = self._stream.read(size)
            sizes.append(len(block))
            return block

    monkeypatch.setattr(medi2i.hashing, "open", CountingFile, raising=False)
    assert file_sha256(path) == hashlib.sha256(content).hexdigest()
    assert max(sizes) == 1000
    assert sum(sizes) == len(content)


def test_file_hash_of_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "absent.bin")


def test_a_flipped_direction_is_not_reported_as_millimetres() -> None:
    """A prediction whose x axis pointed the other way was refused as 'affines differ by
    up to 2 mm': that compared direction entries, which are no distance."""
    grid = Grid((5, 4, 3), np.diag([1.0, 1.0, 1.0, 1.0]))
    affine = grid.affine.copy()
    affine[0, 0] = -1.0
    with pytest.raises(GeometryError, match=r"array axis 0 points the opposite way") as error:
        require_same_grid(volume_on(Grid(grid.shape, affine)), volume_on(grid), what="p")
    assert "differ by up to 2 mm" not in str(error.value)
    stretched = grid.affine.copy()
    stretched[2, 2] = 1.5
    with pytest.raises(GeometryError, match=r"axis vectors differ by up to 0\.5 mm per voxel"):
        require_same_grid(volume_on(Grid(grid.shape, stretched)), volume_on(grid), what="p")
