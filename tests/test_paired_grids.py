"""A pair's target (of the source's shape) and mask must lie on the source's grid: a
CT or mask shifted against its MR is refused with both files named, in training and in
fitting, instead of being paired voxel by voxel with the wrong places."""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.data.meta_tensor import MetaTensor

from medi2i.data.cases import Case
from medi2i.errors import GeometryError
from medi2i.io import read_volume, write_volume
from medi2i.method import DataKind
from medi2i.testing.trainable_examples import TinyOptions, TinyRegression, write_paired_cases
from medi2i.training.data import load_training_volume
from medi2i.training.routes import fit_pair


def _shifted(path: Path, millimetres: float) -> None:
    volume = read_volume(path)
    affine = volume.affine.clone()
    affine[0, 3] += millimetres
    path.unlink()
    write_volume(MetaTensor(volume.as_tensor(), affine=affine), path)


def _load(case: Case) -> None:
    load_training_volume(
        case,
        method=TinyRegression(TinyOptions(roi_size=(8, 8, 8))),
        kind=DataKind.PAIRED,
        domain=0,
        patch_size=(8, 8, 8),
        foreground_threshold=None,
    )


@pytest.mark.parametrize("role", ["target", "mask"])
def test_training_refuses_a_pair_whose_volume_is_shifted(tmp_path: Path, role: str) -> None:
    case = write_paired_cases(tmp_path, count=1, shape=(12, 12, 12)).cases[0]
    _load(case)  # on one grid: accepted
    _shifted(case.images[role], 5.0)
    with pytest.raises(GeometryError, match=rf"the {role} .*{role}\.nii\.gz is not on the grid"):
        _load(case)


@pytest.mark.parametrize("role", ["target", "mask"])
def test_fitting_refuses_a_pair_whose_volume_is_shifted(tmp_path: Path, role: str) -> None:
    case = write_paired_cases(tmp_path, count=1, shape=(12, 12, 12)).cases[0]
    _shifted(case.images[role], 5.0)
    volumes = {name: read_volume(path) for name, path in case.images.items()}
    with pytest.raises(GeometryError, match=rf"resample the {role} onto the source"):
        fit_pair(
            TinyRegression(TinyOptions(roi_size=(8, 8, 8))),
            case.id,
            source=volumes["source"],
            target=volumes["target"],
            mask=volumes["mask"],
        )


def test_validation_refuses_a_case_whose_reference_or_mask_is_shifted(tmp_path: Path) -> None:
    from medi2i.data.cases import CaseSet
    from medi2i.training.validation import load_validation_cases

    cases = write_paired_cases(tmp_path, count=1, shape=(12, 12, 12))
    assert len(load_validation_cases(cases)) == 1  # on one grid: accepted
    case = cases.cases[0]
    _shifted(case.images["target"], 3.0)
    with pytest.raises(GeometryError, match=r"source .*source\.nii\.gz is not on the grid of ref"):
        load_validation_cases(cases)
    masked = CaseSet(
        DataKind.PAIRED, (Case(case.id, {**case.images, "source": case.images["target"]}),)
    )
    with pytest.raises(
        GeometryError, match=r"mask .*mask\.nii\.gz is not on the grid.*resample the mask"
    ):
        load_validation_cases(masked)
