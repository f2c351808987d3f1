"""Training settings the trainer's tests share: a few tiny steps on the CPU."""

from __future__ import annotations

from medi2i.training import AugmentationConfig, TrainingConfig

NO_INTENSITY = AugmentationConfig(intensity_probability=0.0, noise_probability=0.0)
"""Flips and turns only: the toy target stays a fixed function of the source."""


def quick(**overrides: object) -> TrainingConfig:
    """Six steps of two 16³ patches on the CPU, logged every step, with ``overrides``."""
    settings: dict[str, object] = {
        "steps": 6,
        "batch_size": 2,
        "patch_size": (16, 16, 16),
        "log_every": 1,
        "checkpoint_every": 3,
        "device": "cpu",
        "progress": False,
    }
    return TrainingConfig.model_validate({**settings, **overrides})
