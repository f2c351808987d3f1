"""``medi2i cards check``: a folder of cards and the references between them, a model
folder's card against its manifest, and data cards against their files.

The cards themselves, and how one is read, are :mod:`medi2i.cards`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.cards import CARD_SUFFIXES, Acquisition, DataCard, ModelCard, load_card
from medi2i.errors import InputError
from medi2i.hashing import file_sha256

if TYPE_CHECKING:
    from medi2i.model_folder import AdaptedFrom

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SPACING_TOLERANCE = 0.01
"""How far (relative) a card's ``spacing_mm`` may be from its file's: cards round it."""


@dataclass(frozen=True)
class CardProblem:
    """One problem found in a folder of cards: the file and what is wrong."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check_cards(folder: str | Path, *, data_dir: str | Path | None = None) -> list[CardProblem]:
    """Validate every card in a folder and the references between them.

    Checks: each file is a valid card; its name equals its file name; names are unique;
    ``derived_from``, ``training_data`` and ``evaluation_data`` name cards in the folder;
    SHA-256 values are well formed; with ``data_dir``, each data card that names a
    ``source.file`` (real or simulated) has that file there, with its SHA-256 and the
    card's ``acquisition.shape`` and ``spacing_mm`` (to 1 %); :func:`named_data_files`
    lists them.

    Args:
        folder: The folder of ``.yaml`` cards (e.g. ``data_cards/``).
        data_dir: Folder holding the data files (``MEDI2I_DATA_DIR``), or ``None`` to
            skip the file checks; one that is not a folder is a problem.

    Returns:
        The problems found; an empty list means the folder is clean.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [CardProblem(folder, "is not a folder of cards")]
    paths = _card_paths(folder)
    if not paths:
        return [CardProblem(folder, "holds no .yaml card")]
    problems: list[CardProblem] = []
    if data_dir is not None and not Path(data_dir).is_dir():
        problems.append(
            CardProblem(
                Path(data_dir),
                "is not a folder, so no data file could be checked; give the folder that "
                "holds the files the cards name (--data-dir or MEDI2I_DATA_DIR)",
            )
        )
        data_dir = None
    cards: dict[str, tuple[Path, DataCard | ModelCard]] = {}
    unreadable: set[str] = set()
    for path in paths:
        try:
            card = load_card(path)
        except InputError as exc:
            problems.append(CardProblem(path, str(exc).removeprefix(f"card {path} ")))
            unreadable.add(path.name.removesuffix(path.suffix))  # named, only invalid
            continue
        problems += _name_problems(path, card, cards)
        cards.setdefault(card.name, (path, card))
    for path, card in cards.values():
        problems += _reference_problems(path, card, {*cards, *unreadable})
        if isinstance(card, DataCard):
            problems += _source_problems(path, card, None if data_dir is None else Path(data_dir))
    return problems


def named_data_files(folder: str | Path) -> list[str]:
    """The ``source.file`` of every valid data card in ``folder`` (real or simulated):
    the files :func:`check_cards` checks with a ``data_dir``."""
    named = []
    for path in _card_paths(Path(folder)) if Path(folder).is_dir() else []:
        try:
            card = load_card(path)
        except InputError:
            continue
        if isinstance(card, DataCard) and card.source.file is not None:
            named.append(card.source.file)
    return named


def check_model_card(model_folder: str | Path, *, data_cards: str | Path) -> list[CardProblem]:
    """Validate the card of a trained-model folder against a folder of data cards.

    Checks: ``card.yaml`` is a valid model card that names the method and version the
    folder's ``medi2i-model.json`` records, the weights match the SHA-256 recorded there
    and, when the card records one, the card's ``weights_sha256`` (cards written before
    medi2i recorded it are not compared); an adapted card's last
    ``adaptations[].source_weights_sha256`` equals the manifest's
    ``adapted_from.weights_sha256``; every ``validation_<name>`` metric the card claims
    is the value of ``<name>`` in the folder's ``metrics.json`` (a claim without that
    file, or without that name in it, is a problem); and every ``training_data`` and
    ``evaluation_data`` name is a card in ``data_cards`` (e.g. the repository's
    ``data_cards/``).

    Returns:
        The problems found; an empty list means the card is clean.
    """
    from medi2i.model_folder import CARD_YAML

    path = Path(model_folder) / CARD_YAML
    if not path.is_file():
        return [CardProblem(path, "is missing: the model has no card (medi2i run writes one)")]
    try:
        card = load_card(path)
    except InputError as exc:
        return [CardProblem(path, str(exc).removeprefix(f"card {path} "))]
    if not isinstance(card, ModelCard):
        return [CardProblem(path, "is a data card; a model folder needs a model card")]
    problems = _manifest_problems(Path(model_folder), path, card)
    folder = Path(data_cards)
    named = sorted({*card.training_data, *card.evaluation_data})
    if not named:
        return problems + _reference_problems(path, card, set(), where=str(folder))
    if not folder.is_dir():
        return [
            *problems,
            CardProblem(
                folder,
                f"is not a folder of cards, and the card names the data cards {', '.join(named)}; "
                "pass the folder that holds them with --data-cards",
            ),
        ]
    known = {p.stem for p in _card_paths(folder)}  # check_cards holds each name to its stem
    return problems + _reference_problems(path, card, known, where=str(folder))


def _manifest_problems(model_folder: Path, path: Path, card: ModelCard) -> list[CardProblem]:
    """The card against the folder's manifest: the same method and version, and weights
    that still have the recorded SHA-256."""
    from medi2i.errors import Medi2iError
    from medi2i.hashing import file_sha256
    from medi2i.model_folder import MANIFEST, read_manifest

    try:
        manifest = read_manifest(model_folder)
    except (Medi2iError, OSError) as exc:
        return [CardProblem(model_folder / MANIFEST, f"cannot be read: {exc}")]
    problems = []
    recorded = manifest.method
    if (card.method.id, card.method.version) != (recorded.id, recorded.version):
        problems.append(
            CardProblem(
                path,
                f"names method {card.method.id!r} version {card.method.version}, but the "
                f"model is {recorded.id!r} version {recorded.version} ({MANIFEST}); correct "
                "the card's method",
            )
        )
    if manifest.data_cards and sorted(manifest.data_cards) != sorted(card.training_data):
        problems.append(
            CardProblem(
                path,
                f"says it was trained on {card.training_data}, but {MANIFEST} records the "
                f"data cards {manifest.data_cards}; correct the card's training_data",
            )
        )
    problems += _validation_metric_problems(model_folder, path, card)
    problems += _adaptation_problems(path, card, manifest.adapted_from)
    if manifest.weights is None:
        return problems
    weights = model_folder / manifest.weights.file
    digest = file_sha256(weights) if weights.is_file() else None
    if digest != manifest.weights.sha256:
        problems.append(
            CardProblem(
                weights,
                f"is missing or does not match the SHA-256 in {MANIFEST}: the weights "
                "were changed or damaged; copy the model folder again",
            )
        )
    elif card.weights_sha256 is not None and card.weights_sha256 != digest:
        problems.append(
            CardProblem(
                path,
                f"describes weights with SHA-256 {card.weights_sha256}, but {weights.name} "
                f"has {digest}: the weights were replaced after the card was written; "
                "write the card of these weights (evaluate them again) or restore the "
                "weights the card describes",
            )
        )
    return problems


def _adaptation_problems(
    path: Path, card: ModelCard, adapted_from: AdaptedFrom | None
) -> list[CardProblem]:
    """The card's last adaptation against the manifest's ``adapted_from``: the source
    weights it names must be the ones the model was adapted from."""
    from medi2i.model_folder import MANIFEST

    if not card.adaptations:
        return []
    said = card.adaptations[-1].source_weights_sha256
    if adapted_from is None:
        return [
            CardProblem(
                path,
                f"lists adaptations, but {MANIFEST} records no adapted_from: the card is "
                "not this model's; write the card of this model",
            )
        ]
    if said != adapted_from.weights_sha256:
        return [
            CardProblem(
                path,
                f"says it was adapted from weights with SHA-256 {said}, but {MANIFEST} "
                f"records {adapted_from.weights_sha256} (adapted_from.weights_sha256): "
                "the card is not this model's; write the card of this model",
            )
        ]
    return []


def _validation_metric_problems(
    model_folder: Path, path: Path, card: ModelCard
) -> list[CardProblem]:
    """The card's ``validation_<name>`` metrics against the ``metrics.json`` the run
    saved with the model (the validation of its step): each must be there, with that
    value. A name may carry its units (``validation_mae_hu`` is ``mae``, as older cards
    wrote it; see :data:`_UNIT_SUFFIXES`)."""
    import json

    from medi2i.model_folder import METRICS

    recorded = model_folder / METRICS
    claimed = {
        name.removeprefix("validation_"): value
        for name, value in card.metrics.items()
        if name.startswith("validation_")
    }
    if not claimed:
        return []
    if not recorded.is_file():
        names = ", ".join(f"validation_{name}" for name in claimed)
        return [
            CardProblem(
                path,
                f"claims {names}, but the model folder has no {METRICS} to check them "
                f"against; copy the {METRICS} the run saved into the folder or remove "
                "these metrics from the card",
            )
        ]
    try:
        measured = json.loads(recorded.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [CardProblem(recorded, f"cannot be read: {exc}")]
    if not isinstance(measured, dict):
        return [CardProblem(recorded, "is not a JSON object of metric values")]
    claimed = {_recorded_name(name, measured): value for name, value in claimed.items()}
    problems = []
    absent = [f"validation_{name}" for name in claimed if name not in measured]
    if absent:
        problems.append(
            CardProblem(
                path,
                f"claims {', '.join(absent)}, which {METRICS} does not hold (it holds "
                f"{', '.join(sorted(measured)) or 'nothing'}); remove these metrics from "
                "the card",
            )
        )
    wrong = [
        f"validation_{name} {value:g} ({METRICS}: {_shown(measured[name])})"
        for name, value in claimed.items()
        if name in measured
        and not (
            isinstance(measured[name], int | float)
            and not isinstance(measured[name], bool)
            and math.isclose(value, float(measured[name]), rel_tol=1e-9, abs_tol=1e-12)
        )
    ]
    if wrong:
        problems.append(
            CardProblem(
                path,
                f"claims {', '.join(wrong)}, which the model's validation did not measure; "
                "correct the card's metrics",
            )
        )
    return problems


_UNIT_SUFFIXES = ("_hu", "_db")
"""Units a card's metric name may end with that ``metrics.json`` leaves out."""


