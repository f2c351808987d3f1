"""Workflow files: schema, line numbers in errors, --set overrides, JSON Schema export."""

from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from medi2i.plugins import load_plugins
from medi2i.registry import Registry
from medi2i.testing import example_methods
from medi2i.testing.trainable_examples import TinyOptions
from medi2i.workflow import (
    Workflow,
    WorkflowError,
    export_json_schema,
    load_workflow,
    workflow_json_schema,
)
from medi2i.workflow.schema import FoldersLayout, SynthradLayout

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"

MINIMAL = """\
data:
  kind: paired
  layout:
    type: synthrad
    root: cases
method:
  id: example-pointwise-net
"""


def write(tmp_path: Path, text: str, name: str = "workflow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "1")  # built-ins and the examples only
    plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
    return Registry(plugins)


def test_minimal_workflow_fills_defaults_and_resolves_paths(tmp_path: Path) -> None:
    workflow = load_workflow(write(tmp_path, MINIMAL))
    assert isinstance(workflow.data.layout, SynthradLayout)
    assert workflow.data.layout.root == tmp_path.resolve() / "cases"
    assert workflow.output.root == tmp_path.resolve() / "runs"
    assert workflow.output.name == "workflow"
    assert workflow.training.steps > 0
    assert workflow.evaluation.metrics == ["synthrad"]


def test_unknown_key_names_line_path_and_allowed_keys(tmp_path: Path) -> None:
    text = MINIMAL + "training:\n  steps: 5\n  batch_sise: 2\n"
    with pytest.raises(WorkflowError) as caught:
        load_workflow(write(tmp_path, text))
    message = str(caught.value)
    assert "workflow.yaml line 10: training.batch_sise: unknown key" in message
    assert "batch_size" in message  # the allowed keys are listed


def test_unknown_key_inside_a_layout_union(tmp_path: Path) -> None:
    text = MINIMAL.replace("    root: cases\n", "    root: cases\n    mask_name: m\n")
    with pytest.raises(WorkflowError, match=r"line 6: data\.layout\.mask_name: unknown key"):
        load_workflow(write(tmp_path, text))


def test_wrong_type_reports_line_and_key_path(tmp_path: Path) -> None:
    text = MINIMAL + "training:\n  steps: 5\n  batch_size: lots\n"
    with pytest.raises(WorkflowError) as caught:
        load_workflow(write(tmp_path, text))
    assert re.search(
        r"workflow\.yaml line 10: training\.batch_size: expected an integer",
        str(caught.value),
    )


def test_missing_key_reported_on_its_parent(tmp_path: Path) -> None:
    text = MINIMAL.replace("    root: cases\n", "")
    with pytest.raises(WorkflowError, match=r"line 3: data\.layout\.root: Field required"):
        load_workflow(write(tmp_path, text))


def test_a_list_too_short_says_so_not_that_the_key_is_missing(
    tmp_path: Path, registry: Registry
) -> None:
    text = MINIMAL + "  options:\n    roi_size: [16, 16]\ntraining:\n  patch_size: [32]\n"
    with pytest.raises(WorkflowError) as caught:
        load_workflow(write(tmp_path, text), registry=registry)
    assert "line 11: training.patch_size: too few items (1 given)" in str(caught.value)
    with pytest.raises(WorkflowError) as caught:
        load_workflow(
            write(tmp_path, MINIMAL + "  options:\n    roi_size: [16, 16]\n"), registry=registry
        )
    assert "line 9: method.options.roi_size: too few items (2 given)" in str(caught.value)
    assert "Field required" not in str(caught.value)


def test_every_problem_is_listed_in_file_order(tmp_path: Path) -> None:
    text = MINIMAL + "training:\n  steps: -1\nreport:\n  format: pdf\n"
    with pytest.raises(WorkflowError) as caught:
        load_workflow(write(tmp_path, text))
    lines = str(caught.value).splitlines()
    assert [re.search(r"line (\d+)", line)[1] for line in lines] == ["9", "11"]  # type: ignore[index]


def test_invalid_yaml_and_duplicate_keys_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match=r"line 3: not valid YAML"):
        load_workflow(write(tmp_path, "data:\n  kind: paired\n   bad: indent\n"))
    with pytest.raises(WorkflowError, match=r"line 8: key 'method' appears twice"):
        load_workflow(write(tmp_path, MINIMAL + "method:\n  id: other\n"))


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="does not exist"):
        load_workflow(tmp_path / "absent.yaml")
    with pytest.raises(WorkflowError, match="mapping of sections"):
        load_workflow(write(tmp_path, "- a\n- b\n"))


