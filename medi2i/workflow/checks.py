"""Checks of a workflow that need its method or its data, made before anything runs.

``medi2i validate`` runs them (the data checks with ``--check-data``), and so does
``medi2i run`` before its first stage, so that a condition the method refuses, a
validation split that cannot validate or an evaluation split without cases stops the run
at once instead of after hours of training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medi2i.errors import Medi2iError
from medi2i.workflow.loader import WorkflowError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from medi2i.data.cases import Case
    from medi2i.data.discovery import DataSplits
    from medi2i.io import VolumeReader
    from medi2i.method import DomainSpec, Method
    from medi2i.registry import Registry
    from medi2i.training.routes import TrainingRoute
    from medi2i.workflow.data_checks import DataProblems
    from medi2i.workflow.schema import DataConfig, Workflow


def check_condition(workflow: Workflow, registry: Registry) -> None:
    """Check ``method.condition`` against the method: its ``Condition`` model and what
    the method accepts given its domains (those of the data, or of the trained model).

    Raises:
        WorkflowError: The condition is refused; the message says what is allowed.
    """
    config = workflow.method
    method = _method(workflow, registry)
    try:
        method.parse_condition(config.condition)
    except Medi2iError as exc:
        raise WorkflowError(f"method.condition: {exc}") from None


def check_training(workflow: Workflow, registry: Registry) -> None:
    """Check, for a method the trainer trains, what would stop its training at the start:
    ``training.tensorboard`` without the tensorboard package, and options its
    optimizers refuse (a negative learning rate), found by setting the method's
    training up on the CPU without running a step.

    Raises:
        OptionsError: The package is not installed.
        WorkflowError: The method cannot set up training with its options.
    """
    from medi2i.method_spec import Training
    from medi2i.training.history import require_tensorboard
    from medi2i.workflow.loader import workflow_registry

    if workflow.method.model is not None:
        return
    registry = workflow_registry(workflow, registry=registry)
    if registry.method(str(workflow.method.id)).training is not Training.GRADIENT:
        return
    if workflow.training.tensorboard:
        require_tensorboard()
    _check_training_setup(workflow, registry)


def _check_training_setup(workflow: Workflow, registry: Registry) -> None:
    import torch

    from medi2i.training.trainer import Trainer

    method = _method(workflow, registry)
    trainer = Trainer(method.training_modules(), device=torch.device("cpu"))
    try:
        method.configure_training(trainer)
    except ValueError as exc:
        # torch's optimizers refuse a negative or NaN learning rate with a ValueError;
        # the trainer says the same once the run folder is made
        raise WorkflowError(
            f"method.options: method {method.id!r} cannot set up training with its options: {exc}"
        ) from None


def check_devices(workflow: Workflow, registry: Registry, *, stages: Sequence[str]) -> None:
    """Refuse a device this machine does not have (``training.device: cuda:7``) for the
    stages that use it, before a run folder is made for a run that cannot start.

    Raises:
        DeviceError: The device is not available.
    """
    from medi2i.engine import resolve_device

    if "train" in stages and workflow_training_route(workflow, registry) == "gradient":
        from medi2i.training.distributed import context_from_environment, process_device

        process_device(workflow.training.device, context_from_environment())
    if "evaluate" in stages and workflow.evaluation.enabled:
        resolve_device(workflow.inference.device)


def unused_training_settings(workflow: Workflow, registry: Registry) -> str | None:
    """A note when the workflow sets training steps for a method the trainer does not
    train (it fits, or has nothing to learn): the steps change nothing, and a user who
    wrote them expects they do. ``None`` when there is nothing to say."""
    settings = workflow.training.model_fields_set & _STEP_SETTINGS
    if not settings:
        return None
    route = workflow_training_route(workflow, registry)
    if route is None or route == "gradient":
        return None
    from medi2i.workflow.loader import workflow_registry

    method_cls = workflow_registry(workflow, registry=registry).method(str(workflow.method.id))
    named = ", ".join(f"training.{name}" for name in sorted(settings))
    how = "fits on whole volumes" if route == "fit" else "learns nothing here"
    verb = "are" if len(settings) > 1 else "is"
    return (
        f"note: {named} {verb} not used: method {workflow.method.id!r} {how} (training: "
        f"{method_cls.training.value}), it is not trained in steps"
    )


def unused_validation(
    workflow: Workflow, registry: Registry, *, cases: int | None = None
) -> str | None:
    """A note when the workflow gives validation cases (``data.split.validation`` or
    ``data.validation_data``) to a method the trainer does not train: it is fitted once
    (or learns nothing), so nothing is validated or chosen on them, and a user who set
    them aside expects they are used. ``cases``: how many there are, when the data was
    found (``0``: none, no note). ``None`` when there is nothing to say."""
    route = workflow_training_route(workflow, registry)
    if route in (None, "gradient") or cases == 0 or not validation_configured(workflow):
        return None
    counted = "" if cases is None else f" ({cases})"
    how = "is fitted once on whole volumes" if route == "fit" else "learns nothing here"
    if workflow.data.validation_data is not None:
        instead = "leave out data.validation_data"
    else:
        instead = "set data.split.validation to 0" + (
            " to fit on those cases too" if route == "fit" else ""
        )
    return (
        f"note: the validation cases{counted} are not used: method {workflow.method.id!r} "
        f"{how}, so nothing is validated or chosen on them; {instead}"
    )


def validation_configured(workflow: Workflow) -> bool:
    """Whether the workflow sets validation cases aside: ``data.validation_data``, or a
    ``data.split.validation`` above 0 or naming cases."""
    data = workflow.data
    return data.validation_data is not None or bool(data.split.validation)


def workflow_training_route(workflow: Workflow, registry: Registry) -> TrainingRoute | None:
    """How the train stage handles the workflow's method
    (:func:`medi2i.training.routes.training_route`), or ``None`` for a trained model, or
    when the method cannot say (its problems are reported elsewhere)."""
    from medi2i.training.routes import training_route
    from medi2i.workflow.loader import workflow_registry

    if workflow.method.model is not None or workflow.method.id is None:
        return None
    try:
        method_cls = workflow_registry(workflow, registry=registry).method(str(workflow.method.id))
        return training_route(method_cls, fit=workflow.method.fit)
    except Medi2iError:
        return None


_STEP_NAMES = (
    "steps accumulation_steps batch_size validate_every checkpoint_every patch_size "
    "patches_per_volume amp augmentation foreground_ratio collapse_check"
)
_STEP_SETTINGS = frozenset(_STEP_NAMES.split())
"""Training settings that only the trainer's steps use."""


