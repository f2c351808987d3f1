"""Tests of the UNIT and MUNIT networks, their layers and their loss terms."""

from __future__ import annotations

import pytest
import torch
from medi2i_unit.blocks import AdaptiveInstanceNorm, run_padded
from medi2i_unit.discriminator import MultiScaleDiscriminator, lsgan_loss, smallest_input
from medi2i_unit.munit import munit_terms
from medi2i_unit.munit_network import MunitNetwork, StyleEncoder
from medi2i_unit.unit import unit_terms
from medi2i_unit.unit_network import UnitNetwork, kl_term

from medi2i import OptionsError

SIZES = {"filters": 4, "downsamples": 2, "blocks": 1}


def patches(seed: int, shape: tuple[int, ...] = (2, 1, 16, 16, 16)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_unit_training_pass_has_every_tensor_at_its_shape() -> None:
    torch.manual_seed(0)
    net = UnitNetwork(**SIZES, shared_blocks=1)

    passes = net(patches(1), patches(2))

    for name in ("recon_a", "recon_b", "fake_ab", "fake_ba", "cycle_a", "cycle_b"):
        assert passes[name].shape == (2, 1, 16, 16, 16), name
    for name in ("mu_a", "mu_b", "mu_ab", "mu_ba"):
        assert passes[name].shape == (2, 16, 4, 4, 4), name


def test_unit_shares_the_high_level_layers_between_domains() -> None:
    net = UnitNetwork(**SIZES, shared_blocks=1)
    calls: list[str] = []
    net.shared_encoder.register_forward_hook(lambda *_: calls.append("encoder"))
    net.shared_decoder.register_forward_hook(lambda *_: calls.append("decoder"))
    image = patches(0, (1, 1, 16, 16, 16))

    net.decode(net.encode(image, "a"), "b")
    net.decode(net.encode(image, "b"), "a")

    assert calls == ["encoder", "decoder", "encoder", "decoder"]
    assert len(list(net.shared_encoder.parameters())) > 0


def test_unit_translation_uses_the_latent_mean_so_it_is_deterministic() -> None:
    net = UnitNetwork(**SIZES, shared_blocks=1).eval()
    image = patches(3, (1, 1, 16, 16, 16))

    torch.manual_seed(1)
    first = net.translate(image, "a", "b")
    torch.manual_seed(2)
    second = net.translate(image, "a", "b")

    assert torch.equal(first, second)
    assert torch.equal(first, net.decode(net.encode(image, "a"), "b"))


def test_munit_training_pass_has_every_tensor_at_its_shape() -> None:
    torch.manual_seed(0)
    net = MunitNetwork(**SIZES, style_dim=8, style_downsamples=2, mlp_features=8)

    passes = net(patches(1), patches(2), cycle=True)

    for name in ("recon_a", "recon_b", "fake_ab", "fake_ba", "cycle_a", "cycle_b"):
        assert passes[name].shape == (2, 1, 16, 16, 16), name
    for name in ("content_a", "content_b", "content_ab", "content_ba"):
        assert passes[name].shape == (2, 16, 4, 4, 4), name
    for name in ("style_a", "style_b", "style_ab", "style_ba", "prior_a", "prior_b"):
        assert passes[name].shape == (2, 8), name
    assert "cycle_a" not in net(patches(1), patches(2), cycle=False)


def test_the_style_encoder_takes_volumes_of_any_size() -> None:
    encoder = StyleEncoder(filters=4, downsamples=2, style_dim=8)

    assert encoder(torch.zeros(1, 1, 12, 20, 8)).shape == (1, 8)
    assert encoder(torch.zeros(3, 1, 16, 16, 16)).shape == (3, 8)


def test_adain_gives_each_channel_the_styles_mean_and_deviation() -> None:
    norm = AdaptiveInstanceNorm(3)
    scale, shift = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[0.0, -1.0, 3.0]])
    norm.set_parameters(scale, shift)
    x = patches(4, (1, 3, 8, 8, 8))

    y = norm(x)

    torch.testing.assert_close(y.mean(dim=(2, 3, 4)), shift, atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(2, 3, 4), unbiased=False), scale, atol=1e-3, rtol=0)
    # the input's own statistics are gone: only its pattern is kept
    torch.testing.assert_close(norm(x * 7.0 + 5.0), y, atol=1e-4, rtol=0)


def test_adain_without_a_style_refuses_to_run() -> None:
    with pytest.raises(RuntimeError, match="style code"):
        AdaptiveInstanceNorm(2)(torch.zeros(1, 2, 4, 4, 4))


