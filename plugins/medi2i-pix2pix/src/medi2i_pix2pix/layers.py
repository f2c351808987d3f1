"""Building blocks shared by the generator and the discriminator, in 2D or 3D.

Pix2Pix builds both networks from 4-wide convolutions with stride 2 (or 1), a
normalization layer and a (leaky) ReLU, and draws every weight from N(0, 0.02).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

Norm = Literal["instance", "batch"]
SpatialDims = Literal[2, 3]

KERNEL = 4
"""Convolution width of both Pix2Pix networks, in voxels."""
INIT_STD = 0.02
"""Standard deviation of the initial weights (the paper's N(0, 0.02))."""


def convolution(
    dims: SpatialDims, in_channels: int, out_channels: int, *, stride: int
) -> torch.nn.Module:
    """A 4-wide convolution padded by 1: stride 2 halves the size, stride 1 shrinks it
    by one voxel."""
    layer = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
    return layer(in_channels, out_channels, KERNEL, stride=stride, padding=1)


def leveled_convolution(
    dims: SpatialDims, in_channels: int, out_channels: int, *, stride: int = 1
) -> torch.nn.Module:
    """A 3-wide convolution padded by 1: stride 1 keeps the size, stride 2 halves it."""
    layer = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
    return layer(in_channels, out_channels, 3, stride=stride, padding=1)


def pointwise_convolution(
    dims: SpatialDims, in_channels: int, out_channels: int, *, stride: int = 1
) -> torch.nn.Module:
    """A 1-wide convolution: mixes channels; stride 2 keeps every second voxel."""
    layer = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
    return layer(in_channels, out_channels, 1, stride=stride)


def up_convolution(dims: SpatialDims, in_channels: int, out_channels: int) -> torch.nn.Module:
    """A 4-wide transposed convolution with stride 2: doubles the size."""
    layer = torch.nn.ConvTranspose3d if dims == 3 else torch.nn.ConvTranspose2d
    return layer(in_channels, out_channels, KERNEL, stride=2, padding=1)


def normalization(dims: SpatialDims, kind: Norm, channels: int) -> torch.nn.Module:
    """Instance normalization (per sample; what the paper's batch norm at batch size 1
    amounts to) or batch normalization, with a learned scale and shift."""
    if kind == "instance":
        instance = torch.nn.InstanceNorm3d if dims == 3 else torch.nn.InstanceNorm2d
        return instance(channels, affine=True)
    batch = torch.nn.BatchNorm3d if dims == 3 else torch.nn.BatchNorm2d
    return batch(channels)


_NORM_LAYERS = (
    torch.nn.InstanceNorm2d,
    torch.nn.InstanceNorm3d,
    torch.nn.BatchNorm2d,
    torch.nn.BatchNorm3d,
)


def initialize_weights(module: torch.nn.Module) -> None:
    """Draw convolution weights from N(0, 0.02) and normalization scales from
    N(1, 0.02), with zero biases, as the paper does."""
    for layer in module.modules():
        weight = getattr(layer, "weight", None)
        bias = getattr(layer, "bias", None)
        if not isinstance(weight, torch.Tensor):
            continue
        is_norm = isinstance(layer, _NORM_LAYERS)
        torch.nn.init.normal_(weight, mean=1.0 if is_norm else 0.0, std=INIT_STD)
        if isinstance(bias, torch.Tensor):
            torch.nn.init.zeros_(bias)


def pad_to_multiple(image: torch.Tensor, divisor: int, *, axes: int) -> torch.Tensor:
    """Pad the last ``axes`` axes at their far end to multiples of ``divisor``,
    replicating edge values (zeros would add false edges)."""
    missing = [-n % divisor for n in image.shape[-axes:]]  # symbolic under torch.export
    if not any(missing):
        return image
    widths = [w for axis in reversed(missing) for w in (0, axis)]  # F.pad: last axis first
    return F.pad(image, widths, mode="replicate")


def crop_to(features: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: keep the first ``size`` voxels of the last axes."""
    first = features.ndim - len(size)
    for axis, length in enumerate(size):
        features = features.narrow(first + axis, 0, length)  # symbolic under torch.export
    return features
