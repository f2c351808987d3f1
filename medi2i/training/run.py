"""The training run behind :func:`medi2i.training.train`: set-up, resume, the step loop,
validation, checkpoints and the final model folder.

Determinism: initial weights come from ``torch.manual_seed(seed)``; the batch of step
``k`` is a pure function of ``(seed, rank, k)`` (:mod:`medi2i.training.patches`); and
torch's global generator is reseeded from ``(seed, rank, k)`` before every step, so
randomness a method draws itself (dropout, GAN noise) repeats too. A run resumed from
the checkpoint of step ``k`` therefore computes bitwise the same steps ``k + 1, ...``
as an uninterrupted run on the same machine and software (on CUDA, with
``deterministic: true``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import JsonValue

from medi2i.data.cases import CaseSet, case_condition
from medi2i.errors import OptionsError, OutputError, TrainingError
from medi2i.method import DataKind, DomainSpec, Method
from medi2i.patch_network import PatchNetworkMethod
from medi2i.settings import InferenceSettings, wants_progress
from medi2i.trained_state import mark_trained
from medi2i.training.checkpoint import save_checkpoint
from medi2i.training.config import AugmentationConfig, TrainingConfig
from medi2i.training.data import (
    PaddingNotice,
    VolumeStore,
    case_domains,
    check_trainable,
    check_unlabelled,
    domain_labels,
    step_batches,
    training_store,
)
from medi2i.training.distributed import (
    DistributedContext,
    TrainingScale,
    average_across_processes,
    context_from_environment,
    in_any_process,
    join_process_group,
    peers_watched,
    process_device,
)
from medi2i.training.health import CollapseWatch, DivergenceGuard, describe_non_finite
from medi2i.training.history import HISTORY, RunLog, ValidationProgress
from medi2i.training.init_from import start_from
from medi2i.training.outputs import ModelFinisher, run_output, write_model_folder
from medi2i.training.patches import PatchSampler
from medi2i.training.records import (
    BEST_MODEL,
    CHECKPOINTS,
    LOGS,
    MODEL,
    VALIDATION_RECORD,
    VALIDATION_STEP,
    drop_validation,
    validation_changed,
    validation_record,
    write_json,
)
from medi2i.training.resume import (
    TrainingDataWarning,
    check_data_record,
    resume_from_checkpoint,
    run_fingerprint,
)
from medi2i.training.trainer import Trainer, TrainResult
from medi2i.training.validation import (
    VALIDATION_METRIC,
    ValidationCase,
    check_validation_cases,
    load_validation_cases,
    validate,
)
from medi2i.training_spacing import TrainingSpacing, training_spacing_of

DEFAULT_PATCH_SIZE = (64, 64, 64)
"""Patch size of methods that are not patch networks and name no window size, in voxels."""
_TORCH_STREAM = 2**32 - 1
"""Seed-sequence word that keeps the per-step torch seed apart from the batch seeds."""
__all__ = ["TrainingDataWarning", "run_training"]


def run_training(
    method: Method,
    data: CaseSet,
    *,
    config: TrainingConfig,
    run_dir: Path,
    validation: CaseSet | None,
    resume: bool,
    inference: InferenceSettings | None,
    validation_condition: Mapping[str, object] | None = None,
    unlabelled: CaseSet | None = None,
    init_from: Method | None = None,
    on_start: Callable[[int], None] | None = None,
    finish_model: ModelFinisher | None = None,
) -> TrainResult:
    """Train ``method`` (the body of :func:`medi2i.training.train`)."""
    check_trainable(method, data)
    check_unlabelled(method, data, unlabelled)
    if data.kind in (DataKind.UNPAIRED, DataKind.MULTI_DOMAIN):
        names = domain_labels(data)
        by_name = {spec.name: spec for spec in data.specs()}
        method.use_domains([by_name.get(name, DomainSpec(name=name)) for name in names])
    if init_from is not None:
        start_from(method, init_from)
    if validation is not None:
        check_validation_cases(validation)
        for case in validation.cases:  # a bad condition fails now, not after training
            method.parse_condition(case_condition(validation_condition, case.condition))
    device = process_device(config.device, context_from_environment())
    if config.deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        # every step has the same patch shape: the algorithm search pays off at once
        torch.backends.cudnn.benchmark = True
    patch_size = resolve_patch_size(method, config)
    context = join_process_group(device=device)
    scale = TrainingScale(context.world_size, config.batch_size, config.accumulation_steps)
    trainer = _configured_trainer(method, config, device, context)
    fingerprint = run_fingerprint(method, config, patch_size, context)
    first_step = resume_from_checkpoint(
        trainer, method, run_dir / CHECKPOINTS, fingerprint, resume, context
    )
    if context.is_main:
        if on_start is not None:  # the resume checks passed: the caller may write now
            on_start(first_step)
        _note_scale(scale)
        check_data_record(run_dir / CHECKPOINTS, data, unlabelled, resumed=first_step > 0)
    record = validation_record(validation, inference, validation_condition)
    spacing = training_spacing_of(method, data, unlabelled) if context.is_main else None
    revalidate = first_step >= config.steps and validation_changed(run_dir, record, first_step)
    if first_step >= config.steps:
        context.barrier()  # every process decided before rank 0 changes the records
    if revalidate and context.is_main:
        drop_validation(run_dir / LOGS / HISTORY, first_step)  # the new one replaces it
    guard = DivergenceGuard(
        checkpoints=run_dir / CHECKPOINTS,
        skips_allowed=config.max_nonfinite_steps if trainer.skips_non_finite else 0,
        last_checkpoint=first_step or None,
        method_id=method.id,
    )
    with (
        peers_watched(run_dir, kept=lambda: _resume_point(guard.last_checkpoint)),
        RunLog(
            run_dir / LOGS,
            first_step=first_step,
            total_steps=config.steps,
            patches_per_step=scale.patches_per_step,
            tensorboard=config.tensorboard,
            progress=wants_progress(config.progress),
            main=context.is_main,
        ) as log,
    ):
        run = _Run(
            trainer=trainer,
            method=method,
            config=config,
            context=context,
            log=log,
            checkpoints=run_dir / CHECKPOINTS,
            run_dir=run_dir,
            fingerprint=fingerprint,
            guard=guard,
            validator=_validator(
                validation, method, inference, device, config, context, validation_condition
            ),
            best=_BestModel.at(
                run_dir / BEST_MODEL, resumed=first_step > 0, finish=finish_model, scale=scale
            )
            if config.keep_best and validation is not None and context.is_main
            else None,
            collapse=CollapseWatch(
                patience=config.collapse_patience,
                stop=config.collapse_check == "stop",
                checkpoints=run_dir / CHECKPOINTS,
            )
            if config.collapse_check != "off"
            else None,
        )
        if run.best is not None:
            run.best.spacing = spacing
        if first_step < config.steps:
            run.loop(_sampler(method, data, config, patch_size, context, unlabelled))
        elif revalidate:
            run.validate(first_step)  # rerun of a finished run: its validation set changed
        if record is not None and context.is_main:
            write_json(run_dir / CHECKPOINTS / VALIDATION_RECORD, record)
        guard.check_weights(trainer.step_index, trainer.state().modules)
        if context.is_main:
            with run_output("the model folder", run_dir, kept=run.resume_point()):
                write_model_folder(
                    method,
                    run_dir / MODEL,
                    metrics=log.last_validation,
                    finish=finish_model,
                    spacing=spacing,
                    scale=scale,
                )
        context.barrier()
        return TrainResult(
            model_dir=run_dir / MODEL,
            steps=trainer.step_index,
            first_step=first_step,
            final_losses=log.last_losses,
            history=log.history,
            validation=log.last_validation,
            best_model_dir=run.best.folder if run.best and run.best.folder.is_dir() else None,
            health=tuple(log.health_findings),
            world_size=scale.world_size,
            patches_per_step=scale.patches_per_step,
        )


def _note_scale(scale: TrainingScale) -> None:
    """Say in the run's log that it trains in several processes, and what a step sees
    (nothing for one process)."""
    from medi2i.training.history import training_note

    note = scale.note()
    if note is not None:
        training_note(note)


def _configured_trainer(
    method: Method, config: TrainingConfig, device: torch.device, context: DistributedContext
) -> Trainer:
    from medi2i.training.auxiliary import load_auxiliary_networks

    torch.manual_seed(config.seed)  # the same initial weights in every process and run
    trainer = Trainer(
        method.training_modules(),
        device=device,
        accumulation_steps=config.accumulation_steps,
        amp=config.amp,
        distributed=context,
        total_steps=config.steps,
        auxiliary=load_auxiliary_networks(method),
    )
    try:
        method.configure_training(trainer)
    except ValueError as exc:
        # torch's optimizers refuse a negative or NaN learning rate with a ValueError
        raise OptionsError(
            f"method {method.id!r} cannot set up training with its options: {exc}"
        ) from exc
    if not trainer.optimizers:
        raise OptionsError(
            f"method {method.id!r} registered no optimizer in configure_training; "
            "call trainer.add_optimizer there"
        )
    return trainer


@dataclass(frozen=True)
class _Validator:
    """Validates the method in its current state (rank 0 only)."""

    method: Method
    cases: list[ValidationCase]
    settings: InferenceSettings
    condition: Mapping[str, object] | None

    def __call__(self, progress: ValidationProgress | None = None) -> dict[str, float]:
        settings, condition = self.settings, self.condition
        return validate(
            self.method, self.cases, settings=settings, condition=condition, progress=progress
        )

    def named(self) -> str:
        """The cases, for the log: their count and the first few ids."""
        ids = [case.id for case in self.cases]
        shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        return f"{len(ids)} case{'' if len(ids) == 1 else 's'} ({shown})"


@dataclass(frozen=True)
class _Run:
    """The parts of a run the step loop needs."""

    trainer: Trainer
    method: Method
    config: TrainingConfig
    context: DistributedContext
    log: RunLog
    checkpoints: Path
    run_dir: Path
    fingerprint: dict[str, JsonValue]
    guard: DivergenceGuard
    validator: _Validator | None
    """``None`` without validation data, and in processes other than rank 0."""
    best: _BestModel | None = None
    """Keeps the model of the best validation; ``None`` where none is kept."""
    collapse: CollapseWatch | None = None
    """Looks for a collapsed GAN at logged steps; ``None`` with the check off."""

    def loop(self, sampler: PatchSampler) -> None:
        config, trainer = self.config, self.trainer
        batches = step_batches(
            sampler,
            first_step=trainer.step_index,
            steps=config.steps,
            accumulation=config.accumulation_steps,
            num_workers=config.num_workers,
            pin_memory=trainer.device.type == "cuda",
        )
        for step_batch in batches:
            _seed_torch(
                step_seed(config.seed, self.context.rank, trainer.step_index), trainer.device
            )
            losses = self.step(step_batch)
            mark_trained(self.method)
            self.after_step(trainer.step_index, losses)

    def step(self, step_batch: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, float]:
        """One training step; a failure of the method's own step code also says what the
        run folder keeps and how to resume."""
        from medi2i.training.step_errors import TrainingStepError

        try:
            return self.trainer.run_step(self.method, step_batch)
        except TrainingStepError as exc:
            kept = self.guard.last_checkpoint
            where = f" (in {self.checkpoints})" if kept else ""
            raise TrainingError(
                f"{exc}. Fix the method, then run again with --run-dir {self.run_dir} "
                f"(train(..., resume=True) in Python): {self.resume_point()}{where}; "
                "`medi2i --debug` (before the command) shows the method's traceback"
            ) from exc.__cause__

    def after_step(self, step: int, losses: dict[str, float]) -> None:
        config = self.config
        last = step == config.steps
        self.log.step_done()
        problem = self.non_finite(losses)
        if step % config.log_every == 0 or last or problem is not None:
            averaged = average_across_processes(losses, self.context)
            spreads = self.trainer.generated_spreads()
            if spreads:
                spreads = average_across_processes(spreads, self.context)
            self.log.record(step, averaged, self.trainer.learning_rates(), spreads)
            if self.collapse is not None and problem is None:
                for finding in self.collapse.observe(step, averaged, spreads):
                    self.log.health(step, finding)
        self.guard.after_losses(step, problem)
        every = config.validate_every
        validating = last or (every is not None and step % every == 0)
        checkpointing = last or step % config.checkpoint_every == 0
        if validating or checkpointing:
            # never validate, checkpoint or save weights that are no longer numbers
            self.guard.check_weights(step, self.trainer.state().modules)
        if validating:
            self.validate(step)
        if checkpointing:
            if self.context.is_main:
                what = f"the checkpoint of step {step}"
                with run_output(what, self.run_dir, kept=self.resume_point()):
                    save_checkpoint(
                        self.checkpoints,
                        step=step,
                        state=self.trainer.state(),
                        method=self.method,
                        fingerprint=self.fingerprint,
                        total_steps=config.steps,
                    )
            self.guard.last_checkpoint = step
            self.context.barrier()

    def resume_point(self) -> str:
        """Where a resumed run would continue, for a failed write's message."""
        return _resume_point(self.guard.last_checkpoint)

    def non_finite(self, losses: dict[str, float]) -> str | None:
        """What was NaN or infinite in the latest step (in any process), or ``None``."""
        problem = describe_non_finite(losses, self.trainer.non_finite_backward)
        if in_any_process(problem is not None, self.context) and problem is None:
            problem = "a loss of another process is NaN or infinite"
        return problem

    def validate(self, step: int) -> None:
        if self.validator is not None:
            # a whole-volume prediction per case: tens of seconds with no step advancing
            self.log.note(f"validating {self.validator.named()} at step {step}")
            started = time.perf_counter()
            try:
                with self.log.paused(len(self.validator.cases)) as progress:
                    metrics = self.validator(progress)
            except OutputError as exc:  # finite weights, predictions beyond any unit
                kept = self.guard.last_checkpoint
                raise TrainingError(
                    f"the validation at step {step} failed, so training stopped: {exc}. The "
                    "model diverged: lower the learning rate and start afresh in a new run "
                    "folder" + (f" (the checkpoint of step {kept} is kept)" if kept else "")
                ) from exc
            self.log.validation(step, metrics)
            kept = False
            if self.best is not None:
                with run_output("the best model", self.run_dir, kept=self.resume_point()):
                    kept = self.best.offer(self.method, step, metrics)
            seconds = time.perf_counter() - started
            line = validation_line(step, metrics, len(self.validator.cases), seconds)
            if kept and self.best is not None:
                line += f"; best so far: model kept in {self.best.folder}"
            self.log.note(line)
            self.trainer.train_mode()
        self.context.barrier()  # the other processes wait for rank 0


