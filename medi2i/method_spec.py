"""What a method declares about itself: its tasks, training data and way of learning,
the volumes it reads and writes, its domains and outputs, and the base classes of its
options and predict-time condition.

Everything here is re-exported by :mod:`medi2i.method` (and the package root); plugin
authors import it from there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from typing_extensions import TypeVar

from medi2i.errors import OptionsError

JSONScalar = float | int | str | bool
StateValue = JSONScalar | list[float] | list[int] | list[str]
"""A fitted value a method keeps in its model folder's JSON (not a tensor)."""

_PATH_PARTS = re.compile(r"[/\\]|\.\.")

_MODALITY_TERMS = (
    "AR ASMT AU BDUS BI BMD CFM CR CT DG DOC DX ECG EPS ES FID GM HC HD IO IOL IVOCT IVUS "
    "KER KO LEN LS MG MR M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PLAN POS PR PT "
    "PX REG RESP RF RG RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD RTSEGANN RTSTRUCT RWV "
    "SEG SM SMR SR SRF STAIN TEXTUREMAP TG US VA XA XAPROTOCOL XC"
)
DICOM_MODALITIES = frozenset(_MODALITY_TERMS.split())
"""The defined terms of DICOM's Modality attribute (0008,0060), PS3.3 C.7.3.1.1.1."""

_MODALITY_SLIPS = {"MRI": "MR", "PET": "PT", "SPECT": "NM", "CBCT": "CT", "XRAY": "DX"}


def modality_code(value: str) -> str:
    """A volume's modality as medi2i compares it: ``"any"``, or a DICOM Modality code in
    upper case (``"ct"`` and ``"CT"`` are the same modality).

    A DICOM series says its modality with these codes, so a spec that names another
    (``"MRI"``) could never match one; it is refused when the spec is made.

    Raises:
        ValueError: Not ``"any"`` and not a DICOM Modality code.

    Example:
        >>> modality_code(" mr ")
        'MR'
    """
    stripped = value.strip()
    if stripped.lower() in ("any", ""):
        return "any"
    code = stripped.upper()
    if code not in DICOM_MODALITIES:
        hint = _MODALITY_SLIPS.get(code)
        advice = f"did you mean {hint!r}? " if hint else ""
        raise ValueError(
            f"modality {value!r} is not a DICOM Modality code; {advice}use e.g. 'MR', 'CT', "
            "'PT' or 'any' (DICOM PS3.3 C.7.3.1.1.1 lists them all)"
        )
    return code


class Task(str, Enum):
    """What a method is for."""

    TRANSLATION = "translation"
    """One modality to another, e.g. MR to synthetic CT."""
    HARMONIZATION = "harmonization"
    """One scanner's images to look like another's, same modality."""
    SUPER_RESOLUTION = "super-resolution"
    """Low to high resolution, usually onto a finer grid."""


class DataKind(str, Enum):
    """The training data a method needs."""

    NONE = "none"
    """Nothing to train: a fixed function, or one fitted on the input at predict time."""
    PAIRED = "paired"
    """Aligned source and target volumes of the same subject."""
    UNPAIRED = "unpaired"
    """Two domains, volumes of different subjects."""
    MULTI_DOMAIN = "multi-domain"
    """Several labelled domains (e.g. N scanners)."""
    SINGLE_DOMAIN = "single-domain"
    """Volumes of one domain, e.g. to fit an intensity standardization."""


class Training(str, Enum):
    """How a method learns: declared on the class, never guessed from its overrides."""

    NONE = "none"
    """Nothing to learn: it is saved with its options."""
    FIT = "fit"
    """:meth:`Method.fit` on whole volumes (classical methods). With data kind ``none``
    fitting is optional (a workflow turns it on with ``method.fit``)."""
    GRADIENT = "gradient"
    """Optimisation steps run by the trainer (:meth:`Method.configure_training` and
    :meth:`Method.training_step`)."""


class VolumeSpec(BaseModel):
    """The contract of a method's input or output volume (as in MONAI bundles).

    Attributes:
        modality: A DICOM Modality code (``"MR"``, ``"CT"``, ...; any case) or ``"any"``.
        units: ``"HU"`` for CT, ``"arbitrary"`` for MR intensities.
        channels: Number of channels.
        value_range: Expected range of values, if there is one (e.g. ``(-1024, 3071)``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    modality: str = "any"
    units: str = "arbitrary"
    channels: int = 1
    value_range: tuple[float, float] | None = None

    @field_validator("modality")
    @classmethod
    def _modality_code(cls, value: str) -> str:
        return modality_code(value)


class DomainSpec(BaseModel):
    """One domain of unpaired or multi-domain data: its name and what its images are.

    Written in a workflow's ``data.domains`` (a plain name is a domain of ``"any"``
    modality), given to the method in label order (:attr:`Method.domains`) and stored in
    its model folder, so an MR↔CT method scales MR and CT each its own way and writes a
    CT output as CT.

    Attributes:
        name: The domain's name (a folder key of the layout, or a CSV ``domain``).
        modality: A DICOM Modality code (``"MR"``, ``"CT"``, ...; any case) or ``"any"``.
        units: ``"HU"`` for CT, ``"arbitrary"`` for MR intensities.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    modality: str = "any"
    units: str = "arbitrary"

    @field_validator("name")
    @classmethod
    def _usable_name(cls, value: str) -> str:
        # names are workflow keys, folder names and parts of output names
        if not value.strip() or value != value.strip() or _PATH_PARTS.search(value):
            raise ValueError(
                f"domain name {value!r} must be a non-empty name without surrounding spaces, "
                "'/', '\\' or '..'"
            )
        return value

    @field_validator("modality")
    @classmethod
    def _modality_code(cls, value: str) -> str:
        return modality_code(value)

    def volume_spec(self, channels: int = 1) -> VolumeSpec:
        """The :class:`VolumeSpec` of this domain's images."""
        return VolumeSpec(modality=self.modality, units=self.units, channels=channels)


