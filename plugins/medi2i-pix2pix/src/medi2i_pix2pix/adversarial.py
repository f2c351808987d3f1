"""The Pix2Pix objective and its alternating update.

Pix2Pix (Isola et al. 2017, eq. 4) trains a generator ``G`` and a conditional
discriminator ``D`` on paired images ``(x, y)``::

    G* = arg min_G max_D  L_cGAN(G, D) + λ · E[ |y - G(x)|_1 ]

One training step alternates, as in the paper: first ``D`` learns to tell real pairs
``(x, y)`` from fake ones ``(x, G(x))``, with its loss halved to slow it relative to
``G``; then ``G`` learns to fool the updated ``D`` while staying close to ``y`` in L1.
``G`` maximizes ``log D(x, G(x))`` rather than minimizing ``log(1 - D(x, G(x)))``
(the paper's non-saturating form). With ``lsgan`` the log-likelihoods become squared
distances to 1 (real) and 0 (fake) (Mao et al. 2017), which is often steadier.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from medi2i import TrainerAPI

GanLoss = Literal["vanilla", "lsgan"]

GENERATOR = "generator"
"""Name of the generator's training module and of its optimizer."""
DISCRIMINATOR = "discriminator"
"""Name of the discriminator's training module and of its optimizer."""


def gan_loss(logits: torch.Tensor, *, real: bool, kind: GanLoss) -> torch.Tensor:
    """How far the discriminator's ``logits`` are from calling every patch ``real``
    (or fake).

    Args:
        logits: Discriminator outputs, any shape (unbounded; > 0 leans real).
        real: The label every patch should get.
        kind: ``"vanilla"``: binary cross-entropy of the sigmoid (the paper's);
            ``"lsgan"``: mean squared distance to the label.

    Returns:
        A scalar loss, computed in float32 (safe under mixed precision).
    """
    values = logits.float()
    labels = torch.ones_like(values) if real else torch.zeros_like(values)
    if kind == "vanilla":
        return F.binary_cross_entropy_with_logits(values, labels)
    return F.mse_loss(values, labels)


def adversarial_step(
    batch: Mapping[str, torch.Tensor],
    trainer: TrainerAPI,
    *,
    l1_weight: float,
    kind: GanLoss,
) -> dict[str, float]:
    """One Pix2Pix step: update ``D``, then ``G``, each with its own optimizer.

    ``trainer.backward`` only accumulates gradients into the parameters of the named
    optimizer, so the generator's loss, which flows through ``D``, leaves ``D``
    untouched.

    Args:
        batch: ``source`` (MR patches) and ``target`` (CT patches in [-1, 1]).
        trainer: The trainer, holding modules and optimizers named ``generator`` and
            ``discriminator``.
        l1_weight: λ, the weight of the L1 term (100 in the paper).
        kind: The GAN loss (see :func:`gan_loss`).

    Returns:
        ``discriminator`` (its halved loss), ``generator_gan`` (the generator's
        adversarial loss) and ``l1`` (mean absolute error in network units).
    """
    generator, discriminator = trainer.modules[GENERATOR], trainer.modules[DISCRIMINATOR]
    source, target = batch["source"], batch["target"]
    with trainer.autocast():
        fake = generator(source)
        judged_real = discriminator(source, target)
        # detached: the discriminator's update must not reach the generator
        judged_fake = discriminator(source, fake.detach())
    trainer.watch_generated("fake", fake, target)
    discriminator_loss = 0.5 * (
        gan_loss(judged_real, real=True, kind=kind) + gan_loss(judged_fake, real=False, kind=kind)
    )
    trainer.backward(discriminator_loss, DISCRIMINATOR)
    trainer.step(DISCRIMINATOR)

    with trainer.autocast():
        judged = discriminator(source, fake)
    fooling = gan_loss(judged, real=True, kind=kind)
    l1 = F.l1_loss(fake.float(), target.float())
    trainer.backward(fooling + l1_weight * l1, GENERATOR)
    trainer.step(GENERATOR)
    return {
        "discriminator": float(discriminator_loss.detach()),
        "generator_gan": float(fooling.detach()),
        "l1": float(l1.detach()),
    }
