"""The training-mask check of ``medi2i validate --check-data`` and of fitting: a mask
on another grid than its image is refused, one that holds the same voxels (stored in
another order, or on a super-resolution pair's finer target) passes, in the trainer too,
and both refuse a mask on neither grid with one message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medi2i.data.cases import Case
from tests.test_workflow_mistakes import _shift


def test_a_training_mask_of_the_same_voxels_stored_flipped_passes(tmp_path: Path) -> None:
    """The trainer brings a case's volumes onto one working grid, so a mask holding the
    image's voxels with an axis stored flipped is accepted; one moved 5 mm is not."""
    import nibabel as nib

    from medi2i.data.cases import Case
    from medi2i.errors import GeometryError
    from medi2i.workflow.checks import check_training_masks

    values = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)
    nib.save(nib.Nifti1Image(values, np.eye(4)), tmp_path / "image.nii.gz")
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    flipped[0, 3] = 5.0  # voxel 0 of the stored mask is voxel 5 of the image
    mask = (values[::-1] > 10).astype(np.uint8)
    nib.save(nib.Nifti1Image(mask, flipped), tmp_path / "mask.nii.gz")
    case = Case(
        id="c", images={"image": tmp_path / "image.nii.gz", "mask": tmp_path / "mask.nii.gz"}
    )
    check_training_masks([case], None)
    _shift(tmp_path / "mask.nii.gz", 5.0)
    with pytest.raises(GeometryError, match="training case 'c': the mask"):
        check_training_masks([case], None)


def test_a_super_resolution_mask_on_the_finer_target_grid_passes(tmp_path: Path) -> None:
    """Super-resolution pairs keep the mask on the high-resolution target's grid (as
    the Q2 workflows do); the check refused them as if it belonged to the source."""
    import nibabel as nib

    from medi2i.data.cases import Case
    from medi2i.errors import GeometryError
    from medi2i.workflow.checks import check_training_masks

    fine = np.ones((8, 8, 8), np.float32)
    nib.save(nib.Nifti1Image(fine, np.eye(4)), tmp_path / "target.nii.gz")
    nib.save(
        nib.Nifti1Image(fine[:, :, ::4], np.diag([1.0, 1.0, 4.0, 1.0])), tmp_path / "source.nii.gz"
    )
    nib.save(nib.Nifti1Image(fine.astype(np.uint8), np.eye(4)), tmp_path / "mask.nii.gz")
    images = {role: tmp_path / f"{role}.nii.gz" for role in ("source", "target", "mask")}
    check_training_masks([Case(id="sr", images=images)], None)
    _shift(tmp_path / "mask.nii.gz", 5.0)
    with pytest.raises(GeometryError, match="training case 'sr': the mask"):
        check_training_masks([Case(id="sr", images=images)], None)


def _super_resolution_case(folder: Path, *, mask_shift_mm: float = 0.0) -> Case:
    """A pair whose 8x8x8 target subdivides its 8x8x4 source's slices in two, with a
    mask on the target's grid covering target slices 4 and 5 (source slice 2)."""
    import nibabel as nib

    fine = np.random.default_rng(0).uniform(100.0, 200.0, (8, 8, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(fine, np.eye(4)), folder / "target.nii.gz")
    coarse = np.diag([1.0, 1.0, 2.0, 1.0])
    coarse[2, 3] = 0.5  # the outer edges of both grids coincide
    nib.save(nib.Nifti1Image(fine[:, :, ::2], coarse), folder / "source.nii.gz")
    mask = np.zeros((8, 8, 8), np.uint8)
    mask[:, :, 4:6] = 1
    shifted = np.eye(4)
    shifted[0, 3] = mask_shift_mm
    nib.save(nib.Nifti1Image(mask, shifted), folder / "mask.nii.gz")
    return Case(id="sr", images={r: folder / f"{r}.nii.gz" for r in ("source", "target", "mask")})


def _load_training(case: Case) -> object:
    from medi2i.method import DataKind
    from medi2i.testing.trainable_examples import TinyOptions, TinyRegression
    from medi2i.training.data import load_training_volume

    return load_training_volume(
        case,
        method=TinyRegression(TinyOptions(roi_size=(4, 4, 4))),
        kind=DataKind.PAIRED,
        domain=0,
        patch_size=(4, 4, 4),
        foreground_threshold=None,
    )


def test_the_trainer_centres_patches_in_a_mask_on_the_finer_target_grid(tmp_path: Path) -> None:
    """``validate --check-data`` passed a super-resolution mask on the target's grid
    and the trainer then refused it as not on the source's grid; it now takes it, a
    source voxel being foreground where a target voxel paired with it is."""
    from medi2i.training.data import TrainingVolume

    volume = _load_training(_super_resolution_case(tmp_path))
    assert isinstance(volume, TrainingVolume)
    _, _, z = np.unravel_index(volume.foreground, (8, 8, 4))
    assert set(z.tolist()) == {2}
    assert volume.foreground.size == 64


def test_the_trainer_and_check_data_refuse_a_moved_mask_alike(tmp_path: Path) -> None:
    """A mask on neither grid is refused by ``--check-data`` with the trainer's message,
    which says where a training mask may lie."""
    from medi2i.errors import GeometryError
    from medi2i.training.masks import MASK_GRID_RULE
    from medi2i.workflow.checks import check_training_masks

    case = _super_resolution_case(tmp_path, mask_shift_mm=3.0)
    with pytest.raises(GeometryError) as trained:
        _load_training(case)
    with pytest.raises(GeometryError) as checked:
        check_training_masks([case], None)
    assert str(trained.value) == str(checked.value)
    message = str(trained.value)
    assert "\n" not in message
    assert message.startswith(f"training case 'sr': the mask {case.images['mask']} is not")
    assert f"its target {case.images['target']}" in message
    assert MASK_GRID_RULE in message


def test_a_target_grid_mask_marks_the_source_voxels_it_pairs_with() -> None:
    from medi2i.training.masks import mask_on_source

    mask = np.zeros((4, 4, 7), bool)  # slice centres: 2 * 4 - 1 target slices
    mask[1, 2, 6] = True
    on_source = mask_on_source(mask, (4, 4, 4), (1, 1, 2))
    assert on_source.shape == (4, 4, 4)
    assert np.argwhere(on_source).tolist() == [[1, 2, 3]]
