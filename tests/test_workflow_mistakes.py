"""Workflow mistakes a researcher makes and corrects: the corrected rerun must work, and
a mistake found from the data must stop the run before training, not after."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medi2i.errors import Medi2iError
from medi2i.plugins import PluginSet, load_plugins
from medi2i.registry import Registry
from medi2i.workflow import WorkflowError, load_workflow, run_workflow
from medi2i.workflow.demo_data import write_demo_cases

WORKFLOW = """\
plugins: [medi2i.testing.trainable_examples]
data:
  kind: paired
  layout: {type: synthrad, root: cases}
  split: {test: [demo003]}
method:
  id: example-tiny-regression
  options: {hidden: 4, roi_size: [16, 16, 16]}
training: {steps: 2, batch_size: 1, device: cpu, progress: false}
inference: {device: cpu, progress: false}
report: {figures: false}
output: {root: runs, run_id: fixed}
"""


FITTED = [
    "plugins=[medi2i.testing.example_methods]",
    "data.kind=single-domain",
    "method.id=example-fitted-standardization",
    "method.options={}",
    "evaluation.enabled=false",
]
"""Overrides that make the test workflow fit a single-domain method on whole volumes."""


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins: PluginSet = load_plugins()
    return Registry(plugins)


@pytest.fixture
def workflow_file(tmp_path: Path) -> Path:
    write_demo_cases(tmp_path / "cases", count=4, shape=(16, 16, 16), spacing_mm=(10, 10, 10))
    path = tmp_path / "tiny.yaml"
    path.write_text(WORKFLOW)
    return path


def test_a_run_stopped_by_a_wrong_data_path_continues_once_the_path_is_corrected(
    workflow_file: Path, registry: Registry
) -> None:
    wrong = load_workflow(workflow_file, overrides=["data.layout.root=kases"], registry=registry)
    with pytest.raises(Medi2iError, match="kases"):
        run_workflow(wrong, registry=registry)
    # the failed start left its config and log; it holds no result, so the corrected
    # workflow (other data section, same run_id) continues the folder instead of being
    # told it was made with different data
    fixed = load_workflow(workflow_file, registry=registry)
    result = run_workflow(fixed, registry=registry, stages=("train",))
    assert result.model_dir is not None
    assert result.model_dir.is_dir()
    # once it holds results, other data is refused as before
    with pytest.raises(
        WorkflowError,
        match=r"different data sections \(data\.layout\.root: \S+ → \S+kases\S*\); .*give the "
        r"--set options it was made with",
    ):
        run_workflow(wrong, registry=registry, stages=("train",))


def test_an_empty_evaluation_split_stops_the_run_before_training(
    workflow_file: Path, registry: Registry
) -> None:
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli

    no_test = ["data.split.test=[]"]
    workflow = load_workflow(workflow_file, overrides=no_test, registry=registry)
    with pytest.raises(WorkflowError, match="the test split has no cases to evaluate"):
        run_workflow(workflow, registry=registry)
    assert not (workflow_file.parent / "runs" / "tiny-fixed" / "checkpoints").exists()
    # medi2i validate --check-data says so too, instead of "valid"
    result = CliRunner().invoke(
        build_cli(registry.plugins),
        ["validate", str(workflow_file), "--check-data", "--set", no_test[0]],
    )
    assert result.exit_code == 1
    assert "Error: the test split has no cases to evaluate" in result.output
    assert "valid (" not in result.output  # not "valid" above the error


def _shift(path: Path, mm: float) -> None:
    import nibabel as nib

    image = nib.load(path)
    affine = image.affine.copy()
    affine[0, 3] += mm
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), affine), path)


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("ct", r"mr\.nii\.gz is not on the grid of its reference .*ct\.nii\.gz"),
        ("mask", r"mask\.nii\.gz is not on the grid of its reference .*ct\.nii\.gz"),
    ],
)
def test_an_evaluation_case_off_its_grid_stops_the_run_before_training(
    workflow_file: Path, registry: Registry, role: str, message: str
) -> None:
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli
    from medi2i.errors import GeometryError

    shifted = workflow_file.parent / "cases" / "demo003" / f"{role}.nii.gz"
    _shift(shifted, 5.0)
    workflow = load_workflow(workflow_file, registry=registry)
    with pytest.raises(GeometryError, match=rf"evaluation case 'demo003': .*{message}"):
        run_workflow(workflow, registry=registry)
    assert not (workflow_file.parent / "runs" / "tiny-fixed" / "checkpoints").exists()
    result = CliRunner().invoke(
        build_cli(registry.plugins), ["validate", str(workflow_file), "--check-data"]
    )
    assert result.exit_code == 1
    assert "affines differ by up to 5 mm" in result.output
    assert "valid (" not in result.output
    # a shift below the grid tolerance is the same grid
    _shift(shifted, -5.0 + 1e-4)
    check = CliRunner().invoke(
        build_cli(registry.plugins), ["validate", str(workflow_file), "--check-data"]
    )
    assert check.exit_code == 0, check.output


def test_a_device_name_that_is_none_is_refused_by_validate(workflow_file: Path) -> None:
    text = workflow_file.read_text().replace("device: cpu, progress", "device: gpu, progress")
    workflow_file.write_text(text)
    with pytest.raises(WorkflowError) as caught:
        load_workflow(workflow_file)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2  # training.device and inference.device, each on its line
    assert re.search(r"line 9: training\.device: unknown device 'gpu'", lines[0])
    assert re.search(r"line 10: inference\.device: unknown device 'gpu': use 'auto'", lines[1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_inference_device_that_is_not_here_stops_the_run_before_training(
    workflow_file: Path, registry: Registry
) -> None:
    from medi2i.errors import DeviceError

    workflow = load_workflow(workflow_file, overrides=["inference.device=cuda"], registry=registry)
    with pytest.raises(DeviceError, match="torch sees no CUDA device"):
        run_workflow(workflow, registry=registry)
    assert not (workflow_file.parent / "runs" / "tiny-fixed" / "checkpoints").exists()


def test_an_evaluation_mask_no_case_has_stops_the_run_before_training(
    workflow_file: Path, registry: Registry
) -> None:
    workflow = load_workflow(workflow_file, overrides=["evaluation.mask=body"], registry=registry)
    with pytest.raises(WorkflowError, match=r"evaluation\.mask is 'body', but no evaluation case"):
        run_workflow(workflow, registry=registry)
    assert not (workflow_file.parent / "runs" / "tiny-fixed" / "checkpoints").exists()
    # the evaluate stage alone refuses too, before predicting anything (it scored whole
    # volumes under the masked metrics' names)
    trained = run_workflow(
        load_workflow(workflow_file, registry=registry), registry=registry, stages=("train",)
    )
    with pytest.raises(WorkflowError, match=r"evaluation\.mask is 'body'"):
        run_workflow(workflow, registry=registry, stages=("evaluate",))
    assert trained.model_dir is not None
    assert not (trained.run_dir / "metrics" / "metrics.json").exists()
    # whole volumes, asked for
    unmasked = load_workflow(workflow_file, overrides=["evaluation.mask=null"], registry=registry)
    result = run_workflow(unmasked, registry=registry, stages=("evaluate",))
    assert result.metrics_path is not None


def test_a_run_dir_that_is_no_run_folder_but_holds_files_is_refused(
    workflow_file: Path, registry: Registry, tmp_path: Path
) -> None:
    mine = tmp_path / "my-project"
    mine.mkdir()
    (mine / "report.md").write_text("my own report")
    workflow = load_workflow(workflow_file, registry=registry)
    with pytest.raises(WorkflowError, match=r"my-project is not a run folder \(it holds report"):
        run_workflow(workflow, registry=registry, run_dir=mine)
    assert sorted(p.name for p in mine.iterdir()) == ["report.md"]
    assert (mine / "report.md").read_text() == "my own report"
    # a new or empty folder is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_workflow(workflow, registry=registry, stages=("train",), run_dir=empty)
    assert result.model_dir is not None


def test_a_workflow_file_in_utf16_is_read_and_one_in_latin1_is_refused(
    workflow_file: Path, registry: Registry, tmp_path: Path
) -> None:
    text = workflow_file.read_text(encoding="utf-8")
    utf16 = workflow_file.with_name("utf16.yaml")
    utf16.write_bytes(text.encode("utf-16"))
    assert (
        load_workflow(utf16, registry=registry).method.id
        == load_workflow(workflow_file, registry=registry).method.id
    )
    latin1 = workflow_file.with_name("latin1.yaml")
    latin1.write_bytes(("# café\n" + text).encode("latin-1"))
    with pytest.raises(WorkflowError, match=r"latin1\.yaml: is not UTF-8 text \(byte 0xe9"):
        load_workflow(latin1, registry=registry)


def test_a_run_dir_that_cannot_be_made_is_refused_in_one_line(
    workflow_file: Path, registry: Registry, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("mine")
    workflow = load_workflow(workflow_file, registry=registry)
    for impossible in (tmp_path / "a-file" / "run", tmp_path / "a-file"):
        with pytest.raises(WorkflowError, match=r"cannot write the run folder .*a-file"):
            run_workflow(workflow, registry=registry, run_dir=impossible)
    assert (tmp_path / "a-file").read_text() == "mine"


def test_a_workflow_file_named_with_spaces_and_accents_trains_and_keeps_its_card(
    workflow_file: Path, registry: Registry
) -> None:
    from medi2i.cards import load_card

    named = workflow_file.with_name("Mon étude 2.yaml")
    named.write_text(workflow_file.read_text())
    workflow = load_workflow(named, registry=registry)
    result = run_workflow(workflow, registry=registry, stages=("train",))
    assert result.run_dir.name == "Mon-etude-2-fixed"  # output.name is ASCII
    assert result.model_dir is not None
    card = load_card(result.model_dir / "card.yaml")
    assert card.name == "mon-etude-2-fixed"


def test_an_interrupted_run_says_how_to_continue_it(
    workflow_file: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli
    from medi2i.workflow import runner

    def interrupted(*args: object, **kwargs: object) -> Path:
        raise KeyboardInterrupt

    trained = runner.train_stage
    monkeypatch.setattr(runner, "train_stage", interrupted)
    result = CliRunner().invoke(build_cli(registry.plugins), ["run", str(workflow_file)])
    assert result.exit_code == 130
    run_dir = workflow_file.parent / "runs" / "tiny-fixed"
    # not "no partial output was kept": the run keeps its checkpoints to be continued
    assert f"Interrupted; the run folder {run_dir} keeps" in result.output
    assert f"continue it with --run-dir {run_dir}" in result.output
    # no checkpoint yet: no promise of a resume
    assert "no training checkpoint yet" in result.output
    assert "start again from step 0" in result.output
    assert "stopped: interrupted" in (run_dir / "logs" / "run.log").read_text()

    # SIGTERM (a scheduler's stop) is an interrupt with the conventional status 143
    from medi2i.errors import Terminated

    def terminated(*args: object, **kwargs: object) -> Path:
        raise Terminated

    monkeypatch.setattr(runner, "train_stage", trained)
    run_workflow(load_workflow(workflow_file, registry=registry), registry=registry)
    monkeypatch.setattr(runner, "train_stage", terminated)
    result = CliRunner().invoke(build_cli(registry.plugins), ["run", str(workflow_file)])
    assert result.exit_code == 143
    assert "the checkpoint of step 2, where training resumes" in result.output


def test_a_run_folder_given_as_the_model_names_the_model_folder_in_it(
    workflow_file: Path, registry: Registry
) -> None:
    from medi2i.errors import ModelFormatError
    from medi2i.model_folder import load_model

    workflow = load_workflow(workflow_file, registry=registry)
    run_dir = run_workflow(workflow, registry=registry, stages=("train",)).run_dir
    for given in (run_dir, run_dir / "checkpoints"):
        with pytest.raises(ModelFormatError, match=rf"workflow run folder: pass {run_dir}/model"):
            load_model(given, registry=registry)


def test_an_evaluation_mask_off_the_reference_grid_says_to_resample_the_mask(
    workflow_file: Path, registry: Registry
) -> None:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.errors import GeometryError
    from medi2i.io import read_volume, write_volume

    mask_path = workflow_file.parent / "cases" / "demo003" / "mask.nii.gz"
    mask = read_volume(mask_path)
    affine = mask.affine.clone()
    affine[2, 3] += 5.0
    mask_path.unlink()
    write_volume(MetaTensor(mask.as_tensor(), affine=affine), mask_path)
    workflow = load_workflow(workflow_file, registry=registry)
    with pytest.raises(
        GeometryError,
        match=r"demo003.mask\.nii\.gz is not on the grid.*resample the mask onto the reference",
    ):
        run_workflow(workflow, registry=registry)


@pytest.mark.parametrize("case", ["demo002", "demo003"])
def test_an_empty_mask_is_refused_naming_the_case_and_the_file(
    workflow_file: Path, registry: Registry, case: str
) -> None:
    """demo002 validates, demo003 is the test case: metrics named no file before."""
    import nibabel as nib

    from medi2i.errors import Medi2iError

    mask_path = workflow_file.parent / "cases" / case / "mask.nii.gz"
    image = nib.load(str(mask_path))
    nib.save(nib.Nifti1Image(np.zeros(image.shape, np.uint8), image.affine), str(mask_path))
    split = "data.split={test: [demo003], validation: [demo002]}"
    workflow = load_workflow(workflow_file, overrides=[split], registry=registry)
    role = "validation" if case == "demo002" else "evaluation"
    with pytest.raises(Medi2iError, match=rf"{role} case '{case}'.*{case}.mask\.nii\.gz.*no voxel"):
        run_workflow(workflow, registry=registry)
    trained = (workflow_file.parent / "runs" / "tiny-fixed" / "model").exists()
    assert trained == (case == "demo003")  # a bad validation mask stops before training


def test_a_run_continued_with_fewer_steps_than_it_trained_is_refused(
    workflow_file: Path, registry: Registry
) -> None:
    """The model kept its steps while config.resolved.yaml and the report said fewer."""
    four = load_workflow(workflow_file, overrides=["training.steps=4"], registry=registry)
    result = run_workflow(four, registry=registry, stages=("train",))
    config = (result.run_dir / "config.resolved.yaml").read_text()
    for stages in (("train",), ("evaluate",)):
        with pytest.raises(WorkflowError, match=r"trained 4 steps, more than training\.steps 2"):
            run_workflow(
                load_workflow(workflow_file, registry=registry), registry=registry, stages=stages
            )
    assert (result.run_dir / "config.resolved.yaml").read_text() == config
    run_workflow(four, registry=registry, stages=("evaluate",))  # the same steps: fine


def test_the_docs_name_every_file_of_a_run_s_metrics_and_model_folders(
    workflow_file: Path, registry: Registry
) -> None:
    root = Path(__file__).resolve().parent.parent
    docs = (root / "README.md").read_text() + (root / "workflows" / "README.md").read_text()
    workflow = load_workflow(workflow_file, registry=registry)
    result = run_workflow(workflow, registry=registry)
    assert result.model_dir is not None
    for folder in (result.run_dir / "metrics", result.model_dir):
        for path in folder.iterdir():
            assert path.name in docs, f"{folder.name}/{path.name} is not documented"


def test_tensorboard_without_the_package_is_refused_by_validate_and_before_the_run(
    workflow_file: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    on = ["training.tensorboard=true"]
    result = CliRunner().invoke(
        build_cli(registry.plugins), ["validate", str(workflow_file), "--set", on[0]]
    )
    assert result.exit_code == 1
    assert "pip install tensorboard" in result.output
    assert "valid (" not in result.output
    workflow = load_workflow(workflow_file, overrides=on, registry=registry)
    with pytest.raises(Medi2iError, match="pip install tensorboard"):
        run_workflow(workflow, registry=registry)
    assert not (workflow_file.parent / "runs").exists()  # refused before the run folder


def test_a_workflow_fine_tunes_a_trained_model_of_its_method(
    workflow_file: Path, registry: Registry
) -> None:
    first = run_workflow(
        load_workflow(workflow_file, registry=registry), registry=registry, stages=("train",)
    )
    assert first.model_dir is not None
    model = first.model_dir.relative_to(workflow_file.parent)
    tuned = load_workflow(
        workflow_file,
        overrides=[f"method.init_from={model}", "output.run_id=tuned"],
        registry=registry,
    )
    result = run_workflow(tuned, registry=registry, stages=("train",))
    assert result.model_dir is not None
    assert result.model_dir.is_dir()
    log = (result.run_dir / "logs" / "run.log").read_text()
    assert f"starting from the weights of the trained model {first.model_dir}" in log


def test_init_from_a_model_that_does_not_exist_or_of_other_options_is_refused(
    workflow_file: Path, registry: Registry
) -> None:
    with pytest.raises(WorkflowError, match=r"method\.init_from: trained model .*nowhere"):
        load_workflow(workflow_file, overrides=["method.init_from=nowhere"], registry=registry)
    first = run_workflow(
        load_workflow(workflow_file, registry=registry), registry=registry, stages=("train",)
    )
    assert first.model_dir is not None
    with pytest.raises(WorkflowError, match=r"method\.init_from: .*do not fit"):
        load_workflow(
            workflow_file,
            overrides=[
                f"method.init_from={first.model_dir}",
                "method.options.hidden=8",
                "output.run_id=wider",
            ],
            registry=registry,
        )
    assert not (first.run_dir.parent / "wider").exists()


def test_a_bug_in_training_code_is_kept_in_the_run_log_with_its_traceback(
    workflow_file: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin's KeyError used to leave only ``stopped: 'target_image'`` in the log."""
    from medi2i.workflow import runner

    def broken(*args: object, **kwargs: object) -> Path:
        raise KeyError("target_image")

    monkeypatch.setattr(runner, "train_stage", broken)
    workflow = load_workflow(workflow_file, registry=registry)
    with pytest.raises(KeyError):
        run_workflow(workflow, registry=registry, stages=("train",))
    log = (workflow_file.parent / "runs" / "tiny-fixed" / "logs" / "run.log").read_text()
    assert "stopped: KeyError: 'target_image'" in log
    assert "Traceback (most recent call last)" in log
    assert "in broken" in log


