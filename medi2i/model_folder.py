"""The trained-model folder: one self-describing folder (or a zip of it).

Layout::

    model/
      medi2i-model.json   method id and version, options, fitted values, specs, hashes
      weights.safetensors tensors (network weights, histograms), if the method has any
      README.md           the model card
      metrics.json        evaluation metrics, if given

Loading never unpickles: tensors come from safetensors, everything else from JSON.

A model folder is data from elsewhere, so loading checks it before trusting it:

- Every file it names lies inside it, after symlinks are followed; a zip holds no member
  with an absolute name or a ``..`` part. The manifest may be at most
  :data:`MAX_MANIFEST_BYTES` and the weights file :data:`MAX_WEIGHTS_BYTES`.
- The method is sized and the model's versions compared before anything is allocated
  (:mod:`medi2i.model_checks`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from medi2i.cards import AdaptedVolume
from medi2i.errors import (
    InputError,
    Medi2iError,
    ModelFormatError,
    OptionsError,
    OutputError,
    UnknownMethodError,
)
from medi2i.grid import SpatialPlan
from medi2i.hashing import file_sha256
from medi2i.io.atomic import make_parent_folders, temporary_sibling, with_default_mode
from medi2i.method import DomainSpec, Method, MethodClass, StateValue, VolumeSpec
from medi2i.model_checks import (
    MAX_STATE_ELEMENTS,
    changed_options,
    check_versions,
    checked_state,
    declared_shapes,
    safetensors_shapes,
    unregistered_method_error,
)
from medi2i.model_files import MANIFEST as MANIFEST
from medi2i.model_files import _ModelFiles
from medi2i.text import described
from medi2i.training_spacing import (
    TrainingSpacing,
    record_training_spacing,
    recorded_training_spacing,
)

if TYPE_CHECKING:
    import torch

    from medi2i.cards import ModelCard
    from medi2i.registry import Registry

FORMAT = "medi2i-model/1"
WEIGHTS = "weights.safetensors"
CARD = "README.md"
CARD_YAML = "card.yaml"
METRICS = "metrics.json"

MAX_MANIFEST_BYTES = 16 * 1024**2
"""Largest ``medi2i-model.json`` read (fitted values included), in bytes."""
MAX_WEIGHTS_BYTES = 8 * MAX_STATE_ELEMENTS
"""Largest weights file read, in bytes (:data:`MAX_STATE_ELEMENTS` as float64)."""


class WeightsRecord(BaseModel):
    """Where the tensors are and their SHA-256, checked on load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    sha256: str


class MethodRecord(BaseModel):
    """Which method (and which implementation version) made the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    version: str
    distribution: str | None = None
    """The Python distribution whose code defines the method (absent in models written
    before it was recorded), so a machine without it can say what to install."""


class AdaptedFrom(BaseModel):
    """The model an adapted model was made from (``medi2i adapt``, the adapt stage).

    Models adapted before medi2i recorded hashes and chains list ``data`` as paths
    (read as volumes without a hash) and have no ``adapted_from``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    """The source model's folder or zip, as an absolute path."""
    weights_sha256: str | None
    """SHA-256 of the source model's weights file, as read when adapting."""
    data: list[AdaptedVolume]
    """The target volumes it was adapted on, hashed as predict's provenance hashes its
    input."""
    adapted_from: AdaptedFrom | None = None
    """The source model's own ``adapted_from`` when it was adapted too: the chain back
    to the trained model."""

    @field_validator("data", mode="before")
    @classmethod
    def _paths_of_older_models(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"path": item} if isinstance(item, str) else item for item in value]
        return value


