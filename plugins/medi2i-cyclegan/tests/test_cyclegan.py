"""Tests of CycleGAN: its networks, its losses against the paper's formulas, its image
pool, its schedule and its training step."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from medi2i_cyclegan.cyclegan import CycleGAN
from medi2i_cyclegan.losses import (
    cycle_consistency,
    least_squares_discriminator,
    least_squares_gan,
)
from medi2i_cyclegan.resnet import PatchGAN, ResidualBlock, ResNetGenerator
from medi2i_cyclegan.structure import normalized_gradient_distance

from medi2i import ImagePool, OptionsError

TINY = {
    "roi_size": (16, 16, 16),
    "generator_filters": 2,
    "residual_blocks": 1,
    "outer_kernel": 3,
    "discriminator_filters": 2,
    "discriminator_layers": 2,
    "pool_size": 2,
}


# -- networks ---------------------------------------------------------------------------


def test_the_generator_has_the_papers_layers_in_3d() -> None:
    generator = ResNetGenerator(
        in_channels=1,
        out_channels=1,
        filters=4,
        downsamplings=2,
        residual_blocks=3,
        outer_kernel=7,
        norm="instance",
    )
    convolutions = [m for m in generator.body if isinstance(m, torch.nn.Conv3d)]
    transposed = [m for m in generator.body if isinstance(m, torch.nn.ConvTranspose3d)]

    # c7s1-k, d2k, d4k ... u2k, uk, c7s1-1
    assert [c.kernel_size for c in convolutions] == [(7, 7, 7), (3, 3, 3), (3, 3, 3), (7, 7, 7)]
    assert [c.stride for c in convolutions[1:3]] == [(2, 2, 2), (2, 2, 2)]
    assert [c.out_channels for c in convolutions] == [4, 8, 16, 1]
    assert [t.out_channels for t in transposed] == [8, 4]
    assert sum(isinstance(m, ResidualBlock) for m in generator.body) == 3
    assert convolutions[0].padding_mode == "reflect"
    assert isinstance(generator.body[-1], torch.nn.Tanh)
    with torch.no_grad():
        output = generator(torch.randn(2, 1, 16, 12, 8) * 10)
    assert output.shape == (2, 1, 16, 12, 8)
    assert float(output.abs().max()) <= 1.0


def test_the_outer_kernel_may_differ_per_axis_for_thick_slices() -> None:
    method = CycleGAN({**TINY, "outer_kernel": (5, 5, 3)})
    convolutions = [m for m in method.generator("a2b").modules() if isinstance(m, torch.nn.Conv3d)]

    assert convolutions[0].kernel_size == convolutions[-1].kernel_size == (5, 5, 3)
    assert convolutions[0].padding == (2, 2, 1)
    with torch.no_grad():
        assert method.generator("a2b")(torch.zeros(1, 1, 16, 16, 8)).shape == (1, 1, 16, 16, 8)


def test_a_residual_block_adds_its_input() -> None:
    block = ResidualBlock(2, norm="instance")
    for layer in block.body:
        if isinstance(layer, torch.nn.Conv3d):
            torch.nn.init.zeros_(layer.weight)
            torch.nn.init.zeros_(layer.bias)  # type: ignore[arg-type]
    image = torch.randn(1, 2, 4, 4, 4)

    assert torch.equal(block(image), image)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_norm_option_picks_the_normalization(norm: str) -> None:
    method = CycleGAN({**TINY, "norm": norm})
    expected = torch.nn.InstanceNorm3d if norm == "instance" else torch.nn.BatchNorm3d
    layers = [*method.generator("a2b").modules(), *method.discriminators["a"].modules()]

    assert any(isinstance(m, expected) for m in layers)
    other = torch.nn.BatchNorm3d if norm == "instance" else torch.nn.InstanceNorm3d
    assert not any(isinstance(m, other) for m in layers)


def test_an_intensity_keeping_generator_has_no_normalization_and_no_bound() -> None:
    options = {**TINY, "generator_filters": 8, "downsamplings": 0}
    method = CycleGAN({**options, "generator_norm": "none", "output_activation": "linear"})
    generator = method.generator("a2b")
    kinds = (torch.nn.InstanceNorm3d, torch.nn.BatchNorm3d, torch.nn.Tanh)

    assert not any(isinstance(m, kinds) for m in generator.modules())
    # the discriminators keep the shared ``norm``
    discriminator = method.discriminators["a"].modules()
    assert any(isinstance(m, torch.nn.InstanceNorm3d) for m in discriminator)
    texture = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        dim, bright = generator(texture), generator(texture * 1000.0 + 2000.0)
    # without normalization a window's level reaches the output; without tanh, unbounded
    assert not torch.allclose(dim, bright)
    assert float(bright.abs().max()) > 1.0


def test_instance_normalization_makes_a_generator_blind_to_a_windows_level() -> None:
    generator = CycleGAN({**TINY, "downsamplings": 0}).generator("a2b")
    texture = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))

    with torch.no_grad():
        assert torch.allclose(generator(texture), generator(texture + 5.0), atol=1e-5)


def test_the_default_discriminator_is_the_70_voxel_patchgan() -> None:
    discriminator = CycleGAN().discriminators["a"]
    convolutions = [m for m in discriminator.modules() if isinstance(m, torch.nn.Conv3d)]

    assert [c.stride for c in convolutions] == [(2, 2, 2)] * 3 + [(1, 1, 1)] * 2
    assert all(c.kernel_size == (4, 4, 4) for c in convolutions)
    field = 1
    for conv in reversed(convolutions):
        field = (field - 1) * conv.stride[0] + conv.kernel_size[0]
    assert field == 70
    assert discriminator(torch.zeros(1, 1, 64, 64, 32)).shape == (1, 1, 6, 6, 2)


def test_a_patchgan_refuses_patches_smaller_than_it_judges() -> None:
    with pytest.raises(ValueError, match="too small for a PatchGAN with 2 layers"):
        PatchGAN(in_channels=1, filters=2, layers=2, norm="batch")(torch.zeros(2, 1, 8, 8, 8))


# -- losses -----------------------------------------------------------------------------


def test_least_squares_losses_follow_lsgan() -> None:
    scores = torch.tensor([[0.5, 1.5], [1.0, 0.0]])

    # generator side: E[(D(G(a)) - 1)^2]
    assert float(least_squares_gan(scores, real=True)) == pytest.approx(
        (0.25 + 0.25 + 0.0 + 1.0) / 4
    )
    # discriminator: 0.5 (E[(D(b) - 1)^2] + E[D(fake)^2])
    real, fake = torch.tensor([0.8, 1.0]), torch.tensor([0.2, -0.4])
    assert float(least_squares_discriminator(real, fake)) == pytest.approx(
        0.5 * ((0.04 + 0.0) / 2 + (0.04 + 0.16) / 2)
    )


def test_cycle_loss_is_the_mean_absolute_difference() -> None:
    original = torch.tensor([0.0, 1.0, -1.0, 0.5])
    back = torch.tensor([0.5, 1.0, 0.0, 0.0])

    assert float(cycle_consistency(back, original)) == pytest.approx((0.5 + 0 + 1 + 0.5) / 4)


def test_the_structure_term_ignores_contrast_but_not_edges() -> None:
    ramp_x = torch.linspace(-1, 1, 10).view(1, 1, 10, 1, 1).expand(1, 1, 10, 10, 10)
    ramp_y = ramp_x.transpose(2, 3)

    inverted = normalized_gradient_distance(ramp_x, -0.5 * ramp_x + 0.2)
    perpendicular = normalized_gradient_distance(ramp_x, ramp_y)
    flat = normalized_gradient_distance(ramp_x, torch.zeros_like(ramp_x))

    assert float(inverted) < 0.1  # the same edges, whatever their contrast
    assert float(perpendicular) == pytest.approx(1.0)
    assert float(flat) == pytest.approx(1.0)


# -- the image pool ---------------------------------------------------------------------


def test_the_pool_passes_images_while_it_fills_then_mixes_in_stored_ones() -> None:
    pool = ImagePool(3)
    first = torch.arange(3.0).view(3, 1, 1, 1, 1)

    assert torch.equal(pool.query(first), first)  # filling: every image stored and returned
    assert len(pool) == 3
    torch.manual_seed(0)
    later = torch.full((64, 1, 1, 1, 1), 9.0)
    returned = pool.query(later)
    old = returned[returned != 9.0]
    assert 0 < old.numel() <= 3  # about half the draws swap, but only 3 old images exist
    assert set(old.tolist()) <= {0.0, 1.0, 2.0}
    assert len(pool) == 3


def test_the_pool_is_training_state_that_repeats_on_resume() -> None:
    pool = ImagePool(2)
    pool.query(torch.randn(2, 1, 2, 2, 2))
    restored = ImagePool(2)
    restored.load_state(pool.state())
    batch = torch.randn(4, 1, 2, 2, 2)

    torch.manual_seed(1)
    expected = pool.query(batch)
    torch.manual_seed(1)
    assert torch.equal(restored.query(batch), expected)
    with pytest.raises(ValueError, match="more than pool_size 1"):
        ImagePool(1).load_state(pool.state())


def test_a_pool_of_size_zero_returns_the_latest_images() -> None:
    images = torch.randn(2, 1, 2, 2, 2, requires_grad=True)

    returned = ImagePool(0).query(images)

    assert torch.equal(returned, images)
    assert not returned.requires_grad


# -- options and training ---------------------------------------------------------------


def test_defaults_follow_the_paper() -> None:
    options = CycleGAN().options

    assert (options.cycle_weight, options.pool_size, options.learning_rate) == (10.0, 50, 2e-4)
    assert (options.betas, options.norm, options.downsamplings) == ((0.5, 0.999), "instance", 2)
    assert (options.outer_kernel, options.discriminator_layers) == (7, 3)
    assert options.lr_schedule == "linear"
    assert options.identity_weight == options.structure_weight == 0.0  # off by default
    assert options.body_contour


def test_the_rate_is_constant_for_half_the_run_then_decays_to_zero() -> None:
    options = CycleGAN().options

    rates = [options.learning_rate_at(step, 10) for step in range(11)]

    assert rates[:6] == [2e-4] * 6
    assert rates[6:] == pytest.approx([1.6e-4, 1.2e-4, 0.8e-4, 0.4e-4, 0.0])
    constant = CycleGAN({"lr_schedule": "constant"}).options
    assert constant.learning_rate_at(9, 10) == 2e-4


@pytest.mark.parametrize(
    "options",
    [
        {"roi_size": (18, 16, 16)},  # not a multiple of 4
        {"roi_size": (16, 16, 16)},  # 3 PatchGAN layers need 24 voxels
        {"outer_kernel": 4},
        {"outer_kernel": (7, 7, 2)},
        {"norm": "group"},
        {"pool_size": -1},
        {"percentiles": (50.0, 50.0)},
        {"lambda_cycle": 10.0},
    ],
)
def test_invalid_options_are_an_options_error(options: dict[str, object]) -> None:
    with pytest.raises(OptionsError, match="cyclegan"):
        CycleGAN(options)


@pytest.mark.parametrize(
    ("extra", "terms"),
    [
        ({}, set()),
        ({"identity_weight": 0.5}, {"identity"}),
        ({"structure_weight": 1.0}, {"structure"}),
    ],
)
def test_a_step_updates_generators_then_discriminators_with_the_chosen_terms(
    extra: dict[str, float], terms: set[str], recording_trainer: type[Any]
) -> None:
    method = CycleGAN({**TINY, **extra})
    method.use_domains(["mr", "ct"])
    trainer = recording_trainer(method, step_index=8, total_steps=10)
    method.configure_training(trainer)  # type: ignore[arg-type]
    batch = {"a": torch.rand(2, 1, 16, 16, 16) * 2 - 1, "b": torch.rand(2, 1, 16, 16, 16) * 2 - 1}

    losses = method.training_step(batch, trainer)  # type: ignore[arg-type]

    assert trainer.stepped == [
        ("generators", pytest.approx(0.8e-4)),
        ("discriminators", pytest.approx(0.8e-4)),
    ]
    base = {"generator_gan", "cycle", "discriminator_a", "discriminator_b"}
    assert set(losses) == base | terms
    assert len(method.pools["a"]) == len(method.pools["b"]) == 2
    assert trainer.watched == ["fake_b", "fake_a"]  # the trainer's collapse check
