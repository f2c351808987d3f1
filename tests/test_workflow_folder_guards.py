"""A run folder never lands in what a workflow reads (``output.root`` and ``--run-dir``
against every layout's folders and an input model), one file never serves two splits,
and ids that YAML reads as numbers or dates are refused with the quoting to use."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.data.cases import Case, CaseSet
from medi2i.data.discovery import DataSplits
from medi2i.method import DataKind
from medi2i.plugins import PluginSet, load_plugins
from medi2i.workflow import load_workflow
from medi2i.workflow.demo_data import write_demo_cases
from medi2i.workflow.folder_checks import run_dir_problem
from medi2i.workflow.loader import WorkflowError
from medi2i.workflow.split_checks import check_split_files

TRAINING = """\
method:
  id: example-tiny-regression
  options: {hidden: 4, roi_size: [16, 16, 16]}
training:
  {steps: 4, batch_size: 2, checkpoint_every: 2, validate_every: 2, device: cpu, progress: false}
inference: {device: cpu, progress: false}
report: {cases: 1, figures: false}
plugins: [medi2i.testing.trainable_examples]
"""

FOLDERS = (
    """\
data:
  kind: paired
  layout: {type: folders, folders: {source: data/mr, target: data/ct}}
"""
    + TRAINING
)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "cases"
    write_demo_cases(root, count=4, shape=(16, 16, 16), spacing_mm=(10.5, 12.0, 10.5))
    return root


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> PluginSet:
    monkeypatch.setenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "1")
    return load_plugins()


def cli(plugins: PluginSet, *args: str) -> Result:
    return CliRunner().invoke(build_cli(plugins), list(args))


def refusal(path: Path, *overrides: str) -> str:
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path, overrides=overrides)
    return str(caught.value)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def csv_workflow(tmp_path: Path, cases: Path, *, leak: bool = False) -> Path:
    """A paired CSV workflow over ``cases``; with ``leak`` test case demo003 reads the
    MR of training case demo000."""
    rows = ["case,role,path"]
    for number in range(4):
        case = f"demo{number:03d}"
        source = "demo000" if leak and number == 3 else case
        rows += [
            f"{case},source,{cases / source / 'mr.nii.gz'}",
            f"{case},target,{cases / case / 'ct.nii.gz'}",
            f"{case},mask,{cases / case / 'mask.nii.gz'}",
        ]
    write(tmp_path / "cases.csv", "\n".join(rows) + "\n")
    layout = "data:\n  kind: paired\n  layout: {type: csv, manifest: cases.csv}\n"
    split = "  split: {validation: [demo001], test: [demo003]}\n"
    return write(tmp_path / "csv.yaml", layout + split + TRAINING)


# -- D1: output.root ----------------------------------------------------------------------


@pytest.mark.parametrize("root", ["data/mr", "data/mr/runs", "data/ct/../mr/x"])
def test_an_output_root_in_a_folders_layout_folder_is_refused(tmp_path: Path, root: str) -> None:
    path = write(tmp_path / "wf.yaml", FOLDERS)
    message = refusal(path, f"output.root={root}")
    assert "output.root: " in message
    assert "data folder" in message
    assert "data.layout.folders.source" in message
    assert "choose an output.root outside it" in message
    assert len(message.splitlines()) == 1


def test_an_output_root_beside_the_folders_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path / "wf.yaml", FOLDERS)
    assert load_workflow(path, overrides=["output.root=data/runs"]).output.root.name == "runs"


@pytest.mark.parametrize("root", ["{cases}/demo002", "{cases}/demo002/runs"])
def test_an_output_root_among_the_volumes_a_csv_lists_is_refused(
    tmp_path: Path, cases: Path, root: str
) -> None:
    path = csv_workflow(tmp_path, cases)
    message = refusal(path, f"output.root={root.format(cases=cases)}")
    assert "folder of listed volumes" in message
    assert "data.layout.manifest" in message


def test_files_beside_the_csv_refuse_only_its_own_folder(tmp_path: Path) -> None:
    write(tmp_path / "a_mr.nii.gz", "")
    write(tmp_path / "cases.csv", "case,role,path\na,source,a_mr.nii.gz\n")
    layout = "data:\n  kind: paired\n  layout: {type: csv, manifest: cases.csv}\n"
    path = write(tmp_path / "wf.yaml", layout + TRAINING)
    assert "data.layout.manifest" in refusal(path, "output.root=.")
    assert load_workflow(path).output.root == tmp_path / "runs"  # the default, beside it


def test_an_output_root_inside_the_input_model_is_refused(tmp_path: Path) -> None:
    model = "data:\n  kind: paired\n  layout: {type: synthrad, root: cases}\n"
    path = write(tmp_path / "wf.yaml", model + "method: {model: trained}\n")
    message = refusal(path, "output.root=trained/runs")
    assert "model folder" in message
    assert "method.model" in message


# -- D2: --run-dir ------------------------------------------------------------------------


def test_a_run_dir_inside_the_data_is_refused_and_not_made(
    tmp_path: Path, cases: Path, plugins: PluginSet
) -> None:
    path = csv_workflow(tmp_path, cases)
    for command in ("train", "run"):
        target = cases / "demo000" / "zz"
        result = cli(plugins, command, str(path), "--run-dir", str(target))
        assert result.exit_code != 0, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, result.output
        assert "--run-dir" in errors[0]
        assert "data.layout.manifest" in errors[0]
        assert "nothing was written" in errors[0]
        assert not target.exists()


def test_run_dir_problem_names_the_key(tmp_path: Path) -> None:
    workflow = load_workflow(write(tmp_path / "wf.yaml", FOLDERS))
    problem = run_dir_problem(workflow, tmp_path / "data" / "ct" / "run")
    assert problem is not None
    assert "data.layout.folders.target" in problem
    assert run_dir_problem(workflow, tmp_path / "data" / "ct") is not None
    assert run_dir_problem(workflow, tmp_path / "runs" / "one") is None


# -- D3: one file in two splits -----------------------------------------------------------


def splits(
    train: list[Case], test: list[Case], validation: tuple[Case, ...] | list[Case] = ()
) -> DataSplits:
    def of(cases: list[Case]) -> CaseSet:
        return CaseSet(kind=DataKind.PAIRED, cases=tuple(cases))

    return DataSplits(train=of(train), validation=of(list(validation)), test=of(test))


def test_validation_and_test_may_share_a_file(tmp_path: Path) -> None:
    workflow = load_workflow(write(tmp_path / "wf.yaml", FOLDERS))
    train = [Case("a", {"source": tmp_path / "a_mr"})]
    scored = [Case("b", {"source": tmp_path / "b_mr"})]
    check_split_files(workflow, splits(train, scored, scored))
    with pytest.raises(WorkflowError, match="training case 'a' and the source of validation"):
        check_split_files(workflow, splits(train, [], train))


def test_a_file_in_training_and_test_is_refused(tmp_path: Path) -> None:
    workflow = load_workflow(write(tmp_path / "wf.yaml", FOLDERS))
    mr = tmp_path / "mr.nii.gz"
    train = Case("a", {"source": mr, "target": tmp_path / "a_ct.nii.gz"})
    test = Case("b", {"source": tmp_path / "x" / ".." / "mr.nii.gz", "target": tmp_path / "b"})
    with pytest.raises(WorkflowError) as caught:
        check_split_files(workflow, splits([train], [test]))
    message = str(caught.value)
    assert str(mr) in message
    assert "training case 'a'" in message
    assert "test case 'b'" in message


def test_a_file_shared_within_one_split_is_allowed(tmp_path: Path) -> None:
    workflow = load_workflow(write(tmp_path / "wf.yaml", FOLDERS))
    mask = tmp_path / "mask.nii.gz"
    train = [Case(name, {"source": tmp_path / f"{name}_mr", "mask": mask}) for name in ("a", "b")]
    check_split_files(workflow, splits(train, []))


def test_validate_check_data_refuses_a_csv_leak(
    tmp_path: Path, cases: Path, plugins: PluginSet
) -> None:
    result = cli(plugins, "validate", str(csv_workflow(tmp_path, cases, leak=True)), "--check-data")
    assert result.exit_code != 0, result.output
    assert "training case 'demo000'" in result.output
    assert "test case 'demo003'" in result.output
    clean = cli(plugins, "validate", str(csv_workflow(tmp_path, cases)), "--check-data")
    assert clean.exit_code == 0, clean.output


# -- D4: ids YAML reads as numbers or dates ----------------------------------------------


def test_numeric_case_ids_say_to_quote(tmp_path: Path) -> None:
    text = FOLDERS.replace("  layout:", "  split: {validation: [005], test: ['008']}\n  layout:")
    message = refusal(write(tmp_path / "wf.yaml", text))
    assert message.splitlines() == [
        f"{tmp_path / 'wf.yaml'} line 3: data.split.validation.0: expected text, but YAML "
        "read the number 5: quote it as written (e.g. '005'; unquoted, leading zeros are lost)"
    ]


def test_a_date_like_run_id_says_to_quote_on_the_command_line(tmp_path: Path) -> None:
    path = write(tmp_path / "wf.yaml", FOLDERS)
    message = refusal(path, "output.run_id=2024-01-01")
    assert "YAML read the date 2024-01-01" in message
    assert """--set "output.run_id='2024-01-01'\"""" in message
    assert load_workflow(path, overrides=["output.run_id='2024-01-01'"]).output.run_id == (
        "2024-01-01"
    )


def test_a_method_that_learns_nothing_may_share_files(
    tmp_path: Path, cases: Path, plugins: PluginSet
) -> None:
    path = csv_workflow(tmp_path, cases, leak=True)
    text = path.read_text().replace(
        "medi2i.testing.trainable_examples", "medi2i.testing.example_methods"
    )
    text = text.replace("id: example-tiny-regression", "id: example-self-rescaling")
    path.write_text(text.replace("options: {hidden: 4, roi_size: [16, 16, 16]}", "options: {}"))
    result = cli(
        plugins, "validate", str(path), "--check-data", "--set", "evaluation.enabled=false"
    )
    assert result.exit_code == 0, result.output
