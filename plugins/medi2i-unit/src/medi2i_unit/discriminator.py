"""The multi-scale least-squares discriminator of UNIT and MUNIT, in 3D.

Both papers' public descriptions judge an image at several scales: the same patch
discriminator (stride-2 4-wide convolutions with leaky ReLU 0.2 and no normalization,
then a 1-wide convolution to one score per patch) applied to the image and to copies
average-pooled by 2, 4, … (Wang et al. 2018's multi-scale design), each scored with the
least-squares GAN loss (Mao et al. 2017). A coarse scale sees global intensity and shape,
a fine one texture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medi2i import OptionsError
from medi2i_unit.blocks import conv

LEAKY = ("LEAKYRELU", {"negative_slope": 0.2})


def smallest_input(layers: int, scales: int) -> int:
    """The smallest patch side (voxels) a discriminator of ``layers`` stride-2 stages at
    ``scales`` scales judges: its coarsest copy must keep ``2**layers`` voxels."""
    return int(2 ** (layers + scales - 1))


class MultiScaleDiscriminator(torch.nn.Module):
    """Patch discriminators at ``scales`` scales of one image.

    Args:
        filters: Features of the first stage (64 in the papers), doubled per stage.
        layers: Stride-2 stages per scale (4 in the papers).
        scales: Number of scales (3 in the papers).

    Example:
        >>> d = MultiScaleDiscriminator(filters=4, layers=2, scales=2)
        >>> [tuple(s.shape) for s in d(torch.zeros(1, 1, 16, 16, 16))]
        [(1, 1, 4, 4, 4), (1, 1, 2, 2, 2)]
    """

    def __init__(self, *, filters: int, layers: int, scales: int) -> None:
        super().__init__()
        self.layers, self.scales = layers, scales
        self.judges = torch.nn.ModuleList([self._judge(filters, layers) for _ in range(scales)])

    @staticmethod
    def _judge(filters: int, layers: int) -> torch.nn.Sequential:
        stages: list[torch.nn.Module] = []
        channels = 1
        for stage in range(layers):
            width = filters * 2**stage
            stages.append(conv(channels, width, kernel=4, stride=2, norm=None, act=LEAKY))
            channels = width
        stages.append(torch.nn.Conv3d(channels, 1, kernel_size=1))
        return torch.nn.Sequential(*stages)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Score maps, finest scale first.

        Raises:
            OptionsError: The patches are smaller than :func:`smallest_input`.
        """
        needed = smallest_input(self.layers, self.scales)
        if min(int(n) for n in image.shape[2:]) < needed:
            raise OptionsError(
                f"training patches of {tuple(image.shape[2:])} voxels are too small for a "
                f"discriminator of {self.layers} layers at {self.scales} scales (it needs "
                f"at least {needed} per axis); use larger patches, or fewer "
                "discriminator_layers or discriminator_scales"
            )
        scores = []
        for judge in self.judges:
            scores.append(judge(image))
            image = F.avg_pool3d(image, 3, stride=2, padding=1, count_include_pad=False)
        return scores


def lsgan_loss(scores: list[torch.Tensor], label: float) -> torch.Tensor:
    """Least-squares GAN loss summed over scales: mean of ``(score − label)²`` at each
    (label 1 for real, 0 for fake), in float32."""
    return torch.stack([((s.float() - label) ** 2).mean() for s in scores]).sum()