def check_validation(
    workflow: Workflow,
    splits: DataSplits,
    registry: Registry,
    *,
    problems: DataProblems | None = None,
) -> None:
    """Check that the validation cases can validate the method before it trains.

    Validation predicts each case's ``source`` and compares it with its ``target``, so
    it needs paired cases whatever the training data: unpaired and multi-domain data
    give them in ``data.validation_data``.

    Its volumes are read: NaN or infinite voxels, a reference of its source's shape
    that is not on the source's grid (a shifted CT), and a reference that is not on the
    grid the method delivers for its source, are refused now rather than at the first
    validation (:mod:`medi2i.workflow.data_checks`), and so is a mask that is not on
    its reference's grid. Every case is checked and the problems are reported together.

    Args:
        workflow: The workflow.
        splits: Its data's splits.
        registry: The method's registry and the readers.
        problems: Collect the cases' problems here instead of raising them
            (:func:`check_data` reports those of every check at once).

    Raises:
        WorkflowError: A validation case lacks a source or a target, the method refuses
            a case's own condition (its manifest's ``condition`` column), or a reference
            is not on the method's output grid.
        GeometryError: A case's reference is not on its source's grid, or its mask not
            on its reference's.
        InputError: A source or reference has NaN or infinite voxels.
        DataProblemsError: Several of these, one line each.
    """
    from medi2i.errors import OptionsError
    from medi2i.method import DataKind
    from medi2i.training.validation import check_validation_cases

    cases = splits.validation
    if not cases.cases:
        return
    try:
        check_validation_cases(cases)
    except OptionsError as exc:
        hint = ""
        if cases.kind is not DataKind.PAIRED:
            hint = (
                f"; {cases.kind.value} cases cannot validate: give paired validation cases "
                "in data.validation_data, or set data.split.validation to 0"
            )
        raise WorkflowError(f"the validation split cannot be used: {exc}{hint}") from None
    from medi2i.data.cases import case_condition
    from medi2i.workflow.data_checks import DataProblems, check_finite_cases, check_output_grids

    method = _method(workflow, registry)
    found = DataProblems() if problems is None else problems
    readers = list(registry.readers.values())
    for case in cases.cases:
        if case.condition:
            with found.collect():
                try:
                    condition = case_condition(workflow.method.condition, case.condition)
                    method.parse_condition(condition)
                except Medi2iError as exc:
                    raise WorkflowError(f"validation case {case.id!r}: {exc}") from None
    _check_validation_masks(cases.cases, readers, found)
    with found.collect():
        check_output_grids(workflow, method, cases.cases, what="validation", readers=readers)
    with found.collect():
        check_finite_cases(workflow, cases.cases, what="validation", readers=readers)
    if problems is None:
        found.raise_any()


