"""CycleGAN's networks in 3D (and 2D): the ResNet generator and the 70-voxel PatchGAN.

The generator (Zhu et al. 2017, appendix 7.2; after Johnson et al. 2016) is, in the
paper's notation for 256² images::

    c7s1-64, d128, d256, R256 ×9, u128, u64, c7s1-3

``c7s1-k``: a 7-wide convolution of k features, stride 1, reflection padding;
``dk``: a 3-wide convolution of k features with stride 2; ``Rk``: a residual block of two
3-wide convolutions; ``uk``: a 3-wide transposed convolution with stride 2. Each
convolution but the last is followed by normalization and ReLU; the last by tanh.
Here every layer is 3D (2D for the 2.5D methods) and the widths follow ``filters``
(the paper's 64).

The discriminator is the paper's 70×70 PatchGAN (``C64-C128-C256-C512``, 4-wide
convolutions, leaky ReLU 0.2, no normalization on the first), which MONAI provides
(:class:`monai.networks.nets.PatchDiscriminator`).
"""

from __future__ import annotations

from typing import Literal

import torch
from monai.networks.nets.patchgan_discriminator import PatchDiscriminator

Norm = Literal["instance", "batch"]
GeneratorNorm = Literal["instance", "batch", "none"]
OutputActivation = Literal["tanh", "linear"]
SpatialDims = Literal[2, 3]
INIT_STD = 0.02
"""Standard deviation of the initial weights (the paper's N(0, 0.02))."""


_CONVOLUTIONS = (
    torch.nn.Conv2d,
    torch.nn.Conv3d,
    torch.nn.ConvTranspose2d,
    torch.nn.ConvTranspose3d,
)


def convolution(dims: SpatialDims) -> type[torch.nn.Conv2d] | type[torch.nn.Conv3d]:
    """The convolution layer of ``dims`` spatial dimensions."""
    return torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d


def transposed_convolution(
    dims: SpatialDims,
) -> type[torch.nn.ConvTranspose2d] | type[torch.nn.ConvTranspose3d]:
    """The transposed convolution layer of ``dims`` spatial dimensions."""
    return torch.nn.ConvTranspose3d if dims == 3 else torch.nn.ConvTranspose2d


def normalization(kind: GeneratorNorm, channels: int, dims: SpatialDims = 3) -> torch.nn.Module:
    """Instance normalization without a learned scale (the reference code's default),
    batch normalization, or none (``"none"``: an identity layer)."""
    if kind == "none":
        return torch.nn.Identity()
    if kind == "instance":
        instance = torch.nn.InstanceNorm3d if dims == 3 else torch.nn.InstanceNorm2d
        return instance(channels, affine=False)
    batch = torch.nn.BatchNorm3d if dims == 3 else torch.nn.BatchNorm2d
    return batch(channels)