def test_the_munit_style_changes_the_decoded_image() -> None:
    torch.manual_seed(0)
    net = MunitNetwork(**SIZES, style_dim=8, style_downsamples=2, mlp_features=8).eval()
    image = patches(5, (1, 1, 16, 16, 16))

    first = net.translate(image, "a", "b", torch.zeros(8))
    second = net.translate(image, "a", "b", torch.ones(8))

    assert not torch.allclose(first, second)


def test_kl_term_is_the_mean_square_of_the_latent_mean() -> None:
    mean = torch.tensor([[1.0, 2.0], [3.0, 4.0]])

    assert float(kl_term(mean)) == pytest.approx(7.5)
    assert float(kl_term(torch.zeros(2, 3))) == 0.0


def test_unit_terms_on_hand_made_tensors() -> None:
    real_a, real_b = torch.zeros(1, 1, 2, 2, 2), torch.ones(1, 1, 2, 2, 2)
    passes = {
        "recon_a": real_a + 0.5,
        "recon_b": real_b - 0.25,
        "cycle_a": real_a + 1.0,
        "cycle_b": real_b,
        "mu_a": torch.full((1, 2, 1, 1, 1), 2.0),
        "mu_b": torch.zeros(1, 2, 1, 1, 1),
        "mu_ab": torch.full((1, 2, 1, 1, 1), 1.0),
        "mu_ba": torch.full((1, 2, 1, 1, 1), -3.0),
    }

    terms = unit_terms(passes, real_a, real_b)

    assert float(terms["reconstruction"]) == pytest.approx(0.75)
    assert float(terms["cycle"]) == pytest.approx(1.0)
    assert float(terms["kl"]) == pytest.approx(4.0)
    assert float(terms["cycle_kl"]) == pytest.approx(10.0)


def test_munit_terms_on_hand_made_tensors() -> None:
    real_a, real_b = torch.zeros(1, 1, 2, 2, 2), torch.ones(1, 1, 2, 2, 2)
    content = torch.zeros(1, 2, 1, 1, 1)
    passes = {
        "recon_a": real_a + 0.5,
        "recon_b": real_b,
        "content_a": content,
        "content_b": content,
        "content_ab": content + 2.0,
        "content_ba": content,
        "prior_a": torch.zeros(1, 8),
        "prior_b": torch.zeros(1, 8),
        "style_ab": torch.full((1, 8), 0.5),
        "style_ba": torch.full((1, 8), -0.5),
    }

    terms = munit_terms(passes, real_a, real_b)

    assert float(terms["reconstruction"]) == pytest.approx(0.5)
    assert float(terms["content"]) == pytest.approx(2.0)
    assert float(terms["style"]) == pytest.approx(1.0)
    assert "cycle" not in terms
    cycled = munit_terms({**passes, "cycle_a": real_a, "cycle_b": real_b + 3.0}, real_a, real_b)
    assert float(cycled["cycle"]) == pytest.approx(3.0)


def test_the_discriminator_judges_each_scale_of_the_image() -> None:
    judge = MultiScaleDiscriminator(filters=4, layers=2, scales=3)

    scores = judge(torch.zeros(2, 1, 32, 32, 16))

    assert [tuple(s.shape) for s in scores] == [
        (2, 1, 8, 8, 4),
        (2, 1, 4, 4, 2),
        (2, 1, 2, 2, 1),
    ]


def test_the_discriminator_refuses_patches_too_small_for_its_scales() -> None:
    judge = MultiScaleDiscriminator(filters=4, layers=3, scales=2)

    assert smallest_input(3, 2) == 16
    with pytest.raises(OptionsError, match="too small"):
        judge(torch.zeros(1, 1, 8, 16, 16))


def test_least_squares_loss_sums_the_scales() -> None:
    scores = [torch.ones(1, 1, 2, 2, 2), torch.zeros(1, 1, 1, 1, 1)]

    assert float(lsgan_loss(scores, 1.0)) == pytest.approx(1.0)
    assert float(lsgan_loss(scores, 0.0)) == pytest.approx(1.0)
    assert float(lsgan_loss([torch.ones(3)], 1.0)) == 0.0


def test_windows_the_stages_cannot_divide_are_padded_and_cropped_back() -> None:
    net = UnitNetwork(**SIZES, shared_blocks=1).eval()
    windows = patches(6, (1, 1, 16, 14, 9))

    output = run_padded(lambda w: net.translate(w, "a", "b"), windows, 4)

    assert output.shape == windows.shape