def _check_validation_masks(
    cases: Sequence[Case], readers: Sequence[VolumeReader] | None, problems: DataProblems
) -> None:
    """Each validation mask on its reference's grid, as validation requires it
    (:func:`medi2i.training.validation.require_validation_mask_grid`), rather than at
    the first validation, after steps of training."""
    from medi2i.data.cases import MASK, SOURCE, TARGET
    from medi2i.grid import same_voxels
    from medi2i.training.validation import require_validation_mask_grid
    from medi2i.workflow.data_checks import volume_grid

    for case in cases:
        images = case.images
        if MASK not in images or TARGET not in images or SOURCE not in images:
            continue
        with problems.collect():
            reference = volume_grid(images[TARGET], readers)
            source = volume_grid(images[SOURCE], readers)
            if source.shape == reference.shape and not same_voxels(source, reference):
                continue  # a moved reference is refused on its own (check_output_grids)
            require_validation_mask_grid(case, volume_grid(images[MASK], readers), reference)


def check_data(workflow: Workflow, splits: DataSplits, registry: Registry) -> None:
    """Every check of the cases that ``medi2i validate --check-data`` makes, with the
    problems of all of them reported at once: the training masks and pairs
    (:func:`check_training_pairs`, from the headers, as the run checks them before
    its train stage),
    the validation cases (:func:`check_validation`) and the evaluation cases
    (:func:`check_evaluation`), whose volumes are read.

    Raises:
        Medi2iError: The one problem found, as its check raises it.
        DataProblemsError: Several problems, one line each, then their count.
    """
    from medi2i.workflow.data_checks import DataProblems

    problems = DataProblems()
    with problems.collect():  # a file of two splits is no case's problem: raised as is
        check_training_pairs(workflow, splits, registry, problems=problems)
    with problems.collect():
        check_validation(workflow, splits, registry, problems=problems)
    with problems.collect():
        check_evaluation(workflow, splits, registry, problems=problems)
    problems.raise_any()


def check_training_pairs(
    workflow: Workflow,
    splits: DataSplits,
    registry: Registry,
    *,
    problems: DataProblems | None = None,
) -> None:
    """Refuse a training case whose mask is not on the grid the trainer requires
    (:func:`check_training_masks`), a training pair whose reference of its source's
    shape is not on the source's grid (a shifted CT; the trainer would refuse it at the
    start), or whose
    finer reference (super-resolution) is not the grid the method delivers for its
    source: the network would learn from targets moved by part of a voxel (an ``edges``
    grid given to a method writing slice centres). A file read by cases of two splits is
    refused too (:func:`~medi2i.workflow.split_checks.check_split_files`).

    The training volumes' grids are read from their headers only (NIfTI, NRRD,
    MetaImage); a volume whose reader cannot tell its grid so (a DICOM series) is
    checked by the trainer as it reads it. Every pair is checked and the problems are
    reported together (``problems``: as :func:`check_validation`).

    Raises:
        WorkflowError: Naming the case and both grids, or the file and both cases.
        GeometryError: A pair's volumes lie on different grids.
        DataProblemsError: Several of these, one line each.
    """
    from medi2i.workflow.data_checks import DataProblems, check_output_grids
    from medi2i.workflow.split_checks import check_split_files

    if workflow_training_route(workflow, registry) in ("gradient", "fit"):
        check_split_files(workflow, splits)  # a method that learns nothing leaks nothing
    if workflow.method.model is not None:
        return
    readers = list(registry.readers.values())
    train = splits.train.cases
    found = DataProblems() if problems is None else problems
    check_training_masks(train, readers, problems=found)
    if workflow.data.kind == "paired":
        method = _method(workflow, registry)
        with found.collect():
            check_output_grids(
                workflow, method, train, what="training", readers=readers, placement_only=True
            )
    if problems is None:
        found.raise_any()


