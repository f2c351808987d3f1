"""A diverged run stops with one clear error, keeps its last good checkpoint, writes no
model and leaves a history that is strict JSON; unusable numbers and checkpoints are
refused in one line. A GAN that collapses while every number stays finite (discriminators
that win outright, a generator with a constant output) is reported."""

from __future__ import annotations

import json
import math
import pickle
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from medi2i.cli.main import build_cli
from medi2i.data.cases import CaseSet
from medi2i.errors import Medi2iError, OptionsError, TrainingError
from medi2i.method import TrainerAPI
from medi2i.plugins import load_plugins
from medi2i.testing.trainable_examples import (
    TinyAdversarial,
    TinyRegression,
    write_paired_cases,
)
from medi2i.training import CheckpointError, TrainingConfig, train
from medi2i.training.checkpoint import POINTER, read_checkpoint
from medi2i.training.health import (
    DISCRIMINATOR_LOSS_FLOOR,
    SPREAD_FLOOR,
    CollapseWatch,
    DivergenceGuard,
    non_finite_tensors,
    spread_ratio,
)
from medi2i.training.history import RunLog, json_line, read_history

NAN = float("nan")


def quick(**overrides: object) -> TrainingConfig:
    settings: dict[str, object] = {
        "steps": 6,
        "batch_size": 1,
        "patch_size": (16, 16, 16),
        "log_every": 2,
        "checkpoint_every": 3,
        "device": "cpu",
        "progress": False,
    }
    return TrainingConfig.model_validate({**settings, **overrides})


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> CaseSet:
    return write_paired_cases(tmp_path_factory.mktemp("cases"), count=2, shape=(20, 20, 20))


