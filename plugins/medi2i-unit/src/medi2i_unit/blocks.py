"""Layers shared by the UNIT and MUNIT networks, in 3D.

Convolutions are MONAI's :class:`~monai.networks.blocks.Convolution` blocks (convolution,
normalization, activation); what MONAI does not have is written here: the residual block
whose normalization is instance or adaptive instance normalization (AdaIN, Huang and
Belongie 2017), and the layer normalization of MUNIT's upsampling stages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from monai.networks.blocks.convolutions import Convolution

ResidualNorm = Literal["instance", "adain"]
"""Normalization inside a residual block: instance norm with learned affine, or AdaIN
whose scale and shift come from a style code."""


def conv(
    in_channels: int,
    out_channels: int,
    *,
    kernel: int,
    stride: int = 1,
    norm: str | tuple[str, dict[str, Any]] | None = "INSTANCE",
    act: str | tuple[str, dict[str, Any]] | None = "RELU",
) -> Convolution:
    """A 3D convolution, normalization and activation, padded so that stride 1 keeps the
    size and stride 2 halves an even size (``padding = (kernel - stride + 1) // 2``)."""
    padding = (kernel - stride + 1) // 2
    return Convolution(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        strides=stride,
        kernel_size=kernel,
        padding=padding,
        adn_ordering="NA",
        norm=norm,
        act=act,
    )


def up_conv(in_channels: int, out_channels: int) -> Convolution:
    """UNIT's upsampling stage: a 3-wide stride-2 transposed convolution (doubles the
    size exactly), instance norm, ReLU."""
    return Convolution(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        strides=2,
        kernel_size=3,
        padding=1,
        output_padding=1,
        is_transposed=True,
        adn_ordering="NA",
        norm="INSTANCE",
        act="RELU",
    )


class AdaptiveInstanceNorm(torch.nn.Module):
    """Instance normalization whose per-channel scale and shift are set from outside.

    AdaIN(x, s) = γ(s) · (x − μ(x)) / σ(x) + β(s) (Huang and Belongie 2017). MUNIT's
    decoder sets ``scale`` and ``shift`` (shape ``(N, C)``) from the style code's MLP
    before every forward pass (:meth:`set_parameters`).
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.scale: torch.Tensor | None = None
        self.shift: torch.Tensor | None = None

    def set_parameters(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        """Use ``scale`` and ``shift`` (each ``(N, channels)``) in the next forward."""
        self.scale, self.shift = scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is None or self.shift is None:
            raise RuntimeError("AdaIN parameters are not set: decode with a style code")
        axes = tuple(range(2, x.dim()))
        mean = x.mean(dim=axes, keepdim=True)
        std = (x.var(dim=axes, keepdim=True, unbiased=False) + self.eps).sqrt()
        expand = (*self.scale.shape, *([1] * len(axes)))
        return (x - mean) / std * self.scale.view(expand) + self.shift.view(expand)


class LayerNorm(torch.nn.Module):
    """Layer normalization over channels and space with a per-channel affine, as in
    MUNIT's upsampling stages (it keeps the style's global statistics that instance
    normalization would erase)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(channels))
        self.bias = torch.nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = tuple(range(1, x.dim()))
        mean = x.mean(dim=axes, keepdim=True)
        std = (x.var(dim=axes, keepdim=True, unbiased=False) + self.eps).sqrt()
        expand = (1, -1, *([1] * (x.dim() - 2)))
        return (x - mean) / std * self.weight.view(expand) + self.bias.view(expand)


class ResidualBlock(torch.nn.Module):
    """``x + norm(conv(relu(norm(conv(x)))))`` with 3-wide convolutions.

    Args:
        channels: Features in and out.
        norm: ``"instance"`` (learned affine) or ``"adain"`` (set by a style code).
    """

    def __init__(self, channels: int, norm: ResidualNorm = "instance") -> None:
        super().__init__()
        self.first = conv(channels, channels, kernel=3, norm=None, act=None)
        self.second = conv(channels, channels, kernel=3, norm=None, act=None)
        self.norms = torch.nn.ModuleList([_norm(channels, norm) for _ in range(2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.norms[0](self.first(x)))
        y = self.norms[1](self.second(y))
        total: torch.Tensor = x + y
        return total


def _norm(channels: int, kind: ResidualNorm) -> torch.nn.Module:
    if kind == "adain":
        return AdaptiveInstanceNorm(channels)
    return torch.nn.InstanceNorm3d(channels, affine=True)


def adain_layers(module: torch.nn.Module) -> list[AdaptiveInstanceNorm]:
    """The AdaIN layers of ``module``, in the order their parameters are assigned."""
    return [m for m in module.modules() if isinstance(m, AdaptiveInstanceNorm)]


def run_padded(
    network: Callable[[torch.Tensor], torch.Tensor], windows: torch.Tensor, multiple: int
) -> torch.Tensor:
    """``network(windows)`` with every spatial side padded (edge replication) up to a
    multiple of ``multiple`` and the output cropped back: the sliding window shrinks its
    windows along axes shorter than the training patch, to sizes the stride-2 stages may
    not divide."""
    sides = windows.shape[2:]
    pads = [(-int(side)) % multiple for side in sides]
    if not any(pads):
        unpadded: torch.Tensor = network(windows)
        return unpadded
    padding: list[int] = []
    for pad in reversed(pads):
        padding += [0, pad]
    output: torch.Tensor = network(F.pad(windows, padding, mode="replicate"))
    x, y, z = (int(side) for side in sides)
    return output[..., :x, :y, :z]
