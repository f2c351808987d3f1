"""Masks the run's checks look at before training: a training mask (checked by
:func:`check_training_pairs`, which ``medi2i run`` calls before its train stage, as
``validate --check-data`` does) and a validation mask, each refused with the message the
trainer, or validation, would give once training had begun."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk

from medi2i.data.discovery import discover_splits
from medi2i.errors import GeometryError
from medi2i.plugins import load_plugins
from medi2i.registry import Registry
from medi2i.workflow.checks import check_data, check_training_pairs
from medi2i.workflow.demo_data import write_demo_cases
from medi2i.workflow.loader import load_workflow, workflow_registry
from medi2i.workflow.schema import Workflow
from tests.workflow_texts import tiny_paired_workflow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "cases"
    write_demo_cases(root, count=4, shape=(12, 12, 12), spacing_mm=(14.0, 16.0, 14.0))
    return root


def _workflow(tmp_path: Path, demo: Path) -> tuple[Workflow, Registry, Path]:
    cases = tmp_path / "cases"
    shutil.copytree(demo, cases)
    path = tmp_path / "w.yaml"
    path.write_text(tiny_paired_workflow().replace("root: cases", f"root: {cases}"))
    registry = Registry(load_plugins())
    workflow = load_workflow(path, registry=registry)
    return workflow, workflow_registry(workflow, registry=registry), cases


def _shift(path: Path, mm: float = 5.0) -> None:
    image = sitk.ReadImage(str(path))
    x, y, z = image.GetOrigin()
    image.SetOrigin((x - mm, y, z))
    sitk.WriteImage(image, str(path))


def test_the_checks_before_training_refuse_a_moved_training_mask(
    tmp_path: Path, demo: Path
) -> None:
    workflow, registry, cases = _workflow(tmp_path, demo)
    splits = discover_splits(workflow.data)
    check_training_pairs(workflow, splits, registry)
    _shift(cases / "demo000" / "mask.nii.gz")
    with pytest.raises(GeometryError, match=r"^training case 'demo000': the mask .*mask\.nii"):
        check_training_pairs(workflow, splits, registry)


def test_a_validation_mask_off_its_reference_grid_is_refused_before_training(
    tmp_path: Path, demo: Path
) -> None:
    """Validation refused it at its first validation, after steps of training; the
    message is validation's own."""
    from medi2i.training.validation import load_validation_cases

    workflow, registry, cases = _workflow(tmp_path, demo)
    splits = discover_splits(workflow.data)
    check_data(workflow, splits, registry)
    _shift(cases / "demo001" / "mask.nii.gz")
    with pytest.raises(GeometryError) as checked:
        check_data(workflow, splits, registry)
    with pytest.raises(GeometryError) as validated:
        load_validation_cases(splits.validation)
    assert str(checked.value) == str(validated.value)
    assert str(checked.value).startswith("validation case 'demo001': mask ")
