"""The trainer: runs a method's own training steps on a device, with AMP, gradient
accumulation, DDP, checkpoints, exact resume, validation and logging.

Methods own their updates (:meth:`medi2i.Method.training_step`); the trainer offers
them the small :class:`medi2i.method.TrainerAPI` and owns everything around it.

Example:
    >>> config = TrainingConfig(steps=100)
    >>> result = train(method, cases, config=config, run_dir=Path("run"))  # doctest: +SKIP
    >>> result.model_dir  # doctest: +SKIP
    PosixPath('run/model')
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch.nn.parallel import DistributedDataParallel

from medi2i.data.cases import CaseSet
from medi2i.errors import Medi2iError, OptionsError, TrainingError
from medi2i.method import Method
from medi2i.settings import InferenceSettings
from medi2i.training.checkpoint import TrainingState
from medi2i.training.config import TrainingConfig
from medi2i.training.distributed import DistributedContext


class Trainer:
    """What a method's training step talks to (implements :class:`medi2i.method.TrainerAPI`).

    Args:
        modules: The method's training modules; moved to ``device``, put in train mode
            and, with several processes, wrapped in ``DistributedDataParallel``.
        device: Where modules and batches live.
        accumulation_steps: Batches per optimizer update.
        amp: Mixed precision with gradient scaling (only on CUDA).
        distributed: This process's rank; a single process when ``None``.
        total_steps: The number of steps the run trains for.
        auxiliary: Frozen networks of the method (built and loaded, see
            :func:`medi2i.training.auxiliary.load_auxiliary_networks`).

    Attributes:
        device: Where modules and batches live.
        modules: The modules to call in training steps (DDP-wrapped when distributed).
        raw_modules: The same modules, never wrapped (for weights and checkpoints).
        step_index: Completed training steps.
        total_steps: The number of steps the run trains for (for schedules).
        auxiliary: The method's frozen auxiliary networks, by name.
        micro_step: Index of the current batch within the accumulation cycle.
        optimizers: Optimizers by name, as the method registered them.
        non_finite_backward: Optimizers for which a NaN or infinite loss was
            backpropagated during the latest :meth:`run_step`.
    """

    def __init__(
        self,
        modules: Mapping[str, torch.nn.Module],
        *,
        device: torch.device,
        accumulation_steps: int = 1,
        amp: bool = False,
        distributed: DistributedContext | None = None,
        total_steps: int = 0,
        auxiliary: Mapping[str, torch.nn.Module] | None = None,
    ) -> None:
        dotted = [name for name in modules if "." in name or not name]
        if dotted:
            raise OptionsError(f"training module names must be non-empty, without '.': {dotted}")
        self.device = device
        self.accumulation_steps = accumulation_steps
        self.amp = amp and device.type == "cuda"
        self.distributed = distributed if distributed is not None else DistributedContext()
        self.raw_modules = {name: module.to(device).train() for name, module in modules.items()}
        self.modules: Mapping[str, torch.nn.Module] = {
            name: self._wrapped(module) for name, module in self.raw_modules.items()
        }
        self.step_index = 0
        self.total_steps = total_steps
        # frozen helpers: on the device, in eval mode, never wrapped nor checkpointed
        self.auxiliary: Mapping[str, torch.nn.Module] = {
            name: module.to(device).eval().requires_grad_(False)
            for name, module in (auxiliary or {}).items()
        }
        self.micro_step = 0
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self._scalers: dict[str, torch.amp.GradScaler] = {}
        self._foreign: dict[str, list[torch.nn.Parameter]] = {}
        # one flag per optimizer, kept on the device: read once per step, not per backward
        self._non_finite: dict[str, torch.Tensor] = {}
        self.non_finite_backward: list[str] = []
        self._spreads: dict[str, torch.Tensor] = {}
        self._steps_asked = 0
        self._checked_stepping = False
        self._checked_optimizers = False
        self._checked_network = False
        self._stepped_without_gradients: set[str] = set()
        # optimizers given a gradient by backward since their latest step (per training_step)
        self._unstepped: set[str] = set()

    # -- TrainerAPI --------------------------------------------------------------------

    def add_optimizer(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        """Register an optimizer (checkpointed and stepped by name)."""
        if name in self.optimizers:
            raise OptionsError(f"an optimizer named {name!r} is registered already")
        self.optimizers[name] = optimizer
        self._scalers[name] = torch.amp.GradScaler("cuda", enabled=self.amp)
        self._foreign = {key: self._parameters_of_others(key) for key in self.optimizers}

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """float16 autocast on CUDA with AMP on; a no-op otherwise."""
        if self.amp:
            return cast(
                contextlib.AbstractContextManager[None],
                torch.autocast(device_type="cuda", dtype=torch.float16),
            )
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, optimizer: str) -> None:
        """Add the gradient of ``loss`` to the parameters of ``optimizer`` only.

        The loss is divided by the number of accumulation steps and scaled for AMP.
        Parameters of the method's other optimizers keep the gradients they had: a
        generator loss backpropagated through the discriminator leaves the
        discriminator's accumulated gradients untouched.
        """
        scaler = self._scalers[self._known(optimizer)]
        self._note_finite(loss, optimizer)
        self._unstepped.add(optimizer)
        if self.accumulation_steps > 1:
            loss = loss / self.accumulation_steps
        foreign = self._foreign[optimizer]
        kept = [parameter.grad for parameter in foreign]
        for parameter in foreign:
            parameter.grad = None
        try:
            scaled: torch.Tensor = scaler.scale(loss)
            scaled.backward()  # type: ignore[no-untyped-call]
        finally:
            for parameter, grad in zip(foreign, kept, strict=True):
                parameter.grad = grad

    def step(self, optimizer: str) -> None:
        """Update with ``optimizer`` and zero its gradients, at the end of an
        accumulation cycle; a no-op on the batches before."""
        self._steps_asked += 1
        self._unstepped.discard(self._known(optimizer))
        if self.micro_step != self.accumulation_steps - 1:
            return
        chosen = self.optimizers[optimizer]
        scaler = self._scalers[optimizer]
        if not self._checked_stepping and not any(
            parameter.grad is not None
            for group in chosen.param_groups
            for parameter in group["params"]
        ):
            self._stepped_without_gradients.add(optimizer)
        if scaler.is_enabled():
            scaler.unscale_(chosen)
            scaler.step(chosen)
            scaler.update()
        else:
            chosen.step()
        chosen.zero_grad(set_to_none=True)

    def watch_generated(self, name: str, generated: torch.Tensor, real: torch.Tensor) -> None:
        """Show the collapse check a generated batch and a real batch of its domain
        (see :mod:`medi2i.training.health`); nothing is read from the device here."""
        from medi2i.training.health import spread_ratio

        ratio = spread_ratio(generated, real)
        if ratio is not None:
            self._spreads[name] = ratio

    # -- driving the steps ---------------------------------------------------------------

    def generated_spreads(self) -> dict[str, float]:
        """The latest step's spread ratio of each watched generated batch (one device
        read for all of them); NaN where the real batch was constant."""
        if not self._spreads:
            return {}
        names = list(self._spreads)
        values = torch.stack([self._spreads[n].float() for n in names]).cpu().tolist()
        return dict(zip(names, values, strict=True))

    def run_step(
        self, method: Method, batches: Sequence[Mapping[str, torch.Tensor]]
    ) -> dict[str, float]:
        """One training step: the method's step on each batch of an accumulation cycle.

        Args:
            method: The method being trained.
            batches: ``accumulation_steps`` batches (CPU or device tensors).

        Returns:
            The method's losses, averaged over the batches.
        """
        if len(batches) != self.accumulation_steps:
            raise ValueError(f"a step takes {self.accumulation_steps} batches, got {len(batches)}")
        if not self._checked_optimizers:
            self._require_module_parameters(method)
        totals: dict[str, float] = {}
        self._non_finite = {}
        self._spreads = {}
        for micro, batch in enumerate(batches):
            self.micro_step = micro
            self._unstepped = set()
            on_device = self._on_device(batch)
            if not self._checked_network:
                self._check_network_output(method, on_device)
            with self._gradient_sync(last=micro == self.accumulation_steps - 1):
                losses = self._method_step(method, on_device)
            if self._unstepped:
                self._refuse_unstepped(method)
            if not isinstance(losses, Mapping):
                raise TrainingError(
                    f"method {method.id!r}: training_step returned a {type(losses).__name__}; "
                    'it returns its losses by name as floats, e.g. {"l1": loss.item()}'
                )
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + float(value)
        if not self._checked_stepping:
            self._require_stepping(method)
        self.step_index += 1
        self.non_finite_backward = self._read_non_finite()
        return {name: total / len(batches) for name, total in totals.items()}

    def _method_step(self, method: Method, batch: dict[str, torch.Tensor]) -> object:
        """``method.training_step`` on ``batch``; an exception of the method's own code
        becomes one :class:`TrainingStepError` naming the method and the step, chained
        to it (its traceback stays in ``__cause__``)."""
        from medi2i.training.distributed import collective_failure
        from medi2i.training.step_errors import TrainingStepError, step_failure

        try:
            return method.training_step(batch, self)
        except Medi2iError:
            raise
        except Exception as exc:
            if collective_failure(exc) is not None:
                raise  # another process stopped: reported as such by the run
            raise TrainingStepError(step_failure(method, exc, self.step_index + 1)) from exc

    def _check_network_output(self, method: Method, batch: Mapping[str, torch.Tensor]) -> None:
        """Before the first step: a patch network's output has the channels and size its
        prediction must have (see :mod:`medi2i.training.network_check`)."""
        from medi2i.training.network_check import check_network_output

        self._checked_network = True
        check_network_output(method, batch)

    def _require_stepping(self, method: Method) -> None:
        """After the first step of a run: a ``training_step`` that never called
        :meth:`step`, or stepped an optimizer none of whose parameters got a gradient
        (no :meth:`backward` before it), would train for hours without changing a
        weight."""
        self._checked_stepping = True
        if self._steps_asked == 0:
            raise TrainingError(
                f"method {method.id!r}: training_step returned without calling "
                "trainer.step(...), so no weight would ever change; after "
                "trainer.backward(loss, name), call trainer.step(name) for each optimizer"
            )
        if self._stepped_without_gradients:
            names = ", ".join(sorted(self._stepped_without_gradients))
            raise TrainingError(
                f"method {method.id!r}: trainer.step was called for {names} with no gradient "
                "on any of its parameters, so no weight would ever change; call "
                "trainer.backward(loss, name) before trainer.step(name), with a loss that "
                "depends on that optimizer's parameters"
            )

    def _refuse_unstepped(self, method: Method) -> None:
        """A gradient given to an optimizer that is not stepped after it is never used,
        or used a step late and piled onto the next step's."""
        names = ", ".join(repr(name) for name in sorted(self._unstepped))
        raise TrainingError(
            f"method {method.id!r}: training_step returned without calling "
            f"trainer.step(name) after trainer.backward(loss, name) for the optimizer(s) "
            f"{names}, so their weights never change (or change a step late, on piled-up "
            "gradients); call trainer.step(name) after the last trainer.backward(loss, "
            "name) of every training_step (the trainer accumulates gradients itself, see "
            "accumulation_steps)"
        )

    def _require_module_parameters(self, method: Method) -> None:
        """Before the first step of a run: every optimizer's parameters are parameters of
        the training modules, the only weights that are checkpointed and resumed."""
        self._checked_optimizers = True
        known = {
            id(parameter)
            for module in self.raw_modules.values()
            for parameter in module.parameters()
        }
        for name, optimizer in self.optimizers.items():
            outside = sum(
                1
                for group in optimizer.param_groups
                for parameter in group["params"]
                if id(parameter) not in known
            )
            if outside:
                raise TrainingError(
                    f"method {method.id!r}: the optimizer {name!r} holds {outside} "
                    "parameter(s) that belong to none of the training modules "
                    f"{sorted(self.raw_modules)}; give it the parameters of "
                    "trainer.modules[...], and return every trained network from "
                    "training_modules() (only those are checkpointed and resumed)"
                )

    def learning_rates(self) -> dict[str, float]:
        """Learning rate of each optimizer's first parameter group."""
        return {name: float(opt.param_groups[0]["lr"]) for name, opt in self.optimizers.items()}

    def train_mode(self) -> None:
        """Put every module back in train mode (after validation)."""
        for module in self.raw_modules.values():
            module.train()

    def state(self) -> TrainingState:
        """Weights, optimizer and gradient-scaler states, for a checkpoint."""
        return TrainingState(
            modules={name: module.state_dict() for name, module in self.raw_modules.items()},
            optimizers={name: opt.state_dict() for name, opt in self.optimizers.items()},
            scalers={name: scaler.state_dict() for name, scaler in self._scalers.items()},
        )

    def load_state(self, state: TrainingState, *, step: int) -> None:
        """Restore what :meth:`state` returned, as of ``step`` completed steps."""
        if set(state.modules) != set(self.raw_modules) or set(state.optimizers) != set(
            self.optimizers
        ):
            raise OptionsError(
                f"the checkpoint holds modules {sorted(state.modules)} and optimizers "
                f"{sorted(state.optimizers)}, the method has {sorted(self.raw_modules)} and "
                f"{sorted(self.optimizers)}; resume with the method that wrote it"
            )
        for name, module in self.raw_modules.items():
            module.load_state_dict(state.modules[name])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state.optimizers[name])
            if state.scalers.get(name):
                self._scalers[name].load_state_dict(state.scalers[name])
        self.step_index = step

    @property
    def skips_non_finite(self) -> bool:
        """Whether a step with non-finite gradients leaves the weights untouched (the
        AMP gradient scaler skips its update)."""
        return any(scaler.is_enabled() for scaler in self._scalers.values())

    def _note_finite(self, loss: torch.Tensor, optimizer: str) -> None:
        bad = ~torch.isfinite(loss.detach()).all()
        previous = self._non_finite.get(optimizer)
        self._non_finite[optimizer] = bad if previous is None else previous | bad

    def _read_non_finite(self) -> list[str]:
        if not self._non_finite:
            return []
        flags = [bool(flag.cpu()) for flag in self._non_finite.values()]
        return [name for name, bad in zip(self._non_finite, flags, strict=True) if bad]

    def _wrapped(self, module: torch.nn.Module) -> torch.nn.Module:
        trainable = any(p.requires_grad for p in module.parameters())
        if not (self.distributed.enabled and trainable):
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def _known(self, optimizer: str) -> str:
        if optimizer not in self.optimizers:
            raise OptionsError(
                f"no optimizer named {optimizer!r}; register it in configure_training with "
                f"trainer.add_optimizer (registered: {sorted(self.optimizers)})"
            )
        return optimizer

    def _parameters_of_others(self, name: str) -> list[torch.nn.Parameter]:
        own = {id(p) for group in self.optimizers[name].param_groups for p in group["params"]}
        others: dict[int, torch.nn.Parameter] = {}
        for other, optimizer in self.optimizers.items():
            if other != name:
                for group in optimizer.param_groups:
                    others.update({id(p): p for p in group["params"] if id(p) not in own})
        return list(others.values())

    def _gradient_sync(self, *, last: bool) -> contextlib.AbstractContextManager[Any]:
        # DDP averages gradients on every backward unless told not to: only the last
        # batch of an accumulation cycle needs it
        if last or not self.distributed.enabled:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        for module in self.modules.values():
            if isinstance(module, DistributedDataParallel):
                stack.enter_context(module.no_sync())
        return stack

    def _on_device(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        blocking = self.device.type != "cuda"
        return {
            key: value.to(self.device, non_blocking=not blocking) for key, value in batch.items()
        }


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        model_dir: The trained-model folder (``<run>/model``).
        steps: Completed training steps.
        first_step: Step the run started from (0, or the checkpoint it resumed).
        final_losses: Losses of the last logged step.
        history: The JSON Lines history (``<run>/logs/train.jsonl``).
        validation: Metrics of the last validation (``mae``, ``psnr``), or ``None``
            without validation data (and on ranks other than 0).
        best_model_dir: The model at the best validation (``<run>/best-model``, see
            ``TrainingConfig.keep_best``), or ``None`` when none was kept.
        health: Training-health findings: the collapses the run reported (see
            ``TrainingConfig.collapse_check``), one line each; empty for a healthy run.
        world_size: Processes the run trained in (``torchrun``; 1 without it).
        patches_per_step: Patches one step trained on, over all processes
            (``world_size × batch_size × accumulation_steps``); ``None`` when unknown.
    """

    model_dir: Path
    steps: int
    first_step: int
    final_losses: Mapping[str, float]
    history: Path
    validation: Mapping[str, float] | None
    best_model_dir: Path | None = None
    health: tuple[str, ...] = ()
    world_size: int = 1
    patches_per_step: int | None = None


def train(
    method: Method,
    data: CaseSet,
    *,
    config: TrainingConfig,
    run_dir: Path,
    validation: CaseSet | None = None,
    resume: bool = True,
    inference: InferenceSettings | None = None,
    validation_condition: Mapping[str, object] | None = None,
    unlabelled: CaseSet | None = None,
    init_from: Method | None = None,
    on_start: Callable[[int], None] | None = None,
    finish_model: Callable[[Path, bool], None] | None = None,
) -> TrainResult:
    """Train ``method`` on ``data`` and save it as a trained-model folder.

    Calls ``method.configure_training`` once, then ``method.training_step`` for every
    step, on batches of patches cut from the (cached, preprocessed) training volumes.
    Launched by ``torchrun``, every process runs this same call (see
    :mod:`medi2i.training.distributed`). Written under ``run_dir``:

    - ``logs/train.jsonl``: losses, learning rates, patches/s and validations
      (``logs/tensorboard/`` too with ``config.tensorboard``);
    - ``checkpoints/``: the latest checkpoint, every ``config.checkpoint_every`` steps
      and after the last;
    - ``model/``: the trained-model folder, with the last validation's metrics (never
      for a run that diverged).

    Args:
        method: The method to train, with its options.
        data: The training cases; their kind must be the method's data kind.
        config: Trainer settings.
        run_dir: The run's folder (created when missing).
        validation: Paired cases validated on whole volumes every
            ``config.validate_every`` steps and after the last.
        resume: Continue from the checkpoint in ``run_dir`` when there is one (the
            steps after it repeat exactly what an uninterrupted run computes); with
            ``False`` any checkpoint there is deleted and training starts afresh.
        inference: Sliding-window settings of validation (window size, overlap,
            blending); its device is always the training device.
        validation_condition: The predict-time condition validation predicts under
            (e.g. the direction of a two-way method); checked before the first step.
        unlabelled: Single-domain cases (role ``image``) of the target domain without
            targets, for a paired method that learns from them as well
            (:meth:`medi2i.Method.learns_from_unlabelled`, e.g. domain-adversarial
            training); their patches reach ``training_step`` as ``batch["unlabelled"]``.
        init_from: A trained method of the same id (e.g. ``medi2i.load_model(path)``)
            whose weights and fitted values start the training instead of a random
            initialisation (fine-tuning); its architecture options must match
            ``method``'s. The optimizers and their schedule start afresh. A run that
            resumes from a checkpoint in ``run_dir`` continues from the checkpoint.
        on_start: Called (in rank 0) with the first step once the settings passed the
            resume checks, before the run writes anything: a refused resume leaves the
            run folder as it was, and the caller records its settings only here.
        finish_model: Completes ``model/`` and ``best-model/`` (their card) under their
            temporary name, with the folder and whether it is the best model, so a
            model folder appears with its card or not at all.

    The run seeds torch's global random generators with ``config.seed`` (the same
    weights for the same seed); the caller's generator states are put back when it
    returns or raises, so code after it draws as it would have without it.

    Returns:
        Where the model and history are, the final losses and validation metrics.

    Raises:
        OptionsError: The data does not fit the method (or the method is not trained by
            gradient steps: fit it instead), the settings are unusable, or
            ``init_from`` is another method or its weights do not fit ``method``.
        CheckpointError: The checkpoint is damaged or was written with other settings.
        InputError: A volume is missing or unreadable.
        OutputError: A checkpoint or model folder could not be written (a full disk);
            nothing of it is kept, and the run resumes from its last checkpoint.
        TrainingError: Training diverged: a loss or the weights became NaN or infinite
            (see :mod:`medi2i.training.health`); no model folder is written and the
            last checkpoint with finite weights is kept.
    """
    from medi2i.training.run import run_training

    with callers_generators_kept():
        return run_training(
            method,
            data,
            config=config,
            run_dir=Path(run_dir),
            validation=validation,
            resume=resume,
            inference=inference,
            validation_condition=validation_condition,
            unlabelled=unlabelled,
            init_from=init_from,
            on_start=on_start,
            finish_model=finish_model,
        )


@contextlib.contextmanager
def callers_generators_kept() -> Iterator[None]:
    """Put torch's global random generators (CPU, and CUDA once initialised) back as
    they were when the block ends, however it ends.

    CUDA generators not yet initialised when the block starts have no state to keep;
    if the block initialises them, they are seeded afterwards with the CPU generator's
    initial seed, as ``torch.manual_seed`` before the block would have seeded them.
    """
    cpu = torch.get_rng_state()
    initial_seed = torch.initial_seed()
    cuda = torch.cuda.get_rng_state_all() if _cuda_started() else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        elif _cuda_started():
            torch.cuda.manual_seed_all(initial_seed)


def _cuda_started() -> bool:
    """Whether this process initialised CUDA (it has CUDA generators to keep)."""
    return bool(torch.cuda.is_initialized())  # type: ignore[no-untyped-call]
