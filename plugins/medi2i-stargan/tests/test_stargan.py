"""Tests of the ``stargan`` method: networks, losses, conditions, outputs, training."""

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
from medi2i_stargan.networks import StarDiscriminator, StarGenerator, gradient_penalty
from medi2i_stargan.stargan import StarGAN, StarGANOptions
from monai.data.meta_tensor import MetaTensor

import medi2i
from medi2i import (
    DomainSpec,
    InferenceSettings,
    OptionsError,
    Registry,
    TargetDomain,
    predict_outputs,
    predict_tensor,
)
from medi2i.testing import (
    check_distributed_training,
    check_method_contract,
    check_training_contract,
    make_volume,
)
from medi2i.testing.domain_cases import MULTI_DOMAINS, write_multi_domain_cases
from medi2i.training import TrainingConfig, read_history, train

SMALL = {
    "roi_size": (16, 16, 16),
    "generator_filters": 4,
    "residual_blocks": 1,
    "discriminator_filters": 4,
    "discriminator_layers": 2,
}
SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)
MR_AND_CT = (
    DomainSpec(name="mr", modality="MR"),
    DomainSpec(name="ct", modality="CT", units="HU"),
    DomainSpec(name="mr2", modality="MR"),
)


def trained_looking(
    options: dict[str, object] | None = None, domains: tuple[DomainSpec, ...] = MULTI_DOMAINS
) -> StarGAN:
    """An untrained StarGAN with domains, as a loaded model has."""
    torch.manual_seed(0)
    method = StarGAN(options or SMALL)
    method.use_domains(domains)
    return method


@pytest.mark.parametrize("target", ["scanner-a", "scanner-c", None])
def test_keeps_the_method_contract(target: str | None) -> None:
    check_method_contract(
        StarGAN, options=SMALL, condition={"target_domain": target}, domains=MULTI_DOMAINS
    )


def test_the_generator_follows_the_target_code() -> None:
    torch.manual_seed(0)
    generator = StarGenerator(domains=3, filters=4, downsamplings=2, residual_blocks=1)
    image = torch.randn(1, 1, 8, 8, 8)

    with torch.no_grad():
        outputs = [generator(image, torch.tensor([k])) for k in range(3)]

    assert all(out.shape == image.shape for out in outputs)
    assert not torch.allclose(outputs[0], outputs[1])
    assert float(outputs[0].abs().max()) <= 1.0  # tanh


def test_an_intensity_keeping_generator_has_no_normalization_and_no_bound() -> None:
    method = StarGAN(
        {
            **SMALL,
            "downsamplings": 0,
            "outer_kernel": 3,
            "generator_norm": "none",
            "output_activation": "linear",
        }
    )
    method.use_domains(MULTI_DOMAINS)
    generator = method.network
    kinds = (torch.nn.InstanceNorm3d, torch.nn.Tanh)

    assert not any(isinstance(m, kinds) for m in generator.modules())
    widths = [m.kernel_size for m in generator.modules() if isinstance(m, torch.nn.Conv3d)]
    assert widths[0] == widths[-1] == (3, 3, 3)
    texture = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        dim = generator(texture, torch.tensor([0]))
        bright = generator(texture * 1000.0 + 2000.0, torch.tensor([0]))
    assert not torch.allclose(dim, bright)  # the window's level reaches the output
    assert float(bright.abs().max()) > 1.0  # no tanh


@pytest.mark.parametrize("input_scale", ["volume", "domain"])
def test_input_scale_domain_scales_a_prediction_by_its_sources_training_scale(
    input_scale: str,
) -> None:
    method = trained_looking({**SMALL, "input_scale": input_scale})
    training = make_volume(seed=1)
    method.preprocess(training, domain="scanner-b")  # training: recorded
    brighter = MetaTensor(training.clone())
    brighter[:, :2] = float(training.max()) * 3.0  # a bright rim moves the percentiles
    condition = TargetDomain(target_domain="scanner-a", source_domain="scanner-b")

    alone = method.preprocess(MetaTensor(training.clone()), domain="scanner-b", condition=condition)
    rimmed = method.preprocess(brighter, domain="scanner-b", condition=condition)

    same = torch.allclose(alone[:, 4:], rimmed[:, 4:])
    assert same == (input_scale == "domain")


