"""The workflow file: data, method, training, inference, evaluation and report in one YAML.

A workflow is what a colleague needs to rerun an experiment: where the cases are and how
they split, which method with which options, how it trains, how it is run on whole
volumes, how it is scored and what the report shows. Every section rejects unknown keys,
so a misspelt option is an error rather than a silently ignored default.

Relative paths are resolved against the folder of the workflow file when the file is
loaded through :func:`medi2i.workflow.load_workflow` (which passes that folder as the
validation context ``{"base": folder}``); validated without a context they stay as written.

Example:
    >>> workflow = Workflow.model_validate(
    ...     {
    ...         "data": {"kind": "paired", "layout": {"type": "synthrad", "root": "cases"}},
    ...         "method": {"id": "unet"},
    ...     }
    ... )
    >>> workflow.evaluation.metrics
    ['synthrad']
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from medi2i.method import DomainSpec
from medi2i.settings import InferenceSettings, Integer, Seed
from medi2i.training.config import TrainingConfig

SCHEMA_VERSION = 1
PAIRED_ROLES = ("source", "target", "mask")
SINGLE_DOMAIN_ROLES = ("image", "mask")

DataKindName = Literal["paired", "unpaired", "multi-domain", "single-domain"]
SplitName = Literal["train", "validation", "test"]


def _against_base(value: Path, info: ValidationInfo) -> Path:
    # the loader passes the workflow file's folder; without it paths stay as written
    base = (info.context or {}).get("base") if isinstance(info.context, dict) else None
    if base is None or value.is_absolute():
        return value
    return Path(base) / value.expanduser()


WorkflowPath = Annotated[Path, AfterValidator(_against_base)]
"""A path that is relative to the workflow file's folder unless absolute."""

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]


class Section(BaseModel):
    """Base of every workflow section: frozen, unknown keys and NaN or infinite numbers
    rejected (also inside free-form values such as ``method.options``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SynthradLayout(Section):
    """SynthRAD's layout: one folder per case, ``<root>/<case>/{mr,ct,mask}.{nii.gz,mha}``.

    Folders under ``root`` that hold none of the expected files (e.g. SynthRAD's
    ``overview``) are skipped; a case folder missing one of them is an error, the mask
    included (``medi2i validate --check-data`` lists every such folder at once): a data
    set without masks sets ``mask: null``.

    Attributes:
        type: ``"synthrad"``.
        root: Folder holding the case folders (e.g. ``Task1/brain``).
        source: File stem of the source volume (paired: the ``source`` role; unpaired:
            domain one; single-domain: the ``image``).
        target: File stem of the target volume (paired: ``target``; unpaired: domain two).
        mask: File stem of the mask (training foreground, validation and evaluation
            region), required in every case folder; ``null`` for data without masks:
            training then finds foreground by intensity
            (``training.foreground_threshold``), validation and evaluation score whole
            volumes, and ``air_mae`` is n/a (no air outside a mask).
    """

    type: Literal["synthrad"]
    root: WorkflowPath
    source: str = "mr"
    target: str = "ct"
    mask: str | None = "mask"


class FoldersLayout(Section):
    """One folder per role (paired, single-domain) or per domain (unpaired, multi-domain).

    Paired data uses the roles ``source``, ``target`` and optionally ``mask``, matched by
    file name across the folders; single-domain data uses ``image`` (and ``mask``).
    Unpaired data names exactly two domains, multi-domain data two or more; their
    files need not match (each file is its own case).

    Attributes:
        type: ``"folders"``.
        folders: Folder per role or per domain name.
    """

    type: Literal["folders"]
    folders: dict[str, WorkflowPath] = Field(min_length=1)


class CsvLayout(Section):
    """A CSV manifest with one row per volume: columns ``case``, ``path`` and ``role``
    (paired, single-domain) or ``domain`` (unpaired, multi-domain; a ``role`` column may
    add a ``mask`` per case). Relative paths are resolved against the CSV's folder. A
    paired manifest may add a ``condition`` column (``key=value`` pairs separated by
    spaces or semicolons): the case's predict-time condition in validation and evaluation, on top of
    ``method.condition``.

    Attributes:
        type: ``"csv"``.
        manifest: The CSV file.
    """

    type: Literal["csv"]
    manifest: WorkflowPath


Layout = Annotated[SynthradLayout | FoldersLayout | CsvLayout, Field(discriminator="type")]


class SplitConfig(Section):
    """How cases split into training, validation and test sets.

    Each of ``validation`` and ``test`` is a fraction of the cases in [0, 1) (rounded,
    at least one case when the fraction is above zero; domain data is split per
    domain) or an explicit list of case ids. Cases not named go to training.

    Attributes:
        validation: Validation fraction or case ids.
        test: Test fraction or case ids.
        seed: Seed of the shuffle that draws fractions, 0 to 2**32 - 1 (4294967295).
    """

    validation: Fraction | list[str] = 0.0
    test: Fraction | list[str] = 0.0
    seed: Seed = 0

    @field_validator("validation", "test", mode="before")
    @classmethod
    def _fraction_or_cases(cls, value: object) -> object:
        # one message for a number the fraction refuses, not also "not a valid list"
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and not (0.0 <= value < 1.0):  # type: ignore[operator]  # NaN refused too
            raise ValueError(
                f"a fraction of the cases from 0 to below 1 (e.g. 0.2) or a list of case "
                f"ids; got {value}"
            )
        if isinstance(value, list):
            repeated = [case for case, count in Counter(map(str, value)).items() if count > 1]
            if repeated:
                raise ValueError(f"case {repeated[0]!r} is listed twice; list each case once")
        return value

    @model_validator(mode="after")
    def _fractions_leave_training(self) -> SplitConfig:
        fractions = [f for f in (self.validation, self.test) if isinstance(f, float)]
        if sum(fractions) >= 1.0:
            raise ValueError("validation and test fractions must leave cases for training")
        overlap = _as_set(self.validation) & _as_set(self.test)
        if overlap:
            raise ValueError(f"cases in both validation and test: {sorted(overlap)}")
        return self


def _as_set(value: float | list[str]) -> set[str]:
    return set(value) if isinstance(value, list) else set()


class SourcePreparation(Section):
    """A method that needs no training, run on every training source before training.

    For a network that learns on the target's grid from inputs it first puts there
    itself at predict time: SRCNN trains on thick slices already interpolated onto the
    high-resolution grid, so its workflow prepares the sources with ``interpolation``
    (same ``order`` and ``align`` as the model). The prepared volumes are written once
    into the run folder (``prepared/``) and must lie on their target's grid. Validation
    and evaluation give the trained method the raw sources, as its users will.

    Attributes:
        method: Registered method id (its training data kind must be ``none``).
        options: Its options.
    """

    method: str
    options: dict[str, JsonValue] = Field(default_factory=dict)


def _domain_entry_kind(value: object) -> str:
    return "name" if isinstance(value, str) else "spec"


_DomainEntry = Annotated[
    Annotated[DomainSpec, Tag("spec")] | Annotated[str, Tag("name")],
    Discriminator(_domain_entry_kind),
]
"""A ``data.domains`` entry: a plain name or a mapping; a bad mapping is reported as a
domain's error, not also as 'not a string'."""