@dataclass(frozen=True)
class Output:
    """One output a method writes for one input.

    Attributes:
        name: ``""`` for the single output of most methods; otherwise a short name
            (letters, digits, ``-``, ``_``) written as ``OUT_{name}`` next to the output
            path the user gave.
        spec: Its modality, units and channels (decides e.g. CT or MR DICOM storage).
        domain: The domain it belongs to (passed to :meth:`Method.postprocess`), if any.
        condition: What distinguishes it, recorded in its provenance (e.g.
            ``{"style_seed": 3}``).
    """

    name: str
    spec: VolumeSpec
    domain: str | None = None
    condition: Mapping[str, object] = field(default_factory=dict)


class Options(BaseModel):
    """Base class of a method's typed options; defaults come from the method's paper.

    Unknown keys are rejected, and so are NaN and infinite numbers (a ``.nan`` learning
    rate is a typo, not a setting).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


OptionsModel = Options
"""Alias of :class:`Options` for annotations inside :class:`Method`, whose ``Options``
class attribute shadows the name."""


class NoCondition(BaseModel):
    """The condition of methods that take none at predict time."""

    model_config = ConfigDict(extra="forbid", frozen=True)


OptionsT = TypeVar("OptionsT", bound=Options, default=Any)
"""A method's options model (first type parameter of :class:`Method`)."""


class MethodDescription(BaseModel):
    """A method's public description, as ``medi2i methods --json`` prints it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    version: str
    summary: str
    tasks: list[Task]
    data: DataKind
    training: Training
    input: VolumeSpec
    output: VolumeSpec
    fits_at_predict: bool
    adapts: bool
    paper: str
    options: dict[str, Any]
    condition: dict[str, Any]


def list_hint(error: Mapping[str, Any], default: object = None) -> str:
    """A hint for a single value where a list was expected (``roi_size: 128`` for
    ``[128, 128, 128]``), else ``""``.

    Args:
        error: One of pydantic's errors.
        default: The field's default, when known: a per-axis default (all items equal,
            like ``roi_size``'s) shows the value repeated as many times; any other list
            default (``landmark_percentiles``, whose items must increase) is shown as
            it is, since repeating the value would be refused too.

    Example:
        >>> list_hint({"type": "tuple_type", "input": 128})
        '; write a list in square brackets, e.g. [128, 128, 128]'
        >>> list_hint({"type": "tuple_type", "input": 50}, (1.0, 50.0, 99.0))
        '; write a list in square brackets, e.g. the default [1.0, 50.0, 99.0]'
    """
    if error.get("type") not in ("tuple_type", "list_type"):
        return ""
    value = error.get("input")
    if isinstance(default, (tuple, list)) and default and len(set(map(repr, default))) > 1:
        return f"; write a list in square brackets, e.g. the default {list(default)}"
    count = len(default) if isinstance(default, (tuple, list)) and default else 3
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"; write a list in square brackets, e.g. [{', '.join([str(value)] * count)}]"
    return "; write a list in square brackets"


def validated_model(
    model: type[BaseModel],
    raw: dict[str, object],
    what: str,
    *,
    elsewhere: tuple[type[BaseModel], str] | None = None,
) -> Any:
    """``raw`` as ``model``; an unknown key is told what the known ones are, or, when it
    belongs to ``elsewhere``'s model (options given as a condition), where it goes."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = err["loc"]
            message = err["msg"]
            if err["type"] == "missing" and isinstance(err["input"], list):
                # a fixed-length list one short: the missing item's "Field required"
                loc, message = loc[:-1], f"too few items ({len(err['input'])} given)"
            field = model.model_fields.get(str(loc[0])) if loc else None
            message += list_hint(err, None if field is None else field.default)
            where = ".".join(str(p) for p in loc) or "(root)"
            if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
                other, hint = elsewhere or (None, "")
                if other is not None and where in other.model_fields:
                    message += f" ({where} is {hint})"
                else:
                    message += f" (known: {', '.join(model.model_fields) or 'none'})"
            if f"{where}: {message}" not in problems:
                problems.append(f"{where}: {message}")
        raise OptionsError(f"invalid {what}: {'; '.join(problems)}") from None