def strict_lines(path: Path) -> list[dict[str, Any]]:
    """Parse JSON Lines the way a strict parser does: NaN and Infinity are errors."""

    def refuse(constant: str) -> object:
        raise ValueError(f"not JSON: {constant}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def nan_sources_from(method_cls: type[TinyRegression], step_index: int) -> TinyRegression:
    """The method, fed NaN sources from the step after ``step_index`` completed steps on
    (as a broken volume or an exploding activation would)."""

    class Diverging(method_cls):  # type: ignore[valid-type, misc]
        def training_step(
            self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
        ) -> dict[str, float]:
            if trainer.step_index >= step_index:
                batch = {**batch, "source": batch["source"] * NAN}
            result: dict[str, float] = super().training_step(batch, trainer)
            return result

    return Diverging()


def assert_diverged_at(
    error: pytest.ExceptionInfo[TrainingError], run_dir: Path, *, step: int, kept: int
) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert re.search(rf"training of method '[\w.-]+' diverged at step {step}:", message)
    assert f"last good checkpoint (step {kept}) is kept in {run_dir / 'checkpoints'}" in message
    assert not (run_dir / "model").exists()
    checkpoint = read_checkpoint(run_dir / "checkpoints")
    assert checkpoint is not None
    assert checkpoint.step == kept
    assert non_finite_tensors(checkpoint.state.modules) == []


@pytest.mark.parametrize("method_cls", [TinyRegression, TinyAdversarial])
def test_a_nan_loss_stops_training_at_its_step(
    method_cls: type[TinyRegression], cases: CaseSet, tmp_path: Path
) -> None:
    with pytest.raises(TrainingError) as error:
        train(nan_sources_from(method_cls, 4), cases, config=quick(), run_dir=tmp_path)
    assert_diverged_at(error, tmp_path, step=5, kept=3)
    assert "loss " in str(error.value)
    assert "= nan" in str(error.value)
    assert isinstance(error.value, Medi2iError)

    history = strict_lines(tmp_path / "logs" / "train.jsonl")
    assert [entry["step"] for entry in history] == [2, 4, 5]  # the diverged step is logged
    assert set(history[-1]["losses"].values()) == {None}


def test_the_last_step_diverging_leaves_the_previous_checkpoint(
    cases: CaseSet, tmp_path: Path
) -> None:
    with pytest.raises(TrainingError) as error:
        train(nan_sources_from(TinyRegression, 5), cases, config=quick(), run_dir=tmp_path)
    assert_diverged_at(error, tmp_path, step=6, kept=3)


def test_a_nan_loss_the_method_does_not_report_is_caught(cases: CaseSet, tmp_path: Path) -> None:
    class Hiding(TinyRegression):
        def training_step(
            self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
        ) -> dict[str, float]:
            super().training_step({**batch, "source": batch["source"] * NAN}, trainer)
            return {"l1": 0.5}

    with pytest.raises(TrainingError, match=r"step 1: .*optimizer 'network'") as error:
        train(Hiding(), cases, config=quick(), run_dir=tmp_path)
    assert "no checkpoint was written" in str(error.value)
    assert not (tmp_path / "model").exists()
    assert not (tmp_path / "checkpoints" / POINTER).exists()


def test_non_finite_weights_are_never_checkpointed(cases: CaseSet, tmp_path: Path) -> None:
    class Exploding(TinyRegression):
        def training_step(
            self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
        ) -> dict[str, float]:
            losses: dict[str, float] = super().training_step(batch, trainer)
            if trainer.step_index == 5:  # the step that ends with the last checkpoint
                with torch.no_grad():
                    parameters = dict(trainer.modules["network"].named_parameters())
                    parameters["0.bias"].fill_(math.inf)
            return losses

    with pytest.raises(
        TrainingError, match=r"weights are NaN or infinite \(network\.0\.bias\)"
    ) as e:
        train(Exploding(), cases, config=quick(), run_dir=tmp_path)
    assert_diverged_at(e, tmp_path, step=6, kept=3)


def test_skipped_steps_are_tolerated_up_to_the_limit(tmp_path: Path) -> None:
    guard = DivergenceGuard(checkpoints=tmp_path, skips_allowed=2, last_checkpoint=10)
    guard.after_losses(11, "loss l1 = nan")
    guard.after_losses(12, "loss l1 = nan")
    guard.after_losses(13, None)  # the scaler found a scale that works: the count restarts
    guard.after_losses(14, "loss l1 = inf")
    guard.after_losses(15, "loss l1 = inf")
    with pytest.raises(TrainingError, match=r"step 16: loss l1 = nan for 3 steps in a row .*"):
        guard.after_losses(16, "loss l1 = nan")


def test_without_skips_the_first_non_finite_loss_stops(tmp_path: Path) -> None:
    guard = DivergenceGuard(checkpoints=tmp_path, skips_allowed=0)
    with pytest.raises(TrainingError, match=r"step 1: loss l1 = nan; .*no checkpoint"):
        guard.after_losses(1, "loss l1 = nan")


def test_the_history_is_strict_json_with_nulls(tmp_path: Path) -> None:
    assert json_line({"losses": {"a": NAN, "b": [math.inf, 1.5]}}) == (
        '{"losses": {"a": null, "b": [null, 1.5]}}\n'
    )
    logs = tmp_path / "logs"
    with RunLog(
        logs,
        first_step=0,
        total_steps=4,
        patches_per_step=1,
        tensorboard=False,
        progress=False,
        main=True,
    ) as log:
        log.record(1, {"l1": 0.5}, {"network": 1e-3})
        log.record(2, {"l1": NAN}, {"network": math.inf})
        log.validation(2, {"mae": 3.0, "psnr": math.inf})
    # a resumed run rewrites the kept lines, a NaN in an older file included
    with (logs / "train.jsonl").open("a") as stream:
        stream.write('{"step": 2, "losses": {"l1": NaN}}\n')
    RunLog(
        logs,
        first_step=2,
        total_steps=4,
        patches_per_step=1,
        tensorboard=False,
        progress=False,
        main=True,
    ).close()
    history = strict_lines(logs / "train.jsonl")
    assert history[1]["losses"] == {"l1": None}
    assert history[1]["lr"] == {"network": None}
    assert history[2]["validation"] == {"mae": 3.0, "psnr": None}
    assert history[3]["losses"] == {"l1": None}


def test_a_nan_learning_rate_is_one_options_error() -> None:
    with pytest.raises(OptionsError, match=r"^invalid options.*learning_rate: .*finite number$"):
        TinyRegression({"learning_rate": NAN})


def test_a_learning_rate_the_optimizer_refuses_is_one_options_error(
    cases: CaseSet, tmp_path: Path
) -> None:
    method = TinyRegression({"learning_rate": -1.0})
    with pytest.raises(OptionsError) as error:
        train(method, cases, config=quick(), run_dir=tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert "cannot set up training with its options: Invalid learning rate: -1.0" in message


def test_a_checkpoint_with_pickled_objects_is_refused_in_one_line(
    cases: CaseSet, tmp_path: Path
) -> None:
    train(TinyRegression(), cases, config=quick(steps=3), run_dir=tmp_path)
    folder = tmp_path / "checkpoints"
    record = json.loads((folder / POINTER).read_text())
    optimizer_file = folder / record["optimizer_state"]["file"]
    # what an optimizer whose state holds a Python object would have saved
    torch.save({"optimizers": {"network": {"schedule": Schedule()}}}, optimizer_file)
    record["optimizer_state"]["sha256"] = _sha256(optimizer_file)
    (folder / POINTER).write_text(json.dumps(record))

    with pytest.raises(CheckpointError) as error:
        train(TinyRegression(), cases, config=quick(steps=6), run_dir=tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert str(optimizer_file) in message
    assert "Schedule" in message
    assert f"delete {folder}" in message
    assert not isinstance(error.value.__cause__, pickle.UnpicklingError)


class Schedule:
    """Stands for an object an unpickler must not build."""


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(*args: str) -> Result:
    plugins = load_plugins()
    return CliRunner().invoke(build_cli(plugins), list(args))


@pytest.mark.parametrize("command", ["validate", "train"])
def test_the_command_line_reports_a_nan_learning_rate_in_one_line(
    command: str, cases: CaseSet, tmp_path: Path
) -> None:
    workflow = tmp_path / "workflow.yaml"
    root = cases.cases[0].images["source"].parent.parent
    workflow.write_text(
        textwrap.dedent(
            f"""\
            plugins: [medi2i.testing.trainable_examples]
            data:
              kind: paired
              layout: {{type: synthrad, root: {root}, source: source, target: target}}
            method:
              id: example-tiny-regression
              options: {{learning_rate: .nan}}
            training: {{steps: 2, device: cpu, progress: false}}
            """
        )
    )
    result = cli(
        command, str(workflow), *(["--run-dir", str(tmp_path / "run")] * (command == "train"))
    )
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0, result.output
    assert "method.options.learning_rate: Input should be a finite number" in result.output
    assert not (tmp_path / "run" / "model").exists()


def test_a_training_volume_with_nan_is_refused_naming_the_file(tmp_path: Path) -> None:
    import nibabel as nib

    from medi2i.errors import InputError

    data = write_paired_cases(tmp_path / "cases", count=2, shape=(20, 20, 20))
    broken = data.cases[1].images["source"]
    image = nib.load(str(broken))
    values = image.get_fdata().astype("float32")
    values[3, 4, 5] = NAN
    nib.save(nib.Nifti1Image(values, image.affine), str(broken))
    with pytest.raises(InputError, match=r"case 'case-1'\): 1 voxel\(s\) are NaN") as error:
        train(TinyRegression(), data, config=quick(), run_dir=tmp_path / "run")
    assert str(broken) in str(error.value)
    assert not (tmp_path / "run" / "model").exists()


@pytest.mark.parametrize(
    ("fill", "message"),
    [(-1000.0, r"every voxel is -1000, a constant volume"), (1e20, r"beyond the safe range")],
)
def test_a_constant_or_absurd_training_target_is_refused_naming_the_file(
    tmp_path: Path, fill: float, message: str
) -> None:
    import nibabel as nib

    from medi2i.errors import InputError

    data = write_paired_cases(tmp_path / "cases", count=2, shape=(20, 20, 20))
    broken = data.cases[0].images["target"]
    image = nib.load(str(broken))
    values = np.full(image.shape, fill, dtype="float32")
    nib.save(nib.Nifti1Image(values, image.affine), str(broken))
    with pytest.raises(InputError, match=r"case 'case-0'\): .*" + message) as error:
        train(TinyRegression(), data, config=quick(), run_dir=tmp_path / "run")
    assert str(broken) in str(error.value)
    assert not (tmp_path / "run" / "model").exists()


def test_a_validation_whose_predictions_blow_up_stops_training_naming_the_step(
    tmp_path: Path,
) -> None:
    from medi2i.errors import TrainingError

    class Exploding(TinyRegression):
        def postprocess(self, output, image, **kwargs):  # type: ignore[no-untyped-def]
            return output * 1e30  # finite weights, predictions beyond any unit

    data = write_paired_cases(tmp_path / "cases", count=2, shape=(20, 20, 20))
    config = quick(steps=4, checkpoint_every=2, validate_every=4)
    with pytest.raises(
        TrainingError, match=r"validation at step 4 failed.*diverged.*step 2 is kept"
    ):
        train(Exploding(), data, config=config, run_dir=tmp_path / "run", validation=data)
    assert not (tmp_path / "run" / "model").exists()


def test_an_empty_training_mask_is_refused_naming_the_file(tmp_path: Path) -> None:
    import nibabel as nib

    from medi2i.errors import InputError

    data = write_paired_cases(tmp_path / "cases", count=2, shape=(20, 20, 20))
    mask = data.cases[1].images["mask"]
    image = nib.load(str(mask))
    nib.save(nib.Nifti1Image(np.zeros(image.shape, np.uint8), image.affine), str(mask))
    with pytest.raises(InputError, match=r"case 'case-1': the mask .*mask\.nii\.gz selects no"):
        train(TinyRegression(), data, config=quick(), run_dir=tmp_path / "run")


# -- collapse: a GAN that fails with every number finite ---------------------------------


class _Constant(torch.nn.Module):
    """A generator that collapsed: one learnable value, whatever the input."""

    def __init__(self) -> None:
        super().__init__()
        self.value = torch.nn.Parameter(torch.zeros(1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image[:, :1] * 0.0 + self.value


class Collapsed(TinyAdversarial):
    def build_network(self) -> torch.nn.Module:
        return _Constant()


WON = {"discriminator_a": DISCRIMINATOR_LOSS_FLOOR / 10, "discriminator_b": 1e-5}


def test_discriminators_below_the_floor_are_reported_after_the_patience() -> None:
    watch = CollapseWatch(patience=100)
    assert watch.observe(100, WON, {}) == []
    assert watch.observe(150, WON, {}) == []
    found = watch.observe(200, WON, {})
    assert len(found) == 1
    assert "discriminators win outright" in found[0]
    assert "since step 100" in found[0]
    assert "at step 200" in found[0]
    assert watch.observe(250, WON, {}) == []  # reported once
    assert watch.findings == found


def test_one_discriminator_still_learning_is_no_collapse() -> None:
    watch = CollapseWatch(patience=0)
    assert watch.observe(10, {"discriminator_a": 1e-6, "discriminator_b": 0.3}, {}) == []


def test_a_symptom_that_goes_away_starts_its_clock_again() -> None:
    watch = CollapseWatch(patience=100)
    watch.observe(100, WON, {})
    watch.observe(150, {"discriminator_a": 0.4, "discriminator_b": 0.4}, {})
    assert watch.observe(200, WON, {}) == []
    assert watch.observe(250, WON, {}) == []
    assert len(watch.observe(300, WON, {})) == 1


def test_a_step_without_discriminator_losses_keeps_the_clock() -> None:
    """DiscoGAN updates its discriminators every third step: a logged generator step
    says nothing about them."""
    watch = CollapseWatch(patience=100)
    watch.observe(100, WON, {})
    assert watch.observe(150, {"gan_a": 2.0}, {}) == []
    assert len(watch.observe(200, {"gan_a": 2.0}, {})) == 1


def test_a_constant_generator_output_is_reported_and_nan_ignored() -> None:
    watch = CollapseWatch(patience=0)
    found = watch.observe(10, {"l1": 0.1}, {"fake_b": SPREAD_FLOOR / 2, "fake_a": math.nan})
    assert len(found) == 1
    assert "'fake_b' is nearly constant" in found[0]
    assert watch.observe(20, {}, {"fake_a": 0.9}) == []


def test_stop_raises_one_training_error(tmp_path: Path) -> None:
    watch = CollapseWatch(patience=0, stop=True, checkpoints=tmp_path)
    with pytest.raises(TrainingError, match=r"training collapsed at step 5: .*collapse_check"):
        watch.observe(5, WON, {})


def test_spread_ratio() -> None:
    real = torch.arange(64.0).reshape(1, 1, 4, 4, 4)
    assert float(spread_ratio(real * 2, real)) == pytest.approx(2.0)  # type: ignore[arg-type]
    assert float(spread_ratio(torch.ones_like(real), real)) == 0.0  # type: ignore[arg-type]
    assert math.isnan(float(spread_ratio(real, torch.ones_like(real))))  # type: ignore[arg-type]
    assert spread_ratio(torch.ones(1), torch.ones(1)) is None


def test_a_collapsed_generator_is_reported_in_the_history_and_result(
    cases: CaseSet, tmp_path: Path
) -> None:
    result = train(Collapsed(), cases, config=quick(collapse_patience=2), run_dir=tmp_path)
    assert len(result.health) == 1
    assert "generator output 'fake' is nearly constant" in result.health[0]
    assert "at step 4" in result.health[0]
    assert "since step 2" in result.health[0]
    records = read_history(result.history)
    assert [r["health"] for r in records if "health" in r] == list(result.health)
    spreads = [r["generated_spread"]["fake"] for r in records if "generated_spread" in r]
    assert spreads
    assert all(value < SPREAD_FLOOR for value in spreads)
    assert result.model_dir.is_dir()  # "warn" keeps the run going


def test_collapse_check_stop_ends_the_run_without_a_model(cases: CaseSet, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="generator output 'fake' is nearly constant"):
        train(
            Collapsed(),
            cases,
            config=quick(collapse_patience=2, collapse_check="stop"),
            run_dir=tmp_path,
        )
    assert not (tmp_path / "model").exists()


def test_collapse_check_off_and_a_healthy_gan_report_nothing(
    cases: CaseSet, tmp_path: Path
) -> None:
    off = train(
        Collapsed(),
        cases,
        config=quick(collapse_patience=0, collapse_check="off"),
        run_dir=tmp_path / "off",
    )
    assert off.health == ()
    healthy = train(
        TinyAdversarial(), cases, config=quick(collapse_patience=0), run_dir=tmp_path / "ok"
    )
    assert healthy.health == ()
    spreads = [
        r["generated_spread"]["fake"] for r in read_history(healthy.history) if "losses" in r
    ]
    assert len(spreads) == 3
    assert min(spreads) > SPREAD_FLOOR


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"step": "x"}', "format: Field required"),
        ("{not json", "Invalid JSON"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_a_damaged_checkpoint_record_is_one_line(
    tmp_path: Path, text: str | bytes, reason: str
) -> None:
    """A damaged last.json printed pydantic's several-line dump with its web link."""
    from medi2i.training.checkpoint import CheckpointError, read_checkpoint

    pointer = tmp_path / "last.json"
    pointer.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "pydantic" not in message
    assert reason in message
    assert str(pointer) in message


def test_the_divergence_message_names_the_method(tmp_path: Path) -> None:
    guard = DivergenceGuard(checkpoints=tmp_path, skips_allowed=0, method_id="my-method")
    with pytest.raises(TrainingError, match=r"^training of method 'my-method' diverged at step 1:"):
        guard.after_losses(1, "loss l1 = nan")