def test_input_scale_domain_needs_the_source_domain_named() -> None:
    method = trained_looking({**SMALL, "input_scale": "domain"})

    with pytest.raises(OptionsError, match="source_domain") as caught:
        method.parse_condition({"target_domain": "scanner-a"})

    assert "\n" not in str(caught.value)
    named = method.parse_condition({"target_domain": "scanner-a", "source_domain": "scanner-b"})
    assert named.source_domain == "scanner-b"
    trained_looking().parse_condition({"target_domain": "scanner-a"})  # volume: not needed


def test_a_source_coded_generator_follows_the_source_code_too() -> None:
    torch.manual_seed(0)
    generator = StarGenerator(
        domains=3, filters=4, downsamplings=0, residual_blocks=1, source_code=True
    )
    image = torch.randn(1, 1, 8, 8, 8)

    with torch.no_grad():
        from_a = generator(image, torch.tensor([2]), torch.tensor([0]))
        from_b = generator(image, torch.tensor([2]), torch.tensor([1]))
    assert not torch.allclose(from_a, from_b)
    assert generator.body[0].in_channels == 1 + 2 * 3
    with pytest.raises(ValueError, match="source domains"):
        generator(image, torch.tensor([2]))


def test_source_code_needs_the_source_domain_and_passes_it_to_the_generator() -> None:
    method = trained_looking({**SMALL, "source_code": True, "downsamplings": 0})
    with pytest.raises(OptionsError, match=r"source_code: true.*source_domain") as caught:
        method.parse_condition({"target_domain": "scanner-a"})
    assert "\n" not in str(caught.value)

    volume = make_volume((16, 16, 16), seed=2)
    outputs = [
        predict_tensor(
            method,
            volume,
            settings=SETTINGS,
            condition={"target_domain": "scanner-a", "source_domain": source},
        )
        for source in ("scanner-b", "scanner-c")
    ]
    assert not torch.allclose(outputs[0].as_tensor(), outputs[1].as_tensor())


def test_a_source_domain_that_changes_nothing_is_recorded_as_unused() -> None:
    volume = make_volume((16, 16, 16), seed=3)
    plain = {"target_domain": "scanner-a"}
    named = {**plain, "source_domain": "scanner-c"}
    facts: dict[str, object] = {}
    outputs = [
        predict_tensor(
            trained_looking(), volume, settings=SETTINGS, condition=condition, run_facts=facts
        )
        for condition in (plain, named)
    ]
    # input_scale: volume and no source code: the output is the same, and says so
    assert torch.equal(outputs[0].as_tensor(), outputs[1].as_tensor())
    assert facts["source_domain_used"] is False
    for options, domains, source in (
        ({**SMALL, "source_code": True, "downsamplings": 0}, MULTI_DOMAINS, "scanner-c"),
        ({**SMALL, "input_scale": "domain"}, MULTI_DOMAINS, "scanner-c"),
        (SMALL, MR_AND_CT, "ct"),  # an input in HU is scaled by the HU scale
    ):
        method = trained_looking(options, domains)
        condition = TargetDomain(target_domain=domains[0].name, source_domain=source)
        assert method.source_domain_used(condition)


def test_the_discriminator_classifies_every_domain_and_scores_patches() -> None:
    critic = StarDiscriminator(domains=4, filters=4, layers=2, window=(16, 16, 8))

    with torch.no_grad():
        scores, logits = critic(torch.zeros(3, 1, 16, 16, 8))
        larger_scores, larger_logits = critic(torch.zeros(3, 1, 32, 32, 16))

    assert tuple(scores.shape) == (3, 1, 4, 4, 2)
    assert tuple(logits.shape) == (3, 4) == tuple(larger_logits.shape)
    assert tuple(larger_scores.shape) == (3, 1, 8, 8, 4)
    with pytest.raises(ValueError, match="smaller than the window"):
        critic(torch.zeros(1, 1, 8, 8, 8))