def test_set_overrides_apply_before_validation(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    workflow = load_workflow(
        path,
        overrides=[
            "training.steps=7",
            "training.patch_size=[8, 8, 8]",
            "data.split.test=[a, b]",
            "data.split.test.1=c",
            "output.run_id=first",
        ],
    )
    assert workflow.training.steps == 7
    assert workflow.training.patch_size == (8, 8, 8)
    assert workflow.data.split.test == ["a", "c"]
    assert workflow.output.run_id == "first"


def test_set_override_errors_name_the_override(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(
        WorkflowError, match=r"--set training\.steps=many: training\.steps: expected an integer"
    ):
        load_workflow(path, overrides=["training.steps=many"])
    with pytest.raises(WorkflowError, match=r"must look like section\.key=value"):
        load_workflow(path, overrides=["training.steps"])
    with pytest.raises(WorkflowError, match="has no key"):
        load_workflow(path, overrides=["method.id.x=1"])
    # a misspelt key the override made is on no line of the file: name the override
    with pytest.raises(WorkflowError, match=r"^--set trainig\.steps=5: trainig: unknown key"):
        load_workflow(path, overrides=["trainig.steps=5"])
    with pytest.raises(WorkflowError, match=r"workflow file .* is a folder; give the workflow"):
        load_workflow(tmp_path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.foreground_ratio=.nan", "finite number"),
        ("training.foreground_threshold=.inf", "finite number"),
        ("training.foreground_threshold=-.inf", "finite number"),
        ("training.augmentation.noise_std=.nan", "finite number"),
        ("training.augmentation.intensity_shift=[-.inf, 0.1]", "finite number"),
        ("training.max_nonfinite_steps=-1", "greater than or equal to 0"),
        ("training.steps=0", "greater than or equal to 1"),
        ("inference.sigma_scale=.inf", "finite number"),
        ("inference.overlap=-0.5", "greater than or equal to 0"),
        ("data.split.validation=.nan", "from 0 to below 1.*got nan"),
        ("data.split.validation=1.5", "from 0 to below 1.*got 1.5"),
        ("data.split.seed=-1", "greater than or equal to 0"),
        # one bound for every seed, one that torch, NumPy and np.random.seed all take
        ("data.split.seed=4294967296", "less than or equal to 4294967295"),
        ("training.seed=18446744073709551616", "less than or equal to 4294967295"),
        ("inference.seed=4294967296", "less than or equal to 4294967295"),
        ("method.options.learning_rate=.nan", "finite number"),
        ("method.condition.weight=.inf", "finite number"),
    ],
)
def test_non_finite_and_out_of_range_numbers_are_refused(
    tmp_path: Path, override: str, message: str
) -> None:
    path = write(tmp_path, MINIMAL)
    key = override.partition("=")[0]
    with pytest.raises(WorkflowError, match=rf"{re.escape(key)}[^:]*: .*{message}"):
        load_workflow(path, overrides=[override])


@pytest.mark.parametrize(
    "override",
    [
        "training.steps=true",
        "training.validate_every=true",
        "training.patch_size=[true, 16, 16]",
        "training.augmentation.flip_axes=[false]",
        "training.seed=false",
        "inference.sw_batch_size=true",
        "inference.roi_size=[16, true, 16]",
        "data.split.seed=true",
        "report.cases=true",
    ],
)
def test_a_boolean_is_not_an_integer(tmp_path: Path, override: str) -> None:
    path = write(tmp_path, MINIMAL)
    key = override.partition("=")[0]
    with pytest.raises(WorkflowError, match=rf"{re.escape(key)}[^:]*: expected an integer"):
        load_workflow(path, overrides=[override])


def test_integers_still_read_as_yaml_writes_them(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "training:\n  steps: 7\n  seed: 4294967295\n")
    workflow = load_workflow(path, overrides=["training.validate_every=3", "report.cases=0"])
    assert (workflow.training.steps, workflow.training.seed) == (7, 4294967295)
    assert (workflow.training.validate_every, workflow.report.cases) == (3, 0)
    with pytest.raises(WorkflowError, match=r"workflow\.yaml line 9: training\.steps: expected"):
        load_workflow(write(tmp_path, MINIMAL + "training:\n  steps: true\n"))


def test_a_nan_learning_rate_in_the_file_is_one_problem_line(
    tmp_path: Path, registry: Registry
) -> None:
    text = "plugins: [medi2i.testing.trainable_examples]\n" + MINIMAL.replace(
        "example-pointwise-net", "example-tiny-regression"
    )
    text += "  options:\n    learning_rate: .nan\n"
    with pytest.raises(WorkflowError) as caught:
        load_workflow(write(tmp_path, text), registry=registry)
    assert str(caught.value) == (
        f"{tmp_path / 'workflow.yaml'} line 10: method.options.learning_rate: "
        "Input should be a finite number"
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_method_options_refuse_non_finite_numbers(value: float) -> None:
    with pytest.raises(ValidationError, match="finite number"):
        TinyOptions(learning_rate=value)


def test_layout_must_fit_the_data_kind(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "    type: synthrad\n    root: cases\n",
        "    type: folders\n    folders: {source: mr, labels: seg}\n",
    )
    with pytest.raises(WorkflowError, match=r"line 1: data: paired folders .*missing \['target'\]"):
        load_workflow(write(tmp_path, text))
    unpaired = text.replace("kind: paired", "kind: unpaired").replace(
        "{source: mr, labels: seg}", "{siemens: a, ge: b}"
    )
    workflow = load_workflow(write(tmp_path, unpaired), overrides=["evaluation.enabled=false"])
    assert isinstance(workflow.data.layout, FoldersLayout)
    assert list(workflow.data.layout.folders) == ["siemens", "ge"]


def test_unpaired_data_needs_a_reference_to_evaluate(tmp_path: Path) -> None:
    text = MINIMAL.replace("kind: paired", "kind: unpaired")
    with pytest.raises(WorkflowError, match=r"evaluation: unpaired data has no reference"):
        load_workflow(write(tmp_path, text))


def test_method_options_are_checked_against_the_method(tmp_path: Path, registry: Registry) -> None:
    good = MINIMAL + "  options:\n    hidden: 8\n"
    assert load_workflow(write(tmp_path, good), registry=registry).method.options == {"hidden": 8}
    bad = MINIMAL + "  options:\n    hidden: 8\n    depth: 3\n"
    with pytest.raises(
        WorkflowError,
        match=r"line 10: method\.options\.depth: unknown key \(allowed here: roi_size, hidden\)",
    ):
        load_workflow(write(tmp_path, bad), registry=registry)


def test_method_options_are_reported_with_the_other_sections_problems(
    tmp_path: Path, registry: Registry
) -> None:
    text = MINIMAL + "  options:\n    depth: 3\ntraining:\n  batchsize: 2\n"
    with pytest.raises(WorkflowError) as caught:
        load_workflow(write(tmp_path, text), registry=registry)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert re.search(r"line 9: method\.options\.depth: unknown key", lines[0])
    assert re.search(r"line 11: training\.batchsize: unknown key", lines[1])
    # a broken method section is the schema's alone to report, once
    broken = MINIMAL.replace("id: example-pointwise-net", "id: [1]") + "training:\n  x: 1\n"
    with pytest.raises(WorkflowError) as caught:
        load_workflow(write(tmp_path, broken), registry=registry)
    assert len(str(caught.value).splitlines()) == 2


def test_unknown_method_and_wrong_data_kind(tmp_path: Path, registry: Registry) -> None:
    unknown = MINIMAL.replace("example-pointwise-net", "no-such-method")
    with pytest.raises(WorkflowError, match=r"line 7: method\.id: no method 'no-such-method'"):
        load_workflow(write(tmp_path, unknown), registry=registry)
    text = MINIMAL.replace("example-pointwise-net", "example-domain-offset")
    with pytest.raises(WorkflowError, match=r"line 2: data\.kind: .*trains on multi-domain"):
        load_workflow(write(tmp_path, text), registry=registry)


def test_unknown_metric_is_reported(tmp_path: Path, registry: Registry) -> None:
    text = MINIMAL + "evaluation:\n  metrics: [synthrad, sharpness]\n"
    with pytest.raises(WorkflowError, match=r"line 9: evaluation\.metrics: .*sharpness"):
        load_workflow(write(tmp_path, text), registry=registry)


def test_method_or_model_not_both(tmp_path: Path) -> None:
    text = MINIMAL + "  model: trained\n"
    with pytest.raises(WorkflowError, match=r"either id .* or model"):
        load_workflow(write(tmp_path, text))


def test_json_schema_exports(tmp_path: Path) -> None:
    path = export_json_schema(tmp_path / "schema" / "workflow.json")
    schema = json.loads(path.read_text())
    assert schema["title"] == "medi2i workflow"
    assert {"data", "method", "training", "inference", "evaluation", "report", "output"} <= set(
        schema["properties"]
    )
    assert schema["additionalProperties"] is False
    assert "TrainingConfig" in schema["$defs"]


def test_committed_json_schema_is_current() -> None:
    committed = json.loads((WORKFLOWS / "schema.json").read_text())
    assert committed == workflow_json_schema(), (
        "workflows/schema.json is stale: run "
        "`medi2i schema --output workflows/schema.json --overwrite`"
    )


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yaml")), ids=lambda path: Path(path).name)
def test_every_committed_workflow_validates(path: Path) -> None:
    workflow = load_workflow(path, registry=Registry())  # against the installed plugins
    assert isinstance(workflow, Workflow)


def test_workflows_folder_has_workflows() -> None:
    assert sorted(WORKFLOWS.glob("*.yaml")), "workflows/ should hold at least one workflow"


def test_workflow_plugins_are_loaded_or_reported(tmp_path: Path, registry: Registry) -> None:
    text = "plugins: [medi2i.testing.trainable_examples]\n" + MINIMAL.replace(
        "example-pointwise-net", "example-tiny-regression"
    )
    assert load_workflow(write(tmp_path, text), registry=registry).plugins
    missing = "plugins: [no_such_module_here]\n" + MINIMAL
    with pytest.raises(
        WorkflowError, match=r"line 1: plugins: no installed medi2i plugin is named 'no_such_"
    ):
        load_workflow(write(tmp_path, missing), registry=registry)


def test_one_number_where_a_list_belongs_gets_the_list_to_write(
    tmp_path: Path, registry: Registry
) -> None:
    text = MINIMAL + "  options:\n    roi_size: 16\ntraining:\n  patch_size: 32\n"
    with pytest.raises(WorkflowError) as caught:
        load_workflow(write(tmp_path, text), registry=registry)
    assert "training.patch_size: Input should be a valid tuple; write a list in square " in str(
        caught.value
    )
    with pytest.raises(WorkflowError) as caught:
        load_workflow(
            write(tmp_path, MINIMAL + "  options:\n    roi_size: 16\n"), registry=registry
        )
    assert "method.options.roi_size: " in str(caught.value)
    assert "e.g. [16, 16, 16]" in str(caught.value)
    # a list whose items differ (a range, increasing percentiles) is shown as its default:
    # the number repeated would be refused too
    zoom = MINIMAL + "training:\n  augmentation:\n    zoom_range: 1.1\n"
    with pytest.raises(WorkflowError) as caught:
        load_workflow(write(tmp_path, zoom), registry=registry)
    assert "zoom_range: Input should be a valid tuple; write a list in square brackets, e.g. " in (
        str(caught.value)
    )
    assert "e.g. the default [0.85, 1.25]" in str(caught.value)
