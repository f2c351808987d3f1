"""A residual U-Net generator, the nnU-Net-style alternative to the paper's U-Net.

The paper's generator halves the resolution at every layer with one 4-wide stride-2
convolution and makes its output from half-resolution features. The SynthRAD
challenges' strongest MR→CT entries instead use nnU-Net's residual encoder U-Net:
at every resolution level two 3-wide convolutions with instance normalization and
leaky ReLU (slope 0.01) in a residual block, stride-2 convolutions between levels,
2-wide stride-2 transposed convolutions back up, and the output made at full
resolution. With ``generator: residual-unet`` Pix2Pix trains this network against the
same PatchGAN with the same GAN + λ·L1 loss; its last layer is a 1-wide convolution
and the tanh, so it keeps the paper generator's [-1, 1] range.
"""

from __future__ import annotations

import torch

from medi2i_pix2pix.layers import (
    Norm,
    SpatialDims,
    crop_to,
    leveled_convolution,
    normalization,
    pad_to_multiple,
    pointwise_convolution,
)

WIDEST = 320
"""Largest feature count of a level (nnU-Net's cap)."""
SLOPE = 0.01
"""Negative slope of the leaky ReLUs (nnU-Net's)."""


class ResidualBlock(torch.nn.Module):
    """Two 3-wide convolutions with normalization, added to a (projected) shortcut."""

    def __init__(
        self, dims: SpatialDims, in_channels: int, out_channels: int, *, stride: int, norm: Norm
    ) -> None:
        super().__init__()
        self.main = torch.nn.Sequential(
            leveled_convolution(dims, in_channels, out_channels, stride=stride),
            normalization(dims, norm, out_channels),
            torch.nn.LeakyReLU(SLOPE),
            leveled_convolution(dims, out_channels, out_channels),
            normalization(dims, norm, out_channels),
        )
        self.shortcut: torch.nn.Module = torch.nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = torch.nn.Sequential(
                pointwise_convolution(dims, in_channels, out_channels, stride=stride),
                normalization(dims, norm, out_channels),
            )
        self.activation = torch.nn.LeakyReLU(SLOPE)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        activated: torch.Tensor = self.activation(self.main(features) + self.shortcut(features))
        return activated


class ResidualUNetGenerator(torch.nn.Module):
    """A residual U-Net with a tanh output; accepts images of any size.

    Args:
        dims: 2 for images ``(B, C, X, Y)``, 3 for volumes ``(B, C, X, Y, Z)``.
        in_channels: Input channels.
        out_channels: Output channels.
        filters: Features of the full-resolution level; they double at every level
            below, up to 320.
        depth: Number of stride-2 levels below the full-resolution one.
        norm: ``"instance"`` or ``"batch"`` normalization.

    Example:
        >>> net = ResidualUNetGenerator(dims=3, in_channels=1, out_channels=1, filters=4,
        ...                             depth=2, norm="instance")
        >>> net(torch.zeros(1, 1, 10, 12, 7)).shape
        torch.Size([1, 1, 10, 12, 7])
    """

    def __init__(
        self,
        *,
        dims: SpatialDims,
        in_channels: int,
        out_channels: int,
        filters: int,
        depth: int,
        norm: Norm,
    ) -> None:
        super().__init__()
        self.dims = dims
        self.divisor = 2**depth
        widths = [min(filters * 2**level, WIDEST) for level in range(depth + 1)]
        sources = [in_channels, *widths[:-1]]
        self.encoder = torch.nn.ModuleList(
            ResidualBlock(dims, source, width, stride=1 if level == 0 else 2, norm=norm)
            for level, (source, width) in enumerate(zip(sources, widths, strict=True))
        )
        transposed = torch.nn.ConvTranspose3d if dims == 3 else torch.nn.ConvTranspose2d
        self.upsample = torch.nn.ModuleList(
            transposed(widths[level + 1], widths[level], 2, stride=2)
            for level in reversed(range(depth))
        )
        self.decoder = torch.nn.ModuleList(
            ResidualBlock(dims, 2 * widths[level], widths[level], stride=1, norm=norm)
            for level in reversed(range(depth))
        )
        self.output = torch.nn.Sequential(
            pointwise_convolution(dims, widths[0], out_channels), torch.nn.Tanh()
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Translate ``images`` to outputs in [-1, 1] of the same size."""
        size = images.shape[2:]
        features = pad_to_multiple(images, self.divisor, axes=self.dims)
        skips = []
        for block in self.encoder:
            features = block(features)
            skips.append(features)
        skips.pop()  # the deepest level feeds the decoder directly
        for upsample, block in zip(self.upsample, self.decoder, strict=True):
            features = block(torch.cat([skips.pop(), upsample(features)], dim=1))
        return crop_to(self.output(features), size)
