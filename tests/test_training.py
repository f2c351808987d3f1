"""The trainer: learning, exact resume, accumulation, alternating optimizers, validation
and model folders (the patch batches it trains on: ``test_patch_batches.py``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

from medi2i.data.cases import CaseSet
from medi2i.errors import OptionsError, TrainingError
from medi2i.io import write_volume
from medi2i.method import DataKind, TrainerAPI
from medi2i.model_folder import load_model
from medi2i.prediction import predict_tensor
from medi2i.settings import InferenceSettings
from medi2i.testing import (
    check_method_contract,
    isolated_registry,
    make_volume,
    trainable_examples,
)
from medi2i.testing.trainable_examples import (
    TinyAdversarial,
    TinyRegression,
    write_paired_cases,
)
from medi2i.training import CheckpointError, Trainer, train
from medi2i.training.history import read_history
from tests.training_helpers import NO_INTENSITY, quick

CPU = torch.device("cpu")
QUIET = InferenceSettings(device="cpu", progress=False)


def losses_by_step(history: Path) -> dict[int, dict[str, float]]:
    return {int(e["step"]): e["losses"] for e in read_history(history) if "losses" in e}


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> CaseSet:
    return write_paired_cases(tmp_path_factory.mktemp("cases"), count=3, shape=(24, 24, 24))


class Interrupted(Exception):
    """Stands in for a crash in the middle of a run."""


def crashing(method_cls: type[TinyRegression], at_step: int) -> TinyRegression:
    class Crashing(method_cls):  # type: ignore[valid-type, misc]
        def training_step(
            self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
        ) -> dict[str, float]:
            if trainer.step_index == at_step:
                raise Interrupted
            result: dict[str, float] = super().training_step(batch, trainer)
            return result

    return Crashing()


# -- learning ------------------------------------------------------------------------------


def test_loss_decreases_on_a_learnable_task(cases: CaseSet, tmp_path: Path) -> None:
    config = quick(steps=30, checkpoint_every=30, augmentation=NO_INTENSITY)
    result = train(TinyRegression(), cases, config=config, run_dir=tmp_path)
    losses = [entry["l1"] for entry in losses_by_step(result.history).values()]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


@pytest.mark.parametrize("method_cls", [TinyRegression, TinyAdversarial])
def test_resume_after_a_crash_repeats_the_same_losses(
    method_cls: type[TinyRegression], cases: CaseSet, tmp_path: Path
) -> None:
    config = quick(accumulation_steps=2)
    reference = train(method_cls(), cases, config=config, run_dir=tmp_path / "reference")

    interrupted = tmp_path / "interrupted"
    with pytest.raises(TrainingError) as caught:
        train(crashing(method_cls, at_step=4), cases, config=config, run_dir=interrupted)
    assert isinstance(caught.value.__cause__, Interrupted)
    resumed = train(method_cls(), cases, config=config, run_dir=interrupted)

    assert resumed.first_step == 3  # the checkpoint of step 3, not the crash at step 5
    expected, got = losses_by_step(reference.history), losses_by_step(resumed.history)
    assert sorted(got) == [1, 2, 3, 4, 5, 6]  # one record per step, no leftovers of the crash
    assert got == expected  # bitwise: JSON keeps every digit of a float
    reference_weights = (reference.model_dir / "weights.safetensors").read_bytes()
    assert (resumed.model_dir / "weights.safetensors").read_bytes() == reference_weights


def test_stopping_and_resuming_to_more_steps_repeats_the_same_losses(
    cases: CaseSet, tmp_path: Path
) -> None:
    reference = train(TinyRegression(), cases, config=quick(), run_dir=tmp_path / "reference")
    train(TinyRegression(), cases, config=quick(steps=3), run_dir=tmp_path / "stopped")
    resumed = train(TinyRegression(), cases, config=quick(), run_dir=tmp_path / "stopped")
    assert resumed.first_step == 3
    expected, got = losses_by_step(reference.history), losses_by_step(resumed.history)
    assert [got[step] for step in (4, 5, 6)] == [expected[step] for step in (4, 5, 6)]


def test_resuming_on_changed_training_files_warns(tmp_path: Path) -> None:
    import warnings

    from medi2i.training.run import TrainingDataWarning

    data = write_paired_cases(tmp_path / "cases", count=2, shape=(24, 24, 24))
    train(TinyRegression(), data, config=quick(steps=3), run_dir=tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingDataWarning)  # the same files: no warning
        train(TinyRegression(), data, config=quick(steps=4), run_dir=tmp_path / "run")
    source = data.cases[1].images["source"]
    source.unlink()
    write_volume(make_volume((24, 24, 24), seed=99), source)
    with pytest.warns(TrainingDataWarning, match=r"changed since the run started \(case-1/source"):
        resumed = train(TinyRegression(), data, config=quick(steps=5), run_dir=tmp_path / "run")
    assert resumed.first_step == 4


_KILLED_RUN = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from medi2i.data.cases import Case, CaseSet
    from medi2i.method import DataKind
    from medi2i.testing.trainable_examples import TinyRegression
    from medi2i.training import TrainingConfig, train

    class Slow(TinyRegression):
        def training_step(self, batch, trainer):
            time.sleep(0.15)  # leaves the parent time to kill the run mid-way
            return super().training_step(batch, trainer)

    spec = json.loads(sys.argv[1])
    cases = CaseSet(
        kind=DataKind.PAIRED,
        cases=tuple(
            Case(id=c, images={r: Path(p) for r, p in images.items()})
            for c, images in spec["cases"].items()
        ),
    )
    config = TrainingConfig.model_validate(spec["config"])
    train(Slow(), cases, config=config, run_dir=Path(spec["run"]))
    """
)


