"""The Pix2Pix discriminator: a conditional PatchGAN, in 2D or 3D.

It judges (source, target) pairs concatenated along the channels, patch by patch:
each output logit sees one receptive field of the input. With three stride-2 stages
(the paper's default) the receptive field is 70 pixels wide, the "70×70 PatchGAN"
(``C64-C128-C256-C512``, then a 1-channel convolution; no normalization on the first
stage; leaky ReLU slope 0.2). In 3D the same layers see 70³ voxels.
"""

from __future__ import annotations

import torch

from medi2i import OptionsError
from medi2i_pix2pix.layers import Norm, SpatialDims, convolution, initialize_weights, normalization

WIDEST = 8
"""Largest feature count of a stage, as a multiple of the first stage's."""


def smallest_input(layers: int) -> int:
    """The smallest input size (voxels along each axis) a discriminator with ``layers``
    stride-2 stages judges: ``3 · 2**layers``, so that one logit remains after the two
    final stride-1 convolutions."""
    return int(3 * 2**layers)


def receptive_field(layers: int) -> int:
    """Width in voxels of the input patch one output logit sees (70 for 3 layers)."""
    field = 1
    for stride in reversed([2] * layers + [1, 1]):
        field = (field - 1) * stride + 4
    return field


class PatchDiscriminator(torch.nn.Module):
    """A conditional PatchGAN: ``(source, target)`` to a map of real/fake logits.

    Args:
        dims: 2 for images, 3 for volumes.
        in_channels: Channels of source and target together.
        filters: Features of the first stage (64 in the paper).
        layers: Number of stride-2 stages (3 in the paper: the 70×70 PatchGAN).
        norm: ``"instance"`` or ``"batch"`` normalization.

    Example:
        >>> disc = PatchDiscriminator(dims=3, in_channels=2, filters=4, layers=2,
        ...                           norm="instance")
        >>> disc(torch.zeros(1, 1, 16, 16, 16), torch.zeros(1, 1, 16, 16, 16)).shape
        torch.Size([1, 1, 2, 2, 2])
    """

    def __init__(
        self, *, dims: SpatialDims, in_channels: int, filters: int, layers: int, norm: Norm
    ) -> None:
        super().__init__()
        self.layers = layers
        widths = [filters * min(2**stage, WIDEST) for stage in range(layers + 1)]
        stages: list[torch.nn.Module] = [
            convolution(dims, in_channels, widths[0], stride=2),
            torch.nn.LeakyReLU(0.2),
        ]
        for stage in range(1, layers + 1):
            stride = 2 if stage < layers else 1
            stages += [
                convolution(dims, widths[stage - 1], widths[stage], stride=stride),
                normalization(dims, norm, widths[stage]),
                torch.nn.LeakyReLU(0.2),
            ]
        stages.append(convolution(dims, widths[layers], 1, stride=1))
        self.body = torch.nn.Sequential(*stages)
        initialize_weights(self)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Logits (real > 0) for each patch of the pairs ``(source, target)``.

        Raises:
            OptionsError: The images are smaller than :func:`smallest_input`.
        """
        needed = smallest_input(self.layers)
        if min(int(n) for n in source.shape[2:]) < needed:
            raise OptionsError(
                f"training patches of {tuple(source.shape[2:])} voxels are too small for a "
                f"discriminator with {self.layers} stride-2 layers (it needs at least {needed} "
                "per axis); use larger patches or fewer discriminator_layers"
            )
        logits: torch.Tensor = self.body(torch.cat([source, target], dim=1))
        return logits
