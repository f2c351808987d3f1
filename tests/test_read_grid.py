"""``read_grid``: a volume's grid from its header alone, equal to what ``read_volume``
gives, and ``None`` where the header cannot tell it."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medi2i.grid import Grid
from medi2i.io import builtin_readers, read_grid, read_volume


def _nifti(path: Path, affine: np.ndarray, *, unit: str = "mm") -> Path:
    image = nib.Nifti1Image(np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7), affine)
    image.header.set_xyzt_units(xyz=unit)
    nib.save(image, path)
    return path


@pytest.mark.parametrize("unit", ["mm", "meter"])
def test_a_nifti_header_gives_the_grid_read_volume_gives(tmp_path: Path, unit: str) -> None:
    affine = np.array(
        [[0.0, 0.0, -2.5, 10.0], [-0.8, 0.0, 0.0, -3.0], [0.0, 0.9, 0.0, 7.0], [0, 0, 0, 1]]
    )
    path = _nifti(tmp_path / "oblique.nii.gz", affine, unit=unit)
    grid = read_grid(path, readers=builtin_readers())
    assert grid is not None
    assert grid.same_as(Grid.of(read_volume(path, readers=builtin_readers())))
    assert grid.shape == (5, 6, 7)
    assert grid.spacing[2] == pytest.approx(2500.0 if unit == "meter" else 2.5)


def test_what_the_header_cannot_tell_is_none(tmp_path: Path) -> None:
    readers = builtin_readers()
    assert read_grid(tmp_path / "missing.nii.gz", readers=readers) is None
    (tmp_path / "notes.txt").write_text("no volume")
    assert read_grid(tmp_path / "notes.txt", readers=readers) is None
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not gzip")
    assert read_grid(broken, readers=readers) is None
    four_d = tmp_path / "series.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)), four_d)
    assert read_grid(four_d, readers=readers) is None
