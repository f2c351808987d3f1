"""Data cards and model cards: what a dataset or a trained model is, and where it came from.

A card is a YAML file a person writes. Every dataset used to train or evaluate anything
has a :class:`DataCard` in ``data_cards/``; every trained model has a :class:`ModelCard`
naming the data cards it was trained on and the run that made it. ``medi2i cards check``
(:mod:`medi2i.card_checks`)
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
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic_core import ErrorDetails

from medi2i.bounded_yaml import YAMLLimitError, duplicate_key, load_yaml, read_yaml_text
from medi2i.errors import InputError

CARD_SUFFIXES = (".yaml", ".yml")
_NAME = r"^[a-z0-9][a-z0-9_.-]*$"

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
        metrics_inference: The inference settings the metrics were measured with
            (:class:`medi2i.InferenceSettings`' fields: ``roi_size``, ``overlap``,
            ``blend``, ``mirror_axes``...; ``amp`` true only when they ran on CUDA with
            AMP, and ``device_used`` the device ``device`` resolved to; a workflow adds
            ``condition.<key>`` entries for the condition its evaluation predicted
            under); empty in cards written before medi2i recorded them.
        intended_use: What it is for and not for.
        limits: Known failure modes and limits.
        adaptations: For an adapted model, each adaptation that made it from the trained
            model ``provenance`` describes, earliest first; ``metrics`` are then only
            those measured after the last one (the source's are left out).
        weights_sha256: SHA-256 of the weights file the card describes, written with the
            card; ``medi2i cards check`` compares it with the folder's weights, so a card
            left behind when the weights are replaced is caught. Absent from cards
            written before medi2i recorded it (those are not compared).
    """

    card: Literal["model"]
    name: str = Field(pattern=_NAME)
    method: MethodReference
    summary: str
    training_data: list[str]
    evaluation_data: list[str] = []
    provenance: RunProvenance
    metrics: dict[str, float] = {}
    metrics_inference: dict[str, str | float | int | bool | list[int] | None] = {}
    intended_use: IntendedUse
    limits: list[str] = []
    adaptations: list[Adaptation] = []
    weights_sha256: str | None = None

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
_CARD_KINDS = ("data", "model")

CARD_FIELDS_DOC = 'docs/writing-a-method.md, section "Cards: the fields of card.yaml"'
"""Where a card's fields are documented, for messages about an invalid card."""
_CARD_ADAPTER: TypeAdapter[DataCard | ModelCard] = TypeAdapter(Card)


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
        tag = raw.get("card") if isinstance(raw, dict) else None
        problems = "; ".join(_problem(err, tag) for err in exc.errors())
        raise InputError(
            f"card {path} is invalid: {problems}; the fields of a card are listed in "
            f"{CARD_FIELDS_DOC}"
        ) from None


def _problem(error: ErrorDetails, tag: object) -> str:
    """One validation error, with the key as written in the file (``intended_use``, not
    pydantic's ``model.intended_use``: a card's kind is the union's tag, not a key)."""
    location = error["loc"]
    if location and location[0] == tag and tag in _CARD_KINDS:
        location = location[1:]
    key = ".".join(str(part) for part in location) or "(top level)"
    if error["type"] == "union_tag_not_found":
        return "card: missing; write 'card: data' or 'card: model' at the top"
    if error["type"] == "union_tag_invalid":
        return f"card: {tag!r} is not a kind of card; write 'card: data' or 'card: model'"
    if error["type"] == "missing":
        return f"{key}: missing (a required field)"
    if error["type"] == "extra_forbidden":
        return f"{key}: not a field of a {tag} card" if tag in _CARD_KINDS else f"{key}: unknown"
    return f"{key}: {error['msg']}"
