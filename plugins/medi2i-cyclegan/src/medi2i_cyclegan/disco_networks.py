"""DiscoGAN's networks in 3D and 2D (Kim et al. 2017, section 4 and the authors' code).

The generator is an encoder-decoder *without* skip connections (unlike a U-Net, and
unlike CycleGAN's residual generator): 4-wide convolutions with stride 2 halve the image
``depth`` times (64 → 4 pixels in the paper), 4-wide transposed convolutions with stride
2 bring it back. Leaky ReLU 0.2 in the encoder, ReLU in the decoder, normalization
(batch norm in the paper) after every layer but the first and the last.

The discriminator is the generator's encoder followed by one more convolution that
covers what is left of the image (4×4 at 64² in the paper): five convolutions and a
single real/fake logit per image. Its three normalized layers' activations are the
features of the feature-matching loss.

The output layer is tanh (the paper's sigmoid maps to [0, 1]; medi2i's network range is
[-1, 1]). Weights start from N(0, 0.02) as in DCGAN, which DiscoGAN builds on.
"""

from __future__ import annotations

import torch

from medi2i_cyclegan.resnet import (
    Norm,
    SpatialDims,
    convolution,
    initialize_weights,
    normalization,
    transposed_convolution,
)

KERNEL = 4
"""Width of every DiscoGAN convolution, in voxels."""
DISCRIMINATOR_STAGES = 4
"""Stride-2 convolutions of the discriminator (the paper's, before its last one)."""


def _down(
    in_channels: int, out_channels: int, *, norm: Norm | None, dims: SpatialDims
) -> list[torch.nn.Module]:
    conv = convolution(dims)
    layers: list[torch.nn.Module] = [
        conv(in_channels, out_channels, KERNEL, stride=2, padding=1, bias=norm is None)
    ]
    if norm is not None:
        layers.append(normalization(norm, out_channels, dims))
    layers.append(torch.nn.LeakyReLU(0.2))
    return layers


class EncoderDecoderGenerator(torch.nn.Module):
    """DiscoGAN's generator in 3D (module docstring).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        filters: Features of the first layer (the paper's 64), doubled per stage.
        depth: Stride-2 stages down and up (the paper's 4); windows must be multiples
            of ``2**depth``.
        norm: ``"batch"`` (the paper's) or ``"instance"``.
        dims: 3 for volumes, 2 for images (the paper's network, for 2.5D).

    Example:
        >>> generator = EncoderDecoderGenerator(in_channels=1, out_channels=1, filters=4,
        ...                                     depth=4, norm="batch")
        >>> generator(torch.zeros(2, 1, 16, 16, 16)).shape
        torch.Size([2, 1, 16, 16, 16])
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        filters: int,
        depth: int,
        norm: Norm,
        dims: SpatialDims = 3,
    ) -> None:
        super().__init__()
        widths = [filters * 2**stage for stage in range(depth)]
        up = transposed_convolution(dims)
        layers = _down(in_channels, widths[0], norm=None, dims=dims)
        for stage in range(1, depth):
            layers += _down(widths[stage - 1], widths[stage], norm=norm, dims=dims)
        for stage in range(depth - 1, 0, -1):
            layers += [
                up(widths[stage], widths[stage - 1], KERNEL, stride=2, padding=1, bias=False),
                normalization(norm, widths[stage - 1], dims),
                torch.nn.ReLU(),
            ]
        layers += [
            up(widths[0], out_channels, KERNEL, stride=2, padding=1),
            torch.nn.Tanh(),
        ]
        self.body = torch.nn.Sequential(*layers)
        initialize_weights(self)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.body(image)
        return output


def final_kernel(size: tuple[int, ...]) -> tuple[int, ...]:
    """Width of the discriminator's last convolution along each axis of an image of
    ``size``: what is left after its four stride-2 stages, at most 4 (the paper's 4×4
    at 64²).

    Example:
        >>> final_kernel((64, 64, 32))
        (4, 4, 2)
    """
    return tuple(min(KERNEL, max(1, n // 2**DISCRIMINATOR_STAGES)) for n in size)


class DiscoDiscriminator(torch.nn.Module):
    """DiscoGAN's discriminator in 3D: five convolutions to one logit per window
    (a map of logits for larger images), and the features of its normalized layers.

    Args:
        in_channels: Image channels.
        filters: Features of the first layer (the paper's 64), doubled per stage.
        kernel: Width of the last convolution per axis (:func:`final_kernel`).
        norm: ``"batch"`` (the paper's) or ``"instance"``.
        dims: 3 for volumes, 2 for images.

    Example:
        >>> disc = DiscoDiscriminator(in_channels=1, filters=4, kernel=(1, 1, 1),
        ...                           norm="batch")
        >>> logits, features = disc(torch.zeros(2, 1, 16, 16, 16))
        >>> logits.shape, [tuple(f.shape[1:2]) for f in features]
        (torch.Size([2, 1, 1, 1, 1]), [(8,), (16,), (32,)])
    """

    def __init__(
        self,
        *,
        in_channels: int,
        filters: int,
        kernel: tuple[int, ...],
        norm: Norm,
        dims: SpatialDims = 3,
    ) -> None:
        super().__init__()
        widths = [filters * 2**stage for stage in range(DISCRIMINATOR_STAGES)]
        self.first = torch.nn.Sequential(*_down(in_channels, widths[0], norm=None, dims=dims))
        self.stages = torch.nn.ModuleList(
            torch.nn.Sequential(*_down(widths[stage - 1], widths[stage], norm=norm, dims=dims))
            for stage in range(1, DISCRIMINATOR_STAGES)
        )
        last = convolution(dims)
        self.last = last(widths[-1], 1, kernel, stride=1, padding=0)  # type: ignore[arg-type]
        initialize_weights(self)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (real > 0) and the features of the three normalized stages."""
        features = []
        hidden = self.first(image)
        for stage in self.stages:
            hidden = stage(hidden)
            features.append(hidden)
        logits: torch.Tensor = self.last(hidden)
        return logits, features
