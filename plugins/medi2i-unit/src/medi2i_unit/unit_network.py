"""UNIT's generators: two VAEs whose high-level layers are shared (Liu et al. 2017).

Each domain has an encoder ``E`` and a decoder (the paper's generator) ``G``. The last
residual blocks of the encoders and the first residual blocks of the decoders are one
set of weights for both domains, which ties the two latent spaces into one: a code from
``E_a`` decoded by ``G_b`` is the translation a → b. The latent is a feature map; the
encoder gives its mean ``μ``, and training samples ``z = μ + η`` with ``η ~ N(0, I)``
(a VAE with unit variance, so the KL term reduces to ``mean(μ²)``).

Layers (paper: 2D, 64 features): a 7-wide convolution, ``downsamples`` 3-wide stride-2
convolutions doubling the features, residual blocks (instance norm), then the shared
blocks; decoders mirror them with 3-wide stride-2 transposed convolutions and a 1-wide
convolution with tanh.
"""

from __future__ import annotations

import torch

from medi2i_unit.blocks import ResidualBlock, conv, up_conv


def _encoder(filters: int, downsamples: int, blocks: int) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = [conv(1, filters, kernel=7)]
    for level in range(downsamples):
        layers.append(conv(filters * 2**level, filters * 2 ** (level + 1), kernel=3, stride=2))
    width = filters * 2**downsamples
    layers += [ResidualBlock(width) for _ in range(blocks)]
    return torch.nn.Sequential(*layers)


def _decoder(filters: int, downsamples: int, blocks: int) -> torch.nn.Sequential:
    width = filters * 2**downsamples
    layers: list[torch.nn.Module] = [ResidualBlock(width) for _ in range(blocks)]
    for level in reversed(range(downsamples)):
        layers.append(up_conv(filters * 2 ** (level + 1), filters * 2**level))
    layers += [torch.nn.Conv3d(filters, 1, kernel_size=1), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers)


class UnitNetwork(torch.nn.Module):
    """Both domains' VAEs with shared high-level layers.

    Args:
        filters: Features of the first convolution (paper: 64).
        downsamples: Stride-2 stages (paper: 2); windows must be multiples of
            ``2**downsamples``.
        blocks: Residual blocks of each domain's own encoder and decoder (paper: 3).
        shared_blocks: Residual blocks shared by the encoders, and as many shared by
            the decoders (paper: 1).

    Example:
        >>> net = UnitNetwork(filters=4, downsamples=2, blocks=1, shared_blocks=1)
        >>> net.translate(torch.zeros(1, 1, 8, 8, 8), "a", "b").shape
        torch.Size([1, 1, 8, 8, 8])
    """

    def __init__(self, *, filters: int, downsamples: int, blocks: int, shared_blocks: int) -> None:
        super().__init__()
        width = filters * 2**downsamples
        self.encoders = torch.nn.ModuleDict(
            {d: _encoder(filters, downsamples, blocks) for d in ("a", "b")}
        )
        self.decoders = torch.nn.ModuleDict(
            {d: _decoder(filters, downsamples, blocks) for d in ("a", "b")}
        )
        self.shared_encoder = torch.nn.Sequential(
            *[ResidualBlock(width) for _ in range(shared_blocks)]
        )
        self.shared_decoder = torch.nn.Sequential(
            *[ResidualBlock(width) for _ in range(shared_blocks)]
        )

    def encode(self, image: torch.Tensor, domain: str) -> torch.Tensor:
        """The latent mean ``μ`` of ``image`` of ``domain`` (``"a"`` or ``"b"``)."""
        mean: torch.Tensor = self.shared_encoder(self.encoders[domain](image))
        return mean

    def decode(self, latent: torch.Tensor, domain: str) -> torch.Tensor:
        """The image of ``domain`` that ``latent`` stands for, in [-1, 1]."""
        image: torch.Tensor = self.decoders[domain](self.shared_decoder(latent))
        return image

    def translate(self, image: torch.Tensor, source: str, target: str) -> torch.Tensor:
        """``G_target(μ)`` with ``μ = E_source(image)``: deterministic, no noise."""
        return self.decode(self.encode(image, source), target)

    def forward(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every generator-side tensor of one training step (one forward call, so a
        distributed wrapper sees the whole generator pass).

        Returns:
            ``mu_a``, ``mu_b`` (latent means), ``recon_a``, ``recon_b`` (within-domain
            reconstructions), ``fake_ab``, ``fake_ba`` (translations),
            ``mu_ab``, ``mu_ba`` (latent means of the translations, re-encoded),
            ``cycle_a``, ``cycle_b`` (back to where they started).
        """
        mu_a, mu_b = self.encode(real_a, "a"), self.encode(real_b, "b")
        z_a, z_b = sampled(mu_a), sampled(mu_b)
        fake_ab, fake_ba = self.decode(z_a, "b"), self.decode(z_b, "a")
        mu_ab, mu_ba = self.encode(fake_ab, "b"), self.encode(fake_ba, "a")
        return {
            "mu_a": mu_a,
            "mu_b": mu_b,
            "recon_a": self.decode(z_a, "a"),
            "recon_b": self.decode(z_b, "b"),
            "fake_ab": fake_ab,
            "fake_ba": fake_ba,
            "mu_ab": mu_ab,
            "mu_ba": mu_ba,
            "cycle_a": self.decode(sampled(mu_ab), "a"),
            "cycle_b": self.decode(sampled(mu_ba), "b"),
        }


def sampled(mean: torch.Tensor) -> torch.Tensor:
    """``mean + η``, ``η ~ N(0, I)`` from torch's global generator (reseeded by the
    trainer every step, so a resumed run draws the same noise)."""
    return mean + torch.randn_like(mean)


def kl_term(mean: torch.Tensor) -> torch.Tensor:
    """UNIT's KL divergence of ``N(μ, I)`` from ``N(0, I)`` up to constants:
    ``mean(μ²)`` (the paper's ``½ Σ μ²``, averaged instead of summed)."""
    return (mean.float() ** 2).mean()