def test_the_gradient_penalty_is_zero_for_a_critic_of_unit_slope() -> None:
    class UnitSlope(torch.nn.Module):
        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # D(x) = <w, x> with |w| = 1: its gradient has norm 1 everywhere
            weights = torch.ones_like(image[0]) / image[0].numel() ** 0.5
            return (image * weights).flatten(1).sum(1), image.new_zeros(image.shape[0], 2)

    class Steep(UnitSlope):
        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            scores, logits = super().forward(image)
            return 3.0 * scores, logits

    real, fake = torch.randn(4, 1, 4, 4, 4), torch.randn(4, 1, 4, 4, 4)

    assert float(gradient_penalty(UnitSlope(), real, fake)) == pytest.approx(0.0, abs=1e-10)
    assert float(gradient_penalty(Steep(), real, fake)) == pytest.approx(4.0, rel=1e-5)


def test_every_domain_is_an_output_without_a_target() -> None:
    method = trained_looking()

    outputs = method.outputs(method.parse_condition({}))

    assert [(o.name, o.domain) for o in outputs] == [(d.name, d.name) for d in MULTI_DOMAINS]
    assert [o.condition for o in outputs] == [{"target_domain": d.name} for d in MULTI_DOMAINS]


def test_predicting_every_domain_equals_predicting_each(medi2i_volume: MetaTensor) -> None:
    method = trained_looking()

    every = predict_outputs(method, medi2i_volume, settings=SETTINGS)
    one = predict_tensor(
        method, medi2i_volume, settings=SETTINGS, condition={"target_domain": "scanner-b"}
    )

    assert torch.equal(every["scanner-b"].as_tensor(), one.as_tensor())
    assert not torch.equal(every["scanner-a"].as_tensor(), one.as_tensor())


def test_a_ct_target_is_in_hounsfield_units_with_air_outside_the_body(
    medi2i_volume: MetaTensor,
) -> None:
    method = trained_looking(domains=MR_AND_CT)

    output = predict_tensor(
        method, medi2i_volume, settings=SETTINGS, condition={"target_domain": "ct"}
    )[0].numpy()

    outside = ~medi2i.body_mask(medi2i_volume[0].numpy())
    assert 0 < outside.sum() < outside.size
    assert set(np.unique(output[outside])) == {medi2i.AIR_HU}
    assert -1024.0 <= output.min() <= output.max() <= 3071.0


def test_mr_outputs_are_on_the_target_domains_training_scale() -> None:
    method = trained_looking()
    for volume in (make_volume(seed=1), make_volume(seed=2) * 3.0):
        method.preprocess(volume, domain="scanner-b")  # training: recorded
    method.preprocess(make_volume(seed=3) * 100.0, domain="scanner-b", condition=TargetDomain())
    low, high = method.scales.scale("scanner-b")  # type: ignore[misc]
    ends = MetaTensor(torch.tensor([-1.0, 1.0]).reshape(1, 2, 1, 1))

    written = method.postprocess(ends, ends, domain="scanner-b")

    np.testing.assert_allclose(written.flatten(), [low, high], rtol=1e-6)
    assert set(method.state_values()) == {"scale.scanner-b"}
    assert torch.equal(method.postprocess(ends, ends, domain="scanner-a"), ends)


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"target_domain": "scanner-z"}, "no domain 'scanner-z'"),
        ({"source_domain": "ct"}, "source_domain must be one of"),
        ({"direction": "a2b"}, "direction"),
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
        StarGAN(SMALL).parse_condition({"target_domain": "A"})


@pytest.mark.parametrize(
    "options",
    [
        {**SMALL, "roi_size": (16, 16, 10)},
        {**SMALL, "discriminator_layers": 5},
        {**SMALL, "critic_steps": 0},
        {**SMALL, "betas": (0.5, 1.0)},
        {**SMALL, "percentiles": (99.0, 1.0)},
        {**SMALL, "outer_kernel": 4},
        {**SMALL, "generator_norm": "batch"},
    ],
)
def test_invalid_options_are_an_options_error(options: dict[str, object]) -> None:
    with pytest.raises(OptionsError):
        StarGAN(options)


def test_defaults_follow_the_paper_where_3d_allows() -> None:
    options = StarGANOptions()

    weights = (
        options.gradient_penalty_weight,
        options.classification_weight,
        options.reconstruction_weight,
    )
    assert weights == (10.0, 1.0, 10.0)
    assert (options.critic_steps, options.learning_rate, options.betas) == (5, 1e-4, (0.5, 0.999))
    assert (options.downsamplings, options.residual_blocks) == (2, 6)