def initialize_weights(module: torch.nn.Module) -> None:
    """Convolutions from N(0, 0.02), normalization scales from N(1, 0.02), zero biases."""
    for layer in module.modules():
        if isinstance(layer, _CONVOLUTIONS):
            torch.nn.init.normal_(layer.weight, 0.0, INIT_STD)
            if layer.bias is not None:
                torch.nn.init.zeros_(layer.bias)
        elif isinstance(layer, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            torch.nn.init.normal_(layer.weight, 1.0, INIT_STD)
            torch.nn.init.zeros_(layer.bias)


class ResidualBlock(torch.nn.Module):
    """``Rk``: ``x + norm(conv(relu(norm(conv(x)))))`` with 3-wide reflection-padded
    convolutions."""

    def __init__(self, channels: int, *, norm: GeneratorNorm, dims: SpatialDims = 3) -> None:
        super().__init__()
        bias = norm != "batch"  # batch norm's shift makes a bias redundant
        conv = convolution(dims)
        self.body = torch.nn.Sequential(
            conv(channels, channels, 3, padding=1, padding_mode="reflect", bias=bias),
            normalization(norm, channels, dims),
            torch.nn.ReLU(),
            conv(channels, channels, 3, padding=1, padding_mode="reflect", bias=bias),
            normalization(norm, channels, dims),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = image + self.body(image)
        return result


class ResNetGenerator(torch.nn.Module):
    """CycleGAN's generator in 3D (module docstring).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        filters: Features of the first layer (the paper's 64); doubled at each
            downsampling.
        downsamplings: Stride-2 stages down (and up); the paper's 2. Windows must be
            multiples of ``2**downsamplings``.
        residual_blocks: Residual blocks at the lowest resolution (the paper: 9 at 256²,
            6 at 128²).
        outer_kernel: Width of the first and last convolution (the paper's 7), one odd
            width or one per axis (e.g. ``(7, 7, 3)`` for voxels 2.5 times as thick as
            wide, which covers about the same millimetres along every axis).
        norm: ``"instance"`` (the paper's), ``"batch"`` or ``"none"``. Instance
            normalization discards each window's mean and contrast, which a
            harmonization must keep; ``"none"`` keeps them.
        dims: 3 for volumes, 2 for images (the paper's network, for 2.5D).
        output_activation: ``"tanh"`` (the paper's, outputs in [-1, 1]) or ``"linear"``
            (no bound: for intensities beyond the training range, see
            ``clip_intensities``).

    Example:
        >>> generator = ResNetGenerator(in_channels=1, out_channels=1, filters=4,
        ...                             downsamplings=2, residual_blocks=1,
        ...                             outer_kernel=7, norm="instance")
        >>> generator(torch.zeros(1, 1, 16, 16, 8)).shape
        torch.Size([1, 1, 16, 16, 8])
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        filters: int,
        downsamplings: int,
        residual_blocks: int,
        outer_kernel: int | tuple[int, ...],
        norm: GeneratorNorm,
        dims: SpatialDims = 3,
        output_activation: OutputActivation = "tanh",
    ) -> None:
        super().__init__()
        bias = norm != "batch"
        kernel = (outer_kernel,) * dims if isinstance(outer_kernel, int) else outer_kernel[:dims]
        pad = tuple(width // 2 for width in kernel)
        conv, up = convolution(dims), transposed_convolution(dims)
        layers: list[torch.nn.Module] = [
            conv(in_channels, filters, kernel, padding=pad, padding_mode="reflect", bias=bias),  # type: ignore[arg-type]
            normalization(norm, filters, dims),
            torch.nn.ReLU(),
        ]
        width = filters
        for _ in range(downsamplings):
            layers += [
                conv(width, 2 * width, 3, stride=2, padding=1, bias=bias),
                normalization(norm, 2 * width, dims),
                torch.nn.ReLU(),
            ]
            width *= 2
        layers += [ResidualBlock(width, norm=norm, dims=dims) for _ in range(residual_blocks)]
        for _ in range(downsamplings):
            layers += [
                up(width, width // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                normalization(norm, width // 2, dims),
                torch.nn.ReLU(),
            ]
            width //= 2
        layers.append(conv(width, out_channels, kernel, padding=pad, padding_mode="reflect"))  # type: ignore[arg-type]
        if output_activation == "tanh":
            layers.append(torch.nn.Tanh())
        self.body = torch.nn.Sequential(*layers)
        initialize_weights(self)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.body(image)
        return output


def smallest_patch(layers: int) -> int:
    """The smallest patch (voxels along each axis) a PatchGAN with ``layers`` layers
    judges: ``3 · 2**layers``, so one score remains after its two stride-1 convolutions."""
    return int(3 * 2**layers)


class PatchGAN(torch.nn.Module):
    """The paper's PatchGAN through MONAI: an image to a map of real/fake scores.

    Args:
        in_channels: Image channels.
        filters: Features of the first layer (the paper's 64), doubled per layer.
        layers: Convolution stages after the first (the paper's 3: the 70×70 PatchGAN,
            whose last stage has stride 1).
        norm: ``"instance"`` (the paper's) or ``"batch"``.
        dims: 3 for volumes, 2 for images.

    Example:
        >>> PatchGAN(in_channels=1, filters=4, layers=2, norm="instance")(
        ...     torch.zeros(2, 1, 16, 16, 16)).shape
        torch.Size([2, 1, 2, 2, 2])
    """

    def __init__(
        self, *, in_channels: int, filters: int, layers: int, norm: Norm, dims: SpatialDims = 3
    ) -> None:
        super().__init__()
        self.layers = layers
        monai_norm: str | tuple[str, dict[str, bool]] = (
            ("INSTANCE", {"affine": False}) if norm == "instance" else "BATCH"
        )
        self.body = PatchDiscriminator(
            spatial_dims=dims,
            channels=filters,
            in_channels=in_channels,
            out_channels=1,
            num_layers_d=layers,
            norm=monai_norm,
            bias=norm == "instance",
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Scores (real: 1, fake: 0 under the least-squares loss) per patch.

        Raises:
            ValueError: The image is smaller than :func:`smallest_patch`.
        """
        needed = smallest_patch(self.layers)
        if min(int(n) for n in image.shape[2:]) < needed:
            raise ValueError(
                f"patches of {tuple(image.shape[2:])} voxels are too small for a PatchGAN "
                f"with {self.layers} layers (it needs {needed} per axis)"
            )
        scores: torch.Tensor = self.body(image)[-1]
        return scores