class ModelManifest(BaseModel):
    """The contents of ``medi2i-model.json``.

    ``domains`` (unpaired and multi-domain methods, in label order), ``auxiliary`` (the
    SHA-256 of each frozen auxiliary network it was trained with) and ``adapted_from``
    are absent from models of medi2i 0.1.0, which load as before.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str
    method: MethodRecord
    options: dict[str, object]
    state: dict[str, StateValue]
    input: VolumeSpec
    output: VolumeSpec
    spatial_plan: SpatialPlan
    weights: WeightsRecord | None
    data_cards: list[str]
    medi2i_version: str
    created: str
    domains: list[DomainSpec] = []
    auxiliary: dict[str, str | None] = {}
    adapted_from: AdaptedFrom | None = None
    trained: bool = True
    """``False`` for a method trained by gradient steps saved before any step (its
    weights are as initialised); prediction with it warns."""
    training_spacing_mm: TrainingSpacing | None = None
    """Voxel spacings of its training inputs (:mod:`medi2i.training_spacing`); absent from
    older models, whose inputs are not checked against them."""


def _require_replaceable(folder: Path) -> None:
    """Refuse to replace ``folder`` unless it is a model folder or empty: ``overwrite``
    consents to replacing a model, not to deleting whatever else a folder holds."""
    if folder.is_dir() and ((folder / MANIFEST).is_file() or not any(folder.iterdir())):
        return
    what = "a file" if not folder.is_dir() else "a folder that is not a medi2i model folder"
    raise OutputError(
        f"{folder} is {what} (no {MANIFEST}); overwrite replaces only a model folder, so "
        "nothing was deleted: choose another output path"
    )


def save_model(
    method: Method,
    folder: str | Path,
    *,
    card: str | None = None,
    metrics: Mapping[str, float] | None = None,
    data_cards: Sequence[str] = (),
    overwrite: bool = False,
    adapted_from: AdaptedFrom | None = None,
    training_spacing: TrainingSpacing | None = None,
) -> Path:
    """Write ``method`` (options, fitted state, weights) as a trained-model folder.

    The folder appears complete or not at all: it is written under a temporary name
    next to ``folder`` and renamed at the end.

    Args:
        method: The trained or fitted method.
        folder: Destination folder; it must not exist unless ``overwrite``.
        card: Model card text (Markdown); a minimal one is written if ``None``.
        metrics: Evaluation metrics to store in ``metrics.json``.
        data_cards: Names of the data cards the model was trained on.
        overwrite: Replace an existing folder.
        adapted_from: The model this one was adapted from, for adapted models.
        training_spacing: The voxel spacings of its training inputs; by default those
            of the model ``method`` was loaded from, if any (an adapted model keeps them).

    Returns:
        The folder path.

    Raises:
        OptionsError: ``method`` is not a method object (a method id, a class).
        InputError: ``folder`` exists and ``overwrite`` is not set.
        OutputError: A file stands where a parent folder of ``folder`` would be, or the
            folder cannot be written.
    """
    from medi2i import __version__
    from medi2i.model_card_files import default_card
    from medi2i.trained_state import is_trained
    from medi2i.training.auxiliary import auxiliary_hashes

    _require_method_object(method)
    if not isinstance(folder, str | os.PathLike):
        raise OptionsError(
            f"save_model takes the model folder's path second, not {described(folder)}"
        )
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise InputError(f"model folder {folder} already exists; choose another path or overwrite")
    if folder.exists():
        _require_replaceable(folder)
    make_parent_folders(folder)
    staging = temporary_sibling(folder)  # a name the next atomic write may clean up
    staging.mkdir()
    try:
        weights = _write_weights(method, staging)
        manifest = ModelManifest(
            format=FORMAT,
            method=MethodRecord(
                id=method.id, version=method.version, distribution=method_distribution(method)
            ),
            options=method.options.model_dump(mode="json"),
            state=checked_state(method),
            input=method.input_spec,
            output=method.output_spec,
            spatial_plan=method.spatial_plan(),
            weights=weights,
            data_cards=list(data_cards),
            medi2i_version=__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            domains=list(method.domains),
            auxiliary=auxiliary_hashes(method),
            adapted_from=adapted_from,
            trained=is_trained(method),
            training_spacing_mm=training_spacing or recorded_training_spacing(method),
        )
        (staging / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
        (staging / CARD).write_text(card if card is not None else default_card(method))
        if metrics is not None:
            (staging / METRICS).write_text(json.dumps(dict(metrics), indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _require_method_object(given: object) -> None:
    """Refuse anything but a method object where :func:`save_model` saves one.

    Raises:
        OptionsError: Naming what was given and how to make the method object.
    """
    if isinstance(given, Method):
        return
    if isinstance(given, str):
        found, make = f"the str {given!r}", f"medi2i.Registry().method({given!r})(options)"
    elif isinstance(given, type):
        found = f"the class {given.__module__}.{given.__qualname__}"
        make = f"{given.__qualname__}(options)"
    else:
        found, make = f"a {type(given).__name__} object", "medi2i.Registry().method(ID)(options)"
    raise OptionsError(
        f"save_model takes a method object, not {found}; make one with {make} (fit or "
        "train it first if it learns), or load a trained one with medi2i.load_model(MODEL)"
    )


def _write_weights(method: Method, staging: Path) -> WeightsRecord | None:
    tensors = method.state_tensors()
    if not tensors:
        return None
    from safetensors.torch import save_file

    path = staging / WEIGHTS
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
    with_default_mode(path)  # safetensors makes it 0600, unlike the folder's other files
    return WeightsRecord(file=WEIGHTS, sha256=file_sha256(path))


def read_model_card(path: str | Path) -> ModelCard | None:
    """The model card (``card.yaml``) of a model folder or zip; ``None`` when it has none.

    Raises:
        ModelFormatError: ``card.yaml`` is not a valid model card.
    """
    from medi2i.bounded_yaml import MAX_YAML_BYTES, decode_text
    from medi2i.cards import ModelCard, parse_card

    files = _ModelFiles(Path(path))
    if not files.has(CARD_YAML):
        return None
    data = files.read(CARD_YAML, limit=MAX_YAML_BYTES)
    where = Path(path) / CARD_YAML
    try:
        card = parse_card(decode_text(data), where)
    except (InputError, UnicodeDecodeError) as exc:
        raise ModelFormatError(
            f"{exc}; correct it (medi2i cards check {path}) or remove it"
        ) from None
    if not isinstance(card, ModelCard):
        raise ModelFormatError(f"{where} is a data card; a model folder needs a model card")
    return card


def weights_sha256(path: str | Path) -> str | None:
    """SHA-256 of the weights file of a model folder or zip, computed from its bytes;
    ``None`` for a model without weights."""
    files = _ModelFiles(Path(path))
    manifest = _read_manifest(files)
    if manifest.weights is None:
        return None
    data = files.read(manifest.weights.file, entry="weights.file", limit=MAX_WEIGHTS_BYTES)
    return hashlib.sha256(data).hexdigest()


LEGACY_OPTION_VALUES: dict[str, object] = {
    "mr_foreground": "above-mean",
    "foreground": "above-mean",
}
"""Options added after models were first saved, with the value that makes a saved model
that lacks them predict as it did (their defaults for new models differ)."""


def saved_options(method_cls: MethodClass, options: Mapping[str, object]) -> dict[str, object]:
    """A saved model's ``options`` with :data:`LEGACY_OPTION_VALUES` filled in where the
    method has the option and the model was saved before it existed.

    Example:
        >>> from medi2i.testing.cycle_example import ExampleCycle
        >>> saved_options(ExampleCycle, {})
        {}
    """
    fields = getattr(method_cls.Options, "model_fields", {})
    filled = dict(options)
    for name, value in LEGACY_OPTION_VALUES.items():
        if name in fields and name not in filled:
            filled[name] = value
    return filled


def load_model(path: str | Path, *, registry: Registry | None = None) -> Method:
    """Load a trained-model folder (or a ``.zip`` of one) as a ready method.

    Args:
        path: The folder or zip.
        registry: Where to find the method class; the installed plugins by default.

    Raises:
        ModelFormatError: Files are missing or lie outside the model, the manifest is
            invalid, the weights' hash does not match, the options make the method
            larger than its weights or than :data:`MAX_STATE_ELEMENTS`, the weights do
            not fit the method, or a newer release series of the method or of medi2i
            made the model.
        UnknownMethodError: The method's plugin is not installed.
        OptionsError: ``path`` is not a path (a method object).
    """
    from medi2i.method_references import require_model_path
    from medi2i.registry import Registry
    from medi2i.trained_state import mark_trained

    require_model_path(path)
    path = Path(path)
    files = _ModelFiles(path)
    manifest = _read_manifest(files)
    registry = registry if registry is not None else Registry()
    try:
        method_cls = registry.method(manifest.method.id)
    except UnknownMethodError as exc:
        raise unregistered_method_error(
            path, manifest.method.id, manifest.method.distribution, exc
        ) from None
    check_versions(path, method_cls, registry, manifest.method.version, manifest.medi2i_version)
    try:
        options = method_cls.parse_options(saved_options(method_cls, manifest.options))
    except Medi2iError as exc:
        raise ModelFormatError(f"{path}: {MANIFEST}: {exc}") from None
    declared = declared_shapes(f"{path}: {MANIFEST}", method_cls, options, manifest.domains)
    tensors = _read_weights(files, manifest, declared, options)
    method = method_cls(options)
    try:
        if manifest.domains:
            method.use_domains(manifest.domains)
        method.load_state_values(manifest.state)
        if tensors is not None:
            method.load_state_tensors(tensors)
    except (ModelFormatError, OptionsError) as exc:  # with the folder, on one line
        raise ModelFormatError(f"{path}: {' '.join(str(exc).split())}") from exc
    if manifest.trained:
        mark_trained(method)
    record_training_spacing(method, manifest.training_spacing_mm)
    return method


def _read_weights(
    files: _ModelFiles,
    manifest: ModelManifest,
    declared: dict[str, tuple[int, ...]],
    options: BaseModel,
) -> dict[str, torch.Tensor] | None:
    """The checked tensors of the weights file, or ``None`` when the model has none."""
    path, method_id = files.path, manifest.method.id
    if manifest.weights is None:
        if declared:
            raise ModelFormatError(
                f"{path}: method {method_id!r} keeps {len(declared)} tensors but {MANIFEST} "
                "names no weights file; the model is incomplete, save it again"
            )
        return None
    data = files.read(manifest.weights.file, entry="weights.file", limit=MAX_WEIGHTS_BYTES)
    if hashlib.sha256(data).hexdigest() != manifest.weights.sha256:
        raise ModelFormatError(
            f"{path}: {manifest.weights.file} does not match the SHA-256 in {MANIFEST}; "
            "the weights were changed or damaged, copy the model folder again"
        )
    stored = safetensors_shapes(data, f"{path}: {manifest.weights.file}")
    for name, shape in declared.items():
        if name in stored and stored[name] != shape:
            raise ModelFormatError(
                f"{path}: weights do not fit method {method_id!r} with the options in "
                f"{MANIFEST} ({changed_options(options)}): {name} is {list(stored[name])} "
                f"in {manifest.weights.file} but {list(shape)} for these options"
            )
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    try:
        return load_safetensors(data)
    except SafetensorError as exc:
        raise ModelFormatError(f"{path}: {manifest.weights.file} is not readable: {exc}") from None


def read_manifest(path: str | Path) -> ModelManifest:
    """The manifest of a model folder or zip, without loading the method."""
    return _read_manifest(_ModelFiles(Path(path)))


def _read_manifest(files: _ModelFiles) -> ModelManifest:
    try:
        raw = json.loads(files.read(MANIFEST, limit=MAX_MANIFEST_BYTES))
        manifest = ModelManifest.model_validate(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{files.path}: {MANIFEST} is not valid JSON: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(top level)'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise ModelFormatError(
            f"{files.path}: {MANIFEST} is invalid: {problems}; it was not written by medi2i "
            "or was damaged, save or copy the model again"
        ) from None
    if manifest.format != FORMAT:
        raise ModelFormatError(
            f"{files.path}: model format {manifest.format!r} is not supported "
            f"(expected {FORMAT!r}); upgrade medi2i"
        )
    return manifest


def method_distribution(method: Method) -> str | None:
    """The installed distribution that holds the module defining ``method``'s class."""
    import importlib.metadata

    package = type(method).__module__.split(".")[0]
    names = importlib.metadata.packages_distributions().get(package, [])
    return names[0] if names else None