def test_the_model_keeps_the_generator_not_the_discriminator() -> None:
    method = trained_looking()

    assert set(method.state_tensors()) == {f"network.{k}" for k in method.network.state_dict()}


def test_is_registered_by_the_plugin(medi2i_registry: Registry) -> None:
    assert medi2i_registry.method("stargan") is StarGAN


def test_hook_module_imports_no_torch() -> None:
    code = "import sys, medi2i_stargan; print('torch' in sys.modules, 'monai' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == ["False", "False"]


def test_card_describes_the_method() -> None:
    card = yaml.safe_load(resources.files("medi2i_stargan").joinpath("card.yaml").read_text())

    assert card["ids"] == ["stargan"]
    assert card["version"] == StarGAN.version
    assert "clinical" in card["intended_use"]["out_of_scope"].lower()


@pytest.mark.slow
def test_keeps_the_training_contract(tmp_path: Path) -> None:
    # the generator is updated every 2nd step, before and after the resume at step 3;
    # the schedule spans the whole run, as it does for a run resumed to its planned end
    check_training_contract(
        StarGAN,
        tmp_path,
        options={**SMALL, "critic_steps": 2, "schedule_steps": 6},
        steps=6,
        domains=MULTI_DOMAINS,
    )


@pytest.mark.slow
def test_trains_saves_loads_and_predicts_every_domain(tmp_path: Path) -> None:
    cases = write_multi_domain_cases(tmp_path / "data", shape=(20, 20, 20))
    config = TrainingConfig(steps=4, batch_size=2, device="cpu", log_every=1, progress=False)

    result = train(
        StarGAN({**SMALL, "critic_steps": 2}), cases, config=config, run_dir=tmp_path / "run"
    )
    logged = [r for r in read_history(result.history) if "losses" in r]
    source = medi2i.write_volume(make_volume((20, 20, 20), seed=5), tmp_path / "in.nii.gz")
    written = medi2i.predict_all(
        source, tmp_path / "out.nii.gz", model=result.model_dir, settings=SETTINGS
    )

    assert set(logged[-1]["losses"]) == {
        "critic_wasserstein",
        "critic_classification",
        "gradient_penalty",
        "generator_adversarial",
        "generator_classification",
        "reconstruction",
    }
    assert logged[0]["losses"]["reconstruction"] == 0.0  # no generator update yet
    assert logged[1]["losses"]["reconstruction"] > 0.0
    assert set(logged[-1]["generated_spread"]) == {"fake"}
    assert result.health == ()
    assert medi2i.load_model(result.model_dir).domain_names == tuple(d.name for d in MULTI_DOMAINS)
    assert set(written) == {d.name for d in MULTI_DOMAINS}
    record = json.loads((tmp_path / "out_scanner-c.provenance.json").read_text())
    assert "scanner-c" in json.dumps(record)


@pytest.mark.slow
def test_the_identity_term_is_trained_and_logged_when_weighted(tmp_path: Path) -> None:
    cases = write_multi_domain_cases(tmp_path / "data", shape=(20, 20, 20))
    config = TrainingConfig(steps=2, batch_size=2, device="cpu", log_every=1, progress=False)
    options = {**SMALL, "critic_steps": 1, "identity_weight": 5.0}

    result = train(StarGAN(options), cases, config=config, run_dir=tmp_path / "run")

    logged = [r["losses"] for r in read_history(result.history) if "losses" in r]
    assert all(losses["identity"] > 0.0 for losses in logged)


@pytest.mark.slow
def test_a_source_coded_generator_trains_and_resumes_exactly(tmp_path: Path) -> None:
    options = {**SMALL, "critic_steps": 2, "schedule_steps": 6, "source_code": True}
    options["identity_weight"] = 1.0
    check_training_contract(
        StarGAN,
        tmp_path,
        options=options,
        steps=6,
        domains=MULTI_DOMAINS,
        condition={"target_domain": "scanner-a", "source_domain": "scanner-b"},
    )


@pytest.mark.slow
def test_trains_with_ddp_under_torchrun(tmp_path: Path) -> None:
    check_distributed_training(
        StarGAN, tmp_path, options={**SMALL, "critic_steps": 2}, steps=2, domains=MULTI_DOMAINS
    )
