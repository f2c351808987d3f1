"""Data cards and model cards: what a dataset or a trained model is, and where it came from.

A card is a YAML file a person writes. Every dataset used to train or evaluate anything
has a :class:`DataCard` in ``data_cards/``; every trained model has a :class:`ModelCard`
naming the data cards it was trained on and the run that made it. ``medi2i cards check``
validates a folder of cards and the references between them.

Example:
    >>> card = DataCard.model_validate({
    ...     "card": "data", "name": "my-ct", "title": "Head CT", "kind": "real",
    ...     "modality": "CT", "licence": "CC-BY-4.0",
    ...     "source": {"description": "scanned at our site"},
    ...     "subjects": {"count": 1, "description": "one adult head"},
    ...     "intended_use": {"primary": "benchmarks", "out_of_scope": "clinical use"},
    ... })
    >>> card.name
    'my-ct'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from medi2i.bounded_yaml import YAMLLimitError, duplicate_key, load_yaml, read_yaml_text
from medi2i.errors import InputError
from medi2i.hashing import file_sha256

CARD_SUFFIXES = (".yaml", ".yml")
_NAME = r"^[a-z0-9][a-z0-9_.-]*$"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SPACING_TOLERANCE = 0.01
"""How far (relative) a card's ``spacing_mm`` may be from its file's: cards round it."""

_Voxels = Annotated[int, Field(gt=0, strict=True)]
_Millimetres = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_Value = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """Where the data came from.

    Attributes:
        description: Who made it and how it was obtained.
        package: Registry package it was taken from, e.g. ``"Debian invesalius-examples"``.
        version: Version of that package.
        file: File name as used by medi2i (in ``MEDI2I_DATA_DIR`` for real data).
        original_path: Path of the file inside the package.
        sha256: SHA-256 of ``file``, checked by ``cards check --data-dir``.
        citation: How to cite it.
    """

    description: str
    package: str | None = None
    version: str | None = None
    file: str | None = None
    original_path: str | None = None
    sha256: str | None = None
    citation: str | None = None

    @field_validator("sha256", mode="before")
    @classmethod
    def _quoted(cls, value: object) -> object:
        # YAML reads 64 unquoted digits as a number, which loses the leading zeros
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError("YAML read it as a number: write the digest in quotes")
        return value


class Acquisition(_Strict):
    """Scanner and protocol, as far as known.

    Attributes:
        scanner: Scanner make and model, or the simulated scanner's name.
        protocol: Sequence or reconstruction, e.g. ``"T1w 3D, averaged over 27 scans"``.
        shape: Array shape in voxels (positive integers), as the file stores it.
        spacing_mm: Voxel size in mm (finite, above 0).
        units: Intensity units (``"HU"``, ``"arbitrary"``).
        value_range: Smallest and largest stored value, in that order.
    """

    scanner: str = "unknown"
    protocol: str = "unknown"
    shape: tuple[_Voxels, _Voxels, _Voxels] | None = None
    spacing_mm: tuple[_Millimetres, _Millimetres, _Millimetres] | None = None
    units: str = "arbitrary"
    value_range: tuple[_Value, _Value] | None = None

    @field_validator("value_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError(f"{list(value)} is not [smallest, largest]: swap the two values")
        return value


class Subjects(_Strict):
    """Who is imaged: ``count`` subjects (or templates), described."""

    count: int = Field(ge=0)
    description: str


class IntendedUse(_Strict):
    """What the data or model is for, and what it must not be used for."""

    primary: str
    out_of_scope: str


class Simulation(_Strict):
    """How a simulated set was made (``kind: simulated``).

    Attributes:
        simulator: The medi2i function, e.g. ``"medi2i.synth.ct_to_pseudo_t1"``.
        parameters: Its parameters as written in the code (seed included).
        command: The command that rebuilds the set.
    """

    simulator: str
    parameters: dict[str, str | float | int | bool | list[float] | list[int] | None]
    command: str


class DataCard(_Strict):
    """A dataset: source, licence, modality, acquisition, subjects, processing, use, biases.

    Attributes:
        card: Always ``"data"``.
        name: Unique name, equal to the card's file name without suffix.
        title: One line.
        kind: ``"real"`` (acquired) or ``"simulated"`` (made by :mod:`medi2i.synth`).
        modality: ``"CT"``, ``"MR"``, ``"MR+CT"`` or ``"labels"``.
        licence: Licence of the data (SPDX id or a sentence).
        source: Provenance.
        acquisition: Scanner and protocol.
        subjects: Who is in it.
        preprocessing: What was done to it before use, in order.
        derived_from: Names of the data cards this set was made from.
        simulation: How it was simulated (simulated sets only).
        used_by: Benchmarks, tests or workflows that use it.
        intended_use: What it is for and not for.
        known_biases: Limits and biases a user must know.
    """

    card: Literal["data"]
    name: str = Field(pattern=_NAME)
    title: str
    kind: Literal["real", "simulated"]
    modality: Literal["CT", "MR", "MR+CT", "labels"]
    licence: str
    source: Source
    acquisition: Acquisition = Acquisition()
    subjects: Subjects
    preprocessing: list[str] = []
    derived_from: list[str] = []
    simulation: Simulation | None = None
    used_by: list[str] = []
    intended_use: IntendedUse
    known_biases: list[str] = []


class RunProvenance(_Strict):
    """The run that trained a model.

    Attributes:
        medi2i_version: medi2i version used.
        created: ISO 8601 date and time.
        command: The command or workflow file that ran.
        seed: Random seed, if any.
        code_revision: Revision of the code, if known.
        hardware: Device(s) used, e.g. ``"1x NVIDIA H100"``.
    """

    medi2i_version: str
    created: str
    command: str
    seed: int | None = None
    code_revision: str | None = None
    hardware: str | None = None


class MethodReference(_Strict):
    """The method a model is an instance of."""

    id: str
    version: str


class AdaptedVolume(_Strict):
    """A target volume a model was adapted on, hashed as a prediction's provenance
    hashes its input.

    Attributes:
        path: The volume's file or DICOM series folder, as an absolute path.
        sha256: SHA-256 of the file's bytes (``hashed: file``) or of the volume read
            from the folder (``hashed: volume``, :func:`medi2i.provenance.volume_sha256`).
        hashed: What ``sha256`` is of.
    """

    path: str
    sha256: str | None = None
    hashed: Literal["file", "volume"] | None = None


class Adaptation(_Strict):
    """One adaptation of a trained model to target data (``medi2i adapt``, a workflow's
    ``adaptation`` stage), e.g. AdaBN on a new scanner's images.

    Attributes:
        source_model: The folder or zip of the model it was adapted from (absolute path).
        source_card: That model's card ``name``.
        source_weights_sha256: SHA-256 of that model's weights file.
        data: The target volumes, with their hashes.
        medi2i_version: medi2i version that adapted it.
        created: ISO 8601 date and time of the adaptation.
        command: The command that adapted it.
        seed: The adaptation's seed.
    """

    source_model: str
    source_card: str
    source_weights_sha256: str | None
    data: list[AdaptedVolume]
    medi2i_version: str
    created: str
    command: str
    seed: int | None = None


class ModelCard(_Strict):
    """A trained model: method, training data cards, provenance, metrics, use and limits.

    Attributes:
        card: Always ``"model"``.
        name: Unique name, equal to the card's file name without suffix.
        method: Method id and version.
        summary: One paragraph.
        training_data: Names of the data cards it was trained on.
        evaluation_data: Names of the data cards it was evaluated on.
        provenance: The training run.
        metrics: Evaluation results by metric name (units in the name, e.g. ``mae_hu``).
        intended_use: What it is for and not for.
        limits: Known failure modes and limits.
        adaptations: For an adapted model, each adaptation that made it from the trained
            model ``provenance`` describes, earliest first; ``metrics`` are then only
            those measured after the last one (the source's are left out).
    """

    card: Literal["model"]
    name: str = Field(pattern=_NAME)
    method: MethodReference
    summary: str
    training_data: list[str]
    evaluation_data: list[str] = []
    provenance: RunProvenance
    metrics: dict[str, float] = {}
    intended_use: IntendedUse
    limits: list[str] = []
    adaptations: list[Adaptation] = []

    @field_validator("metrics")
    @classmethod
    def _measured(cls, metrics: dict[str, float]) -> dict[str, float]:
        for name, value in metrics.items():
            if not math.isfinite(value):
                raise ValueError(f"{name} is {value}: a card records measured, finite values")
            if name.removeprefix("validation_").endswith("ssim") and not -1.0 <= value <= 1.0:
                raise ValueError(f"{name} is {value}: an SSIM lies between -1 and 1")
        return metrics


Card = Annotated[DataCard | ModelCard, Field(discriminator="card")]
_CARD_ADAPTER: TypeAdapter[DataCard | ModelCard] = TypeAdapter(Card)


@dataclass(frozen=True)
class CardProblem:
    """One problem found in a folder of cards: the file and what is wrong."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def load_card(path: str | Path) -> DataCard | ModelCard:
    """Read and validate one card.

    Args:
        path: A ``.yaml`` file whose ``card`` field is ``data`` or ``model``.

    Raises:
        InputError: The file is missing, not YAML, beyond the limits of
            :mod:`medi2i.bounded_yaml`, has a key twice in one section, or not a valid
            card (the message lists each invalid field).

    Example:
        >>> load_card("data_cards/mr_t1_colin27_1mm.yaml").modality  # doctest: +SKIP
        'MR'
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"card {path} does not exist")
    return parse_card(read_yaml_text(path, error=InputError), path)


def parse_card(text: str, path: str | Path) -> DataCard | ModelCard:
    """Validate the YAML ``text`` of a card read from ``path`` (a file, or a member of a
    model zip), as :func:`load_card` does.

    Raises:
        InputError: As :func:`load_card`, naming ``path``.
    """
    try:
        raw, node = load_yaml(text)
    except YAMLLimitError as exc:
        raise InputError(f"card {path} refused: the YAML {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "unreadable"
        raise InputError(f"card {path}{where} is not valid YAML: {problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"card {path} is not valid YAML: {exc}") from None
    repeated = duplicate_key(node)
    if repeated is not None:
        key, line = repeated
        raise InputError(
            f"card {path} line {line}: key {key!r} appears twice in one section (YAML "
            "keeps the last value without a word); delete the wrong one"
        )
    try:
        return _CARD_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InputError(
            f"card {path} is invalid: {problems}; see medi2i.cards for the fields"
        ) from None


def check_cards(folder: str | Path, *, data_dir: str | Path | None = None) -> list[CardProblem]:
    """Validate every card in a folder and the references between them.

    Checks: each file is a valid card; its name equals its file name; names are unique;
    ``derived_from``, ``training_data`` and ``evaluation_data`` name cards in the folder;
    SHA-256 values are well formed; with ``data_dir``, each real card's file exists there,
    has that SHA-256, and has the card's ``acquisition.shape`` and ``spacing_mm`` (to 1 %).

    Args:
        folder: The folder of ``.yaml`` cards (e.g. ``data_cards/``).
        data_dir: Folder holding the real data files (``MEDI2I_DATA_DIR``), or ``None``
            to skip the file checks.

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


def check_model_card(model_folder: str | Path, *, data_cards: str | Path) -> list[CardProblem]:
    """Validate the card of a trained-model folder against a folder of data cards.

    Checks: ``card.yaml`` is a valid model card that names the method and version the
    folder's ``medi2i-model.json`` records, the weights match the SHA-256 recorded there,
    and every ``training_data`` and ``evaluation_data`` name is a card in ``data_cards``
    (e.g. the repository's ``data_cards/``).

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
    if manifest.weights is not None:
        weights = model_folder / manifest.weights.file
        if not weights.is_file() or file_sha256(weights) != manifest.weights.sha256:
            problems.append(
                CardProblem(
                    weights,
                    f"is missing or does not match the SHA-256 in {MANIFEST}: the weights "
                    "were changed or damaged; copy the model folder again",
                )
            )
    return problems


def _validation_metric_problems(
    model_folder: Path, path: Path, card: ModelCard
) -> list[CardProblem]:
    """The card's ``validation_<name>`` metrics against the ``metrics.json`` the run
    saved with the model (the validation of its step): they must be those values."""
    import json

    from medi2i.model_folder import METRICS

    recorded = model_folder / METRICS
    claimed = {
        name.removeprefix("validation_"): value
        for name, value in card.metrics.items()
        if name.startswith("validation_")
    }
    if not claimed or not recorded.is_file():
        return []
    try:
        measured = json.loads(recorded.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [CardProblem(recorded, f"cannot be read: {exc}")]
    wrong = [
        f"validation_{name} {value:g} ({METRICS}: {measured[name]:g})"
        for name, value in claimed.items()
        if isinstance(measured.get(name), int | float)
        and not math.isclose(value, float(measured[name]), rel_tol=1e-9, abs_tol=1e-12)
    ]
    if not wrong:
        return []
    return [
        CardProblem(
            path,
            f"claims {', '.join(wrong)}, which the model's validation did not measure; "
            "correct the card's metrics",
        )
    ]


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
    if data_dir is None or card.kind != "real" or card.source.file is None:
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
