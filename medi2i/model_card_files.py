"""Model cards in a model folder: ``card.yaml``, its Markdown rendering as ``README.md``
(or the default README of a model saved without a card), and the training data cards
copied into the manifest. The card itself is :class:`medi2i.cards.ModelCard`; the folder
is :mod:`medi2i.model_folder`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from medi2i.io.atomic import atomic_path
from medi2i.model_folder import CARD, CARD_YAML, MANIFEST, read_manifest, weights_sha256

if TYPE_CHECKING:
    from medi2i.cards import Adaptation, ModelCard
    from medi2i.method import Method


def default_card(method: Method) -> str:
    """The README of a model folder saved without a card: it says none was written."""
    return (
        f"# {method.id} model\n\nMethod `{method.id}` {method.version}: {method.summary()}\n\n"
        "No card was written for this model: its training data, metrics, intended use and "
        "limits are not documented.\n"
    )


def attach_card(folder: str | Path, card: ModelCard) -> Path:
    """Write a model card into a model folder: ``card.yaml`` (checked by
    ``medi2i cards check``), its Markdown rendering as ``README.md``, and the training
    data cards into the manifest. The card records the SHA-256 of the folder's weights
    file as ``weights_sha256`` (computed from its bytes, replacing any value the card
    held), which ties the card to these weights.

    Returns:
        The path of ``card.yaml``.
    """
    folder = Path(folder)
    card = card.model_copy(update={"weights_sha256": weights_sha256(folder)})
    manifest = read_manifest(folder).model_copy(update={"data_cards": list(card.training_data)})
    written = {
        CARD_YAML: yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False),
        CARD: render_card(card),
        MANIFEST: manifest.model_dump_json(indent=2) + "\n",
    }
    for name, text in written.items():
        with atomic_path(folder / name) as tmp:
            tmp.write_text(text)
    return folder / CARD_YAML


def render_card(card: ModelCard) -> str:
    """The Markdown model card of ``card``."""
    lines = [
        f"# {card.name}",
        "",
        f"Method `{card.method.id}` {card.method.version}. {card.summary}",
        "",
        "## Training data",
        "",
        *([f"- data card `{name}`" for name in card.training_data] or ["- no data card named"]),
        "",
        "## Provenance",
        "",
        f"- medi2i {card.provenance.medi2i_version}, {card.provenance.created}",
        f"- command: `{card.provenance.command}`",
        f"- seed: {card.provenance.seed}, hardware: {card.provenance.hardware or 'not recorded'}",
        f"- weights SHA-256: {card.weights_sha256 or 'not recorded'}",
        "",
        "## Intended use",
        "",
        f"- for: {card.intended_use.primary}",
        f"- not for: {card.intended_use.out_of_scope}",
    ]
    for adaptation in card.adaptations:
        lines += ["", "## Adaptation", "", *_adaptation_lines(adaptation)]
    if card.metrics:
        lines += ["", "## Metrics", "", *(f"- {k}: {v:.4g}" for k, v in card.metrics.items())]
    if card.limits:
        lines += ["", "## Limits", "", *(f"- {limit}" for limit in card.limits)]
    return "\n".join(lines) + "\n"


def _adaptation_lines(adaptation: Adaptation) -> list[str]:
    digest = adaptation.source_weights_sha256 or "none"
    return [
        f"- adapted from `{adaptation.source_card}` ({adaptation.source_model}, weights "
        f"SHA-256 {digest})",
        f"- medi2i {adaptation.medi2i_version}, {adaptation.created}",
        f"- command: `{adaptation.command}`, seed: {adaptation.seed}",
        f"- to {len(adaptation.data)} target volumes:",
        *(
            f"  - {volume.path} (SHA-256 of the {volume.hashed or 'volume'}: "
            f"{volume.sha256 or 'not recorded'})"
            for volume in adaptation.data
        ),
    ]
