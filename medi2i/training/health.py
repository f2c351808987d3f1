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

    Attributes:
        consecutive: Steps in a row, up to the latest, with a non-finite loss.
    """

    checkpoints: Path
    skips_allowed: int
    last_checkpoint: int | None = None
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
        return (
            f"training diverged at step {step}: {problem}; no model was saved and {kept}. "
            "Lower the learning rate (or check the data for NaN values) and start afresh "
            "(resume off, or a new run folder)"
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