class DataConfig(Section):
    """Where the cases are, what kind of data they form and how they split.

    Attributes:
        kind: ``paired`` (aligned source and target of one subject), ``unpaired`` (two
            domains), ``multi-domain`` (N labelled domains) or ``single-domain``.
        layout: The folder layout or manifest (``type``: synthrad, folders or csv).
        include: Glob patterns (``fnmatch``) of subject ids to keep, e.g. ``[mni152-A]``
            or ``["*-A"]``; empty keeps every subject. Matching is done before splitting.
        split: Training, validation and test split.
        prepare_source: Paired training data only: a method run on every training
            source before training (see :class:`SourcePreparation`).
        cards: Names of the data cards (``data_cards/<name>.yaml``) that describe this
            data; the trained model's card names them. The ``data_cards/`` folder is
            looked for beside the workflow file, in a folder above it and in the current
            folder; ``medi2i validate`` refuses a name that the folders found lack (with
            none found, as for a workflow outside a project, the names are not checked).
        domains: Unpaired and multi-domain data: the domains in label order (label 0
            first; domain ``a`` then ``b`` of unpaired batches), each a name or
            ``{name, modality, units}`` (e.g. ``{name: ct, modality: CT, units: HU}``),
            given to the method and stored in its model. Without it the label order is
            the sorted domain names, whatever the layout, and modalities are ``any``.
        validation_data: Paired cases (``source``, ``target``, optional ``mask``) that
            validate training instead of the split's validation part, for any data
            kind: an unpaired MR↔CT method is validated on aligned MR/CT pairs, a
            harmonization method on travelling subjects. Its layout is read as paired.
        unlabelled_data: Paired data only: input volumes of the target domain without
            targets (e.g. MR of the scanner a model must also work on, without CT), for
            a method that learns from them as well (domain-adversarial training; see
            ``learns_from_unlabelled`` in ``medi2i methods --json``). Its layout is read
            as single-domain: a ``folders`` layout with an ``image`` folder, or a CSV
            with role ``image``. Every case of it is used in training; the split does
            not apply to it.
    """

    kind: DataKindName
    layout: Layout
    include: list[str] = Field(default_factory=list)
    split: SplitConfig = SplitConfig()
    prepare_source: SourcePreparation | None = None
    cards: list[str] = Field(
        default_factory=list,
        description=(
            "Names of the data cards (data_cards/<name>.yaml, beside the workflow, in a "
            "folder above it or in the current folder) that describe this data; the "
            "trained model's card names them. medi2i validate refuses a name that the "
            "data_cards folder it finds there lacks."
        ),
    )
    domains: list[_DomainEntry] = Field(default_factory=list)
    validation_data: Layout | None = Field(
        default=None,
        description=(
            "Paired cases (source, target, optional mask) that validate training instead "
            "of the split's validation part, for any data kind (e.g. aligned MR/CT pairs "
            "for an unpaired MR-CT method). Its layout is read as paired."
        ),
    )
    unlabelled_data: Layout | None = Field(
        default=None,
        description=(
            "Paired data only: input volumes of the target domain without targets, for a "
            "method that learns from them too (learns_from_unlabelled in medi2i methods "
            "--json). Read as single-domain data: a folders layout with an image folder, "
            "or a CSV with role image; the split does not apply to it."
        ),
    )

    def domain_specs(self) -> tuple[DomainSpec, ...]:
        """:attr:`domains` as specs (a plain name is a domain of any modality)."""
        return tuple(d if isinstance(d, DomainSpec) else DomainSpec(name=d) for d in self.domains)

    @model_validator(mode="after")
    def _layout_fits_kind(self) -> DataConfig:
        layout = self.layout
        if isinstance(layout, SynthradLayout) and self.kind == "multi-domain":
            raise ValueError("the synthrad layout has two volumes per case; use folders or csv")
        if isinstance(layout, FoldersLayout):
            _check_folder_keys(self.kind, sorted(layout.folders))
        if self.prepare_source is not None and self.kind != "paired":
            raise ValueError("prepare_source prepares paired sources; the data is " + self.kind)
        if self.domains:
            _check_domains(self)
        if isinstance(self.validation_data, FoldersLayout):
            _check_folder_keys("paired", sorted(self.validation_data.folders))
        if self.unlabelled_data is not None:
            if self.kind != "paired":
                raise ValueError(
                    "unlabelled_data goes with paired data (a paired method that also learns "
                    f"from unlabelled inputs); the data is {self.kind}"
                )
            if isinstance(self.unlabelled_data, FoldersLayout):
                _check_folder_keys("single-domain", sorted(self.unlabelled_data.folders))
        return self


