"""A run folder stays consistent: a refused resume changes nothing, a full disk leaves no
half-written checkpoint or model folder, a retrained model marks its old results stale,
one process works in a folder at a time, and only rank 0 runs the later stages."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from medi2i.cards import ModelCard, load_card
from medi2i.cli.main import build_cli
from medi2i.plugins import PluginSet, load_plugins
from medi2i.training.resume import TrainingDataWarning
from medi2i.workflow import run_folder, runner, stages
from medi2i.workflow.demo_data import write_demo_cases
from medi2i.workflow.run_folder import run_lock

WORKFLOW = """\
description: tiny test run
plugins: [medi2i.testing.trainable_examples]
data:
  kind: paired
  cards: [head_phantoms]
  layout: {type: synthrad, root: cases}
  split: {validation: [demo001], test: [demo003]}
method:
  id: example-tiny-regression
  options: {hidden: 4, roi_size: [16, 16, 16]}
training:
  steps: 8
  batch_size: 2
  checkpoint_every: 4
  validate_every: 4
  log_every: 1
  device: cpu
  progress: false
inference: {device: cpu, progress: false}
report: {cases: 1, figures: false}
output: {root: runs, run_id: one}
"""


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "cases"
    write_demo_cases(root, count=4, shape=(16, 16, 16), spacing_mm=(10.5, 12.0, 10.5))
    return root


@pytest.fixture
def workflow_file(tmp_path: Path, cases: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(WORKFLOW.replace("root: cases", f"root: {cases}"))
    return path


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> PluginSet:
    monkeypatch.setenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "1")
    return load_plugins()


def cli(plugins: PluginSet, *args: str) -> Result:
    return CliRunner().invoke(build_cli(plugins), list(args))


def ok(plugins: PluginSet, *args: str) -> str:
    result = cli(plugins, *args)
    assert result.exit_code == 0, result.output
    return result.output


def one_error_line(result: Result) -> str:
    """The refusal's ``Error:`` line; no traceback was printed."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file of ``folder`` but its run log, by SHA-256."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "run.log"
    }


def run_dir(workflow_file: Path) -> Path:
    return workflow_file.parent / "runs" / "tiny-one"


# -- 1: a refused resume changes nothing -------------------------------------------------------


@pytest.mark.parametrize(
    "setting", ["training.batch_size=4", "training.seed=7", "training.patch_size=[8,8,8]"]
)
def test_a_refused_resume_keeps_the_resolved_config(
    workflow_file: Path, plugins: PluginSet, setting: str
) -> None:
    ok(plugins, "train", str(workflow_file))
    run = run_dir(workflow_file)
    before = snapshot(run)
    result = cli(plugins, "train", str(workflow_file), "--run-dir", str(run), "--set", setting)
    assert "was written with other settings" in one_error_line(result)
    assert snapshot(run) == before  # config.resolved.yaml still describes the model
    ok(plugins, "train", str(run / "config.resolved.yaml"), "--run-dir", str(run))


# -- 2: a full disk --------------------------------------------------------------------------


