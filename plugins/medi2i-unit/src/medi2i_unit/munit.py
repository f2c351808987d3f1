"""MUNIT: multimodal unsupervised image-to-image translation (Huang, Liu, Belongie and
Kautz, ECCV 2018), in 3D.

Training objective of one step, with ``x_a``, ``x_b`` unpaired patches, ``(c, s)`` their
content and style codes, ``s'`` styles drawn from ``N(0, I)`` and ``G`` the AdaIN
decoders (:mod:`medi2i_unit.munit_network`)::

    L_G = gan · [LS(D_a(G_a(c_b, s'_a)), 1) + LS(D_b(G_b(c_a, s'_b)), 1)]
        + rec · [|G_a(c_a, s_a) − x_a|₁ + |G_b(c_b, s_b) − x_b|₁]        (image)
        + content · [|E^c_b(x_ab) − c_a|₁ + |E^c_a(x_ba) − c_b|₁]
        + style · [|E^s_b(x_ab) − s'_b|₁ + |E^s_a(x_ba) − s'_a|₁]
        + cycle · [|G_a(E^c_b(x_ab), s_a) − x_a|₁ + |G_b(E^c_a(x_ba), s_b) − x_b|₁]

then the multi-scale least-squares discriminators on real patches against the detached
translations.

At predict time the content of the input is decoded with a style of the target domain:
drawn from ``N(0, I)`` with a seed (the condition's ``style_seed``, else the
prediction's seed; both are in the output's provenance), several such styles as named
outputs (``styles``), or the style encoded from a reference volume of the target domain
(``style_reference``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from medi2i import OptionsError, Output, PredictContext
from medi2i_unit.blocks import run_padded
from medi2i_unit.munit_network import MunitNetwork
from medi2i_unit.options import MunitCondition, MunitOptions
from medi2i_unit.style_reference import read_style_reference, reference_digest
from medi2i_unit.two_domain import GENERATORS, TwoDomainTranslation

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i import TrainerAPI

MUNIT_PAPER = (
    "Huang X, Liu M-Y, Belongie S, Kautz J. Multimodal unsupervised image-to-image "
    "translation. European Conference on Computer Vision (ECCV), 2018. arXiv:1804.04732"
)


class Munit(TwoDomainTranslation[MunitOptions, MunitCondition]):
    """MUNIT in 3D: content and style encoders and an AdaIN decoder per domain.

    Example:
        >>> method = Munit({"roi_size": (16, 16, 16), "filters": 4, "blocks": 1,
        ...                 "style_downsamples": 2, "mlp_features": 8,
        ...                 "discriminator_filters": 4, "discriminator_layers": 2})
        >>> method.use_domains(["scanner-b", "scanner-a"])
        >>> [o.name for o in method.outputs(method.parse_condition({"styles": 2}))]
        ['style-0', 'style-1']
    """

    id = "munit"
    version = "0.1.0"
    paper = MUNIT_PAPER

    def build_network(self) -> MunitNetwork:
        options = self.options
        return MunitNetwork(
            filters=options.filters,
            downsamples=options.downsamples,
            blocks=options.blocks,
            style_dim=options.style_dim,
            style_downsamples=options.style_downsamples,
            mlp_features=options.mlp_features,
        )

    @property
    def munit(self) -> MunitNetwork:
        """The network, typed."""
        network = self.network
        assert isinstance(network, MunitNetwork)
        return network

    # -- conditions and outputs ----------------------------------------------------------

    def check_condition(self, condition: MunitCondition) -> None:
        super().check_condition(condition)
        reference = condition.style_reference
        if reference is not None and not _exists(reference):
            raise OptionsError(
                f"style_reference {reference!r} does not exist; give a volume of the "
                f"target domain {self.endpoints(condition)[1]!r}"
            )

    def outputs(self, condition: MunitCondition) -> tuple[Output, ...]:
        """One output per style: unnamed for one style, ``style-<i>`` for several; each
        records where its style came from (seed and index, or the reference's path and
        SHA-256: of a file's bytes, or of the volume read from a folder, as for the input;
        see :func:`~medi2i_unit.style_reference.reference_digest`)."""
        (single,) = super().outputs(condition)
        base = dict(single.condition)
        if condition.style_reference is not None:
            digest = reference_digest(condition.style_reference)
            record = {
                **base,
                "style_reference": condition.style_reference,
                "style_reference_sha256": None if digest is None else digest[0],
                "style_reference_hashed": None if digest is None else digest[1],
            }
            return (Output("", single.spec, domain=single.domain, condition=record),)
        seed = condition.style_seed if condition.style_seed is not None else "settings.seed"
        named = condition.styles > 1
        return tuple(
            Output(
                f"style-{index}" if named else "",
                single.spec,
                domain=single.domain,
                condition={**base, "style_seed": seed, "style_index": index},
            )
            for index in range(condition.styles)
        )

    # -- prediction --------------------------------------------------------------------

    def style_codes(
        self, image: MetaTensor, context: PredictContext[MunitCondition]
    ) -> torch.Tensor:
        """The style codes ``(outputs, style_dim)`` of the condition, in output order."""
        condition = context.condition
        target_key = self.keys(condition)[1]
        if condition.style_reference is not None:
            reference = read_style_reference(
                condition.style_reference,
                like=image,
                plan=self.spatial_plan(),
                preprocess=lambda volume: self.preprocess(
                    volume, domain=self.endpoints(condition)[1], condition=condition
                ),
                smallest=2**self.options.style_downsamples,
            )
            encoder = self.munit.autoencoder(target_key).style
            with torch.no_grad():
                encoder.eval()
                code: torch.Tensor = encoder(reference.as_tensor()[None].to(context.device))
            return code.detach().cpu()
        seed = condition.style_seed if condition.style_seed is not None else context.seed
        generator = torch.Generator().manual_seed(seed)
        # one draw per style: a prefix of the draws does not depend on how many follow
        rows = [
            torch.randn(self.options.style_dim, generator=generator)
            for _ in range(condition.styles)
        ]
        return torch.stack(rows)

    def predict(
        self, image: MetaTensor, context: PredictContext[MunitCondition]
    ) -> Mapping[str, torch.Tensor]:
        """The input's content decoded with each style of the condition, window by
        window; deterministic for a given condition and seed."""
        source_key, target_key = self.keys(context.condition)
        codes = self.style_codes(image, context)
        results: dict[str, torch.Tensor] = {}
        for output, code in zip(self.outputs(context.condition), codes, strict=True):

            def predictor(windows: torch.Tensor, style: torch.Tensor = code) -> torch.Tensor:
                return self.translate(windows, source_key, target_key, style)

            results[output.name] = context.engine.run(
                image,
                predictor,
                modules=[self.network],
                default_roi_size=self.roi_size(),
                output_scale=self.output_scale,
            )
        return results

    def export_refusal(self, condition: MunitCondition) -> str | None:
        """MUNIT predicts with the condition's styles, not through :meth:`forward`."""
        return (
            "its prediction decodes with styles drawn from a seed or taken from a reference "
            "volume, not through one fixed window function"
        )

    def forward(self, windows: torch.Tensor, condition: MunitCondition) -> torch.Tensor:
        """Translate windows with the zero style (the prior's mean); :meth:`predict`
        uses the condition's styles instead."""
        source_key, target_key = self.keys(condition)
        return self.translate(windows, source_key, target_key, torch.zeros(self.options.style_dim))

    def translate(
        self, windows: torch.Tensor, source_key: str, target_key: str, style: torch.Tensor
    ) -> torch.Tensor:
        """Windows of ``source_key`` decoded in ``target_key`` with ``style``, padded to
        what the stride-2 stages divide."""
        code = style.to(windows.device, windows.dtype)
        return run_padded(
            lambda w: self.munit.translate(w, source_key, target_key, code),
            windows,
            2**self.options.downsamples,
        )

    # -- training ----------------------------------------------------------------------

    def generator_passes(
        self, trainer: TrainerAPI, real_a: torch.Tensor, real_b: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        cycle = self.options.cycle_weight > 0
        passes: dict[str, torch.Tensor] = trainer.modules[GENERATORS](real_a, real_b, cycle=cycle)
        return passes

    def loss_terms(
        self, passes: Mapping[str, torch.Tensor], real_a: torch.Tensor, real_b: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return munit_terms(passes, real_a, real_b)

    def weighted_terms(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The objective above without its adversarial term."""
        options = self.options
        loss: torch.Tensor = (
            options.reconstruction_weight * terms["reconstruction"]
            + options.content_weight * terms["content"]
            + options.style_weight * terms["style"]
        )
        if "cycle" in terms:
            loss = loss + options.cycle_weight * terms["cycle"]
        return loss


def munit_terms(
    passes: Mapping[str, torch.Tensor], real_a: torch.Tensor, real_b: torch.Tensor
) -> dict[str, torch.Tensor]:
    """MUNIT's unweighted non-adversarial terms, each an L1 summed over both domains:
    ``reconstruction`` (images), ``content``, ``style`` and, when the passes hold the
    cycle, ``cycle``. Content targets are the encoded content codes, style targets the
    drawn styles (as in the paper, the targets are not detached)."""

    def l1(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output.float(), target.float())

    terms = {
        "reconstruction": l1(passes["recon_a"], real_a) + l1(passes["recon_b"], real_b),
        "content": l1(passes["content_ab"], passes["content_a"])
        + l1(passes["content_ba"], passes["content_b"]),
        "style": l1(passes["style_ab"], passes["prior_b"])
        + l1(passes["style_ba"], passes["prior_a"]),
    }
    if "cycle_a" in passes:
        terms["cycle"] = l1(passes["cycle_a"], real_a) + l1(passes["cycle_b"], real_b)
    return terms


def _exists(reference: str) -> bool:
    from pathlib import Path

    return Path(reference).expanduser().exists()