def test_validate_check_data_refuses_a_domain_without_training_cases(
    tmp_path: Path, registry: Registry
) -> None:
    """Only train refused it: validate --check-data said 'valid'."""
    import shutil

    from click.testing import CliRunner

    from medi2i.cli.main import build_cli
    from medi2i.workflow.demo_data import write_unpaired_demo

    root = Path(__file__).resolve().parent.parent
    workflow = tmp_path / "unpaired.yaml"
    shutil.copy(root / "workflows" / "demo_unpaired_tiny.yaml", workflow)
    write_unpaired_demo(tmp_path / "data" / "unpaired-tiny")
    (tmp_path / "empty").mkdir()
    args = ["validate", str(workflow), "--check-data"]
    cli = build_cli(registry.plugins)
    assert CliRunner().invoke(cli, args).exit_code == 0
    result = CliRunner().invoke(cli, [*args, "--set", "data.layout.folders.ct=empty"])
    assert result.exit_code == 1
    assert "domains ['ct'] have no training cases" in result.output
    assert "check their folders (or CSV rows) in data.layout" in " ".join(result.output.split())
    assert "valid (" not in result.output


def test_a_re_evaluation_of_other_cases_names_the_earlier_predictions(
    workflow_file: Path, registry: Registry
) -> None:
    import shutil

    keep = "evaluation.save_predictions=true"
    first = load_workflow(workflow_file, overrides=[keep], registry=registry)
    result = run_workflow(first, registry=registry)
    assert (result.run_dir / "predictions" / "demo003.nii.gz").is_file()
    shutil.copytree(workflow_file.parent / "cases" / "demo001", workflow_file.parent / "one" / "x")
    other = "evaluation.data={kind: paired, layout: {type: synthrad, root: one}}"
    again = load_workflow(workflow_file, overrides=[keep, other], registry=registry)
    run_workflow(again, registry=registry, stages=("evaluate",))
    log = (result.run_dir / "logs" / "run.log").read_text()
    assert "predictions/ still holds 1 file(s) of an earlier evaluation of other cases" in log
    assert "demo003.nii.gz" in log
    assert (result.run_dir / "predictions" / "demo003.nii.gz").is_file()  # kept, not deleted