def _recorded_name(name: str, measured: dict[str, object]) -> str:
    """``name`` as ``metrics.json`` records it: without a units suffix it lacks."""
    for suffix in _UNIT_SUFFIXES:
        if name not in measured and name.endswith(suffix) and name[: -len(suffix)] in measured:
            return name[: -len(suffix)]
    return name


def _shown(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) else repr(value)


def _card_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in CARD_SUFFIXES)


def _name_problems(
    path: Path, card: DataCard | ModelCard, seen: dict[str, tuple[Path, DataCard | ModelCard]]
) -> list[CardProblem]:
    problems = []
    stem = path.name.removesuffix(path.suffix)
    if card.name != stem:
        problems.append(
            CardProblem(path, f"name {card.name!r} differs from the file name {stem!r}")
        )
    if card.name in seen:
        problems.append(
            CardProblem(path, f"name {card.name!r} is also used by {seen[card.name][0]}")
        )
    return problems


def _reference_problems(
    path: Path, card: DataCard | ModelCard, names: set[str], *, where: str = "this folder"
) -> list[CardProblem]:
    if isinstance(card, DataCard):
        references = {"derived_from": card.derived_from}
    else:
        references = {"training_data": card.training_data, "evaluation_data": card.evaluation_data}
    return [
        CardProblem(path, f"{field} names {name!r}, which has no card in {where}")
        for field, listed in references.items()
        for name in listed
        if name not in names
    ]