def fail_on_call(number: int, error: BaseException, real: object) -> object:
    calls = []

    def writer(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == number:
            raise error
        return real(*args, **kwargs)  # type: ignore[operator]

    return writer


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 71808 vs 71700"),
        OSError(errno.ENOSPC, "No space left on device"),
    ],
)
def test_a_checkpoint_the_disk_cannot_hold_leaves_no_stray_file(
    workflow_file: Path, plugins: PluginSet, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    import torch

    monkeypatch.setattr(torch, "save", fail_on_call(2, error, torch.save))
    result = cli(plugins, "train", str(workflow_file))
    run = run_dir(workflow_file)
    line = one_error_line(result)
    assert f"cannot write the checkpoint of step 8 in the run folder {run}" in line
    assert f"--run-dir {run}" in line
    assert "checkpoint of step 4" in line
    names = sorted(path.name for path in (run / "checkpoints").iterdir())
    assert names == [
        "last.json",
        "step-00000004.optim.pt",
        "step-00000004.safetensors",
        "training-data.json",
    ]
    monkeypatch.undo()
    output = ok(plugins, "train", str(workflow_file), "--run-dir", str(run))
    assert "resumed from the checkpoint of step 4" in output


def test_a_full_disk_in_safetensors_is_one_line(
    workflow_file: Path, plugins: PluginSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch
    from safetensors import SafetensorError

    error = SafetensorError(
        "Error while serializing: I/O error: No space left on device (os error 28)"
    )
    monkeypatch.setattr(
        safetensors.torch, "save_file", fail_on_call(1, error, safetensors.torch.save_file)
    )
    line = one_error_line(cli(plugins, "train", str(workflow_file)))
    assert "the best model" in line
    assert "No space left on device" in line
    assert "plugin" not in line
    run = run_dir(workflow_file)
    assert not (run / "best-model").exists()
    assert not list((run / "checkpoints").glob("step-*"))


def test_a_model_folder_appears_with_its_card_or_not_at_all(
    workflow_file: Path, plugins: PluginSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medi2i.model_card_files

    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(
        medi2i.model_card_files,
        "attach_card",
        fail_on_call(1, full, medi2i.model_card_files.attach_card),
    )
    line = one_error_line(cli(plugins, "train", str(workflow_file)))
    run = run_dir(workflow_file)
    assert f"cannot write the best model in the run folder {run}" in line
    assert not (run / "best-model").exists()
    assert not [path.name for path in run.iterdir() if "medi2i-tmp" in path.name]


# -- 3: a retrained model marks its results stale ----------------------------------------------


def test_training_on_marks_the_evaluation_stale_until_it_is_redone(
    workflow_file: Path, plugins: PluginSet
) -> None:
    ok(plugins, "run", str(workflow_file))
    run = run_dir(workflow_file)
    output = ok(
        plugins, "train", str(workflow_file), "--run-dir", str(run), "--set", "training.steps=12"
    )
    state = json.loads((run / "run.json").read_text())
    assert state["stale"] == ["evaluate", "report"]
    assert "still describe the earlier model" in output
    assert f"medi2i evaluate {run / 'config.resolved.yaml'} --run-dir {run}" in output
    ok(plugins, "run", str(run / "config.resolved.yaml"), "--run-dir", str(run))
    assert "stale" not in json.loads((run / "run.json").read_text())


def test_a_rerun_that_trains_nothing_marks_nothing_stale(
    workflow_file: Path, plugins: PluginSet
) -> None:
    ok(plugins, "run", str(workflow_file))
    run = run_dir(workflow_file)
    output = ok(plugins, "train", str(workflow_file), "--run-dir", str(run))
    assert "stale" not in json.loads((run / "run.json").read_text())
    assert "earlier model" not in output


# -- 4: only rank 0 runs the later stages ------------------------------------------------------


def test_only_rank_0_evaluates_reports_and_prints(
    workflow_file: Path, plugins: PluginSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(plugins, "train", str(workflow_file))
    run = run_dir(workflow_file)
    log_before = (run / "logs" / "run.log").read_text()
    state = (run / "run.json").read_text()
    monkeypatch.setattr(run_folder, "is_main_process", lambda: False)
    monkeypatch.setattr(runner, "is_main_process", lambda: False)
    monkeypatch.setattr(stages, "is_main_process", lambda: False)
    output = ok(plugins, "run", str(workflow_file), "--run-dir", str(run))
    assert output == ""
    assert not (run / "metrics").exists()
    assert not (run / "report.md").exists()
    assert (run / "logs" / "run.log").read_text() == log_before
    assert (run / "run.json").read_text() == state


def test_processes_of_torchrun_must_be_given_one_run_folder(
    workflow_file: Path, plugins: PluginSet, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    text = workflow_file.read_text().replace("output: {root: runs, run_id: one}", "")
    unnamed = tmp_path / "unnamed.yaml"
    unnamed.write_text(text)
    result = cli(plugins, "train", str(unnamed))
    assert "under torchrun (2 processes) give --run-dir DIR or output.run_id" in (
        one_error_line(result)
    )


@pytest.mark.parametrize(("rank", "main"), [(None, True), ("0", True), ("1", False)])
def test_the_main_process_is_rank_0(
    monkeypatch: pytest.MonkeyPatch, rank: str | None, main: bool
) -> None:
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    assert run_folder.is_main_process() is main


# -- 7: the minor ones -----------------------------------------------------------------------


def test_checkpoint_files_without_their_record_are_refused(
    workflow_file: Path, plugins: PluginSet
) -> None:
    ok(plugins, "train", str(workflow_file))
    run = run_dir(workflow_file)
    (run / "checkpoints" / "last.json").unlink()
    history = (run / "logs" / "train.jsonl").read_text()
    line = one_error_line(cli(plugins, "train", str(workflow_file), "--run-dir", str(run)))
    assert "step-00000008.safetensors" in line
    assert "no last.json" in line
    assert (run / "logs" / "train.jsonl").read_text() == history


def test_the_collapse_stop_says_no_checkpoint_was_written(tmp_path: Path) -> None:
    from medi2i.errors import TrainingError
    from medi2i.training.health import CollapseWatch

    watch = CollapseWatch(patience=0, stop=True, checkpoints=tmp_path / "checkpoints")
    with pytest.raises(TrainingError) as caught:
        watch.observe(1, {"l1": 1.0}, {"fake_b": 0.0})
    assert "no checkpoint was written yet" in str(caught.value)
    assert "checkpoints are in" not in str(caught.value)


def test_changed_training_data_is_logged_in_the_run_log(
    workflow_file: Path, plugins: PluginSet, cases: Path, tmp_path: Path
) -> None:
    import shutil

    own = tmp_path / "own-cases"
    shutil.copytree(cases, own)
    workflow_file.write_text(workflow_file.read_text().replace(str(cases), str(own)))
    ok(plugins, "train", str(workflow_file), "--set", "training.steps=4")
    run = run_dir(workflow_file)
    volume = own / "demo002" / "mr.nii.gz"
    volume.write_bytes(volume.read_bytes())  # same bytes, a new modification time
    with pytest.warns(TrainingDataWarning, match="changed since the run started"):
        ok(plugins, "train", str(workflow_file), "--run-dir", str(run))
    assert "training resumes on data that changed" in (run / "logs" / "run.log").read_text()


def test_a_second_process_in_the_run_folder_is_refused(
    workflow_file: Path, plugins: PluginSet
) -> None:
    ok(plugins, "train", str(workflow_file), "--set", "training.steps=4")
    run = run_dir(workflow_file)
    before = snapshot(run)
    with run_lock(run):
        result = cli(plugins, "train", str(workflow_file), "--run-dir", str(run))
    assert "is in use by another medi2i process" in one_error_line(result)
    assert snapshot(run) == before


def test_a_file_system_without_locks_runs_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    def no_locks(handle: object, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    entered = []
    with run_lock(tmp_path / "run"):
        entered.append(True)
    assert entered == [True]


def test_a_refused_data_folder_keeps_no_lock_file(tmp_path: Path, plugins: PluginSet) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="is not a run folder"), run_lock(folder):
        runner.open_run(None, run_dir=folder)  # type: ignore[arg-type]
    assert sorted(path.name for path in folder.iterdir()) == ["notes.txt"]


def test_the_card_names_the_command_that_trained(workflow_file: Path, plugins: PluginSet) -> None:
    ok(plugins, "train", str(workflow_file), "--set", "training.steps=4")
    card = load_card(run_dir(workflow_file) / "model" / "card.yaml")
    assert isinstance(card, ModelCard)
    assert card.provenance.command.startswith("medi2i train ")