@dataclass
class _BestModel:
    """The model folder of the lowest validation MAE so far."""

    folder: Path
    mae: float = float("inf")
    finish: ModelFinisher | None = None
    """Completes the folder (its card) before it is put in place."""
    spacing: TrainingSpacing | None = None
    """The voxel spacings of the training inputs, for its manifest."""
    scale: TrainingScale | None = None
    """The processes and patches per step it was trained with, for its training record."""

    @classmethod
    def at(
        cls,
        folder: Path,
        *,
        resumed: bool,
        finish: ModelFinisher | None,
        scale: TrainingScale | None = None,
    ) -> _BestModel:
        """Start tracking; a resumed run continues from the best its earlier part kept,
        a fresh one replaces a best model left by an earlier run in the folder."""
        from medi2i.model_folder import METRICS

        try:
            stored = json.loads((folder / METRICS).read_text()) if resumed else {}
            return cls(folder, float(stored[VALIDATION_METRIC]), finish, scale=scale)
        except (OSError, ValueError, KeyError, TypeError):
            return cls(folder, finish=finish, scale=scale)

    def offer(self, method: Method, step: int, metrics: Mapping[str, float]) -> bool:
        """Keep ``method`` when its validation is the best so far; whether it was."""
        value = metrics.get(VALIDATION_METRIC)
        if value is None or not math.isfinite(value) or value >= self.mae:
            return False
        write_model_folder(
            method,
            self.folder,
            metrics={**metrics, VALIDATION_STEP: step},
            finish=self.finish,
            best=True,
            spacing=self.spacing,
            scale=self.scale,
        )
        self.mae = value
        return True


