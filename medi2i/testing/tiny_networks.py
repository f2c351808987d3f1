"""Small 3D networks and the least-squares GAN loss of the adversarial examples.

They are sized for tests on the CPU (a few thousand parameters) and show the shapes a
real method scales up: an image-to-image generator, a patch discriminator, a generator
conditioned on a target domain and a discriminator with a domain classifier.
"""

from __future__ import annotations

import torch
from torch import nn


def small_generator(channels_in: int, hidden: int, channels_out: int = 1) -> nn.Module:
    """Three convolutions ending in ``tanh``: outputs lie in the network range [-1, 1].

    Args:
        channels_in: Input channels.
        hidden: Feature channels of the two hidden layers.
        channels_out: Output channels.
    """
    return nn.Sequential(
        nn.Conv3d(channels_in, hidden, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv3d(hidden, hidden, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv3d(hidden, channels_out, 1),
        nn.Tanh(),
    )


def small_discriminator(channels_in: int, hidden: int) -> nn.Module:
    """A patch discriminator: one score per region of half the input's resolution.

    Args:
        channels_in: Input channels.
        hidden: Feature channels.
    """
    return nn.Sequential(
        nn.Conv3d(channels_in, hidden, 3, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv3d(hidden, 1, 3, padding=1),
    )


class ConditionedGenerator(nn.Module):
    """A generator told which domain to produce by one-hot channels (StarGAN's input).

    The one-hot code of the target domain is repeated over space and appended to the
    image as extra channels.

    Args:
        channels: Image channels in and out.
        domains: Number of domains (length of the one-hot code).
        hidden: Feature channels of the hidden layers.
    """

    def __init__(self, channels: int, domains: int, hidden: int) -> None:
        super().__init__()
        self.domains = domains
        self.body = small_generator(channels + domains, hidden, channels)

    def forward(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Translate ``image`` ``(N, C, X, Y, Z)`` to the domains ``target`` ``(N,)``."""
        code = nn.functional.one_hot(target, self.domains).to(image.dtype)
        planes = code[:, :, None, None, None].expand(-1, -1, *image.shape[2:])
        output: torch.Tensor = self.body(torch.cat([image, planes], dim=1))
        return output


class ClassifyingDiscriminator(nn.Module):
    """A patch discriminator with an auxiliary domain classifier (StarGAN's critic).

    Args:
        channels: Image channels.
        domains: Number of domains the classifier tells apart.
        hidden: Feature channels.
    """

    def __init__(self, channels: int, domains: int, hidden: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(channels, hidden, 3, stride=2, padding=1), nn.LeakyReLU(0.2)
        )
        self.scores = nn.Conv3d(hidden, 1, 3, padding=1)
        self.classes = nn.Conv3d(hidden, domains, 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Real/fake scores ``(N, 1, ...)`` and domain logits ``(N, domains)``."""
        features = self.features(image)
        logits = self.classes(features).mean(dim=(2, 3, 4))
        scores: torch.Tensor = self.scores(features)
        return scores, logits


def least_squares(scores: torch.Tensor, label: float) -> torch.Tensor:
    """The least-squares GAN loss (Mao et al. 2017): mean of ``(scores - label)²``.

    Args:
        scores: Discriminator outputs.
        label: 1.0 for "real", 0.0 for "fake".
    """
    return ((scores.float() - label) ** 2).mean()
