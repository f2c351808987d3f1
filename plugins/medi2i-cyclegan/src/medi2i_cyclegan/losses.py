"""The objectives of CycleGAN (Zhu et al. 2017) and DiscoGAN (Kim et al. 2017).

Every function takes and returns tensors and computes in float32 (safe under mixed
precision). Notation: ``G: a → b`` and ``F: b → a`` are the generators, ``D_a`` and
``D_b`` the discriminators of the two domains.

CycleGAN (eq. 1-3 and section 4, with the least-squares GAN of Mao et al. 2017)::

    L_GAN(G, D_b) = E_b[(D_b(b) - 1)²] + E_a[D_b(G(a))²]     (D minimizes; halved)
    generator side: E_a[(D_b(G(a)) - 1)²]
    L_cyc = E_a[|F(G(a)) - a|_1] + E_b[|G(F(b)) - b|_1]
    L_identity = E_b[|G(b) - b|_1] + E_a[|F(a) - a|_1]
    L = L_GAN(G) + L_GAN(F) + λ L_cyc + λ_idt λ L_identity     (λ = 10, λ_idt = 0.5)

DiscoGAN (eq. 1-5, with the feature matching and the mixing of the authors' code)::

    L_D_b = -E_b[log D_b(b)] - E_a[log(1 - D_b(G(a)))]      (halved in the code)
    L_GAN_b = -E_a[log D_b(G(a))]
    L_FM_b = Σ_layers mean over features of (E_b[f(b)] - E_a[f(G(a))])²
    L_CONST_a = E_a[(F(G(a)) - a)²]                          (reconstruction, MSE)
    L_G = Σ over both directions of
          ((1 - w_fm) L_GAN + w_fm L_FM) (1 - r) + r L_CONST    (w_fm = 0.9, r = 0.01 → 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def least_squares_gan(scores: torch.Tensor, *, real: bool) -> torch.Tensor:
    """LSGAN loss: the mean squared distance of the discriminator's ``scores`` to 1
    (``real``) or 0 (fake)."""
    return ((scores.float() - (1.0 if real else 0.0)) ** 2).mean()


def least_squares_discriminator(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """A CycleGAN discriminator's loss on scores of real and (pooled) fake images,
    halved to slow the discriminator relative to the generator, as in the paper."""
    return 0.5 * (least_squares_gan(real, real=True) + least_squares_gan(fake, real=False))


def cycle_consistency(reconstructed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """CycleGAN's cycle (and identity) loss: mean absolute difference (L1)."""
    return F.l1_loss(reconstructed.float(), original.float())


def binary_gan(logits: torch.Tensor, *, real: bool) -> torch.Tensor:
    """The cross-entropy GAN loss of DiscoGAN on logits (the sigmoid is inside, which is
    the paper's ``-log D`` or ``-log(1 - D)`` computed stably)."""
    values = logits.float()
    labels = torch.ones_like(values) if real else torch.zeros_like(values)
    return F.binary_cross_entropy_with_logits(values, labels)


def binary_discriminator(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """A DiscoGAN discriminator's loss on logits of real and generated images, each
    term halved as in the authors' code."""
    return 0.5 * (binary_gan(real, real=True) + binary_gan(fake, real=False))


def feature_matching(
    real_features: Sequence[torch.Tensor], fake_features: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Feature matching (Salimans et al. 2016) as DiscoGAN uses it: for each
    discriminator layer, the squared difference of the batch means of real and
    generated features, averaged over the feature map; summed over the layers."""
    total = torch.zeros((), dtype=torch.float32, device=real_features[0].device)
    for real, fake in zip(real_features, fake_features, strict=True):
        difference = real.float().mean(dim=0) - fake.float().mean(dim=0)
        total = total + (difference**2).mean()
    return total


def reconstruction(reconstructed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """DiscoGAN's reconstruction loss ``L_CONST``: mean squared error."""
    return F.mse_loss(reconstructed.float(), original.float())


def discogan_direction(
    *,
    gan: torch.Tensor,
    features: torch.Tensor,
    reconstructed: torch.Tensor,
    feature_matching_weight: float,
    reconstruction_weight: float,
) -> torch.Tensor:
    """One direction's generator loss of DiscoGAN: the adversarial terms (GAN and feature
    matching, mixed ``1 - w_fm`` to ``w_fm``) against the reconstruction, mixed
    ``1 - r`` to ``r``."""
    adversarial = (1.0 - feature_matching_weight) * gan + feature_matching_weight * features
    return (1.0 - reconstruction_weight) * adversarial + reconstruction_weight * reconstructed
