"""Optimizers and the learning-rate schedule of the regression U-Net.

nnU-Net trains with SGD (Nesterov momentum 0.99, weight decay 3e-5) from a learning
rate of 1e-2 that decays polynomially, ``lr_k = lr_0 · (1 - k / K)^0.9`` for step ``k``
of ``K``. Adam and AdamW are offered for short runs and small batches, where a
constant 2e-4 is a robust choice.

The schedule is a pure function of the trainer's completed-step count, set before
every update, so a run resumed from a checkpoint follows it exactly without a
scheduler state to save.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch

OptimizerName = Literal["sgd", "adam", "adamw"]
Schedule = Literal["poly", "constant"]

DEFAULT_LEARNING_RATES: dict[str, float] = {"sgd": 1e-2, "adam": 2e-4, "adamw": 2e-4}
"""Initial learning rate of each optimizer when the options give none."""


def make_optimizer(
    parameters: Iterable[torch.nn.Parameter],
    *,
    name: OptimizerName,
    learning_rate: float,
    momentum: float,
    weight_decay: float,
) -> torch.optim.Optimizer:
    """A new optimizer over ``parameters``.

    Args:
        parameters: The parameters to optimize.
        name: ``"sgd"`` (with Nesterov momentum), ``"adam"`` or ``"adamw"``.
        learning_rate: Initial learning rate.
        momentum: SGD momentum; Adam's first-moment decay (beta 1) is left at 0.9.
        weight_decay: L2 penalty (SGD, Adam) or decoupled weight decay (AdamW).
    """
    if name == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=learning_rate,
            momentum=momentum,
            nesterov=momentum > 0.0,
            weight_decay=weight_decay,
        )
    if name == "adam":
        return torch.optim.Adam(parameters, lr=learning_rate, weight_decay=weight_decay)
    return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)


def scheduled_learning_rate(
    initial: float, *, schedule: Schedule, step: int, total_steps: int, exponent: float
) -> float:
    """The learning rate of step ``step`` (0-based).

    Args:
        initial: Learning rate of step 0.
        schedule: ``"constant"`` or ``"poly"`` (nnU-Net's polynomial decay).
        step: Completed training steps.
        total_steps: Length ``K`` of the decay; later steps keep the rate of step ``K - 1``.
        exponent: Exponent of the polynomial decay (0.9 in nnU-Net).

    Example:
        >>> scheduled_learning_rate(0.01, schedule="poly", step=0, total_steps=10, exponent=0.9)
        0.01
    """
    if schedule == "constant":
        return initial
    progress = min(step, total_steps - 1) / total_steps
    return float(initial * (1.0 - progress) ** exponent)


def set_learning_rate(optimizer: torch.optim.Optimizer, learning_rate: float) -> None:
    """Set the learning rate of every parameter group of ``optimizer``."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate
