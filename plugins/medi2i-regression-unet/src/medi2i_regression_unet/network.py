"""The network: an nnU-Net-style 3D U-Net (MONAI ``DynUNet``) with a linear output.

nnU-Net's 3D full-resolution configuration is a U-Net of 3×3×3 convolutions, instance
normalization and leaky ReLU (slope 0.01), doubling its features at every stride-2
downsampling up to a cap of 320, with two convolutions per stage. The residual variant
(residual encoder blocks) is the one nnU-Net's authors recommend since 2024. For
regression the segmentation head becomes one linear output channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from monai.networks.nets.dynunet import DynUNet

Upsampling = Literal["transposed", "icnr", "resize"]
"""How the decoder doubles the resolution: nnU-Net's transposed convolution (kernel 2,
stride 2), the same initialized free of the checkerboard (ICNR), or trilinear resizing
followed by a 3-wide convolution."""

NetworkNorm = Literal["instance", "batch"]
"""Normalization layers of the U-Net: per window (``"instance"``, nnU-Net's) or with
statistics learned over training (``"batch"``)."""


class ResidualUNet(torch.nn.Module):
    """A 3D U-Net that accepts windows of any size.

    A U-Net with ``k`` stride-2 stages needs sizes divisible by ``2**k``; windows that
    are not (a user's ``--roi-size``, a volume thinner than the window) are padded at
    their far end by edge replication and the output is cropped back, so the sliding
    window and the trainer may hand it any size.

    Args:
        in_channels: Input channels (1 for one MR contrast).
        out_channels: Output channels (1 for CT).
        filters: Features of each stage, from full resolution to the bottleneck; every
            stage after the first halves the resolution.
        residual: Residual blocks (``True``) or plain two-convolution blocks.
        norm: ``"instance"`` normalizes each window's features by that window's own
            statistics, so a voxel's output depends on where the sliding window's borders
            fall (visible as tiling); ``"batch"`` uses statistics gathered in training,
            so in evaluation every window is normalized the same way.
        upsampling: ``"transposed"`` (nnU-Net): a transposed convolution of kernel 2 and
            stride 2, which gives each of the 2 × 2 × 2 output voxels of an input voxel
            its own weights, so a periodic pattern of 2 (a checkerboard) can appear in
            the output; ``"icnr"``: the same transposed convolutions, initialized with
            one set of weights for all eight output voxels (nearest-neighbour
            upsampling followed by a 1 × 1 × 1 convolution: Aitken et al.,
            "Checkerboard artifact free sub-pixel convolution", arXiv:1707.02937,
            2017), so they start without a checkerboard and training decides how far
            the eight drift apart; ``"resize"``: trilinear resizing, then a 3-wide convolution
            (Odena, Dumoulin & Olah, "Deconvolution and checkerboard artifacts",
            Distill 2016), which treats every output voxel alike.
        track_statistics: With instance normalization, also keep running averages of
            the statistics seen in training; in evaluation mode the layers then use
            those instead of each window's own (see :func:`freeze_statistics`).

    Example:
        >>> net = ResidualUNet(in_channels=1, out_channels=1, filters=(4, 8, 16), residual=True)
        >>> net(torch.zeros(1, 1, 10, 12, 8)).shape
        torch.Size([1, 1, 10, 12, 8])
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        filters: Sequence[int],
        residual: bool,
        norm: NetworkNorm = "instance",
        track_statistics: bool = False,
        upsampling: Upsampling = "transposed",
    ) -> None:
        super().__init__()
        stages = len(filters)
        strides = [1] + [2] * (stages - 1)
        self.divisor = 2 ** (stages - 1)
        self.unet = DynUNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=[3] * stages,
            strides=strides,
            upsample_kernel_size=strides[1:],
            filters=list(filters),
            norm_name=(
                norm.upper(),
                {"affine": True, "track_running_stats": True}
                if track_statistics and norm == "instance"
                else {"affine": True},
            ),
            act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
            res_block=residual,
        )
        if upsampling == "resize":
            # each up block's transposed convolution, replaced in place: DynUNet refers to
            # its blocks from two places, which keep pointing at the same block
            for block in self.unet.upsamples:
                transposed = block.transp_conv.conv
                block.transp_conv = ResizeConvolution(
                    transposed.in_channels, transposed.out_channels, scale=2
                )
        elif upsampling == "icnr":
            for block in self.unet.upsamples:
                nearest_neighbour_init(block.transp_conv.conv)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Map windows ``(B, C, X, Y, Z)`` to outputs of the same spatial size."""
        size = windows.shape[2:]
        padded = pad_to_multiple(windows, self.divisor)
        output: torch.Tensor = self.unet(padded)
        return output[..., : size[0], : size[1], : size[2]]


class ResizeConvolution(torch.nn.Module):
    """Upsampling without a checkerboard: trilinear resizing by ``scale``, then a 3-wide
    convolution (no bias, as DynUNet's transposed convolutions).

    Example:
        >>> up = ResizeConvolution(4, 2, scale=2)
        >>> up(torch.zeros(1, 4, 3, 5, 2)).shape
        torch.Size([1, 2, 6, 10, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, *, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.conv = torch.nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Resize ``(B, C, X, Y, Z)`` by ``scale`` on every axis, then convolve."""
        resized = F.interpolate(
            features, scale_factor=self.scale, mode="trilinear", align_corners=False
        )
        output: torch.Tensor = self.conv(resized)
        return output


def nearest_neighbour_init(transposed: torch.nn.ConvTranspose3d) -> None:
    """Give every output position of a transposed convolution whose kernel equals its
    stride the weights of the first, as initialized: the layer then computes
    nearest-neighbour upsampling followed by a 1 × 1 × 1 convolution (ICNR)."""
    if tuple(transposed.kernel_size) != tuple(transposed.stride):
        raise ValueError(
            f"ICNR needs kernel size = stride, got {transposed.kernel_size} and {transposed.stride}"
        )
    with torch.no_grad():
        first = transposed.weight[:, :, :1, :1, :1].clone()  # no copy from itself
        transposed.weight.copy_(first.expand_as(transposed.weight))


_NORMS = (torch.nn.InstanceNorm3d, torch.nn.BatchNorm3d)


def freeze_statistics(network: torch.nn.Module) -> None:
    """Put every normalization layer that keeps running statistics in evaluation mode:
    it normalizes with those statistics and stops updating them, while the rest of the
    network trains on. Layers without running statistics are left alone."""
    for module in network.modules():
        if isinstance(module, _NORMS) and module.track_running_stats:
            module.eval()


def pad_to_multiple(volume: torch.Tensor, divisor: int) -> torch.Tensor:
    """Pad the spatial axes of ``(B, C, X, Y, Z)`` at their far end to multiples of
    ``divisor``, replicating edge voxels (zeros would add false edges)."""
    missing = [-n % divisor for n in volume.shape[2:]]  # symbolic under torch.export
    if not any(missing):
        return volume
    widths = [w for axis in reversed(missing) for w in (0, axis)]  # F.pad: last axis first
    return F.pad(volume, widths, mode="replicate")


def unique_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state dict with every tensor once, under the first name it has.

    ``DynUNet`` registers each of its blocks twice (in its stage lists and in the
    nested skip-connection tree), so its state dict names every tensor twice;
    safetensors refuses to store tensors that share memory.
    """
    seen: set[int] = set()
    unique: dict[str, torch.Tensor] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            unique[name] = tensor.detach()
    return unique


def expand_aliases(
    module: torch.nn.Module, tensors: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The full state dict of ``module`` from what :func:`unique_state` returned: every
    alias of a tensor gets the tensor stored under its first name."""
    first_name: dict[int, str] = {}
    full: dict[str, torch.Tensor] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        canonical = first_name.setdefault(id(tensor), name)
        if canonical in tensors:
            full[name] = tensors[canonical]
    return full
