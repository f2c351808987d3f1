"""``medi2i adapt`` checks its target volumes as predict checks its input: the modality
rule (a CT in HU is not a target for a model that takes MR) and the spacing warning."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from medi2i.adaptation import adapt_method, adapt_model
from medi2i.errors import InputError
from medi2i.io import write_volume
from medi2i.method_spec import VolumeSpec
from medi2i.model_folder import save_model
from medi2i.training_spacing import SpacingWarning, TrainingSpacing, record_training_spacing
from tests.contract_v2_methods import QUIET, SelfAdapting, image, registry_with


class AdaptingMR(SelfAdapting):
    """An adapting method that takes MR input."""

    id = "adapting-mr"
    input_spec = output_spec = VolumeSpec(modality="MR")


def ct_in_hu(folder: Path) -> Path:
    """An 8³ 'CT' whose outer half is air at -1000 HU."""
    values = np.full((8, 8, 8), -1000.0)
    values[2:6, 2:6, 2:6] = 40.0 + np.resize([-5.0, 5.0], (4, 4, 4))
    return Path(write_volume(image(values), folder / "ct.nii.gz"))


def mr_volume(folder: Path, name: str = "mr.nii.gz") -> Path:
    return Path(write_volume(image(), folder / name))  # spacing 1 x 1 x 2 mm


def test_a_ct_in_hu_is_refused_as_a_target_of_an_mr_model(tmp_path: Path) -> None:
    target = ct_in_hu(tmp_path)

    with pytest.raises(InputError, match=r"at or below -500.*takes MR input"):
        adapt_method(AdaptingMR(), [target], settings=QUIET)
    adapt_method(AdaptingMR(), [target], settings=QUIET, force_modality=True)


def test_a_target_far_from_the_training_spacing_is_warned_about(tmp_path: Path) -> None:
    method = AdaptingMR()
    record_training_spacing(method, TrainingSpacing(min=(1.0, 1.0, 1.0), max=(1.0, 1.0, 1.0)))
    target = mr_volume(tmp_path)  # 2 mm along z: outside [1 / 1.5, 1 * 1.5]

    with pytest.warns(SpacingWarning, match="mr.nii.gz"):
        adapt_method(method, [target], settings=QUIET)


def test_a_target_at_the_training_spacing_is_not_warned_about(tmp_path: Path) -> None:
    method = AdaptingMR()
    record_training_spacing(method, TrainingSpacing(min=(1.0, 1.0, 2.0), max=(1.0, 1.0, 2.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpacingWarning)
        adapt_method(method, [mr_volume(tmp_path)], settings=QUIET)


def test_adapt_model_and_the_command_take_force_modality(tmp_path: Path) -> None:
    from medi2i.cli.main import build_cli

    registry = registry_with(AdaptingMR)
    source = save_model(AdaptingMR(), tmp_path / "model")
    target = ct_in_hu(tmp_path)
    with pytest.raises(InputError, match="--force-modality"):
        adapt_model(source, [target], tmp_path / "refused", registry=registry)
    assert not (tmp_path / "refused").exists()
    adapt_model(source, [target], tmp_path / "forced", registry=registry, force_modality=True)

    cli = build_cli(registry.plugins)
    args = ["adapt", "--model", str(source), "--no-progress", "--device", "cpu"]
    refused = CliRunner().invoke(cli, [*args, str(tmp_path / "cli"), str(target)])
    assert refused.exit_code != 0
    assert "takes MR input" in refused.output
    forced = CliRunner().invoke(
        cli, [*args, "--force-modality", str(tmp_path / "cli"), str(target)]
    )
    assert forced.exit_code == 0, forced.output
