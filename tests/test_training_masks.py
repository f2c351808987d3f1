"""The training-mask check of ``medi2i validate --check-data`` and of fitting: a mask
on another grid than its image is refused, one that holds the same voxels (stored in
another order, or on a super-resolution pair's finer target) passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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
