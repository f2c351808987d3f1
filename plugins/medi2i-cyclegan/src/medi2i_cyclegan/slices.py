"""2.5D: the papers' 2D networks run on the axial slices of volume patches.

A patch ``(B, 1, X, Y, Z)`` becomes ``B·Z`` images ``(k, X, Y)``: axial slice ``z`` with
its ``k // 2`` neighbours on each side as channels (the first and last slice repeated
past the patch's ends). A generator's per-slice outputs are stacked back into a patch,
so the sliding window, the cycle and the image pool see volumes as in 3D; a
discriminator judges every slice (with the same neighbours), so it asks each slice to
look like one of the domain and the neighbours to fit it. Axial is the last array axis:
the 2.5D methods work in RAS orientation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def slices_with_neighbours(volumes: torch.Tensor, count: int) -> torch.Tensor:
    """Every axial slice of ``(B, 1, X, Y, Z)`` with its neighbours as channels.

    Args:
        volumes: Single-channel volume patches.
        count: Slices per image, odd: the slice and ``count // 2`` on each side.

    Returns:
        ``(B·Z, count, X, Y)``; slice ``z`` of patch ``b`` at index ``b·Z + z``.

    Example:
        >>> slices_with_neighbours(torch.arange(3.0).view(1, 1, 1, 1, 3), 3)[:, :, 0, 0]
        tensor([[0., 0., 1.],
                [0., 1., 2.],
                [1., 2., 2.]])
    """
    half = count // 2
    batch, _, x, y, z = volumes.shape
    padded = F.pad(volumes, (half, half, 0, 0, 0, 0), mode="replicate")  # along z only
    shifted = [padded[:, 0, :, :, offset : offset + z] for offset in range(count)]
    stack = torch.stack(shifted, dim=1)  # (B, count, X, Y, Z)
    return stack.permute(0, 4, 1, 2, 3).reshape(batch * z, count, x, y)


def restack(images: torch.Tensor, batch: int) -> torch.Tensor:
    """``(B·Z, C, X, Y)`` back to patches ``(B, C, X, Y, Z)``."""
    count, channels, x, y = images.shape
    return images.reshape(batch, count // batch, channels, x, y).permute(0, 2, 3, 4, 1)


class SliceGenerator(torch.nn.Module):
    """A 2D generator on every axial slice (with neighbours) of volume patches.

    Args:
        generator: The 2D network; its input channels must be ``count``.
        count: Slices per 2D input (odd).

    Example:
        >>> identity = torch.nn.Conv2d(3, 1, 1)
        >>> SliceGenerator(identity, count=3)(torch.zeros(2, 1, 8, 8, 5)).shape
        torch.Size([2, 1, 8, 8, 5])
    """

    def __init__(self, generator: torch.nn.Module, *, count: int) -> None:
        super().__init__()
        self.generator = generator
        self.count = count

    def forward(self, volumes: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.generator(slices_with_neighbours(volumes, self.count))
        return restack(output, volumes.shape[0])


class SliceDiscriminator(torch.nn.Module):
    """A 2D discriminator on every axial slice (with neighbours) of volume patches.

    Whatever the 2D network returns (scores, or DiscoGAN's logits and features) is
    returned per slice, the slices of all patches forming the batch.

    Args:
        discriminator: The 2D network; its input channels must be ``count``.
        count: Slices per 2D input (odd).
    """

    def __init__(self, discriminator: torch.nn.Module, *, count: int) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.count = count

    def forward(self, volumes: torch.Tensor) -> object:
        return self.discriminator(slices_with_neighbours(volumes, self.count))
