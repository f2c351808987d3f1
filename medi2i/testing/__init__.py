"""Test helpers for medi2i method and plugin authors.

Example:
    >>> from medi2i.testing import make_volume
    >>> make_volume((8, 8, 8)).shape
    torch.Size([1, 8, 8, 8])

- :func:`check_method_contract`: the predict side of the Method contract, for every
  method;
- :func:`check_training_contract`: training, exact resume and the trained-model folder,
  for methods trained by gradient steps; :func:`train_briefly` trains one a few steps
  on toy cases, for behaviour tests;
- :func:`check_distributed_training`: DDP training under ``torchrun`` (Gloo, CPU
  processes) keeps the replicas identical;
- toy volumes (:func:`make_volume`) and training data sets of every data kind
  (:func:`write_unpaired_cases`, :func:`write_multi_domain_cases`, ...);
- example methods of every shape: :mod:`medi2i.testing.example_methods`,
  :mod:`medi2i.testing.trainable_examples`, :mod:`medi2i.testing.cycle_example` (two-way
  MR↔CT from unpaired data) and :mod:`medi2i.testing.multi_domain_example` (StarGAN
  pattern, named outputs).

The pytest fixtures (``medi2i_volume``, ``medi2i_volume_file``, ``medi2i_registry``) live
in :mod:`medi2i.testing.pytest_plugin`, which pytest loads by itself wherever medi2i is
installed (entry point ``pytest11``); with plugin autoloading off, enable them from a
``conftest.py`` with ``pytest_plugins = ["medi2i.testing.pytest_plugin"]``.

Everything here is imported on first use, so that loading the fixtures into every pytest
session costs no torch or MONAI import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_LAZY = {
    "VolumeParameters": "medi2i.testing.volumes",
    "make_volume": "medi2i.testing.volumes",
    "volume_affine": "medi2i.testing.volumes",
    "write_volume_file": "medi2i.testing.volumes",
    "check_method_contract": "medi2i.testing.contract",
    "isolated_registry": "medi2i.testing.contract",
    "check_training_contract": "medi2i.testing.training_contract",
    "train_briefly": "medi2i.testing.training_contract",
    "check_distributed_training": "medi2i.testing.distributed_check",
    "CaseSet": "medi2i.data.cases",
    "MULTI_DOMAINS": "medi2i.testing.domain_cases",
    "UNPAIRED_DOMAINS": "medi2i.testing.domain_cases",
    "default_domains": "medi2i.testing.domain_cases",
    "synthetic_training_cases": "medi2i.testing.domain_cases",
    "write_multi_domain_cases": "medi2i.testing.domain_cases",
    "write_scaled_paired_cases": "medi2i.testing.domain_cases",
    "write_single_domain_cases": "medi2i.testing.domain_cases",
    "write_unpaired_cases": "medi2i.testing.domain_cases",
    "write_paired_cases": "medi2i.testing.trainable_examples",
    "medi2i_registry": "medi2i.testing.pytest_plugin",
    "medi2i_volume": "medi2i.testing.pytest_plugin",
    "medi2i_volume_file": "medi2i.testing.pytest_plugin",
}

__all__ = [  # noqa: RUF022 (helpers first, then the fixtures)
    "CaseSet",
    "MULTI_DOMAINS",
    "UNPAIRED_DOMAINS",
    "VolumeParameters",
    "check_distributed_training",
    "check_method_contract",
    "check_training_contract",
    "default_domains",
    "isolated_registry",
    "make_volume",
    "synthetic_training_cases",
    "train_briefly",
    "volume_affine",
    "write_multi_domain_cases",
    "write_paired_cases",
    "write_scaled_paired_cases",
    "write_single_domain_cases",
    "write_unpaired_cases",
    "write_volume_file",
    "medi2i_registry",
    "medi2i_volume",
    "medi2i_volume_file",
]


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'medi2i.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from medi2i.data.cases import CaseSet
    from medi2i.testing.contract import check_method_contract, isolated_registry
    from medi2i.testing.distributed_check import check_distributed_training
    from medi2i.testing.domain_cases import (
        MULTI_DOMAINS,
        UNPAIRED_DOMAINS,
        default_domains,
        synthetic_training_cases,
        write_multi_domain_cases,
        write_scaled_paired_cases,
        write_single_domain_cases,
        write_unpaired_cases,
    )
    from medi2i.testing.pytest_plugin import medi2i_registry, medi2i_volume, medi2i_volume_file
    from medi2i.testing.trainable_examples import write_paired_cases
    from medi2i.testing.training_contract import check_training_contract, train_briefly
    from medi2i.testing.volumes import (
        VolumeParameters,
        make_volume,
        volume_affine,
        write_volume_file,
    )