def test_training_steps_for_a_method_not_trained_in_steps_get_a_note(
    workflow_file: Path, registry: Registry
) -> None:
    """A fitted method ignores training.steps; validate and the run log say so."""
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli
    from medi2i.workflow.checks import unused_training_settings

    fitted = FITTED
    workflow = load_workflow(workflow_file, overrides=fitted, registry=registry)
    assert unused_training_settings(workflow, registry) == (
        "note: training.batch_size, training.steps are not used: method "
        "'example-fitted-standardization' fits on whole volumes (training: fit), it is not "
        "trained in steps"
    )
    fresh = Registry(load_plugins())
    trained = load_workflow(workflow_file, registry=fresh)
    assert unused_training_settings(trained, fresh) is None
    arguments = ["validate", str(workflow_file), *(f"--set={o}" for o in fitted)]
    result = CliRunner().invoke(build_cli(), arguments)
    assert result.exit_code == 0, result.output
    assert "note: training.batch_size, training.steps are not used" in result.output


def test_a_training_mask_off_its_image_grid_is_refused_even_by_a_fitted_method(
    workflow_file: Path, registry: Registry
) -> None:
    """Fitting reads whole images; a training case's mask on another grid was neither
    used nor checked, so the run went on as if the mask fitted."""
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli
    from medi2i.errors import GeometryError

    fitted = FITTED
    _shift(workflow_file.parent / "cases" / "demo000" / "mask.nii.gz", 5.0)
    workflow = load_workflow(workflow_file, overrides=fitted, registry=registry)
    with pytest.raises(GeometryError, match=r"training case 'demo000': the mask .*5 mm"):
        run_workflow(workflow, registry=registry)
    arguments = ["validate", str(workflow_file), "--check-data", *(f"--set={o}" for o in fitted)]
    result = CliRunner().invoke(build_cli(registry.plugins), arguments)
    assert result.exit_code == 1
    assert "training case 'demo000': the mask" in result.output
    assert "valid (" not in result.output