def validation_line(step: int, metrics: Mapping[str, float], cases: int, seconds: float) -> str:
    """One line for the log about the validation of ``step``: each metric's mean over
    the ``cases`` and how long it took."""
    shown = ", ".join(f"{name} {value:.4g}" for name, value in metrics.items())
    plural = "" if cases == 1 else "s"
    return f"validation at step {step}: {shown} (mean over {cases} case{plural}, {seconds:.1f} s)"


def _resume_point(kept: int | None) -> str:
    """Where a resumed run continues after the checkpoint of step ``kept``."""
    if kept is None:
        return "no checkpoint was written yet: training would start again from step 0"
    return f"training continues from the checkpoint of step {kept}"


def _validator(
    validation: CaseSet | None,
    method: Method,
    inference: InferenceSettings | None,
    device: torch.device,
    config: TrainingConfig,
    context: DistributedContext,
    condition: Mapping[str, object] | None,
) -> _Validator | None:
    if validation is None or not context.is_main:
        return None
    cases = load_validation_cases(validation)
    base = inference if inference is not None else InferenceSettings(amp=config.amp)
    settings = base.model_copy(update={"device": str(device), "progress": False})
    return _Validator(method, cases, settings, condition)


def _require_batch_fits(
    config: TrainingConfig, patch_size: tuple[int, int, int], method: Method
) -> None:
    """Refuse a batch whose patches alone would fill half the machine's memory (a
    batch_size of 100000000 hung building it), before any volume is read."""
    from medi2i.io.base import physical_memory

    total = physical_memory()
    channels = 2 * method.input_spec.channels  # inputs and targets, at least
    needed = config.batch_size * int(np.prod(patch_size)) * channels * 4
    if total is not None and needed > total // 2:
        raise OptionsError(
            f"training.batch_size {config.batch_size} of {tuple(patch_size)} patches would "
            f"take {needed / 2**30:.1f} GiB for the patches alone, more than half of this "
            f"machine's {total / 2**30:.1f} GiB; lower training.batch_size or "
            "training.patch_size"
        )