def check_evaluation(
    workflow: Workflow,
    splits: DataSplits,
    registry: Registry | None = None,
    *,
    problems: DataProblems | None = None,
) -> None:
    """Check that the evaluate stage will have cases, and that their volumes lie on
    one grid, before training makes a model that nothing scores.

    The grids are read from the files' headers where the reader can (NIfTI, NRRD,
    MetaImage; :func:`medi2i.io.read_grid`), and from the full read otherwise (a DICOM
    series). As in the evaluate stage, a reference of its source's shape must lie on the
    source's grid (a reference of another shape is a super-resolution target), and a
    mask on its reference's grid. Every case is checked and the problems are reported
    together.

    Args:
        workflow: The workflow.
        splits: Its data's splits.
        registry: Whose readers read the headers; the installed plugins' when ``None``.
        problems: Collect the cases' problems here instead of raising them
            (:func:`check_data` reports those of every check at once).

    The volumes are read too: NaN or infinite voxels in a source (unless
    ``inference.nonfinite`` replaces them) or a reference are refused, and so is a finer
    reference that is not the grid the method delivers for its source.

    Raises:
        WorkflowError: Evaluation is on, has no ``evaluation.data`` and its split of
            ``data`` is empty; or a reference is not on the method's output grid.
        GeometryError: An evaluation case's volumes lie on different grids (the message
            names the files and by how much they differ).
        InputError: A source or reference has NaN or infinite voxels.
        DataProblemsError: Several of these, one line each.
    """
    config = workflow.evaluation
    if not config.enabled:
        return
    if config.data is not None:
        from medi2i.data.discovery import discover_cases

        cases = discover_cases(config.data).cases
    else:
        cases = splits.get(config.split).cases
        if not cases:
            raise WorkflowError(
                f"the {config.split} split has no cases to evaluate: set "
                f"data.split.{config.split} (a fraction or case list), choose another "
                "evaluation.split, give evaluation.data, or set evaluation.enabled to false"
            )
    from medi2i.workflow.evaluation import require_evaluation_masks

    require_evaluation_masks(workflow, cases)
    from medi2i.registry import Registry
    from medi2i.workflow.data_checks import DataProblems, check_finite_cases, check_output_grids

    found = DataProblems() if problems is None else problems
    with found.collect():
        _check_evaluation_conditions(workflow, cases, registry)
    readers = None if registry is None else list(registry.readers.values())
    for case in cases:
        with found.collect():
            _check_case_grids(case, config.mask, readers, what="evaluation")
    method = _method(workflow, registry if registry is not None else Registry())
    with found.collect():
        check_output_grids(workflow, method, cases, what="evaluation", readers=readers)
    with found.collect():
        check_finite_cases(workflow, cases, what="evaluation", readers=readers)
    if problems is None:
        found.raise_any()


def _check_evaluation_conditions(
    workflow: Workflow, cases: Sequence[Case], registry: Registry | None
) -> None:
    """Each evaluation case's condition (``method.condition`` with its own condition
    column) must be one the method accepts and that yields one output: the evaluate
    stage scores one prediction per case."""
    from medi2i.registry import Registry
    from medi2i.workflow.data_checks import DataProblems

    method = _method(workflow, registry if registry is not None else Registry())
    where = "evaluation.data" if workflow.evaluation.data is not None else "data"
    problems = DataProblems()
    for case in cases:
        with problems.collect():
            _check_evaluation_condition(workflow, method, case, where)
    problems.raise_any()


def _check_evaluation_condition(workflow: Workflow, method: Method, case: Case, where: str) -> None:
    from medi2i.data.cases import case_condition

    what = (
        f"evaluation case {case.id!r} ({where}, its condition column)"
        if case.condition
        else "method.condition"
    )
    try:
        parsed = method.parse_condition(case_condition(workflow.method.condition, case.condition))
        outputs = method.outputs(parsed)
    except Medi2iError as exc:
        raise WorkflowError(f"{what}: {exc}") from None
    if len(outputs) > 1:
        names = ", ".join(output.name for output in outputs)
        raise WorkflowError(
            f"{what}: method {method.id!r} yields {len(outputs)} outputs ({names}) under "
            f"this condition, and the evaluate stage scores one per case (case "
            f"{case.id!r}): give a condition that yields one (target_domain for a "
            "multi-domain method, styles: 1 for MUNIT), or set evaluation.enabled to "
            "false and predict them with medi2i predict"
        )