def test_the_report_of_a_fitted_method_gives_no_training_steps(
    workflow_file: Path, registry: Registry
) -> None:
    fitted = FITTED
    workflow = load_workflow(workflow_file, overrides=fitted, registry=registry)
    result = run_workflow(workflow, registry=registry)
    assert result.report_path is not None
    report = result.report_path.read_text()
    assert "| training steps | none (fitted on whole volumes) |" in report
    fresh = Registry(load_plugins())
    trained = run_workflow(
        load_workflow(workflow_file, overrides=["output.run_id=trained"], registry=fresh),
        registry=fresh,
        stages=("train", "report"),
    )
    assert trained.report_path is not None
    assert "| training steps | 2 |" in trained.report_path.read_text()


def test_a_method_fitted_on_target_volumes_takes_them_from_paired_data(
    workflow_file: Path, registry: Registry
) -> None:
    """Nyul-like methods declare single-domain data, but the guide's route fits them on
    a paired case's target (or method.fit_domain's images): not refused as the wrong
    kind of data."""
    fitted = [
        "plugins=[medi2i.testing.example_methods]",
        "method.id=example-fitted-standardization",
        "method.options={}",
        "evaluation.enabled=false",
    ]
    workflow = load_workflow(workflow_file, overrides=fitted, registry=registry)
    assert workflow.data.kind == "paired"
    result = run_workflow(workflow, registry=registry, stages=("train",))
    assert result.model_dir is not None
    log = (result.run_dir / "logs" / "run.log").read_text()
    assert "fitting method 'example-fitted-standardization' on 3 target-domain volumes" in log
    # the demo cases have masks, which fitting does not use: the log says so
    assert "note: the layout's masks are not used by fitting" in log
