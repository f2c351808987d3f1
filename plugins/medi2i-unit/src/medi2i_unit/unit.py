"""UNIT: unsupervised image-to-image translation through a shared latent space
(Liu, Breuel and Kautz, NeurIPS 2017), in 3D.

Training objective of one step, with ``x_a``, ``x_b`` unpaired patches of the two
domains and ``z = μ + η`` (:mod:`medi2i_unit.unit_network`)::

    L_G = gan · [LS(D_a(G_a(z_b)), 1) + LS(D_b(G_b(z_a)), 1)]
        + rec · [|G_a(z_a) − x_a|₁ + |G_b(z_b) − x_b|₁]
        + kl · [mean(μ_a²) + mean(μ_b²)]
        + cyc · [|G_a(z_ab) − x_a|₁ + |G_b(z_ba) − x_b|₁]
        + cyc_kl · [mean(μ_ab²) + mean(μ_ba²)]

where ``μ_ab = E_b(G_b(z_a))`` re-encodes the translation; the discriminators then learn
real patches against the detached translations (least squares, multi-scale). Prediction
translates with the latent mean, ``G_target(E_source(x))``, so it has no randomness.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from medi2i_unit.blocks import run_padded
from medi2i_unit.options import UnitCondition, UnitOptions
from medi2i_unit.two_domain import GENERATORS, TwoDomainTranslation
from medi2i_unit.unit_network import UnitNetwork, kl_term

if TYPE_CHECKING:
    from medi2i import TrainerAPI

UNIT_PAPER = (
    "Liu M-Y, Breuel T, Kautz J. Unsupervised image-to-image translation networks. "
    "Advances in Neural Information Processing Systems 30 (NeurIPS), 2017. arXiv:1703.00848"
)


class Unit(TwoDomainTranslation[UnitOptions, UnitCondition]):
    """UNIT in 3D: two VAE-GANs with shared high-level layers, a2b and b2a.

    Example:
        >>> method = Unit({"roi_size": (16, 16, 16), "filters": 4, "blocks": 1,
        ...                "discriminator_filters": 4, "discriminator_layers": 2})
        >>> sorted(method.training_modules())
        ['discriminator_a', 'discriminator_b', 'generators']
    """

    id = "unit"
    version = "0.1.0"
    paper = UNIT_PAPER

    def build_network(self) -> UnitNetwork:
        options = self.options
        return UnitNetwork(
            filters=options.filters,
            downsamples=options.downsamples,
            blocks=options.blocks,
            shared_blocks=options.shared_blocks,
        )

    def forward(self, windows: torch.Tensor, condition: UnitCondition) -> torch.Tensor:
        """Translate windows with the latent mean (no sampled noise)."""
        network = self.network
        assert isinstance(network, UnitNetwork)
        source, target = self.keys(condition)
        return run_padded(
            lambda w: network.translate(w, source, target), windows, 2**self.options.downsamples
        )

    def generator_passes(
        self, trainer: TrainerAPI, real_a: torch.Tensor, real_b: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        passes: dict[str, torch.Tensor] = trainer.modules[GENERATORS](real_a, real_b)
        return passes

    def loss_terms(
        self, passes: Mapping[str, torch.Tensor], real_a: torch.Tensor, real_b: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return unit_terms(dict(passes), real_a, real_b)

    def weighted_terms(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The objective above without its adversarial term."""
        options = self.options
        total: torch.Tensor = (
            options.reconstruction_weight * terms["reconstruction"]
            + options.kl_weight * terms["kl"]
            + options.cycle_weight * terms["cycle"]
            + options.cycle_kl_weight * terms["cycle_kl"]
        )
        return total


def unit_terms(
    passes: dict[str, torch.Tensor], real_a: torch.Tensor, real_b: torch.Tensor
) -> dict[str, torch.Tensor]:
    """UNIT's unweighted non-adversarial terms, each summed over both domains:
    ``reconstruction`` and ``cycle`` (L1 in network units), ``kl`` and ``cycle_kl``
    (``mean(μ²)``)."""

    def l1(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output.float(), target.float())

    return {
        "reconstruction": l1(passes["recon_a"], real_a) + l1(passes["recon_b"], real_b),
        "kl": kl_term(passes["mu_a"]) + kl_term(passes["mu_b"]),
        "cycle": l1(passes["cycle_a"], real_a) + l1(passes["cycle_b"], real_b),
        "cycle_kl": kl_term(passes["mu_ab"]) + kl_term(passes["mu_ba"]),
    }
