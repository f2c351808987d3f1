"""What a benchmark row of a trained model (``--model``) says about its training data.

A model folder was trained outside the benchmark, so the benchmark's training cases
(the tables' "Splits" line) say nothing about it. Its row says instead what the model's
own card (``card.yaml``), else its manifest, records: the data cards it was trained on.
Neither records the cases of those data sets it trained on, so the row says that too,
and names the benchmark's test cases that its training split must have left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def model_training_note(path: str | Path, test_cases: Sequence[str] = ()) -> str:
    """The legend text of a model row: where the model was trained, as its folder records.

    Args:
        path: The model folder or zip.
        test_cases: The benchmark's test cases, named as a reminder of what the model's
            training split must have left out.

    Example:
        >>> model_training_note("runs/q1x-unet/best-model")  # doctest: +SKIP
        'trained outside the benchmark, on data card q1x_pseudo_t1_three_subjects (as
        its card.yaml records, not which cases it trained on)'
    """
    cards, source = _training_cards(Path(path))
    where = (
        f"on data card{'s' if len(cards) > 1 else ''} {', '.join(cards)} (as its {source} "
        "records, not which cases it trained on"
        if cards
        else "on data its folder does not record (no data card in its card.yaml or manifest"
    )
    tested = f": check that its training left out {', '.join(test_cases)}" if test_cases else ""
    return f"trained outside the benchmark, {where}{tested})"


def _training_cards(path: Path) -> tuple[list[str], str]:
    """The data cards ``path`` was trained on and the file that says so."""
    from medi2i.model_folder import read_manifest, read_model_card

    card = read_model_card(path)
    if card is not None and card.training_data:
        return list(card.training_data), "card.yaml"
    return list(read_manifest(path).data_cards), "manifest"
