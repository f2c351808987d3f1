"""A workflow's train and adapt stages (:mod:`medi2i.workflow.runner` runs them): train
or fit the method on the workflow's cases into the run folder, with its model cards, and
adapt the trained model to the adaptation data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.workflow.loader import WorkflowError
from medi2i.workflow.run_folder import (
    EarlierAttempt,
    RunFolder,
    RunState,
    SplitSource,
    is_main_process,
    write_config,
)

if TYPE_CHECKING:
    from medi2i.data.discovery import DataSplits
    from medi2i.method import Method
    from medi2i.registry import Registry
    from medi2i.workflow.run_folder import Log
    from medi2i.workflow.schema import Workflow


def learns_from_cases(workflow: Workflow, registry: Registry) -> bool:
    """Whether the train stage reads the training split: ``False`` only for a method
    with nothing to train or fit (route ``"save"``: training ``none``, or a ``fit``
    method whose fitting is off), which is saved with its options as it is.

    A trained model (``method.model``) and a method the registry cannot resolve count
    as learning, so that the split keeps its usual checks.
    """
    from medi2i.workflow.checks import workflow_training_route

    if workflow.method.model is not None:
        return True
    return workflow_training_route(workflow, registry) != "save"


def workflow_splits(workflow: Workflow, registry: Registry) -> DataSplits:
    """The workflow's cases, split as ``data.split`` says; a method with nothing to
    learn (:func:`learns_from_cases`) may put every case in validation and test.

    Raises:
        InputError: The data is missing, or the split leaves no training case for a
            method that trains or fits.
    """
    from medi2i.data.discovery import discover_splits

    return discover_splits(workflow.data, training=learns_from_cases(workflow, registry))


def train_stage(
    workflow: Workflow,
    run: RunFolder,
    registry: Registry,
    splits: SplitSource,
    log: Log,
    *,
    command: str = "medi2i run",
) -> Path:
    """Train, fit or save the method (see :func:`training_route`); return its model folder.

    A workflow naming a trained ``model`` skips training; a method with nothing to learn
    is saved with its options, so later stages find a model folder either way. The
    resolved config is written once training accepted it (a resume its checkpoint
    refuses leaves the folder as it was); ``command`` is what the model card names.
    """
    from medi2i.errors import OptionsError
    from medi2i.model_folder import save_model
    from medi2i.training.routes import training_route
    from medi2i.workflow.model_card import training_record, write_model_card

    config = workflow.method
    state = RunState.read(run)
    main = is_main_process()
    if config.model is not None:
        log(f"train: skipped, the workflow gives the trained model {config.model}")
        if main:
            write_config(run, workflow)
            state.finished(run, "train", model=config.model, overrides=workflow.overrides)
        return config.model
    method = registry.method(str(config.id))(config.options)
    try:
        route = training_route(method, fit=config.fit)
    except OptionsError as exc:
        raise WorkflowError(str(exc)) from None
    if route != "gradient":
        from medi2i.workflow.checks import unused_training_settings

        note = unused_training_settings(workflow, registry)
        if note is not None:
            log(f"train: {note}")
    scale: dict[str, int] | None = None
    if route == "gradient":
        model_dir, resumed_from, scale = _train(
            workflow, run, registry, method, splits, log, command
        )
    else:
        resumed_from = 0
        if main:
            write_config(run, workflow)
        if route == "fit":
            model_dir = _fit(workflow, run, registry, method, splits, log)
            record = training_record(workflow, splits(), route="fit")
        else:
            log(f"train: method {method.id!r} has nothing to train; saving it with its options")
            model_dir = save_model(method, run.model, overwrite=True)
            record = training_record(workflow, None, route="save")
        write_model_card(workflow, run, method, model_dir, command=command, training=record)
    if main:
        state.finished(
            run,
            "train",
            model=model_dir,
            overrides=workflow.overrides,
            resumed_from=resumed_from,
            scale=scale,
        )
    return model_dir


def _fit(
    workflow: Workflow,
    run: RunFolder,
    registry: Registry,
    method: Method,
    splits: SplitSource,
    log: Log,
) -> Path:
    """Fit on the training split's target-domain volumes, as predict would see them, on
    its paired cases for a method that learns from paired data, or on every domain's
    volumes for one that learns from unpaired or multi-domain data."""
    from medi2i.data.discovery import target_domain_images
    from medi2i.method import DataKind
    from medi2i.model_folder import save_model
    from medi2i.training.routes import fit_domains_on, fit_on, fit_pairs_on
    from medi2i.workflow.checks import check_training_masks
    from medi2i.workflow.split_checks import check_split_files

    readers = list(registry.readers.values())
    check_split_files(workflow, splits())
    check_training_masks(splits().train.cases, readers)
    if method.data is DataKind.PAIRED:
        cases = splits().train.cases
        count = f"{len(cases)} paired case{'' if len(cases) == 1 else 's'}"
        log(f"train: fitting method {method.id!r} on {count} of the training split")
        fit_pairs_on(method, cases, readers=readers)
    elif method.data in (DataKind.UNPAIRED, DataKind.MULTI_DOMAIN):
        train = splits().train
        count = f"{len(train.cases)} volume{'' if len(train.cases) == 1 else 's'}"
        log(f"train: fitting method {method.id!r} on the training split's {count}, by domain")
        fit_domains_on(method, train, readers=readers)
    else:
        from medi2i.data.cases import MASK

        if any(MASK in case.images for case in splits().train.cases):
            log(
                f"train: note: the layout's masks are not used by fitting: {method.id!r} "
                "takes its statistics from each whole volume (or the foreground its own "
                "options find), as it does at predict time, where no mask is given"
            )
        paths = target_domain_images(splits().train, domain=workflow.method.fit_domain)
        count = f"{len(paths)} target-domain volume{'' if len(paths) == 1 else 's'}"
        log(f"train: fitting method {method.id!r} on {count} of the training split")
        fit_on(method, paths, readers=readers)
    model_dir = save_model(method, run.model, overwrite=True)
    fitted = ", ".join(sorted(method.state_values())) or "no stored values"
    log(f"train: fitted ({fitted}); model in {model_dir}")
    return model_dir


def _train(
    workflow: Workflow,
    run: RunFolder,
    registry: Registry,
    method: Method,
    splits: SplitSource,
    log: Log,
    command: str,
) -> tuple[Path, int, dict[str, int]]:
    """Train by gradient steps; return the model folder, the checkpoint step training
    resumed from (0 when it started afresh) and the processes and patches per step it
    trained with (for ``run.json``). ``model/`` and ``best-model/`` get their cards
    (naming ``command``) as the trainer writes them."""
    from medi2i.training import train
    from medi2i.workflow.checks import check_training_pairs, check_validation
    from medi2i.workflow.model_card import planned_steps_of, training_record, write_model_card
    from medi2i.workflow.preparation import prepared_sources

    data = splits()
    check_training_pairs(workflow, data, registry)
    validation = data.validation if data.validation.cases else None
    if validation is not None:
        check_validation(workflow, data, registry)
    unlabelled = data.unlabelled
    log(cases_line(workflow, method.id, data))
    earlier_plan = planned_steps_of(run)  # before a resume replaces the config
    earlier = EarlierAttempt.read(run)  # likewise, and before the trainer drops its log
    started: list[int] = []

    def start(first_step: int) -> None:
        started.append(first_step)
        note = earlier.restart_note(run, workflow) if first_step == 0 else None
        if note is not None:
            log(note)
        write_config(run, workflow)

    def card(folder: Path, best: bool) -> None:
        # the best validated step's model (best-model/) gets its validation metrics
        record = training_record(
            workflow,
            data,
            route="gradient",
            resumed_from=started[0] if started else None,
            earlier_plan=earlier_plan,
        )
        write_model_card(
            workflow, run, method, folder, validation_metrics=best, command=command, training=record
        )

    init_from = None
    if workflow.method.init_from is not None:
        from medi2i.model_folder import load_model

        init_from = load_model(workflow.method.init_from, registry=registry)
        log(f"train: starting from the weights of the trained model {workflow.method.init_from}")
    result = train(
        method,
        prepared_sources(workflow, run, registry, data.train, log),
        config=workflow.training,
        run_dir=run.root,
        validation=validation,
        resume=True,
        inference=workflow.inference,
        validation_condition=workflow.method.condition,
        unlabelled=unlabelled,
        init_from=init_from,
        on_start=start,
        finish_model=card,
    )
    if result.first_step > 0:
        log(f"train: resumed from the checkpoint of step {result.first_step}")
    log(f"train: finished at step {result.steps}; model in {result.model_dir}")
    scale = {"world_size": result.world_size}
    if result.patches_per_step is not None:
        scale["patches_per_step"] = result.patches_per_step
    return Path(result.model_dir), result.first_step, scale


def cases_line(workflow: Workflow, method_id: str, data: DataSplits) -> str:
    """The train stage's first line: the training cases, the validation cases and where
    they come from, and the steps (``train: method 'cyclegan' on 2 unpaired training
    cases; 1 validation case (data.validation_data); 6 steps``)."""
    trained = _counted(len(data.train.cases), f"{workflow.data.kind} training case")
    if data.unlabelled is not None:
        trained += f" and {_counted(len(data.unlabelled.cases), 'unlabelled case')}"
    count = len(data.validation.cases)
    if count == 0:
        validation = "no validation case"
    else:
        where = (
            "data.validation_data"
            if workflow.data.validation_data is not None
            else "held out of the data by data.split.validation"
        )
        validation = f"{_counted(count, 'validation case')} ({where})"
    steps = _counted(workflow.training.steps, "step")
    return f"train: method {method_id!r} on {trained}; {validation}; {steps}"


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def adapt_stage(
    workflow: Workflow, run: RunFolder, registry: Registry, model_dir: Path, log: Log
) -> Path:
    """Adapt the model to ``workflow.adaptation``'s target volumes; return the adapted
    model folder (``adapted/``), which names its source model."""
    from medi2i.adaptation import adapt_model
    from medi2i.data.discovery import discover_subjects
    from medi2i.errors import OptionsError
    from medi2i.workflow.schema import DataConfig

    config = workflow.adaptation
    if config is None:
        raise WorkflowError("the workflow has no adaptation section")
    target = DataConfig(kind="single-domain", layout=config.data, include=config.include)
    paths = [
        case.images["image"] for subject in discover_subjects(target) for case in subject.cases
    ]
    log(f"adapt: adapting {model_dir.name} to {len(paths)} target volumes")
    try:
        adapted = adapt_model(
            model_dir,
            paths,
            run.adapted,
            registry=registry,
            settings=workflow.inference,
            seed=config.seed,
            overwrite=True,
            command=f"medi2i run, adaptation stage (resolved config: {run.config.name} in "
            "the run folder)",
        )
    except OptionsError as exc:
        raise WorkflowError(f"adapt: {exc}") from None
    RunState.read(run).finished(run, "adapt", model=adapted)
    log(f"adapt: adapted model in {adapted}")
    return adapted
