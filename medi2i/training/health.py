"""Stopping a diverged run before it passes for a trained one.

A loss that turns NaN or infinite means the weights are lost or about to be: without
mixed precision the optimizer has already applied the non-finite update, and every
later prediction is NaN. The run stops at that step with a :class:`TrainingError`,
no checkpoint with non-finite weights replaces the last good one, and no model folder
is written.

With AMP (CUDA) the gradient scaler skips the update of a step whose gradients are not
finite and lowers its scale, so the weights stay as they were: up to
``max_nonfinite_steps`` consecutive such steps are tolerated (a float16 overflow that
a smaller scale cures) before the run stops.

Checked are the losses a method reports from its training step (every loss of a GAN's
alternating updates), every loss it backpropagates through the trainer, and the weights
before each validation, checkpoint and the final model.

A GAN can also fail while every number stays finite: its discriminators win outright
(their losses fall to zero and the generators get no useful gradient), or a generator
collapses to a constant output whatever its input. :class:`CollapseWatch` looks for
both at every logged step and reports a symptom that lasts ``collapse_patience``
steps (``training.collapse_check``: a warning in the log and the history, or an error
that stops the run):

- discriminator collapse: every loss whose name starts with ``"discriminator"`` is
  below :data:`DISCRIMINATOR_LOSS_FLOOR`;
- generator collapse: a generated batch that the method showed the trainer
  (:meth:`medi2i.method.TrainerAPI.watch_generated`) varies less than
  :data:`SPREAD_FLOOR` times as much as the real batch it is compared with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from medi2i.errors import TrainingError

SHOWN = 5
"""Non-finite tensors named in an error message, at most."""

DISCRIMINATOR_PREFIX = "discriminator"
"""Losses whose name starts with this are a discriminator's (the collapse check)."""
DISCRIMINATOR_LOSS_FLOOR = 1e-3
"""A discriminator loss below this means it separates real from generated perfectly
(a least-squares or cross-entropy loss in balance is about 0.25-0.7)."""
SPREAD_FLOOR = 0.02
"""A generated batch whose standard deviation is below this fraction of the real
batch's is taken for a constant output."""


def non_finite_losses(losses: Mapping[str, float]) -> list[str]:
    """The names of the losses that are NaN or infinite, as ``name = value``."""
    return [f"{name} = {value}" for name, value in losses.items() if not math.isfinite(value)]


def non_finite_tensors(modules: Mapping[str, Mapping[str, torch.Tensor]]) -> list[str]:
    """The ``module.tensor`` names of the floating-point weights and buffers holding a
    NaN or an infinite value (one device synchronization for all of them)."""
    names: list[str] = []
    checks: list[torch.Tensor] = []
    for module, values in modules.items():
        for key, value in values.items():
            if value.is_floating_point() or value.is_complex():
                names.append(f"{module}.{key}")
                checks.append(torch.isfinite(value.detach()).all().cpu())
    if not checks:
        return []
    finite = torch.stack(checks).tolist()
    return [name for name, ok in zip(names, finite, strict=True) if not ok]


