"""Tests of the 2.5D methods: slices with neighbours, and networks that see only them."""

from __future__ import annotations

import pytest
import torch
from medi2i_cyclegan.slice_methods import CycleGAN25D, DiscoGAN25D
from medi2i_cyclegan.slices import restack, slices_with_neighbours

from medi2i import OptionsError


def test_each_slice_comes_with_its_neighbours_and_edges_repeat() -> None:
    volume = torch.arange(8.0).view(2, 1, 1, 1, 4)  # two patches of four slices

    images = slices_with_neighbours(volume, 3)

    assert images.shape == (8, 3, 1, 1)
    assert images[:4, :, 0, 0].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]
    assert images[4, :, 0, 0].tolist() == [4, 4, 5]
    assert torch.equal(restack(images[:, 1:2], 2), volume)


@pytest.mark.parametrize(
    ("method_cls", "options"),
    [
        (
            CycleGAN25D,
            {
                "roi_size": (16, 16, 8),
                "generator_filters": 2,
                "residual_blocks": 1,
                "discriminator_filters": 2,
                "discriminator_layers": 2,
            },
        ),
        (DiscoGAN25D, {"roi_size": (16, 16, 8), "generator_filters": 2}),
    ],
)
def test_a_slice_is_translated_from_its_neighbours_only(
    method_cls: type[CycleGAN25D] | type[DiscoGAN25D], options: dict[str, object]
) -> None:
    generator = method_cls(options).generator("a2b").eval()
    volume = torch.randn(1, 1, 16, 16, 8)
    changed = volume.clone()
    changed[..., 6] += 5.0  # two slices away from slice 4

    with torch.no_grad():
        before, after = generator(volume), generator(changed)

    assert torch.equal(before[..., :5], after[..., :5])
    assert not torch.equal(before[..., 5:], after[..., 5:])


def test_defaults_are_the_papers_2d_networks() -> None:
    cyclegan, discogan = CycleGAN25D().options, DiscoGAN25D().options

    assert cyclegan.roi_size[:2] == (256, 256)
    assert (cyclegan.generator_filters, cyclegan.residual_blocks) == (64, 9)
    assert cyclegan.discriminator_filters == 64
    assert discogan.roi_size[:2] == (64, 64)
    assert discogan.generator_filters == discogan.discriminator_filters == 64
    assert cyclegan.context_slices == discogan.context_slices == 3


@pytest.mark.parametrize(
    ("method_cls", "options"),
    [
        (CycleGAN25D, {"context_slices": 4}),
        (CycleGAN25D, {"roi_size": (18, 16, 4)}),
        (DiscoGAN25D, {"roi_size": (24, 16, 4)}),
    ],
)
def test_invalid_slice_options_are_an_options_error(
    method_cls: type[CycleGAN25D] | type[DiscoGAN25D], options: dict[str, object]
) -> None:
    with pytest.raises(OptionsError, match=method_cls.id):
        method_cls(options)


def test_the_window_may_be_thin_along_z() -> None:
    assert CycleGAN25D({"roi_size": (32, 32, 1)}).options.roi_size == (32, 32, 1)
    assert DiscoGAN25D({"roi_size": (16, 16, 3)}).options.roi_size == (16, 16, 3)
