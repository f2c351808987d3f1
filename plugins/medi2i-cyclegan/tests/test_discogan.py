"""Tests of DiscoGAN: its networks, its losses against the paper's formulas, its
curriculum and its alternating updates."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from medi2i_cyclegan.disco_networks import (
    DiscoDiscriminator,
    EncoderDecoderGenerator,
    final_kernel,
)
from medi2i_cyclegan.discogan import DiscoGAN
from medi2i_cyclegan.losses import (
    binary_discriminator,
    binary_gan,
    discogan_direction,
    feature_matching,
    reconstruction,
)

from medi2i import OptionsError

TINY = {
    "roi_size": (16, 16, 16),
    "generator_filters": 2,
    "discriminator_filters": 2,
    "curriculum_steps": 2,
}


def test_the_generator_is_an_encoder_decoder_without_skips() -> None:
    generator = EncoderDecoderGenerator(
        in_channels=1, out_channels=1, filters=4, depth=4, norm="batch"
    )
    down = [m for m in generator.body if isinstance(m, torch.nn.Conv3d)]
    up = [m for m in generator.body if isinstance(m, torch.nn.ConvTranspose3d)]

    assert [c.out_channels for c in down] == [4, 8, 16, 32]
    assert all(c.kernel_size == (4, 4, 4) and c.stride == (2, 2, 2) for c in down + up)
    assert [t.out_channels for t in up] == [16, 8, 4, 1]
    relus = (torch.nn.LeakyReLU, torch.nn.ReLU)
    activations = [type(m) for m in generator.body if isinstance(m, relus)]
    assert activations == [torch.nn.LeakyReLU] * 4 + [torch.nn.ReLU] * 3
    # a plain chain: every layer feeds only the next (no skip joins encoder and decoder)
    assert isinstance(generator.body, torch.nn.Sequential)
    assert isinstance(generator.body[-1], torch.nn.Tanh)
    assert generator(torch.randn(2, 1, 32, 32, 16)).shape == (2, 1, 32, 32, 16)


def test_the_discriminator_has_five_convolutions_and_three_feature_layers() -> None:
    discriminator = DiscoDiscriminator(
        in_channels=1, filters=4, kernel=final_kernel((64, 64, 32)), norm="batch"
    )
    convolutions = [m for m in discriminator.modules() if isinstance(m, torch.nn.Conv3d)]

    logits, features = discriminator(torch.randn(2, 1, 64, 64, 32))

    assert len(convolutions) == 5
    assert convolutions[-1].kernel_size == (4, 4, 2)
    assert logits.shape == (2, 1, 1, 1, 1)  # one logit per window, as per image in the paper
    assert [f.shape[1] for f in features] == [8, 16, 32]


def test_binary_gan_losses_are_the_papers_cross_entropies() -> None:
    logits = torch.tensor([0.0, 2.0])
    probabilities = torch.sigmoid(logits)

    expected_generator = -torch.log(probabilities).mean()
    assert float(binary_gan(logits, real=True)) == pytest.approx(float(expected_generator))
    real, fake = torch.tensor([1.0]), torch.tensor([-1.0])
    expected = 0.5 * (
        -math.log(float(torch.sigmoid(real))) - math.log(1 - float(torch.sigmoid(fake)))
    )
    assert float(binary_discriminator(real, fake)) == pytest.approx(expected)


def test_feature_matching_compares_batch_means_layer_by_layer() -> None:
    real = [torch.tensor([[1.0, 2.0], [3.0, 2.0]]), torch.tensor([[1.0], [1.0]])]
    fake = [torch.zeros(2, 2), torch.tensor([[0.0], [4.0]])]

    # layer 1: batch means (2, 2) vs (0, 0) -> mean of (4, 4) = 4; layer 2: 1 vs 2 -> 1
    assert float(feature_matching(real, fake)) == pytest.approx(5.0)


def test_reconstruction_is_the_mean_squared_error() -> None:
    assert float(reconstruction(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0]))) == 2.5


def test_the_direction_loss_mixes_gan_features_and_reconstruction() -> None:
    loss = discogan_direction(
        gan=torch.tensor(1.0),
        features=torch.tensor(2.0),
        reconstructed=torch.tensor(3.0),
        feature_matching_weight=0.9,
        reconstruction_weight=0.5,
    )

    # ((0.1 * 1 + 0.9 * 2) * (1 - 0.5)) + 0.5 * 3
    assert float(loss) == pytest.approx(0.95 + 1.5)


def test_defaults_follow_the_paper_and_its_code() -> None:
    options = DiscoGAN().options

    assert (options.feature_matching_weight, options.reconstruction_weight) == (0.9, 0.5)
    assert (options.curriculum_reconstruction_weight, options.curriculum_steps) == (0.01, 10000)
    assert (options.learning_rate, options.betas, options.weight_decay) == (
        2e-4,
        (0.5, 0.999),
        1e-5,
    )
    assert (options.generator_depth, options.norm, options.discriminator_interval) == (
        4,
        "batch",
        3,
    )


def test_the_curriculum_starts_with_a_strong_gan_loss() -> None:
    options = DiscoGAN({"curriculum_steps": 3}).options

    assert [options.reconstruction_weight_at(k) for k in range(5)] == [0.01] * 3 + [0.5] * 2
    assert [options.updates_discriminators(k) for k in range(7)] == [
        True,
        False,
        False,
        True,
        False,
        False,
        True,
    ]


@pytest.mark.parametrize(("step", "updated"), [(0, "discriminators"), (1, "generators")])
def test_a_step_updates_the_discriminators_or_the_generators(
    step: int, updated: str, recording_trainer: type[Any]
) -> None:
    method = DiscoGAN(TINY)
    method.use_domains(["mr", "ct"])
    trainer = recording_trainer(method, step_index=step)
    method.configure_training(trainer)  # type: ignore[arg-type]
    batch = {"a": torch.rand(2, 1, 16, 16, 16) * 2 - 1, "b": torch.rand(2, 1, 16, 16, 16) * 2 - 1}
    other = "generators" if updated == "discriminators" else "discriminators"
    before = [p.clone() for p in trainer.optimizers[other].param_groups[0]["params"]]

    losses = method.training_step(batch, trainer)  # type: ignore[arg-type]

    assert [name for name, _ in trainer.stepped] == [updated]
    after = trainer.optimizers[other].param_groups[0]["params"]
    assert all(torch.equal(b, a) for b, a in zip(before, after, strict=True))
    if updated == "generators":
        assert {"gan_a", "feature_matching_b", "reconstruction_a"} <= set(losses)
    # the trainer's collapse check sees the generated batches of generator steps
    assert trainer.watched == (["fake_b", "fake_a"] if updated == "generators" else [])
    assert all(math.isfinite(v) for v in losses.values())
    assert trainer.optimizers[updated].param_groups[0]["weight_decay"] == 1e-5


@pytest.mark.parametrize(
    "options",
    [
        {"roi_size": (24, 24, 24)},  # not a multiple of 16
        {"norm": "group"},
        {"feature_matching_weight": 1.5},
        {"discriminator_interval": 1},
        {"update_interval": 3},
    ],
)
def test_invalid_options_are_an_options_error(options: dict[str, object]) -> None:
    with pytest.raises(OptionsError, match="discogan"):
        DiscoGAN(options)