@dataclass
class DivergenceGuard:
    """Decides, step by step, whether a run may go on.

    Args:
        checkpoints: The run's checkpoints folder (named in the error message).
        skips_allowed: Consecutive steps with a non-finite loss that may pass, because
            the gradient scaler skipped their updates (0 without AMP).
        last_checkpoint: Step of the latest checkpoint with finite weights, if any.
        method_id: The method being trained, named in the error message.

    Attributes:
        consecutive: Steps in a row, up to the latest, with a non-finite loss.
    """

    checkpoints: Path
    skips_allowed: int
    last_checkpoint: int | None = None
    method_id: str | None = None
    consecutive: int = field(default=0, init=False)

    def after_losses(self, step: int, problem: str | None) -> None:
        """Account for ``step`` whose non-finite losses ``problem`` describes (``None``
        when all were finite).

        Raises:
            TrainingError: The loss is not finite and no (further) skip is allowed.
        """
        if problem is None:
            self.consecutive = 0
            return
        self.consecutive += 1
        if self.consecutive <= self.skips_allowed:
            return
        if self.skips_allowed:
            problem += (
                f" for {self.consecutive} steps in a row (the gradient scaler skipped their "
                f"updates; training.max_nonfinite_steps allows {self.skips_allowed})"
            )
        raise TrainingError(self.message(step, problem))

    def check_weights(self, step: int, modules: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """Stop when a weight or buffer of ``modules`` is NaN or infinite after ``step``.

        Raises:
            TrainingError: Some weights are not finite.
        """
        bad = non_finite_tensors(modules)
        if bad:
            more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
            shown = ", ".join(bad[:SHOWN]) + more
            raise TrainingError(self.message(step, f"weights are NaN or infinite ({shown})"))

    def message(self, step: int, problem: str) -> str:
        """The one-line error of a run that diverged at ``step``."""
        if self.last_checkpoint is not None:
            kept = (
                f"the last good checkpoint (step {self.last_checkpoint}) is kept in "
                f"{self.checkpoints}"
            )
        else:
            kept = "no checkpoint was written"
        from medi2i.training.checkpoint import START_AFRESH

        training = f"training of method {self.method_id!r}" if self.method_id else "training"
        return (
            f"{training} diverged at step {step}: {problem}; no model was saved and {kept}. "
            f"Lower the learning rate (or check the data for NaN values) and {START_AFRESH}"
        )


def describe_non_finite(losses: Mapping[str, float], backward: Sequence[str]) -> str | None:
    """What was not finite in a step, or ``None`` when everything was.

    Args:
        losses: The losses the method reported.
        backward: The optimizers for which a non-finite loss was backpropagated.
    """
    reported = non_finite_losses(losses)
    if reported:
        return "loss " + ", ".join(reported)
    if backward:
        return (
            "a loss backpropagated for optimizer "
            + ", ".join(repr(b) for b in backward)
            + (" is NaN or infinite")
        )
    return None


def spread_ratio(generated: torch.Tensor, real: torch.Tensor) -> torch.Tensor | None:
    """The standard deviation of ``generated`` over that of ``real`` (all voxels of the
    batch), as a 0-d tensor on their device, or ``None`` when ``real`` is constant."""
    generated = generated.detach().float()
    real = real.detach().float()
    if real.numel() < 2 or generated.numel() < 2:
        return None
    real_spread = real.std()
    # a constant real batch gives nothing to compare with: ratio NaN, ignored when read
    return torch.where(
        real_spread > 1e-6, generated.std() / real_spread.clamp_min(1e-6), float("nan")
    )


@dataclass
class CollapseWatch:
    """Spots a GAN whose discriminators or generators have collapsed, at logged steps.

    Args:
        patience: Steps a symptom must last, seen at every logged step, before it is
            reported.
        stop: Raise a :class:`TrainingError` instead of only reporting.
        checkpoints: The run's checkpoints folder (named in the error message).

    Attributes:
        findings: The symptoms reported so far, one line each.
    """

    patience: int
    stop: bool = False
    checkpoints: Path | None = None
    findings: list[str] = field(default_factory=list)
    _since: dict[str, int] = field(default_factory=dict)
    _reported: set[str] = field(default_factory=set)
    _texts: dict[str, str] = field(default_factory=dict)

    def observe(
        self, step: int, losses: Mapping[str, float], spreads: Mapping[str, float]
    ) -> list[str]:
        """Account for the losses and generated spreads logged at ``step``.

        Returns:
            The symptoms reported for the first time at this step.

        Raises:
            TrainingError: With ``stop``, a symptom has lasted ``patience`` steps.
        """
        symptoms: dict[str, str] = {}
        observed = {f"generated:{name}" for name in spreads}
        discriminators = {
            name: value for name, value in losses.items() if name.startswith(DISCRIMINATOR_PREFIX)
        }
        if discriminators:
            observed.add("discriminators")
        if discriminators and all(
            math.isfinite(v) and v < DISCRIMINATOR_LOSS_FLOOR for v in discriminators.values()
        ):
            shown = ", ".join(f"{k} = {v:.2e}" for k, v in sorted(discriminators.items()))
            symptoms["discriminators"] = (
                f"the discriminators win outright ({shown}, below {DISCRIMINATOR_LOSS_FLOOR:g}): "
                "the generators get no useful gradient"
            )
        for name, ratio in spreads.items():
            if math.isfinite(ratio) and ratio < SPREAD_FLOOR:
                symptoms[f"generated:{name}"] = (
                    f"generator output {name!r} is nearly constant (its spread is {ratio:.2e} "
                    f"of the real images', below {SPREAD_FLOOR:g})"
                )
        for key in list(self._since):
            if key in observed and key not in symptoms:
                # the symptom went away (one not logged at this step, such as the losses
                # of a discriminator updated every third step, keeps its clock)
                del self._since[key]
        for key, text in symptoms.items():
            self._texts[key] = text
            self._since.setdefault(key, step)
        new: list[str] = []
        for key, first in self._since.items():
            text = self._texts[key]
            if step - first >= self.patience and key not in self._reported:
                self._reported.add(key)
                line = f"training collapsed at step {step}: {text} since step {first}"
                if self.stop:
                    raise TrainingError(
                        f"{line}; no model was saved{self._kept()}. Lower the discriminators' "
                        "learning rate or weight, or set training.collapse_check: warn to go on"
                    )
                self.findings.append(line)
                new.append(line)
        return new

    def _kept(self) -> str:
        """What the checkpoints folder holds, for the message: the committed checkpoint's
        step, or that none was written."""
        if self.checkpoints is None:
            return ""
        from medi2i.training.checkpoint import checkpoint_step

        step = checkpoint_step(self.checkpoints)
        if step is None:
            return " and no checkpoint was written yet"
        return f"; the checkpoint of step {step} is kept in {self.checkpoints}"
