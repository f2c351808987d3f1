"""The Method contract (plugin API 2): what a translation, harmonization or
super-resolution method is.

One contract covers these shapes of method, each declared rather than inferred:

1. patch networks run by sliding window (:class:`PatchNetworkMethod`);
2. whole-volume methods with fitted state (``training = Training.FIT``; implement
   :meth:`Method.fit`, or :meth:`Method.fit_pairs` for paired data, or
   :meth:`Method.fit_domains` for unpaired and multi-domain data, and
   :meth:`Method.predict`, keep the state in :meth:`Method.state_values` /
   :meth:`Method.state_tensors`);
3. outputs on another grid (override :meth:`Method.output_grid`; patch networks set
   ``self.output_scale`` per instance, e.g. from their options);
4. conditioned outputs (a ``Condition`` model given as the second type parameter,
   ``Method[MyOptions, MyCondition]``): the condition reaches :meth:`Method.preprocess`,
   :meth:`Method.postprocess`, :meth:`Method.outputs` (so a CT→MR direction writes an MR
   output) and the provenance;
5. several named outputs from one input (MUNIT styles, StarGAN targets): return a
   mapping from :meth:`Method.predict` and name the outputs in :meth:`Method.outputs`;
6. paired, unpaired and multi-domain training data (:attr:`Method.data`), with the
   domains (:class:`DomainSpec`, in label order) given to the method
   (:attr:`Method.domains`), to its pre- and postprocessing, and stored in its model;
7. adaptation: on a target data set after training (:meth:`Method.adapt`), or on the
   input itself at predict time (``fits_at_predict``; ``restores_state`` makes the core
   reset the method after every volume so a batch never leaks state).

The contexts, the trainer's API and the batch types live in :mod:`medi2i.method_services`,
what a method declares (tasks, data kinds, volume and domain specs, the options and
condition base classes) in :mod:`medi2i.method_spec`, both re-exported here; the grid in
:mod:`medi2i.grid`.

The core owns reading, orientation and resampling (:meth:`Method.spatial_plan`), the
sliding window, the inversion back to the input grid, writing and provenance. A method
owns its intensity pre- and postprocessing (whole-volume statistics live there, never
per patch), its network or fitted state, and its training steps.

Keep method modules importable without side effects; heavy imports (``torch``) may sit
at their top level, but the module holding the hook implementations should import the
method module inside the hook (see :mod:`medi2i.hookspecs`).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, cast

from pydantic import BaseModel, ValidationError

from medi2i.errors import Medi2iError, ModelFormatError, OptionsError
from medi2i.grid import Grid as Grid  # moved to medi2i.grid; still importable here
from medi2i.grid import SpatialPlan as SpatialPlan
from medi2i.method_services import AdaptContext as AdaptContext
from medi2i.method_services import AuxiliaryNetwork as AuxiliaryNetwork
from medi2i.method_services import ConditionT as ConditionT
from medi2i.method_services import FitPair as FitPair
from medi2i.method_services import MultiDomainBatch as MultiDomainBatch
from medi2i.method_services import PairedBatch as PairedBatch
from medi2i.method_services import PredictContext as PredictContext
from medi2i.method_services import Progress as Progress
from medi2i.method_services import SingleDomainBatch as SingleDomainBatch
from medi2i.method_services import TrainerAPI as TrainerAPI
from medi2i.method_services import TrainingBatch as TrainingBatch
from medi2i.method_services import TrainingStateValue as TrainingStateValue
from medi2i.method_services import UnpairedBatch as UnpairedBatch
from medi2i.method_services import no_progress as no_progress
from medi2i.method_spec import DataKind as DataKind
from medi2i.method_spec import DomainSpec as DomainSpec
from medi2i.method_spec import JSONScalar as JSONScalar
from medi2i.method_spec import MethodDescription as MethodDescription
from medi2i.method_spec import NoCondition as NoCondition
from medi2i.method_spec import Options as Options
from medi2i.method_spec import OptionsModel as OptionsModel
from medi2i.method_spec import OptionsT as OptionsT
from medi2i.method_spec import Output as Output
from medi2i.method_spec import StateValue as StateValue
from medi2i.method_spec import Task as Task
from medi2i.method_spec import Training as Training
from medi2i.method_spec import VolumeSpec as VolumeSpec
from medi2i.method_spec import validated_model

if TYPE_CHECKING:
    import torch
    from monai.data.meta_tensor import MetaTensor

    from medi2i.patch_network import PatchNetworkMethod as PatchNetworkMethod


class Method(abc.ABC, Generic[OptionsT, ConditionT]):
    """Base class of every method. Subclass it, fill in the class attributes, and
    register the class from a plugin's ``register_methods`` hook.

    Type parameters: the options model and the condition model, e.g.
    ``class CycleGAN(PatchNetworkMethod[CycleGANOptions, Direction])``; ``self.options``
    and ``context.condition`` are then typed, and ``Options`` / ``Condition`` need not be
    set (they are taken from the parameters).

    Class attributes:
        id: Unique lowercase id, e.g. ``"pix2pix"`` (``name.tag`` for variants).
        version: The method implementation's version, stored in model folders.
        tasks: The tasks it serves.
        data: The training data it needs.
        training: How it learns (:class:`Training`).
        input_spec, output_spec: Modality, units and channels in and out (the default
            of :meth:`outputs`; domain methods derive theirs from their domains).
        Options: Its pydantic options model (defaults from the paper).
        Condition: Its predict-time condition model (default: none).
        paper: Reference of the paper it implements.
        fits_at_predict: Whether it fits itself on the input at predict time.
        restores_state: Whether the core restores the method's state
            (:meth:`state_tensors`, :meth:`state_values`) after every predicted volume,
            for methods whose :meth:`predict` adapts them to the input.
        adapts: Whether it implements :meth:`adapt` (the workflow's adapt stage).

    Example:
        >>> class Negate(Method):
        ...     '''Negate intensities.'''
        ...     id = "negate"
        ...     tasks = (Task.TRANSLATION,)
        ...     input_spec = output_spec = VolumeSpec()
        ...     def predict(self, image, context):
        ...         return -image
        >>> Negate().options
        Options()
    """

    id: ClassVar[str]
    version: ClassVar[str] = "0.1.0"
    tasks: ClassVar[tuple[Task, ...]]
    data: ClassVar[DataKind] = DataKind.NONE
    training: ClassVar[Training] = Training.NONE
    input_spec: ClassVar[VolumeSpec]
    output_spec: ClassVar[VolumeSpec]
    Options: ClassVar[type[OptionsModel]] = OptionsModel
    Condition: ClassVar[type[BaseModel]] = NoCondition
    paper: ClassVar[str] = ""
    fits_at_predict: ClassVar[bool] = False
    restores_state: ClassVar[bool] = False
    adapts: ClassVar[bool] = False

    options: OptionsT
    domains: tuple[DomainSpec, ...]
    """The domains of unpaired or multi-domain data in label order; set by the trainer
    before training (:meth:`use_domains`) and restored from the model folder."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Options and Condition from the type parameters, unless the class sets them
        for base in cls.__dict__.get("__orig_bases__", ()):  # its own, not inherited
            arguments = getattr(base, "__args__", ())
            origin = getattr(base, "__origin__", None)
            if not (isinstance(origin, type) and issubclass(origin, Method)):
                continue
            names = ("Options", "Condition")
            for name, argument in zip(names, arguments, strict=False):
                if not isinstance(argument, type) or argument is Any or name in cls.__dict__:
                    continue  # a type variable of a generic base, its default, or set here
                if not issubclass(argument, BaseModel):
                    raise TypeError(
                        f"{cls.__qualname__}: its {name} type parameter {argument.__qualname__} "
                        "is not a pydantic model; subclass medi2i.Options for options (or "
                        "pydantic.BaseModel for a condition)"
                    )
                setattr(cls, name, argument)

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        self.options = cast("OptionsT", self.parse_options(options))
        self.domains = ()

    # -- description -----------------------------------------------------------------

    @classmethod
    def validate_class(cls) -> None:
        """Check the class attributes a registered method must have.

        Raises:
            TypeError: An attribute is missing or inconsistent, a default of the
                ``Options`` or ``Condition`` model is refused by that model, or a hook
                has the signature of plugin API 1 (``preprocess(image)``).
        """
        from medi2i.method_checks import check_method_class

        check_method_class(cls)

    @classmethod
    def summary(cls) -> str:
        """First paragraph of the class docstring, on one line (a first sentence that
        wraps is kept whole)."""
        paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(paragraph.split())

    @classmethod
    def describe(cls) -> MethodDescription:
        """The method's description for listings and model folders."""
        return MethodDescription(
            id=cls.id,
            version=cls.version,
            summary=cls.summary(),
            tasks=list(cls.tasks),
            data=cls.data,
            training=cls.training,
            input=cls.input_spec,
            output=cls.output_spec,
            fits_at_predict=cls.fits_at_predict,
            adapts=cls.adapts,
            paper=cls.paper,
            options=cls.Options.model_json_schema(),
            condition=cls.Condition.model_json_schema(),
        )

    @classmethod
    def parse_options(cls, options: BaseModel | Mapping[str, object] | None) -> OptionsModel:
        """Validate ``options`` against the method's ``Options`` model.

        Raises:
            OptionsError: An option is unknown or invalid, or ``options`` is not a mapping.
        """
        if isinstance(options, cls.Options):
            return options
        if options is not None and not isinstance(options, (BaseModel, Mapping)):
            raise OptionsError(
                f"options of method {cls.id!r} must be a mapping of option names to values "
                f"(or its Options model), got a {type(options).__name__}"
            )
        raw = options.model_dump() if isinstance(options, BaseModel) else dict(options or {})
        parsed: OptionsModel = validated_model(
            cls.Options,
            raw,
            f"options of method {cls.id!r}",
            elsewhere=(
                cls.Condition,
                "a predict-time condition, not an option: -c on the command line",
            ),
        )
        return parsed

    def parse_condition(self, condition: BaseModel | Mapping[str, object] | None) -> ConditionT:
        """Validate a predict-time condition against the method's ``Condition`` model,
        then against this model (:meth:`check_condition`, e.g. a known domain name).

        Raises:
            OptionsError: The condition is invalid, with what is wrong and allowed.
        """
        if isinstance(condition, self.Condition):
            parsed = condition
        elif condition is not None and not isinstance(condition, BaseModel | Mapping):
            raise OptionsError(
                f"the condition of method {self.id!r} is a mapping of its fields (e.g. "
                f"{{'direction': 'b2a'}}; -c key=value on the command line), not "
                f"{type(condition).__name__} {condition!r}"
            )
        else:
            raw = (
                condition.model_dump()
                if isinstance(condition, BaseModel)
                else dict(condition or {})
            )
            parsed = validated_model(
                self.Condition,
                raw,
                f"condition of method {self.id!r}",
                elsewhere=(self.Options, "an option, not a condition: -o on the command line"),
            )
        try:
            self.check_condition(cast("ConditionT", parsed))
        except (OptionsError, ValueError) as exc:
            message = str(exc)
            if repr(self.id) in message:
                raise
            raise OptionsError(f"condition of method {self.id!r}: {message}") from exc
        return cast("ConditionT", parsed)

    def check_condition(self, condition: ConditionT) -> None:
        """Check a parsed condition against this method's state (its domains, its
        number of styles); raise :class:`~medi2i.errors.OptionsError` (or ``ValueError``)
        naming what is allowed. :meth:`parse_condition` puts ``condition of method
        '<id>':`` in front of a message that does not name the method. Accepts everything
        by default."""

    # -- domains -----------------------------------------------------------------------

    def use_domains(self, domains: Sequence[DomainSpec | str]) -> None:
        """Set the domains of the method's data, in label order (the trainer calls this
        before training; loading a model restores them).

        Raises:
            OptionsError: The number of domains does not fit the data kind, or a name
                repeats.
        """
        try:
            specs = tuple(d if isinstance(d, DomainSpec) else DomainSpec(name=d) for d in domains)
        except ValidationError as exc:
            problems = "; ".join(str(error["msg"]) for error in exc.errors())
            raise OptionsError(f"method {self.id!r}: {problems}") from None
        names = [d.name for d in specs]
        if len(set(names)) != len(names):
            raise OptionsError(f"method {self.id!r}: domain names repeat: {names}")
        if self.data is DataKind.UNPAIRED and len(specs) != 2:
            raise OptionsError(
                f"method {self.id!r} learns from unpaired data: it needs exactly two "
                f"domains, got {names}"
            )
        if self.data is DataKind.MULTI_DOMAIN and len(specs) < 2:
            raise OptionsError(
                f"method {self.id!r} learns from multi-domain data: it needs two or more "
                f"domains, got {names}"
            )
        self.domains = specs

    @property
    def domain_names(self) -> tuple[str, ...]:
        """The names of :attr:`domains`, in label order."""
        return tuple(d.name for d in self.domains)

    def domain(self, name: str) -> DomainSpec:
        """The domain called ``name``.

        Raises:
            OptionsError: No such domain (the message lists the known ones).
        """
        for spec in self.domains:
            if spec.name == name:
                return spec
        known = list(self.domain_names) or "none: the method has not been trained"
        raise OptionsError(f"method {self.id!r} has no domain {name!r} (its domains: {known})")

    # -- prediction --------------------------------------------------------------------

    def spatial_plan(self) -> SpatialPlan:
        """The working grid; the core resamples the input to it and the output back."""
        return SpatialPlan()

    def output_grid(self, input_grid: Grid, condition: ConditionT | None = None) -> Grid:
        """The grid the final output is delivered on (the input grid unless overridden).

        ``condition`` is the predict-time condition (``None``: the method's defaults), so
        that a super-resolution method can take the output spacing from it; the core
        asks for the grid before inference, so a grid the method refuses (or a writer
        cannot hold) fails before any work.
        """
        return input_grid

    def input_domain(self, condition: ConditionT) -> str | None:
        """The domain of the input under ``condition`` (``None``: no domains), passed to
        :meth:`preprocess` at predict time. A two-way method returns the source of the
        direction the condition asks for."""
        return None

    def outputs(self, condition: ConditionT) -> tuple[Output, ...]:
        """The outputs one input yields under ``condition``.

        By default one unnamed output of :attr:`output_spec`. A two-way MR↔CT method
        returns the spec of the direction's target domain; a method with several
        outputs names each (and returns a mapping of the same names from
        :meth:`predict`).
        """
        return (Output("", self.output_spec),)

    def preprocess(
        self,
        image: MetaTensor,
        *,
        domain: str | None = None,
        condition: ConditionT | None = None,
    ) -> MetaTensor:
        """Intensity preprocessing of the whole (channel-first) volume.

        Args:
            image: The volume on the working grid, in its own units (HU for CT).
            domain: The volume's domain (:attr:`domains`) for unpaired and multi-domain
                methods, in training and at predict time (:meth:`input_domain`).
            condition: The predict-time condition (``None`` in training).
        """
        return image

    @abc.abstractmethod
    def predict(
        self, image: MetaTensor, context: PredictContext[ConditionT]
    ) -> torch.Tensor | Mapping[str, torch.Tensor]:
        """Translate a preprocessed channel-first volume.

        Returns a channel-first tensor on the working grid, or on another grid when it
        is a ``MetaTensor`` carrying that grid's affine (or when ``self.output_scale``
        says so); a method with named :meth:`outputs` returns a mapping by name.
        """

    def postprocess(
        self,
        output: MetaTensor,
        image: MetaTensor,
        *,
        domain: str | None = None,
        condition: ConditionT | None = None,
    ) -> MetaTensor:
        """Intensity postprocessing of one output (e.g. back to HU).

        Args:
            output: The raw output. It belongs to the core, which does not use it
                again: change it in place (``output.mul_(scale).add_(shift)``) rather
                than with operators, each of which would cost a whole volume more.
            image: The preprocessed input.
            domain: The output's domain (:attr:`Output.domain`).
            condition: The predict-time condition.
        """
        return output

    def preprocess_target(self, target: MetaTensor) -> MetaTensor:
        """Intensity preprocessing of a whole paired training target (e.g. HU to the
        network's range): the inverse of :meth:`postprocess`. Identity by default."""
        return target

    # -- fitted state ------------------------------------------------------------------

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors (network weights, histograms) stored in ``weights.safetensors``."""
        return {}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_tensors` returned."""
        if tensors:
            raise ModelFormatError(
                f"method {self.id!r} keeps no tensors but the model folder has {sorted(tensors)}"
            )

    def state_values(self) -> dict[str, StateValue]:
        """Fitted values kept as JSON in the model folder (e.g. normalization statistics)."""
        return {}

    def load_state_values(self, values: Mapping[str, StateValue]) -> None:
        """Restore what :meth:`state_values` returned."""
        if values:
            raise ModelFormatError(
                f"method {self.id!r} keeps no fitted values, "
                f"but the model folder has {sorted(values)}"
            )

    # -- training ----------------------------------------------------------------------

    def fit(self, volumes: Sequence[MetaTensor]) -> None:
        """Fit whole-volume state (``training = Training.FIT``) on preprocessed volumes
        of the target domain, on the working grid, as predict sees them."""
        raise Medi2iError(
            f"method {self.id!r} has nothing to fit (training: {self.training.value})"
        )

    def fit_pairs(self, pairs: Sequence[FitPair]) -> None:
        """Fit whole-volume state on paired cases (``training = Training.FIT`` with
        ``data = DataKind.PAIRED``): the workflow's train stage and the benchmarks call
        this instead of :meth:`fit` for such a method."""
        raise Medi2iError(
            f"method {self.id!r} does not fit on paired cases (data: {self.data.value}, "
            f"training: {self.training.value})"
        )

    def fit_domains(self, volumes: Mapping[str, Sequence[MetaTensor]]) -> None:
        """Fit whole-volume state on the volumes of every domain (``training =
        Training.FIT`` with ``data`` ``UNPAIRED`` or ``MULTI_DOMAIN``): a mapping from
        domain name, in the order of :attr:`domains`, to that domain's training volumes,
        each preprocessed on the working grid as predict sees its input. The workflow's
        train stage and the benchmarks call this instead of :meth:`fit` for such a
        method."""
        raise Medi2iError(
            f"method {self.id!r} does not fit on the volumes of several domains "
            f"(data: {self.data.value}, training: {self.training.value})"
        )

    def training_modules(self) -> dict[str, torch.nn.Module]:
        """Modules the trainer moves to the device, puts in train mode, wraps for DDP
        and checkpoints (e.g. ``{"generator": ..., "discriminator": ...}``)."""
        return {}

    def auxiliary_networks(self) -> dict[str, AuxiliaryNetwork]:
        """Frozen networks used by the training step only (see :class:`AuxiliaryNetwork`);
        reach them as ``trainer.auxiliary[name]``."""
        return {}

    def augments_intensity(self, role: str) -> bool:
        """Whether training patches of ``role`` get intensity augmentation (when the
        workflow turns augmentation on).

        ``role`` is ``"source"`` or ``"target"`` for paired data, ``"image"`` for
        single-domain data, and the domain's name for unpaired and multi-domain data.
        By default only paired sources and single-domain images are augmented: real
        images of a domain a method learns to produce are left as they are.
        """
        return role in ("source", "image")

    def unflippable_axes(self) -> tuple[int, ...]:
        """Array axes of training patches that augmentation must never mirror, whatever
        the workflow's ``augmentation.flip_axes`` says (the trainer drops them, and logs
        that it did).

        A network whose output is not mirror-symmetric with its input along an axis
        (e.g. thin slices placed from each thick slice's centre onwards, not around it)
        would learn from a flipped patch pair that is misaligned by a fraction of a
        slice. Default: none.
        """
        return ()

    def learns_from_unlabelled(self) -> bool:
        """Whether :meth:`training_step` needs unlabelled target-domain inputs beside its
        paired data (``batch["unlabelled"]``, see :class:`PairedBatch`), as
        domain-adversarial training does (it may depend on the options).

        The trainer refuses unlabelled data for a method that returns ``False`` and a
        run without unlabelled data for one that returns ``True``, both before the first
        step. Only paired methods can learn from unlabelled data.
        """
        return False

    def configure_training(self, trainer: TrainerAPI) -> None:
        """Create optimizers with ``trainer.add_optimizer`` (called once before training).

        Raises:
            OptionsError: The method is not trained by gradient steps (the default);
                the message says how it learns instead.
        """
        raise self._not_stepped()

    def training_step(self, batch: Any, trainer: TrainerAPI) -> dict[str, float]:
        """One optimisation step on a batch; returns the losses to log.

        ``batch`` holds channel-first patches stacked along dimension 0, keyed by data
        kind: :class:`PairedBatch`, :class:`UnpairedBatch`, :class:`MultiDomainBatch` or
        :class:`SingleDomainBatch` (annotate the parameter with the one you train on).
        """
        raise self._not_stepped()

    def _not_stepped(self) -> OptionsError:
        """The error :func:`medi2i.training.train` meets for a method that is not
        trained by gradient steps, saying what learns it instead."""
        if self.training is Training.NONE:
            instead = "it learns nothing: predict with it as it is"
        elif self.data is DataKind.PAIRED:
            instead = "fit it with method.fit_pairs(pairs) (medi2i.FitPair of preprocessed volumes)"
        elif self.data in (DataKind.UNPAIRED, DataKind.MULTI_DOMAIN):
            instead = "fit it with method.fit_domains(volumes_by_domain)"
        else:
            instead = "fit it with method.fit(volumes) on preprocessed volumes"
        return OptionsError(
            f"method {self.id!r} is not trained by gradient steps (training: "
            f"{self.training.value}), so medi2i.training.train cannot train it; {instead}, "
            "or run a workflow, whose train stage fits it"
        )

    def training_state(self) -> dict[str, TrainingStateValue]:
        """State beyond weights and optimizers that a resumed run needs (image pools,
        EMA weights, extra schedulers), saved in every checkpoint."""
        return {}

    def load_training_state(self, state: Mapping[str, TrainingStateValue]) -> None:
        """Restore what :meth:`training_state` returned, when a run resumes."""
        if state:
            raise Medi2iError(
                f"method {self.id!r} keeps no training state, but the checkpoint has "
                f"{sorted(state)}; resume with the method that wrote it"
            )

    # -- adaptation --------------------------------------------------------------------

    def adapt(self, volumes: Sequence[MetaTensor], context: AdaptContext) -> None:
        """Adapt a trained method to a target data set (``adapts = True``), e.g. AdaBN
        statistics; ``volumes`` are preprocessed as :meth:`preprocess` makes them, on
        the working grid. The core saves the result as a new model folder that names
        its source model."""
        raise Medi2iError(f"method {self.id!r} does not adapt to target data")


MethodClass = type[Method[Any, Any]]
"""A method class with any options and condition models (what plugins register)."""


def __getattr__(name: str) -> Any:
    """:class:`PatchNetworkMethod` lives in :mod:`medi2i.patch_network` (it subclasses
    :class:`Method`); it stays importable from here."""
    if name == "PatchNetworkMethod":
        from medi2i.patch_network import PatchNetworkMethod

        return PatchNetworkMethod
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
