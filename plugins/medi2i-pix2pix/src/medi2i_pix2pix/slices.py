"""2.5D: 2D networks run slice by slice on volumes, with neighbouring slices as channels.

A volume ``(B, 1, X, Y, Z)`` becomes ``B·Z`` axial images ``(k, X, Y)``: slice ``z`` and
its ``k // 2`` neighbours on each side, the volume's first and last slices repeated
past its ends. The 2D network's per-slice outputs are stacked back into a volume, so
the core's sliding window and the trainer see a network of volumes like any other.
Axial is the last array axis, which is inferior-superior once the volume is in RAS
orientation (the method's spatial plan).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medi2i_pix2pix.discriminator import PatchDiscriminator


def axial_context(volumes: torch.Tensor, slices: int) -> torch.Tensor:
    """Every axial slice of ``(B, 1, X, Y, Z)`` with its neighbours as channels.

    Args:
        volumes: Single-channel volumes.
        slices: Slices per image (odd): the slice itself and ``slices // 2`` on each
            side, edge slices replicated.

    Returns:
        ``(B·Z, slices, X, Y)``, slice ``z`` of volume ``b`` at index ``b·Z + z``.

    Example:
        >>> axial_context(torch.arange(3.0).reshape(1, 1, 1, 1, 3), 3)[:, :, 0, 0]
        tensor([[0., 0., 1.],
                [0., 1., 2.],
                [1., 2., 2.]])
    """
    half = slices // 2
    batch, _, x, y, z = volumes.shape
    # replicate padding needs a batch and channel axis around the padded ones
    padded = F.pad(volumes, (half, half, 0, 0, 0, 0), mode="replicate")
    windows = padded.unfold(4, slices, 1)  # (B, 1, X, Y, Z, slices)
    return windows[:, 0].permute(0, 3, 4, 1, 2).reshape(batch * z, slices, x, y)


def axial_slices(volumes: torch.Tensor) -> torch.Tensor:
    """``(B, C, X, Y, Z)`` as ``(B·Z, C, X, Y)`` (see :func:`axial_context`)."""
    batch, channels, x, y, z = volumes.shape
    return volumes.permute(0, 4, 1, 2, 3).reshape(batch * z, channels, x, y)


def stacked(images: torch.Tensor, batch: int) -> torch.Tensor:
    """Inverse of :func:`axial_slices`: ``(B·Z, C, X, Y)`` to ``(B, C, X, Y, Z)``."""
    count, channels, x, y = images.shape
    return images.reshape(batch, count // batch, channels, x, y).permute(0, 2, 3, 4, 1)


class SliceStackGenerator(torch.nn.Module):
    """A 2D generator applied to every axial slice of a volume, with context slices.

    Args:
        generator: The 2D generator; its input channels must equal ``slices``.
        slices: Slices per 2D input (odd).
    """

    def __init__(self, generator: torch.nn.Module, *, slices: int) -> None:
        super().__init__()
        self.generator = generator
        self.slices = slices

    def forward(self, volumes: torch.Tensor) -> torch.Tensor:
        """Translate ``(B, 1, X, Y, Z)`` to ``(B, C', X, Y, Z)``."""
        output: torch.Tensor = self.generator(axial_context(volumes, self.slices))
        return stacked(output, volumes.shape[0])


class SliceStackDiscriminator(torch.nn.Module):
    """A 2D PatchGAN judging every axial slice of a target with its source context.

    Args:
        discriminator: The 2D discriminator; its input channels must equal
            ``slices`` plus the target's channels.
        slices: Source slices per 2D input (odd).
    """

    def __init__(self, discriminator: PatchDiscriminator, *, slices: int) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.slices = slices

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Logits ``(B·Z, 1, X', Y')`` for the axial slices of ``(source, target)``."""
        logits: torch.Tensor = self.discriminator(
            axial_context(source, self.slices), axial_slices(target)
        )
        return logits
