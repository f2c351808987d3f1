"""Frozen auxiliary networks of a method (e.g. the feature network of a perceptual loss).

A method declares them with :meth:`medi2i.Method.auxiliary_networks`. Each is built,
its weights (a safetensors file shipped with the plugin) checked against the declared
SHA-256 and loaded, and then frozen: on the training device, in eval mode, gradients
off, never wrapped for DDP and never checkpointed. Their hashes go into the trained
model's manifest and into the checkpoint fingerprint, so a run never resumes with other
auxiliary weights than it started with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from medi2i.errors import ModelFormatError, OptionsError
from medi2i.hashing import file_sha256

if TYPE_CHECKING:
    import torch

    from medi2i.method import AuxiliaryNetwork, Method


def auxiliary_hashes(method: Method) -> dict[str, str | None]:
    """The declared SHA-256 of each auxiliary network's weights (``None``: no weights)."""
    return {name: spec.sha256 for name, spec in sorted(method.auxiliary_networks().items())}


def load_auxiliary_networks(method: Method) -> dict[str, torch.nn.Module]:
    """Build and load every auxiliary network of ``method`` (not yet on a device).

    Raises:
        OptionsError: A network has weights but no declared SHA-256.
        ModelFormatError: A weights file is missing, or its SHA-256 differs from the
            declared one, or the weights do not fit the network.
    """
    return {
        name: _loaded(method, name, spec)
        for name, spec in sorted(method.auxiliary_networks().items())
    }


def _loaded(method: Method, name: str, spec: AuxiliaryNetwork) -> torch.nn.Module:
    network = spec.build()
    if spec.weights is None:
        return network
    if not spec.sha256:
        raise OptionsError(
            f"method {method.id!r}: auxiliary network {name!r} names weights but no "
            "sha256; declare the file's SHA-256 so medi2i can check it"
        )
    if not spec.weights.is_file():
        raise ModelFormatError(
            f"method {method.id!r}: the weights of auxiliary network {name!r} are missing "
            f"({spec.weights}); reinstall the plugin that ships them"
        )
    found = file_sha256(spec.weights)
    if found != spec.sha256:
        raise ModelFormatError(
            f"method {method.id!r}: {spec.weights} has SHA-256 {found[:12]}…, not the declared "
            f"{spec.sha256[:12]}…; the file was changed or damaged, reinstall the plugin"
        )
    from safetensors.torch import load_file

    weights: Mapping[str, torch.Tensor] = load_file(str(spec.weights))
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise ModelFormatError(
            f"method {method.id!r}: weights {spec.weights} do not fit auxiliary network "
            f"{name!r}: {' '.join(str(exc).split())[:300]}"
        ) from None
    return network
