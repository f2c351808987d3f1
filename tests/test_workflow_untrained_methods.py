"""A method with nothing to learn (training ``none``, or a ``fit`` method with fitting
off) may put every case in validation and test: nothing reads a training split. A method
that trains or fits still needs a training case."""

from __future__ import annotations

from pathlib import Path

import pytest

from medi2i.data.discovery import discover_splits
from medi2i.errors import InputError
from medi2i.plugins import load_plugins
from medi2i.registry import Registry
from medi2i.workflow.demo_data import write_demo_cases
from medi2i.workflow.loader import load_workflow, workflow_registry
from medi2i.workflow.run_folder import RunFolder
from medi2i.workflow.schema import Workflow
from medi2i.workflow.stages import learns_from_cases, train_stage, workflow_splits

METHODS = {
    "interpolation": "{id: interpolation, options: {target_spacing: [2.0, 2.0, 2.0]}}",
    "zscore-saved": "{id: zscore, fit: false}",
    "zscore-fitted": "{id: zscore, fit: true}",
    "regression-unet": "{id: regression-unet}",
}


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("untrained") / "cases"
    write_demo_cases(root, count=2, shape=(8, 8, 8))
    return root


def _workflow(tmp_path: Path, cases: Path, method: str) -> tuple[Workflow, Registry]:
    path = tmp_path / "w.yaml"
    path.write_text(
        "data:\n"
        "  kind: paired\n"
        f"  layout: {{type: synthrad, root: {cases}}}\n"
        "  split: {test: [demo000, demo001]}\n"
        f"method: {METHODS[method]}\n"
        "inference: {device: cpu, progress: false}\n"
        f"output: {{root: {tmp_path / 'runs'}}}\n"
    )
    registry = Registry(load_plugins())
    workflow = load_workflow(path, registry=registry)
    return workflow, workflow_registry(workflow, registry=registry)


def test_discovery_accepts_an_empty_training_split_only_when_told(
    tmp_path: Path, cases: Path
) -> None:
    workflow, _ = _workflow(tmp_path, cases, "interpolation")
    splits = discover_splits(workflow.data, training=False)
    assert splits.train.cases == ()
    assert [case.id for case in splits.test.cases] == ["demo000", "demo001"]
    with pytest.raises(InputError, match="leaves no training case out of 2"):
        discover_splits(workflow.data)


@pytest.mark.parametrize("method", ["interpolation", "zscore-saved"])
def test_a_method_with_nothing_to_learn_may_test_every_case(
    tmp_path: Path, cases: Path, method: str
) -> None:
    workflow, registry = _workflow(tmp_path, cases, method)
    assert not learns_from_cases(workflow, registry)
    splits = workflow_splits(workflow, registry)
    assert (len(splits.train.cases), len(splits.validation.cases)) == (0, 0)
    assert len(splits.test.cases) == 2


@pytest.mark.parametrize("method", ["zscore-fitted", "regression-unet"])
def test_a_method_that_trains_or_fits_still_needs_a_training_case(
    tmp_path: Path, cases: Path, method: str
) -> None:
    workflow, registry = _workflow(tmp_path, cases, method)
    assert learns_from_cases(workflow, registry)
    with pytest.raises(InputError, match=r"leaves no training case out of 2.*trains or fits"):
        workflow_splits(workflow, registry)


def test_the_train_stage_saves_such_a_method_without_training_cases(
    tmp_path: Path, cases: Path
) -> None:
    workflow, registry = _workflow(tmp_path, cases, "interpolation")
    splits = workflow_splits(workflow, registry)
    lines: list[str] = []
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    model = train_stage(workflow, run, registry, lambda: splits, lines.append)
    assert (model / "medi2i-model.json").is_file()
    assert any("has nothing to train" in line for line in lines)
    assert "nothing to learn" in (model / "README.md").read_text()
