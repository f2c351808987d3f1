"""Workflow mistakes found by outside testers: each refused (or handled) with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from medi2i.errors import Medi2iError
from medi2i.plugins import PluginSet, load_plugins
from medi2i.registry import Registry
from medi2i.workflow import WorkflowError, dump_workflow, load_workflow, run_workflow
from medi2i.workflow.checks import check_training
from medi2i.workflow.demo_data import write_demo_cases
from medi2i.workflow.run_folder import latest_run_folder
from tests.workflow_texts import tiny_paired_workflow

WORKFLOW = tiny_paired_workflow(
    "{steps: 4, batch_size: 2, checkpoint_every: 2, validate_every: 2, device: cpu}"
)

UNPAIRED = """\
data:
  kind: unpaired
  layout: {type: folders, folders: {mr: data/mr, ct: data/ct}}
method: {id: example-tiny-regression}
evaluation: {enabled: false}
"""


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> PluginSet:
    monkeypatch.setenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "1")
    return load_plugins()


@pytest.fixture
def workflow_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(WORKFLOW)
    return path


def refusal(path: Path, *overrides: str) -> str:
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path, overrides=overrides)
    return str(caught.value)


# -- 1: a mapping given to a section merges into it ----------------------------------------


def test_a_mapping_set_on_a_section_keeps_its_other_keys(workflow_file: Path) -> None:
    workflow = load_workflow(workflow_file, overrides=["training={steps: 3}"])
    assert workflow.training.steps == 3
    assert workflow.training.device == "cpu"
    assert (workflow.training.checkpoint_every, workflow.training.validate_every) == (2, 2)


def test_a_mapping_of_another_layout_type_replaces_the_layout(workflow_file: Path) -> None:
    layout = "data.layout={type: folders, folders: {source: mr, target: ct}}"
    workflow = load_workflow(workflow_file, overrides=[layout])
    assert workflow.data.layout.type == "folders"


# -- 2: a case listed twice ---------------------------------------------------------------


@pytest.mark.parametrize("split", ["test", "validation"])
def test_a_case_listed_twice_in_a_split_is_refused(workflow_file: Path, split: str) -> None:
    message = refusal(workflow_file, f"data.split.{split}=[demo004, demo004]")
    assert f"data.split.{split}: case 'demo004' is listed twice" in message
    assert "\n" not in message


# -- 3: the default run name is one output.name accepts -----------------------------------


def test_the_default_run_name_of_a_non_ascii_file_name_reloads(tmp_path: Path) -> None:
    path = tmp_path / "wf ü.yaml"
    path.write_text(WORKFLOW)
    workflow = load_workflow(path)
    assert workflow.output.name == "wf-u"
    resolved = tmp_path / "config.resolved.yaml"
    resolved.write_text(dump_workflow(workflow))
    assert load_workflow(resolved).output.name == "wf-u"


# -- 4: a workflow's plugins serve its trained model --------------------------------------


def test_a_trained_model_uses_the_workflows_plugins(tmp_path: Path, plugins: PluginSet) -> None:
    from medi2i.model_folder import save_model
    from medi2i.plugins import add_installed_plugin

    maker = load_plugins()
    add_installed_plugin(maker, "medi2i.testing.trainable_examples")
    method = Registry(maker).method("example-tiny-regression")({"hidden": 4})
    save_model(method, tmp_path / "model")
    path = tmp_path / "given.yaml"
    given = WORKFLOW.replace("  id: example-tiny-regression\n", "  model: model\n")
    path.write_text(given.replace("  options: {hidden: 4, roi_size: [16, 16, 16]}\n", ""))
    workflow = load_workflow(path, registry=Registry(plugins))
    assert workflow.method.model == tmp_path / "model"


# -- 5: no run folder for a run that cannot start; evaluate picks a trained run ---------


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_training_device_leaves_no_run_folder(
    workflow_file: Path, plugins: PluginSet
) -> None:
    registry = Registry(plugins)
    workflow = load_workflow(workflow_file, overrides=["training.device=cuda:7"], registry=registry)
    with pytest.raises(Medi2iError, match="cuda:7"):
        run_workflow(workflow, registry=registry, stages=("train",))
    assert not (workflow_file.parent / "runs").exists()


def test_evaluating_a_missing_run_folder_does_not_make_it(
    workflow_file: Path, plugins: PluginSet, tmp_path: Path
) -> None:
    registry = Registry(plugins)
    workflow = load_workflow(workflow_file, registry=registry)
    with pytest.raises(WorkflowError, match="does not exist"):
        run_workflow(
            workflow, registry=registry, stages=("evaluate", "report"), run_dir=tmp_path / "nope"
        )
    assert not (tmp_path / "nope").exists()


def test_the_latest_run_is_the_newest_with_a_trained_model(workflow_file: Path) -> None:
    import os

    workflow = load_workflow(workflow_file)
    runs = workflow_file.parent / "runs"
    for index, name in enumerate(["tiny-1", "tiny-2"]):
        (runs / name).mkdir(parents=True)
        config = runs / name / "config.resolved.yaml"
        config.write_text(dump_workflow(workflow))
        os.utime(config, (1000 + index, 1000 + index))
    (runs / "tiny-1" / "model").mkdir()
    (runs / "tiny-1" / "run.json").write_text(json.dumps({"model": "model", "stages": {}}))
    latest = latest_run_folder(workflow)
    assert latest is not None
    assert latest.root.name == "tiny-1"


# -- 6: options the method's training set-up refuses --------------------------------------


def test_options_the_optimizer_refuses_fail_the_check(
    workflow_file: Path, plugins: PluginSet
) -> None:
    registry = Registry(plugins)
    workflow = load_workflow(
        workflow_file, overrides=["method.options.learning_rate=-1"], registry=registry
    )
    with pytest.raises(WorkflowError, match="cannot set up training with its options"):
        check_training(workflow, registry)


# -- 7: one clear line per mistake --------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.split.test=1.5", "a fraction of the cases from 0 to below 1"),
        ("data.split.test=.nan", "a fraction of the cases from 0 to below 1"),
        ("output.root=null", "output.root: expected a path, got null"),
        ("training.steps=1e30", "training.steps: expected an integer"),
        ("training.steps=!!python/object/apply:os.system [ls]", "not valid YAML"),
        ("data.include=[demo00[0-3]]", "not valid YAML"),
    ],
)
def test_mistakes_read_as_one_line(workflow_file: Path, override: str, expected: str) -> None:
    message = refusal(workflow_file, override)
    assert expected in message
    assert "\n" not in message
    assert "e.g. [" not in message
    assert "pathlib" not in message


# -- 8: integers are integers -------------------------------------------------------------


@pytest.mark.parametrize(
    "override",
    [
        "version=true",
        "version=1.0",
        'version="1"',
        'training.batch_size="2"',
        "training.batch_size=2.0",
        "training.batch_size=true",
        "report.cases=1.0",
    ],
)
def test_integer_fields_take_only_integers(workflow_file: Path, override: str) -> None:
    key = override.split("=")[0]
    assert f"{key}: " in refusal(workflow_file, override)


# -- 9 and 10: folders read twice, outputs among the data --------------------------------


def test_two_domains_reading_one_folder_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "unpaired.yaml"
    path.write_text(UNPAIRED)
    load_workflow(path)
    message = refusal(path, "data.layout.folders.ct=data/./mr")
    assert "'mr' and 'ct' both read the folder" in message


@pytest.mark.parametrize("root", ["cases", "cases/demo001", "cases/../cases/x"])
def test_an_output_root_inside_the_data_is_refused(workflow_file: Path, root: str) -> None:
    message = refusal(workflow_file, f"output.root={root}")
    assert "output.root: " in message
    assert "inside the data folder" in message or "is the data folder" in message


def test_an_output_root_beside_the_data_is_accepted(workflow_file: Path) -> None:
    assert load_workflow(workflow_file, overrides=["output.root=cases2"]).output.root.name == (
        "cases2"
    )


def test_a_real_run_after_a_section_override(workflow_file: Path, plugins: PluginSet) -> None:
    write_demo_cases(workflow_file.parent / "cases", count=4, shape=(16, 16, 16))
    registry = Registry(plugins)
    workflow = load_workflow(
        workflow_file, overrides=["training={steps: 2}", "output.run_id=a"], registry=registry
    )
    result = run_workflow(workflow, registry=registry, stages=("train",))
    resolved = yaml.safe_load((result.run_dir / "config.resolved.yaml").read_text())
    assert resolved["training"]["validate_every"] == 2
    assert result.model_dir is not None


def test_an_empty_mapping_or_another_method_replaces_the_method(workflow_file: Path) -> None:
    cleared = load_workflow(workflow_file, overrides=["method.options={}"])
    assert cleared.method.options == {}
    other = load_workflow(workflow_file, overrides=["method={id: other}"])
    assert (other.method.id, other.method.options) == ("other", {})


def test_a_free_mapping_set_by_a_mapping_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "unpaired.yaml"
    path.write_text(UNPAIRED)
    layout = load_workflow(path, overrides=["data.layout.folders={a: x, b: y}"]).data.layout
    assert sorted(layout.folders) == ["a", "b"]  # type: ignore[union-attr]


def test_a_bad_value_in_a_merged_section_names_the_set_not_the_file(
    workflow_file: Path,
) -> None:
    """The file's line of training.steps was blamed for a null the --set gave."""
    message = refusal(workflow_file, "training={steps: null}")
    assert "--set training={steps: null}" in message
    assert " line " not in message.split(":")[0]