def _source_problems(path: Path, card: DataCard, data_dir: Path | None) -> list[CardProblem]:
    problems = []
    if card.kind == "simulated" and card.simulation is None:
        problems.append(CardProblem(path, "a simulated set needs a 'simulation' section"))
    digest = card.source.sha256
    if digest is not None and not _SHA256.match(digest):
        problems.append(CardProblem(path, f"source.sha256 {digest!r} is not 64 hex digits"))
    if data_dir is None or card.source.file is None:
        return problems
    named = Path(card.source.file)
    if named.is_absolute() or ".." in named.parts:
        problems.append(
            CardProblem(
                path,
                f"source.file {card.source.file!r} leaves the data folder; give the file's "
                "name within it (a path relative to the data folder, without '..')",
            )
        )
        return problems
    data_file = data_dir / named
    if not data_file.is_file():
        problems.append(
            CardProblem(path, f"{card.source.file} is not in the data folder {data_dir}")
        )
    else:
        if digest is not None and file_sha256(data_file) != digest:
            problems.append(
                CardProblem(path, f"{data_file} does not have the SHA-256 the card gives")
            )
        problems += _grid_problems(path, card.acquisition, data_file)
    return problems


def _grid_problems(path: Path, acquisition: Acquisition, data_file: Path) -> list[CardProblem]:
    """The card's ``shape`` and ``spacing_mm`` against the file's header (the spacing
    to :data:`_SPACING_TOLERANCE`, as cards round it); nothing when no reader gives the
    file's grid from its header."""
    if acquisition.shape is None and acquisition.spacing_mm is None:
        return []
    from medi2i.io import read_grid

    try:
        grid = read_grid(data_file)
    except Exception:  # a reader's own failure: the SHA-256 check speaks for the file
        return []
    if grid is None:
        return []
    wrong = []
    if acquisition.shape is not None and tuple(acquisition.shape) != grid.shape:
        wrong.append(f"shape {list(acquisition.shape)} (the file: {list(grid.shape)})")
    spacing = acquisition.spacing_mm
    if spacing is not None and not all(
        math.isclose(said, real, rel_tol=_SPACING_TOLERANCE)
        for said, real in zip(spacing, grid.spacing, strict=True)
    ):
        real = [round(v, 4) for v in grid.spacing]
        wrong.append(f"spacing_mm {list(spacing)} (the file: {real})")
    if not wrong:
        return []
    return [
        CardProblem(
            path,
            f"acquisition says {' and '.join(wrong)} for {data_file}; correct the card",
        )
    ]
