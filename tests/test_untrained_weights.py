"""A network method that was never trained warns when it predicts, and so does a model
folder saved from one; trained, loaded, fine-tuned and hand-marked methods do not."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data.meta_tensor import MetaTensor

import medi2i
from medi2i.model_folder import MANIFEST
from medi2i.plugins import PluginSet, add_installed_plugin, load_plugins
from medi2i.testing.trainable_examples import TinyRegression, write_paired_cases
from medi2i.trained_state import UntrainedWeightsWarning, is_trained
from medi2i.training import train
from medi2i.training.init_from import start_from
from tests.training_helpers import quick

SETTINGS = {"device": "cpu", "progress": False}


def _mr() -> MetaTensor:
    values = np.random.default_rng(0).uniform(0, 800, size=(1, 20, 18, 16)).astype(np.float32)
    return MetaTensor(torch.from_numpy(values), affine=torch.eye(4, dtype=torch.float64))


def _predicts_without_warning(method: medi2i.Method) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)
        medi2i.predict_tensor(method, _mr(), settings=SETTINGS)


def test_an_untrained_network_warns_once_per_instance() -> None:
    method = TinyRegression()
    with pytest.warns(UntrainedWeightsWarning, match="example-tiny-regression.*not been trained"):
        medi2i.predict_tensor(method, _mr(), settings=SETTINGS)
    _predicts_without_warning(method)  # once is enough for one instance


def test_a_folder_saved_untrained_says_so_and_its_loaded_method_warns(tmp_path: Path) -> None:
    folder = medi2i.save_model(TinyRegression(), tmp_path / "model")
    assert json.loads((folder / MANIFEST).read_text())["trained"] is False
    loaded = medi2i.load_model(folder, registry=_registry())
    assert not is_trained(loaded)
    with pytest.warns(UntrainedWeightsWarning):
        medi2i.predict_tensor(loaded, _mr(), settings=SETTINGS)


def test_marked_loaded_and_fine_tuned_methods_predict_quietly(tmp_path: Path) -> None:
    marked = TinyRegression()
    marked.load_state_tensors(TinyRegression().state_tensors())  # weights "by hand"
    medi2i.mark_trained(marked)
    _predicts_without_warning(marked)
    folder = medi2i.save_model(marked, tmp_path / "model")
    assert json.loads((folder / MANIFEST).read_text())["trained"] is True
    loaded = medi2i.load_model(folder, registry=_registry())
    _predicts_without_warning(loaded)
    fine_tuned = TinyRegression()
    start_from(fine_tuned, loaded)  # method.init_from
    _predicts_without_warning(fine_tuned)
    untrained_start = TinyRegression()
    start_from(untrained_start, TinyRegression())
    assert not is_trained(untrained_start)


def test_a_manifest_without_the_record_loads_as_trained(tmp_path: Path) -> None:
    marked = TinyRegression()
    medi2i.mark_trained(marked)
    folder = medi2i.save_model(marked, tmp_path / "model")
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["trained"]  # a model folder of an earlier medi2i
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert is_trained(medi2i.load_model(folder, registry=_registry()))


def test_methods_that_are_not_trained_by_steps_never_warn() -> None:
    method = _registry().method("intensity-inversion")()
    assert is_trained(method)


def test_a_training_run_and_its_resumption_save_trained_models(tmp_path: Path) -> None:
    cases = write_paired_cases(tmp_path / "data", count=2, shape=(24, 24, 24))
    method = TinyRegression()
    train(method, cases, config=quick(steps=2), run_dir=tmp_path / "run")
    assert is_trained(method)
    assert json.loads((tmp_path / "run" / "model" / MANIFEST).read_text())["trained"] is True
    resumed = TinyRegression()  # a finished run, resumed: its checkpoint's weights
    train(resumed, cases, config=quick(steps=2), run_dir=tmp_path / "run")
    _predicts_without_warning(resumed)


def test_the_command_line_names_an_untrained_model_folder(tmp_path: Path) -> None:
    folder = medi2i.save_model(TinyRegression(), tmp_path / "model")
    image = tmp_path / "mr.nii.gz"
    nib.save(nib.Nifti1Image(_mr().numpy()[0], np.eye(4)), image)
    args = ["predict", str(image), str(tmp_path / "sct.nii.gz"), "--model", str(folder)]
    args += ["--device", "cpu", "--no-progress"]
    result = subprocess.run(
        [sys.executable, "-m", "medi2i", "--plugin", "medi2i.testing.trainable_examples", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning: method 'example-tiny-regression' has not been trained" in result.stderr


def _plugins() -> PluginSet:
    plugins = load_plugins()
    assert add_installed_plugin(plugins, "medi2i.testing.trainable_examples")
    return plugins


def _registry() -> medi2i.Registry:
    return medi2i.Registry(_plugins())
