"""Tests of the ``unit`` method: contract, directions, determinism, conditions, training."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from medi2i_unit.options import UnitCondition, UnitOptions
from medi2i_unit.unit import Unit
from monai.data.meta_tensor import MetaTensor

import medi2i
from medi2i import DomainSpec, InferenceSettings, OptionsError, Registry, predict_tensor
from medi2i.testing import (
    check_distributed_training,
    check_method_contract,
    check_training_contract,
    make_volume,
)
from medi2i.testing.domain_cases import UNPAIRED_DOMAINS, write_unpaired_cases
from medi2i.training import TrainingConfig, read_history, train

SMALL = {
    "roi_size": (16, 16, 16),
    "filters": 4,
    "blocks": 1,
    "discriminator_filters": 4,
    "discriminator_layers": 2,
}
SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)


def trained_looking(options: dict[str, object] | None = None) -> Unit:
    """An untrained UNIT with the toy domains (MR, then CT), as a loaded model has."""
    torch.manual_seed(0)
    method = Unit(options or SMALL)
    method.use_domains(UNPAIRED_DOMAINS)
    return method


@pytest.mark.parametrize("direction", ["a2b", "b2a"])
def test_keeps_the_method_contract(direction: str) -> None:
    check_method_contract(Unit, options=SMALL, condition={"direction": direction})


@pytest.mark.parametrize(
    ("direction", "modality", "units"), [("a2b", "CT", "HU"), ("b2a", "MR", "arbitrary")]
)
def test_the_output_is_of_the_target_domain(direction: str, modality: str, units: str) -> None:
    method = trained_looking()

    (output,) = method.outputs(method.parse_condition({"direction": direction}))

    assert (output.spec.modality, output.spec.units) == (modality, units)
    assert output.condition["direction"] == direction
    assert method.input_domain(method.parse_condition({"direction": direction})) == (
        "mr" if direction == "a2b" else "ct"
    )


def test_mr_to_ct_writes_hounsfield_units(medi2i_volume: MetaTensor) -> None:
    output = predict_tensor(trained_looking(), medi2i_volume, settings=SETTINGS)

    assert output.shape == medi2i_volume.shape
    assert -1024.0 <= float(output.min()) <= float(output.max()) <= 3071.0


def test_ct_outputs_are_air_outside_the_input_body_by_default(medi2i_volume: MetaTensor) -> None:
    method = trained_looking()
    plain = trained_looking({**SMALL, "body_contour": False})
    plain.load_state_tensors(method.state_tensors())

    output = predict_tensor(method, medi2i_volume, settings=SETTINGS)[0].numpy()
    unmasked = predict_tensor(plain, medi2i_volume, settings=SETTINGS)[0].numpy()

    # the mask of the raw input, not of the percentile-normalized one
    outside = ~medi2i.body_mask(medi2i_volume[0].numpy())
    assert 0 < outside.sum() < outside.size
    assert set(np.unique(output[outside])) == {medi2i.AIR_HU}
    np.testing.assert_array_equal(output[~outside], unmasked[~outside])


def test_mr_outputs_have_no_body_contour(medi2i_volume: MetaTensor) -> None:
    method = trained_looking()
    ct = (medi2i_volume - 500.0) * 2.0  # some HU-like values
    condition = {"direction": "b2a"}

    output = predict_tensor(method, ct, settings=SETTINGS, condition=condition)[0].numpy()

    assert not np.any(output == medi2i.AIR_HU)


def test_prediction_uses_the_latent_mean_so_it_ignores_the_seed(
    medi2i_volume: MetaTensor,
) -> None:
    method = trained_looking()

    first = predict_tensor(method, medi2i_volume, settings=SETTINGS)
    again = predict_tensor(method, medi2i_volume, settings=SETTINGS.model_copy(update={"seed": 9}))

    assert torch.equal(first.as_tensor(), again.as_tensor())


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"direction": "sideways"}, "direction"),
        ({"to": "ct"}, "to"),
        ({"styles": 2}, "styles"),
    ],
)
def test_a_bad_condition_is_a_one_line_options_error(
    condition: dict[str, object], message: str
) -> None:
    with pytest.raises(OptionsError, match=message) as caught:
        trained_looking().parse_condition(condition)

    assert "\n" not in str(caught.value)


def test_an_untrained_method_says_it_has_no_domains() -> None:
    with pytest.raises(OptionsError, match="has no domains: train it"):
        Unit(SMALL).parse_condition({"direction": "a2b"})


@pytest.mark.parametrize(
    "options",
    [
        {**SMALL, "roi_size": (16, 16, 18)},
        {**SMALL, "roi_size": (4, 4, 4)},
        {**SMALL, "kl_weight": -1.0},
        {**SMALL, "shared_blocks": 0},
    ],
)
def test_invalid_options_are_an_options_error(options: dict[str, object]) -> None:
    with pytest.raises(OptionsError):
        Unit(options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"percentiles": (99.5, 0.5)}, "percentiles"),
        ({"percentiles": (0.5, 101.0)}, "percentiles"),
        ({"betas": (0.5, 1.0)}, "betas"),
        ({"betas": (-0.1, 0.999)}, "betas"),
        ({"spacing": (1.0, 0.0, 1.0)}, "spacing"),
        ({"spacing": (1.0, float("nan"), 1.0)}, "spacing"),
    ],
)
def test_out_of_range_intensity_and_optimizer_options_are_one_line_errors(
    options: dict[str, object], message: str
) -> None:
    # reversed percentiles made every voxel -1 or +1; the others failed deep in torch
    with pytest.raises(OptionsError, match=message) as caught:
        Unit({**SMALL, **options})

    assert "\n" not in str(caught.value)


def test_defaults_follow_the_paper_where_3d_allows() -> None:
    options = UnitOptions()

    assert (options.gan_weight, options.reconstruction_weight, options.kl_weight) == (
        1.0,
        10.0,
        0.01,
    )
    assert (options.cycle_weight, options.cycle_kl_weight) == (10.0, 0.01)
    assert (options.learning_rate, options.betas, options.weight_decay) == (
        1e-4,
        (0.5, 0.999),
        1e-4,
    )
    assert (options.downsamples, options.blocks, options.shared_blocks) == (2, 3, 1)


def test_mr_outputs_are_written_on_the_target_domains_training_scale(tmp_path: Path) -> None:
    method = trained_looking()
    method.use_domains([DomainSpec(name="a", modality="MR"), DomainSpec(name="b", modality="MR")])
    volumes = [make_volume(seed=1), make_volume(seed=2) * 3.0]
    expected = []
    for volume in [*volumes, volumes[0]]:  # a volume preprocessed twice counts once
        method.preprocess(volume, domain="b")
    for volume in volumes:  # the default foreground: the body's voxels
        values = volume.numpy()
        expected.append(np.percentile(values[..., medi2i.body_mask(values)], (0.5, 99.5)))
    method.preprocess(make_volume(seed=3) * 100.0, domain="b", condition=UnitCondition())
    low, high = np.mean(expected, axis=0)

    ends = MetaTensor(torch.tensor([-1.0, 0.0, 1.0]).reshape(1, 3, 1, 1))
    written = method.postprocess(ends, ends, domain="b")
    reloaded = medi2i.load_model(medi2i.save_model(method, tmp_path / "model"))

    np.testing.assert_allclose(method.state_values()["scale.b"], [low, high], rtol=1e-5)
    np.testing.assert_allclose(written.flatten(), [low, (low + high) / 2, high], rtol=1e-5)
    assert reloaded.state_values() == method.state_values()
    assert "scale.a" not in method.state_values()  # no training volume: network range
    resumed = trained_looking()
    resumed.use_domains(method.domains)
    resumed.load_training_state(method.training_state())  # a resumed run keeps them
    assert resumed.state_values() == method.state_values()
    assert torch.equal(method.postprocess(ends, ends, domain="a"), ends)


def test_the_model_keeps_the_generators_not_the_discriminators() -> None:
    method = trained_looking()

    assert set(method.state_tensors()) == {f"network.{k}" for k in method.network.state_dict()}
    assert not any("discriminator" in name for name in method.state_tensors())


def test_both_methods_are_registered_by_the_plugin(medi2i_registry: Registry) -> None:
    assert medi2i_registry.method("unit") is Unit
    assert medi2i_registry.method("munit").id == "munit"
    assert medi2i_registry.method_owner("munit") == "unit"


def test_hook_module_imports_no_torch() -> None:
    code = "import sys, medi2i_unit; print('torch' in sys.modules, 'monai' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == ["False", "False"]


def test_card_describes_both_methods() -> None:
    card = yaml.safe_load(resources.files("medi2i_unit").joinpath("card.yaml").read_text())

    assert sorted(card["ids"]) == ["munit", "unit"]
    assert card["version"] == Unit.version
    assert "clinical" in card["intended_use"]["out_of_scope"].lower()


@pytest.mark.slow
def test_keeps_the_training_contract(tmp_path: Path) -> None:
    check_training_contract(Unit, tmp_path, options=SMALL, steps=2)


@pytest.mark.slow
def test_trains_saves_loads_and_predicts_both_directions(tmp_path: Path) -> None:
    cases = write_unpaired_cases(tmp_path / "data", shape=(20, 20, 20))
    config = TrainingConfig(steps=3, batch_size=2, device="cpu", log_every=1, progress=False)

    result = train(Unit(SMALL), cases, config=config, run_dir=tmp_path / "run")
    logged = [r["losses"] for r in read_history(result.history) if "losses" in r]
    mr = medi2i.write_volume(make_volume((20, 20, 20), seed=5), tmp_path / "mr.nii.gz")
    written = medi2i.predict_all(
        mr,
        tmp_path / "sct.nii.gz",
        model=result.model_dir,
        settings=SETTINGS,
        condition={"direction": "a2b"},
    )
    back = medi2i.predict(
        written[""],
        tmp_path / "smr.nii.gz",
        model=result.model_dir,
        settings=SETTINGS,
        condition={"direction": "b2a"},
    )

    assert set(logged[-1]) >= {"reconstruction", "kl", "cycle", "cycle_kl", "generator_gan"}
    spreads = [r["generated_spread"] for r in read_history(result.history) if "losses" in r]
    assert set(spreads[-1]) == {"fake_a", "fake_b"}  # watched by the collapse check
    assert result.health == ()
    assert medi2i.load_model(result.model_dir).domain_names == ("mr", "ct")
    record = json.loads((tmp_path / "sct.provenance.json").read_text())
    assert record["output"]["modality"] == "CT"
    assert record["condition"] == {"direction": "a2b"}
    assert json.loads((tmp_path / "smr.provenance.json").read_text())["output"]["domain"] == "mr"
    assert back.exists()


@pytest.mark.slow
def test_trains_with_ddp_under_torchrun(tmp_path: Path) -> None:
    check_distributed_training(Unit, tmp_path, options=SMALL, steps=2)