def _check_domains(data: DataConfig) -> None:
    names = [spec.name for spec in data.domain_specs()]
    if data.kind not in ("unpaired", "multi-domain"):
        raise ValueError(
            "data.domains names the domains of unpaired or multi-domain data; "
            f"the data is {data.kind}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"data.domains repeats a name: {names}")
    if data.kind == "unpaired" and len(names) != 2:
        raise ValueError(f"unpaired data has exactly two domains; data.domains gives {names}")
    declared = layout_domains(data.layout)
    if declared is not None and sorted(declared) != sorted(names):
        raise ValueError(
            f"data.domains {names} must name the layout's domains {sorted(declared)}, each once"
        )


def _check_folder_keys(kind: str, keys: list[str]) -> None:
    if kind == "paired":
        _require_roles(keys, required=("source", "target"), allowed=PAIRED_ROLES, kind=kind)
    elif kind == "single-domain":
        _require_roles(keys, required=("image",), allowed=SINGLE_DOMAIN_ROLES, kind=kind)
    elif kind == "unpaired" and len(keys) != 2:
        raise ValueError(f"unpaired data needs exactly two domain folders, got {keys}")
    elif kind == "multi-domain" and len(keys) < 2:
        raise ValueError(f"multi-domain data needs two or more domain folders, got {keys}")


def _require_roles(
    keys: list[str], *, required: tuple[str, ...], allowed: tuple[str, ...], kind: str
) -> None:
    missing = [role for role in required if role not in keys]
    unknown = [key for key in keys if key not in allowed]
    if missing or unknown:
        raise ValueError(
            f"{kind} folders are keyed by role ({', '.join(allowed)}); "
            f"missing {missing or 'none'}, unknown {unknown or 'none'}"
        )


class MethodConfig(Section):
    """The method to train (``id`` and ``options``) or a trained model to evaluate.

    What the train stage does depends on the method: a network trained by gradient
    steps goes to the trainer; a method that defines ``fit`` (Nyul's landmarks, the
    target statistics of z-score and WhiteStripe) is fitted on the training split's
    volumes of the *target domain*; a method with nothing to learn is saved as it is.
    The target domain's volumes are, by data kind:

    - ``single-domain``: every training case's ``image`` (the layout holds only the
      target domain, e.g. scanner A; ``data.include`` picks it out of a larger folder);
    - ``paired``: every training case's ``target``;
    - ``unpaired`` and ``multi-domain``: the training images of domain ``fit_domain``.

    A fitted method that itself learns from unpaired or multi-domain data
    (``domain-intensity-map``) is fitted on the training images of every domain, by
    domain, and needs no ``fit_domain``; one that learns from paired data
    (``monotone-mapping``) on the training split's whole pairs.

    Attributes:
        id: Registered method id (``medi2i methods`` lists them).
        options: The method's options; checked against its ``Options`` model when the
            workflow is validated with the plugins loaded.
        model: A trained-model folder or zip instead of ``id`` (training is skipped).
        init_from: A trained-model folder or zip of the same method whose weights start
            the training instead of a random initialisation (fine-tuning, or continuing
            a finished run with a new schedule). Its architecture options must match
            ``options`` (the weights must fit); the optimizer and schedule start afresh.
            A run resumed from its own checkpoint continues from that checkpoint.
        condition: Predict-time condition used in evaluation, e.g. ``{target_domain: A}``.
        fit: Fit a method that needs no training data but can be fitted (``zscore``,
            ``whitestripe``: onto the target domain's statistics); ``false`` saves it
            unfitted. Methods that need their fit (``nyul``) are always fitted.
        fit_domain: The domain a method is fitted on, for unpaired and multi-domain data
            (a folder key of the ``folders`` layout, a ``domain`` of the CSV, or a
            file stem of the ``synthrad`` layout).
    """

    id: str | None = None
    options: dict[str, JsonValue] = Field(default_factory=dict)
    model: WorkflowPath | None = None
    init_from: WorkflowPath | None = None
    condition: dict[str, JsonValue] = Field(default_factory=dict)
    fit: bool = True
    fit_domain: str | None = None

    @model_validator(mode="after")
    def _id_or_model(self) -> MethodConfig:
        if (self.id is None) == (self.model is None):
            raise ValueError("give either id (a method to train) or model (a trained model)")
        if self.model is not None and self.options:
            raise ValueError("options are fixed by the trained model; remove options")
        if self.model is not None and self.init_from is not None:
            raise ValueError("init_from starts a training; a workflow giving model trains none")
        return self


class AdaptationConfig(Section):
    """Adapt the trained (or given) model to target data before evaluation.

    For methods that adapt (``adapts`` in ``medi2i methods --json``), e.g. AdaBN
    recomputing normalisation statistics on a new scanner's images. The adapted model
    is saved as ``adapted/`` in the run folder, naming its source model; evaluation
    then uses it. Runs also when ``method.model`` gives a trained model.

    Attributes:
        data: The target volumes, as a layout read as single-domain data (``folders``
            with an ``image`` folder, or a CSV with role ``image``).
        include: Glob patterns of subject ids to keep (as ``data.include``).
        seed: Seed of anything random the adaptation does, 0 to 2**32 - 1.
    """

    data: Layout
    include: list[str] = Field(default_factory=list)
    seed: Seed = 0

    @model_validator(mode="after")
    def _single_domain_layout(self) -> AdaptationConfig:
        if isinstance(self.data, FoldersLayout):
            _check_folder_keys("single-domain", sorted(self.data.folders))
        return self


class EvaluationConfig(Section):
    """How predictions are scored against references.

    Attributes:
        enabled: Whether the evaluate stage runs.
        split: Which split of ``data`` is predicted and scored.
        metrics: Registered metric names or presets: ``synthrad`` (``synthrad_mae``,
            ``synthrad_psnr``, ``synthrad_ms_ssim`` in the mask, and ``air_mae`` in the
            air 10 voxels or more outside it, in HU), ``mr`` (``mae``, ``psnr``,
            ``ssim``, ``histogram_distance``) and any metric a plugin registers.
        mask: Role of the mask that limits the metrics, or ``null`` for whole volumes.
        data: Separate paired evaluation data (e.g. a test set with references for a
            method trained on unpaired data); all its cases are evaluated.
        save_predictions: Keep the predicted volumes in the run folder. Off, only
            the first ``report.cases`` are kept, for the report's montages (none when
            ``report.figures`` or the report is off).
        checkpoint: Which trained model of the run is scored. ``best`` (default): the
            run's ``best-model/``, the step with the lowest validation MAE, when the run
            kept one (validation data and ``training.keep_best``); otherwise, and with
            ``last``, ``model/``, the last training step. The checkpoint is chosen on
            validation and the evaluation data scored once; the report and the model
            card say which folder was scored, from which step and why. An
            ``adaptation`` adapts the same folder. A fitted method, or a workflow given
            a trained ``method.model``, has one model only.
    """

    enabled: bool = True
    split: SplitName = "test"
    metrics: list[str] = Field(default_factory=lambda: ["synthrad"], min_length=1)
    mask: str | None = "mask"
    data: DataConfig | None = None
    save_predictions: bool = True
    checkpoint: Literal["best", "last"] = "best"

    @model_validator(mode="after")
    def _paired_reference(self) -> EvaluationConfig:
        if self.data is not None and self.data.kind != "paired":
            raise ValueError("evaluation data must be paired (a reference for every source)")
        if self.data is not None and self.data.prepare_source is not None:
            raise ValueError(
                "evaluation data is given to the method as it is; remove prepare_source"
            )
        return self


class ReportConfig(Section):
    """The run report.

    Attributes:
        enabled: Whether the report stage runs.
        format: ``markdown`` (``report.md``) or ``html`` (``report.html``, self-contained
            apart from the PNG figures next to it).
        figures: Draw slice montages and training curves.
        cases: Number of evaluated cases shown as montages (the first ones by id).
    """

    enabled: bool = True
    format: Literal["markdown", "html"] = "markdown"
    figures: bool = True
    cases: Integer = Field(default=3, ge=0)


class OutputConfig(Section):
    """Where runs go: ``<root>/<name>-<run_id>/``.

    Attributes:
        root: Folder holding the run folders.
        name: Run name; the workflow file's stem when empty.
        run_id: Suffix of the run folder; a UTC timestamp (``20240131-142501``) when
            empty. Give one to make reruns continue the same folder.
    """

    root: WorkflowPath = Field(default=Path("runs"), validate_default=True)
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    run_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _whole_version(value: object) -> object:
    # pydantic's lax mode would take true, 1.0 and "1" for the version 1
    if type(value) is not int:
        raise ValueError(f"the schema version is the integer 1, not {json.dumps(value)}")
    return value


class Workflow(Section):
    """A research workflow: everything needed to train, evaluate and report one method.

    Attributes:
        version: Schema version of the file (currently 1).
        description: Free text shown at the top of the report.
        plugins: Installed plugins to load in addition to the autoloaded ones, by
            entry-point or distribution name (``medi2i plugins`` lists them).
        data: Training (and by default evaluation) data.
        method: The method and its options, or a trained model.
        training: Trainer settings.
        inference: Sliding-window settings for validation and evaluation.
        adaptation: Adapt the model to target data before evaluation (optional).
        evaluation: Metrics and which cases to score.
        report: Report format and figures.
        output: Where the run folder goes.
    """

    version: Annotated[Literal[1], BeforeValidator(_whole_version)] = 1
    description: str = ""
    plugins: list[str] = Field(default_factory=list)
    data: DataConfig
    method: MethodConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    adaptation: AdaptationConfig | None = None
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    # validated from {} so that the default root is resolved against the workflow's folder
    output: OutputConfig = Field(default_factory=dict, validate_default=True)
    _overrides: tuple[str, ...] = PrivateAttr(default=())

    @property
    def overrides(self) -> tuple[str, ...]:
        """The ``--set`` overrides applied when the file was loaded
        (:func:`~medi2i.workflow.loader.load_workflow`), listed by the report because
        ``description`` is the file's text and may not describe them."""
        return self._overrides

    @model_validator(mode="after")
    def _fit_domain_is_a_domain(self) -> Workflow:
        domain = self.method.fit_domain
        if domain is None:
            return self
        if self.data.kind not in ("unpaired", "multi-domain"):
            raise ValueError(
                f"method.fit_domain picks a domain of unpaired or multi-domain data; "
                f"{self.data.kind} data has none (remove it)"
            )
        known = layout_domains(self.data.layout)
        if known is not None and domain not in known:
            raise ValueError(f"method.fit_domain {domain!r} is not one of the domains {known}")
        return self


def layout_domains(layout: SynthradLayout | FoldersLayout | CsvLayout) -> list[str] | None:
    """The domain names a layout declares, or ``None`` when only its files tell (CSV)."""
    if isinstance(layout, SynthradLayout):
        return [layout.source, layout.target]
    if isinstance(layout, FoldersLayout):
        return list(layout.folders)
    return None