def _sampler(
    method: Method,
    data: CaseSet,
    config: TrainingConfig,
    patch_size: tuple[int, int, int],
    context: DistributedContext,
    unlabelled: CaseSet | None = None,
) -> PatchSampler:
    _require_batch_fits(config, patch_size, method)
    notice = PaddingNotice()  # one notice of volumes smaller than the patch per run

    def store(cases: CaseSet) -> VolumeStore:
        return training_store(
            cases,
            method=method,
            patch_size=patch_size,
            foreground_threshold=config.foreground_threshold,
            keep=config.cache == "memory",
            notice=notice,
        )

    roles = {"source", "target", "image", *data.domains}
    return PatchSampler(
        store(data),
        unlabelled=store(unlabelled) if unlabelled is not None and unlabelled.cases else None,
        augmented_roles=frozenset(role for role in roles if method.augments_intensity(role)),
        domain_names=domain_labels(data),
        kind=data.kind,
        groups=case_domains(data),
        patch_size=patch_size,
        batch_size=config.batch_size,
        patches_per_volume=config.patches_per_volume,
        foreground_ratio=config.foreground_ratio,
        augmentation=_method_flips(method, config.augmentation),
        seed=config.seed,
        rank=context.rank,
    )


def _method_flips(method: Method, augmentation: AugmentationConfig) -> AugmentationConfig:
    """``augmentation`` without flips along the method's :meth:`~Method.unflippable_axes`."""
    banned = set(method.unflippable_axes())
    kept = tuple(axis for axis in augmentation.flip_axes if axis not in banned)
    if kept == augmentation.flip_axes:
        return augmentation
    logging.getLogger("medi2i.training").info(
        "method %r never flips patches along array axis %s; training with "
        "augmentation.flip_axes %s instead of %s",
        method.id,
        ", ".join(str(axis) for axis in sorted(banned)),
        list(kept),
        list(augmentation.flip_axes),
    )
    return augmentation.model_copy(update={"flip_axes": kept})


def resolve_patch_size(method: Method, config: TrainingConfig) -> tuple[int, int, int]:
    """The training patch size in voxels: the configured one, else the method's window."""
    if config.patch_size is not None:
        return config.patch_size
    if isinstance(method, PatchNetworkMethod):
        return method.roi_size()
    size = getattr(method.options, "roi_size", None)
    return (int(size[0]), int(size[1]), int(size[2])) if size is not None else DEFAULT_PATCH_SIZE


def _seed_torch(seed: int, device: torch.device) -> None:
    # torch.manual_seed would also reach every accelerator back end: 0.25 ms per step
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def step_seed(seed: int, rank: int, step: int) -> int:
    """The torch seed of one step of one process (dropout, noise a method draws)."""
    sequence = np.random.SeedSequence([seed, rank, step, _TORCH_STREAM])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