def check_adaptation(workflow: Workflow) -> None:
    """Check that the adaptation section finds target volumes, before training makes a
    model that the adapt stage then cannot adapt.

    Raises:
        WorkflowError: ``adaptation.data`` holds no volume (after ``adaptation.include``).
    """
    from medi2i.data.discovery import discover_subjects
    from medi2i.workflow.schema import DataConfig

    config = workflow.adaptation
    if config is None:
        return
    target = DataConfig(kind="single-domain", layout=config.data, include=config.include)
    try:
        subjects = discover_subjects(target)
    except Medi2iError as exc:  # the data section's words, for this section's keys
        message = str(exc).replace("data.include", "adaptation.include")
        raise WorkflowError(f"adaptation.data: {message}") from None
    if not any(subject.cases for subject in subjects):
        raise WorkflowError(
            "adaptation.data holds no target volume to adapt to (after adaptation.include); "
            "point it at the target scanner's images, or remove the adaptation section"
        )


def check_training_masks(
    cases: Sequence[Case],
    readers: Sequence[VolumeReader] | None,
    *,
    problems: DataProblems | None = None,
) -> None:
    """Refuse a training case whose mask lies on another grid than its image (its source,
    or its one image for single-domain data; or the target when it has another shape,
    as super-resolution pairs have): checked before anything is trained or
    fitted, so that a mask of another scan is not used, or silently ignored, as if it fit.
    The rule and the message are the trainer's
    (:func:`medi2i.training.masks.training_mask_grid`): a mask holding the image's
    voxels in another storage order (an axis flipped) passes.

    Every case is checked and the problems are reported together (``problems``: as
    :func:`check_validation`).

    Raises:
        GeometryError: Naming the case, both files and by how much the grids differ.
        DataProblemsError: Several cases' problems, one line each.
    """
    from medi2i.workflow.data_checks import DataProblems

    found = DataProblems() if problems is None else problems
    for case in cases:
        with found.collect():
            _check_training_mask(case, readers)
    if problems is None:
        found.raise_any()


def _check_training_mask(case: Case, readers: Sequence[VolumeReader] | None) -> None:
    from medi2i.data.cases import IMAGE, MASK, SOURCE, TARGET
    from medi2i.io import read_grid
    from medi2i.training.masks import training_mask_grid

    images = case.images
    main = images.get(SOURCE) or images.get(IMAGE)
    if main is None or MASK not in images:
        return
    reference, mask = read_grid(main, readers=readers), read_grid(images[MASK], readers=readers)
    if reference is None or mask is None:
        return  # (a DICOM series: the trainer checks it as it reads it)
    target = read_grid(images[TARGET], readers=readers) if TARGET in images else None
    training_mask_grid(case, mask, reference, target)


def _check_case_grids(
    case: Case, mask_role: str | None, readers: Sequence[VolumeReader] | None, *, what: str
) -> None:
    """A ``what`` (validation or evaluation) case's reference of its source's shape must
    lie on the source's grid, and its mask (``mask_role``) on the reference's. Grids
    come from the headers, or from the full read (:func:`volume_grid`): never skipped.
    The files are compared as stored, as the evaluate stage compares them."""
    from medi2i.data.cases import SOURCE, TARGET
    from medi2i.grid import require_same_grid
    from medi2i.workflow.data_checks import volume_grid

    images = case.images
    if TARGET not in images:
        return
    reference = volume_grid(images[TARGET], readers)
    checked = []
    if SOURCE in images:
        source = volume_grid(images[SOURCE], readers)
        if source.shape == reference.shape:  # another shape: a finer, super-resolution one
            checked.append((source, images[SOURCE], "the reference onto the source"))
    if mask_role is not None and mask_role in images:
        mask = volume_grid(images[mask_role], readers)
        checked.append((mask, images[mask_role], "the mask onto the reference"))
    for grid, path, resample in checked:
        require_same_grid(
            grid,
            reference,
            what=f"{what} case {case.id!r}: {path}",
            reference_name=f"its reference {images[TARGET]}",
            hint=f"resample {resample} (a case's volumes must share one grid)",
        )


def _method(workflow: Workflow, registry: Registry) -> Method:
    from medi2i.model_folder import load_model

    config = workflow.method
    if config.model is not None:
        return load_model(config.model, registry=registry)
    method = registry.method(str(config.id))(config.options)
    if workflow.data.kind in ("unpaired", "multi-domain"):
        specs = _domain_specs(workflow.data)
        if specs:
            method.use_domains(specs)
    return method


def _domain_specs(data: DataConfig) -> tuple[DomainSpec, ...]:
    """The data's domains in label order, from the file alone when it names them."""
    from medi2i.method import DomainSpec
    from medi2i.workflow.schema import layout_domains

    if data.domains:
        return data.domain_specs()
    named = layout_domains(data.layout)
    if named is None:
        from medi2i.data.discovery import discover_cases

        return discover_cases(data).specs()
    return tuple(DomainSpec(name=name) for name in sorted(named))
