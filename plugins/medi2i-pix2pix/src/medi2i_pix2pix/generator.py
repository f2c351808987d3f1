"""The Pix2Pix generator: an encoder-decoder U-Net with skip connections, in 2D or 3D.

As in the paper (Isola et al. 2017, appendix 6.1.1), every encoder stage is a 4-wide
stride-2 convolution, normalization and leaky ReLU (slope 0.2), with no normalization
on the first stage; every decoder stage a 4-wide stride-2 transposed convolution,
normalization and ReLU, with 50 % dropout in the first three decoder stages; each
decoder stage takes the matching encoder stage's features concatenated to its input;
the last one maps to the output channels through a tanh. Features double per stage up
to eight times the first stage's (``C64-C128-C256-C512-C512-…`` in the paper).

The innermost stage has no normalization either: at the paper's depth it is one pixel,
where a per-sample normalization would zero it.

In this design the full-resolution output comes from half-resolution features through
one transposed convolution, which leaves a stair-step pattern on sharp edges (bone in
CT). ``full_resolution=True`` adds a full-resolution level around the paper's network:
a 3-wide convolution, normalization and leaky ReLU make ``filters`` features of the
input, which feed the first stride-2 stage and skip to the output; the last transposed
convolution then yields ``filters`` features (normalized, ReLU), concatenated with the
skipped ones and mapped to the output by a 3-wide convolution and the tanh.
"""

from __future__ import annotations

import torch

from medi2i_pix2pix.layers import (
    Norm,
    SpatialDims,
    convolution,
    crop_to,
    initialize_weights,
    leveled_convolution,
    normalization,
    pad_to_multiple,
    up_convolution,
)

WIDEST = 8
"""Largest feature count of a stage, as a multiple of the first stage's."""
DROPOUT_STAGES = 3
"""Decoder stages, from the innermost, that use dropout."""


class UNetGenerator(torch.nn.Module):
    """The Pix2Pix U-Net generator; accepts images of any size.

    Sizes not divisible by ``2**depth`` are padded at their far end by edge replication
    and the output is cropped back, so sliding windows and training patches of any
    size work.

    Args:
        dims: 2 for images ``(B, C, X, Y)``, 3 for volumes ``(B, C, X, Y, Z)``.
        in_channels: Input channels.
        out_channels: Output channels.
        filters: Features of the first stage (64 in the paper).
        depth: Number of stride-2 stages (8 in the paper, for 256² images).
        norm: ``"instance"`` or ``"batch"`` normalization.
        dropout: Dropout probability of the first three decoder stages (0.5 in the
            paper); 0 turns it off.
        full_resolution: Add the full-resolution level described above (not in the
            paper).

    Example:
        >>> net = UNetGenerator(dims=3, in_channels=1, out_channels=1, filters=4, depth=3,
        ...                     norm="instance", dropout=0.5)
        >>> net(torch.zeros(1, 1, 12, 16, 9)).shape
        torch.Size([1, 1, 12, 16, 9])
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
        dropout: float,
        full_resolution: bool = False,
    ) -> None:
        super().__init__()
        self.dims = dims
        self.divisor = 2**depth
        widths = [filters * min(2**stage, WIDEST) for stage in range(depth)]
        self.head: torch.nn.Module | None = None
        self.tail: torch.nn.Module | None = None
        stage_inputs, stage_outputs = in_channels, out_channels
        if full_resolution:
            self.head = torch.nn.Sequential(
                leveled_convolution(dims, in_channels, filters),
                normalization(dims, norm, filters),
                torch.nn.LeakyReLU(0.2),
            )
            self.tail = torch.nn.Sequential(
                leveled_convolution(dims, 2 * filters, out_channels), torch.nn.Tanh()
            )
            stage_inputs, stage_outputs = filters, filters
        self.encoder = torch.nn.ModuleList(
            _encoder_stage(dims, stage, widths, stage_inputs, norm) for stage in range(depth)
        )
        self.decoder = torch.nn.ModuleList(
            _decoder_stage(dims, stage, widths, stage_outputs, norm, dropout, full_resolution)
            for stage in reversed(range(depth))
        )
        initialize_weights(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Translate ``images`` to outputs in [-1, 1] of the same size."""
        size = images.shape[2:]
        features = pad_to_multiple(images, self.divisor, axes=self.dims)
        if self.head is not None:
            features = self.head(features)
        skips = [features]
        for stage in self.encoder:
            features = stage(features)
            skips.append(features)
        skips.pop()  # the innermost features feed the decoder directly
        for index, stage in enumerate(self.decoder):
            if index > 0:
                features = torch.cat([skips.pop(), features], dim=1)
            features = stage(features)
        if self.tail is not None:
            features = self.tail(torch.cat([skips.pop(), features], dim=1))
        return crop_to(features, size)


def _encoder_stage(
    dims: SpatialDims, stage: int, widths: list[int], in_channels: int, norm: Norm
) -> torch.nn.Sequential:
    first, innermost = stage == 0, stage == len(widths) - 1
    layers: list[torch.nn.Module] = []
    if not first:
        layers.append(torch.nn.LeakyReLU(0.2))
    source = in_channels if first else widths[stage - 1]
    layers.append(convolution(dims, source, widths[stage], stride=2))
    if not (first or innermost):
        layers.append(normalization(dims, norm, widths[stage]))
    return torch.nn.Sequential(*layers)


def _decoder_stage(
    dims: SpatialDims,
    stage: int,
    widths: list[int],
    out_channels: int,
    norm: Norm,
    dropout: float,
    full_resolution: bool,
) -> torch.nn.Sequential:
    depth = len(widths)
    innermost, last = stage == depth - 1, stage == 0
    # every stage but the innermost also receives the skip features of its own level
    source = widths[stage] if innermost else 2 * widths[stage]
    target = out_channels if last else widths[stage - 1]
    layers: list[torch.nn.Module] = [torch.nn.ReLU(), up_convolution(dims, source, target)]
    if last and full_resolution:  # features for the full-resolution level's tail
        layers += [normalization(dims, norm, target), torch.nn.ReLU()]
        return torch.nn.Sequential(*layers)
    if last:
        layers.append(torch.nn.Tanh())
        return torch.nn.Sequential(*layers)
    layers.append(normalization(dims, norm, target))
    if dropout > 0.0 and depth - 1 - stage < DROPOUT_STAGES:
        layers.append(torch.nn.Dropout(dropout))
    return torch.nn.Sequential(*layers)