def test_a_killed_process_resumes_with_identical_losses(cases: CaseSet, tmp_path: Path) -> None:
    config = quick(steps=12, checkpoint_every=2)
    run = tmp_path / "killed"
    spec = {
        "cases": {c.id: {r: str(p) for r, p in c.images.items()} for c in cases.cases},
        "config": config.model_dump(mode="json"),
        "run": str(run),
    }
    child = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, json.dumps(spec)])
    try:
        _wait_for_checkpoint(run / "checkpoints" / "last.json", step=4, child=child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    resumed = train(TinyRegression(), cases, config=config, run_dir=run)
    reference = train(TinyRegression(), cases, config=config, run_dir=tmp_path / "reference")
    assert 4 <= resumed.first_step < 12
    assert losses_by_step(resumed.history) == losses_by_step(reference.history)


def _wait_for_checkpoint(pointer: Path, *, step: int, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if pointer.is_file() and json.loads(pointer.read_text())["step"] >= step:
            return
        assert child.poll() is None, "the training process ended before it could be killed"
        time.sleep(0.02)
    pytest.fail(f"no checkpoint of step {step} appeared")


# -- the trainer API -----------------------------------------------------------------------


class SgdRegression(TinyRegression):
    """Plain SGD with rate 1: the update is minus the gradient, easy to compare."""

    def configure_training(self, trainer: TrainerAPI) -> None:
        parameters = trainer.modules["network"].parameters()
        trainer.add_optimizer("network", torch.optim.SGD(parameters, lr=1.0))


def _update(accumulation: int, batches: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    torch.manual_seed(0)
    method = SgdRegression()
    before = [p.detach().clone() for p in method.network.parameters()]
    trainer = Trainer(method.training_modules(), device=CPU, accumulation_steps=accumulation)
    method.configure_training(trainer)
    trainer.run_step(method, batches)
    return [
        after.detach() - start
        for after, start in zip(method.network.parameters(), before, strict=True)
    ]


def test_accumulating_two_half_batches_equals_one_whole_batch() -> None:
    generator = torch.Generator().manual_seed(3)
    whole = {key: torch.randn(4, 1, 8, 8, 8, generator=generator) for key in ("source", "target")}
    halves = [{key: value[i : i + 2] for key, value in whole.items()} for i in (0, 2)]
    one_batch = _update(1, [whole])
    accumulated = _update(2, halves)
    assert any(delta.abs().max() > 1e-3 for delta in one_batch)
    for expected, got in zip(one_batch, accumulated, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_optimizers_step_only_at_the_end_of_an_accumulation_cycle() -> None:
    method = SgdRegression()
    trainer = Trainer(method.training_modules(), device=CPU, accumulation_steps=2)
    method.configure_training(trainer)
    before = [p.detach().clone() for p in method.network.parameters()]
    batch = {"source": torch.rand(2, 1, 8, 8, 8), "target": torch.rand(2, 1, 8, 8, 8)}
    trainer.micro_step = 0
    method.training_step(batch, trainer)
    assert all(torch.equal(p, b) for p, b in zip(method.network.parameters(), before, strict=True))
    assert all(p.grad is not None for p in method.network.parameters())
    trainer.micro_step = 1
    method.training_step(batch, trainer)
    assert not all(
        torch.equal(p, b) for p, b in zip(method.network.parameters(), before, strict=True)
    )
    assert all(p.grad is None for p in method.network.parameters())


def test_a_loss_backpropagated_for_one_optimizer_leaves_the_others_gradients() -> None:
    method = TinyAdversarial()
    trainer = Trainer(method.training_modules(), device=CPU)
    method.configure_training(trainer)
    source = torch.rand(1, 1, 8, 8, 8)
    score = method.discriminator(torch.cat([source, method.network(source)], dim=1))
    trainer.backward(score.mean(), "generator")
    assert all(p.grad is not None for p in method.network.parameters())
    assert all(p.grad is None for p in method.discriminator.parameters())


def test_the_adversarial_method_alternates_its_two_optimizers(
    cases: CaseSet, tmp_path: Path
) -> None:
    method = TinyAdversarial()
    torch.manual_seed(0)
    initial = {
        name: [p.detach().clone() for p in module.parameters()]
        for name, module in method.training_modules().items()
    }
    steps_taken: list[str] = []

    class Recording(Trainer):
        def step(self, optimizer: str) -> None:
            steps_taken.append(optimizer)
            super().step(optimizer)

    trainer = Recording(method.training_modules(), device=CPU)
    method.configure_training(trainer)
    batch = {"source": torch.rand(2, 1, 16, 16, 16), "target": torch.rand(2, 1, 16, 16, 16)}
    for _ in range(3):
        losses = trainer.run_step(method, [batch])
    assert steps_taken == ["discriminator", "generator"] * 3
    assert set(losses) == {"d", "g_l1", "g_adv"}
    for name, module in method.training_modules().items():
        changed = [
            not torch.equal(p, q) for p, q in zip(module.parameters(), initial[name], strict=True)
        ]
        assert all(changed), name
        state = trainer.optimizers[name].state_dict()["state"]
        assert {int(s["step"]) for s in state.values()} == {3}


def test_a_method_without_an_optimizer_is_refused(cases: CaseSet, tmp_path: Path) -> None:
    class NoOptimizer(TinyRegression):
        def configure_training(self, trainer: TrainerAPI) -> None:
            pass

    with pytest.raises(OptionsError, match="no optimizer"):
        train(NoOptimizer(), cases, config=quick(), run_dir=tmp_path)


# -- validation, model folder, resume checks --------------------------------------------------


def test_validation_metrics_and_the_model_folder(cases: CaseSet, tmp_path: Path) -> None:
    method = TinyRegression()
    config = quick(steps=4, validate_every=2, augmentation=NO_INTENSITY)
    result = train(method, cases, config=config, run_dir=tmp_path, validation=cases)

    assert result.validation is not None
    assert set(result.validation) == {"mae", "psnr"}
    validations = [e for e in read_history(result.history) if "validation" in e]
    assert [e["step"] for e in validations] == [2, 4]
    assert json.loads((result.model_dir / "metrics.json").read_text()) == result.validation

    loaded = load_model(result.model_dir, registry=isolated_registry(trainable_examples))
    image = make_volume((20, 18, 16), seed=7)
    expected = predict_tensor(method, image, settings=QUIET)
    torch.testing.assert_close(predict_tensor(loaded, image, settings=QUIET), expected)


def test_the_model_of_the_best_validation_is_kept(cases: CaseSet, tmp_path: Path) -> None:
    config = quick(steps=6, validate_every=1, augmentation=NO_INTENSITY)
    first = train(
        TinyRegression(),
        cases,
        config=config.model_copy(update={"steps": 3}),
        run_dir=tmp_path / "run",
        validation=cases,
    )
    result = train(
        TinyRegression(), cases, config=config, run_dir=tmp_path / "run", validation=cases
    )  # resumed at step 3: the best so far carries over
    assert first.best_model_dir == result.best_model_dir == tmp_path / "run" / "best-model"
    maes = {
        e["step"]: e["validation"]["mae"] for e in read_history(result.history) if "validation" in e
    }
    assert sorted(maes) == [1, 2, 3, 4, 5, 6]
    best_step = min(maes, key=lambda step: maes[step])
    stored = json.loads((result.best_model_dir / "metrics.json").read_text())
    assert stored["validation_step"] == best_step
    assert stored["mae"] == maes[best_step]

    # the kept weights are those of that step: a run stopped there predicts the same
    stopped = train(
        TinyRegression(),
        cases,
        config=config.model_copy(update={"steps": best_step}),
        run_dir=tmp_path / "stopped",
    )
    registry = isolated_registry(trainable_examples)
    image = make_volume((20, 18, 16), seed=7)
    torch.testing.assert_close(
        predict_tensor(load_model(result.best_model_dir, registry=registry), image, settings=QUIET),
        predict_tensor(load_model(stopped.model_dir, registry=registry), image, settings=QUIET),
    )
    # without validation, or with keep_best off, there is none
    assert stopped.best_model_dir is None
    off = train(
        TinyRegression(),
        cases,
        config=config.model_copy(update={"keep_best": False}),
        run_dir=tmp_path / "off",
        validation=cases,
    )
    assert off.best_model_dir is None
    assert not (tmp_path / "off" / "best-model").exists()


def test_resuming_with_other_settings_is_refused(cases: CaseSet, tmp_path: Path) -> None:
    train(TinyRegression(), cases, config=quick(steps=3), run_dir=tmp_path)
    with pytest.raises(CheckpointError, match="seed"):
        train(TinyRegression(), cases, config=quick(seed=1), run_dir=tmp_path)
    turned = NO_INTENSITY.model_copy(update={"affine_probability": 0.5})
    with pytest.raises(
        CheckpointError, match=r"other settings \(augmentation\.affine_probability: 0\.0 → 0\.5; "
    ):
        train(TinyRegression(), cases, config=quick(augmentation=turned), run_dir=tmp_path)
    fresh = train(TinyRegression(), cases, config=quick(seed=1), run_dir=tmp_path, resume=False)
    assert fresh.first_step == 0
    assert sorted(losses_by_step(fresh.history)) == list(range(1, 7))


def test_data_of_another_kind_is_refused(cases: CaseSet, tmp_path: Path) -> None:
    unpaired = CaseSet(kind=DataKind.UNPAIRED, cases=cases.cases)
    with pytest.raises(OptionsError, match="paired"):
        train(TinyRegression(), unpaired, config=quick(), run_dir=tmp_path)


def test_tensorboard_without_the_package_says_how_to_install_it(
    cases: CaseSet, tmp_path: Path
) -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(OptionsError, match="pip install tensorboard"):
            train(TinyRegression(), cases, config=quick(tensorboard=True), run_dir=tmp_path)
    else:
        train(TinyRegression(), cases, config=quick(steps=2, tensorboard=True), run_dir=tmp_path)
        assert any((tmp_path / "logs" / "tensorboard").iterdir())


def test_batches_from_worker_processes_are_the_same(cases: CaseSet, tmp_path: Path) -> None:
    in_process = train(TinyRegression(), cases, config=quick(steps=3), run_dir=tmp_path / "a")
    workers = quick(steps=3, num_workers=1)
    with_workers = train(TinyRegression(), cases, config=workers, run_dir=tmp_path / "b")
    assert losses_by_step(in_process.history) == losses_by_step(with_workers.history)


@pytest.mark.parametrize("method_cls", [TinyRegression, TinyAdversarial])
def test_the_trainable_examples_keep_the_method_contract(method_cls: type[TinyRegression]) -> None:
    check_method_contract(method_cls)
