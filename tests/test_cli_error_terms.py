"""Refusals that reach the command line name its options, not the Python API's
keyword arguments (``overwrite=True``, ``resume=False``, ``method=``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medi2i.errors import OptionsError, OutputError
from medi2i.io.atomic import atomic_path, refusing_existing
from medi2i.plugins import load_plugins
from medi2i.prediction import load_method
from medi2i.registry import Registry
from medi2i.testing.trainable_examples import TinyRegression, write_paired_cases
from medi2i.training import CheckpointError, train
from medi2i.training.health import DivergenceGuard
from tests.bad_input_cases import blobs, invoke, nifti, predict
from tests.training_helpers import quick

PYTHON_TERMS = ("in Python", "=True", "=False", "method=", "model=")


def no_python_terms(message: str) -> bool:
    return not any(term in message for term in PYTHON_TERMS)


def test_an_existing_output_asks_for_overwrite_in_cli_terms(tmp_path: Path) -> None:
    source = nifti(tmp_path / "in.nii.gz", blobs())
    (tmp_path / "out.nii.gz").write_bytes(b"kept")
    result = invoke(predict(source, tmp_path / "out.nii.gz"))
    assert result.exit_code != 0
    assert "--overwrite" in result.output
    assert no_python_terms(result.output), result.output


def test_a_ct_given_to_an_mr_model_asks_for_force_modality_in_cli_terms(tmp_path: Path) -> None:
    values = np.full((16, 16, 12), -1000.0, np.float32)
    values[4:12, 4:12, 3:9] = 40.0
    source = nifti(tmp_path / "ct.nii.gz", values)
    args = ["predict", str(source), str(tmp_path / "out.nii.gz"), "--no-progress"]
    result = invoke([*args, "--method", "example-self-rescaling"])
    assert result.exit_code != 0
    assert "--force-modality" in result.output
    assert no_python_terms(result.output), result.output


def test_neither_method_nor_model_is_refused_without_python_keywords() -> None:
    with pytest.raises(OptionsError) as caught:
        load_method(method=None, model=None, options=None, registry=Registry(load_plugins()))
    assert "--method" in str(caught.value)
    assert no_python_terms(str(caught.value))


def test_training_refusals_say_start_in_a_new_run_folder(tmp_path: Path) -> None:
    guard = DivergenceGuard(checkpoints=tmp_path, skips_allowed=0, last_checkpoint=3)
    assert no_python_terms(guard.message(4, "the loss is NaN"))

    cases = write_paired_cases(tmp_path / "cases", count=2, shape=(16, 16, 16))
    train(TinyRegression(), cases, config=quick(steps=3), run_dir=tmp_path / "run")
    with pytest.raises(CheckpointError) as caught:
        train(TinyRegression(), cases, config=quick(seed=1), run_dir=tmp_path / "run")
    assert "new run folder" in str(caught.value)
    assert no_python_terms(str(caught.value))


def write_racing_another_writer(output: Path) -> None:
    with refusing_existing(), atomic_path(output) as staging:
        staging.write_bytes(b"new")
        output.write_bytes(b"written by another process meanwhile")


def test_an_output_written_meanwhile_is_refused_in_cli_terms(tmp_path: Path) -> None:
    output = tmp_path / "out.nii.gz"
    with pytest.raises(OutputError) as caught:
        write_racing_another_writer(output)
    assert "--overwrite" in str(caught.value)
    assert no_python_terms(str(caught.value))
