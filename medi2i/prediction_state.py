"""What a prediction puts back when it ends: torch's random generators (seeded for the
method, then restored for the caller) and the state of a method that adapts itself to
each input, so that the next volume of a batch starts from the same model."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from medi2i.method import Method


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """torch's global generators seeded with ``seed`` while a method predicts, and put
    back afterwards: a method that draws from them (``torch.rand``) gives the same output
    for the same settings, as the provenance's seed promises, and the caller's random
    state is left as it was."""
    import torch

    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        torch.manual_seed(seed)
        yield


@contextmanager
def state_kept(method: Method) -> Iterator[None]:
    """Restore the method's state after ``predict`` when it adapts itself to an input
    (``restores_state``), so the next volume of a batch starts from the same model."""
    if not method.restores_state:
        yield
        return
    tensors = {name: value.detach().clone() for name, value in method.state_tensors().items()}
    values = copy.deepcopy(method.state_values())
    modes = _module_modes(method)
    try:
        yield
    finally:
        method.load_state_values(values)
        if tensors:
            method.load_state_tensors(tensors)
        for module, training in modes:
            module.train(training)


def _module_modes(method: Method) -> list[tuple[torch.nn.Module, bool]]:
    import torch

    found = [m for m in vars(method).values() if isinstance(m, torch.nn.Module)]
    return [(module, module.training) for root in found for module in root.modules()]
