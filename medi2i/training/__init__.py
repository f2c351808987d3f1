"""Training: the trainer, its settings, training data and scale-out under ``torchrun``.

Settings are importable without torch (:mod:`medi2i.training.config`); everything else
is imported on first use.

Example:
    >>> from medi2i.training import TrainingConfig
    >>> TrainingConfig(steps=10).batch_size
    2
    >>> result = train(method, cases, config=TrainingConfig(), run_dir=run)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from medi2i.training.config import AugmentationConfig, TrainingConfig

_LAZY = {
    "Trainer": "medi2i.training.trainer",
    "TrainResult": "medi2i.training.trainer",
    "train": "medi2i.training.trainer",
    "CheckpointError": "medi2i.training.checkpoint",
    "DistributedContext": "medi2i.training.distributed",
    "ShardReport": "medi2i.sharded_prediction",
    "predict_sharded": "medi2i.sharded_prediction",
    "shard": "medi2i.training.distributed",
    "read_history": "medi2i.training.history",
}

__all__ = [
    "AugmentationConfig",
    "CheckpointError",
    "DistributedContext",
    "ShardReport",
    "TrainResult",
    "Trainer",
    "TrainingConfig",
    "predict_sharded",
    "read_history",
    "shard",
    "train",
]


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'medi2i.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from medi2i.sharded_prediction import ShardReport, predict_sharded
    from medi2i.training.checkpoint import CheckpointError
    from medi2i.training.distributed import DistributedContext, shard
    from medi2i.training.history import read_history
    from medi2i.training.trainer import Trainer, TrainResult, train
