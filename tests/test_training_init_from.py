"""Fine-tuning: a training that starts from a trained model's weights (``init_from``
of :func:`medi2i.training.train`, ``method.init_from`` of a workflow)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medi2i.data.cases import CaseSet
from medi2i.errors import OptionsError
from medi2i.model_folder import load_model
from medi2i.testing import isolated_registry, trainable_examples
from medi2i.testing.trainable_examples import TinyAdversarial, TinyRegression, write_paired_cases
from medi2i.training import AugmentationConfig, TrainingConfig, train
from medi2i.training.history import read_history

NO_INTENSITY = AugmentationConfig(intensity_probability=0.0, noise_probability=0.0)


def quick(steps: int) -> TrainingConfig:
    return TrainingConfig(
        steps=steps,
        batch_size=2,
        patch_size=(16, 16, 16),
        log_every=1,
        checkpoint_every=steps,
        device="cpu",
        progress=False,
        augmentation=NO_INTENSITY,
    )


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> CaseSet:
    return write_paired_cases(tmp_path_factory.mktemp("cases"), count=2, shape=(24, 24, 24))


@pytest.fixture(scope="module")
def trained(cases: CaseSet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("first")
    return train(TinyRegression(), cases, config=quick(30), run_dir=run).model_dir


def first_loss(history: Path) -> float:
    return float(next(e["losses"]["l1"] for e in read_history(history) if "losses" in e))


def test_a_fine_tuning_starts_where_the_trained_model_ended(
    cases: CaseSet, trained: Path, tmp_path: Path
) -> None:
    source = load_model(trained, registry=isolated_registry(trainable_examples))
    fresh = train(TinyRegression(), cases, config=quick(1), run_dir=tmp_path / "fresh")
    tuned = train(
        TinyRegression(), cases, config=quick(1), run_dir=tmp_path / "tuned", init_from=source
    )
    # the same first batch (same seed): the trained weights' loss is far below a random start
    assert first_loss(tuned.history) < 0.5 * first_loss(fresh.history)


def test_the_weights_are_the_trained_models_before_the_first_step(
    cases: CaseSet, trained: Path, tmp_path: Path
) -> None:
    source = load_model(trained, registry=isolated_registry(trainable_examples))
    method = TinyRegression({"learning_rate": 0.0})  # a step that changes nothing
    train(method, cases, config=quick(1), run_dir=tmp_path, init_from=source)
    for name, value in source.state_tensors().items():
        torch.testing.assert_close(method.state_tensors()[name], value)


def test_weights_that_do_not_fit_the_options_are_refused(
    cases: CaseSet, trained: Path, tmp_path: Path
) -> None:
    source = load_model(trained, registry=isolated_registry(trainable_examples))
    with pytest.raises(OptionsError, match=r"init_from: .*do not fit.*architecture options"):
        train(
            TinyRegression({"hidden": 4}),
            cases,
            config=quick(1),
            run_dir=tmp_path,
            init_from=source,
        )
    assert not (tmp_path / "model").exists()


def test_a_model_of_another_method_is_refused(
    cases: CaseSet, trained: Path, tmp_path: Path
) -> None:
    source = load_model(trained, registry=isolated_registry(trainable_examples))
    with pytest.raises(OptionsError, match="model of method 'example-tiny-regression'"):
        train(TinyAdversarial(), cases, config=quick(1), run_dir=tmp_path, init_from=source)
