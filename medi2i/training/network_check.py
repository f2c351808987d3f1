"""Before the first training step: a paired patch network's output has the channels
and the size that prediction will require of it.

A network with a wrong number of output channels can train without complaint (an L1
loss broadcasts a two-channel output against a one-channel target), and fail only when
the trained model predicts. The trainer runs :meth:`medi2i.PatchNetworkMethod.forward`
once on one source patch of the first batch, without gradients, in eval mode (running
statistics untouched) and on a forked random generator, so the run computes exactly
what it would without the check.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

import torch

from medi2i.errors import Medi2iError, TrainingError
from medi2i.method import DataKind, Method


def check_network_output(method: Method, batch: Mapping[str, torch.Tensor]) -> None:
    """Refuse a paired patch network whose output on a training patch has other
    channels than the method declares, or another size than its ``output_scale`` gives.

    Methods that are not paired ``PatchNetworkMethod``\\ s, whose condition has no
    defaults, that declare several outputs, or whose ``forward`` does not run on a
    bare source patch are left to their training step.

    Raises:
        TrainingError: The output would be refused at prediction; the message says how.
    """
    from medi2i.patch_network import PatchNetworkMethod

    source = batch.get("source")
    if not isinstance(method, PatchNetworkMethod) or method.data is not DataKind.PAIRED:
        return
    if source is None or source.ndim != 5:
        return
    try:
        condition = method.parse_condition(None)
        declared = method.outputs(condition)
    except Medi2iError:  # a condition without defaults: nothing to run forward under
        return
    output = _forward_once(method, source[:1], condition)
    if output is None:
        return
    if len(declared) == 1:
        _check_channels(method, output, declared[0].spec.channels)
    _check_size(method, tuple(source.shape[2:]), tuple(output.shape[2:]))


def _forward_once(method: Any, patch: torch.Tensor, condition: object) -> torch.Tensor | None:
    """``method.forward`` on ``patch``, or ``None`` when it does not run on it (the
    method's training step may prepare its input first)."""
    devices = [patch.device.index or 0] if patch.device.type == "cuda" else []
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices), _evaluated(method.network):
            output = method.forward(patch, condition)
    except Exception:  # the training step reports its own failures, with context
        return None
    return output if isinstance(output, torch.Tensor) and output.ndim == 5 else None


@contextmanager
def _evaluated(network: torch.nn.Module) -> Any:
    """``network`` in eval mode inside the block (batch norm reads its running statistics
    instead of updating them), every submodule's mode restored after."""
    modes = [(module, module.training) for module in network.modules()]
    network.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _check_channels(method: Method, output: torch.Tensor, channels: int) -> None:
    if output.shape[1] != channels:
        raise TrainingError(
            f"the network of method {method.id!r} returned {output.shape[1]} channel(s) for "
            f"a training patch but the method declares {channels} for its output (the "
            "output's VolumeSpec), so the trained model could not predict; training "
            "stopped before its first step: make the network return the channels the "
            "method declares (a bug of its plugin)"
        )


def _check_size(method: Any, patch: tuple[int, ...], output: tuple[int, ...]) -> None:
    scale = tuple(method.output_scale)
    expected = tuple(round(size * factor) for size, factor in zip(patch, scale, strict=True))
    if output != expected:
        raise TrainingError(
            f"the network of method {method.id!r} turned a training patch of {patch} voxels "
            f"into {output}, but the method's output_scale {scale} says {expected}, so the "
            "trained model could not predict; training stopped before its first step: fix "
            "the method's output_scale or its network (e.g. pad its convolutions)"
        )
