"""Lowering a captured window function to ONNX (``medi2i export --format onnx``, from
:func:`medi2i.export.export_program`): running it in onnxruntime for the export's
check, the description's hash in the file's metadata, and exact instance norms while
it is lowered."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from medi2i.errors import ExportError


def onnx_runner(
    method: Any, program: Any, example: torch.Tensor
) -> tuple[Callable[[torch.Tensor], torch.Tensor], bytes]:
    """The program lowered to ONNX (its bytes) and a function running it in onnxruntime."""
    import importlib.util
    import tempfile

    missing = [
        name for name in ("onnx", "onnxscript", "onnxruntime") if not importlib.util.find_spec(name)
    ]
    if missing:
        raise ExportError(
            f"ONNX export needs {', '.join(missing)}: pip install 'medi2i[onnx]' "
            "(onnx, onnxscript and onnxruntime)"
        )
    import onnxruntime

    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "model.onnx"
        try:
            with warnings.catch_warnings(), _without_torchvision_notes():
                # torch's own exporter trips torch's own pytree deprecation (2.13)
                warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
                torch.onnx.export(
                    program,
                    (example,),
                    str(target),
                    dynamo=True,
                    input_names=["windows"],
                    external_data=False,  # one file: the weights inside the model
                    verbose=False,
                )
        except Exception as exc:  # the ONNX exporter raises many kinds of errors
            raise ExportError(
                f"method {method.id!r}: torch.onnx cannot lower its forward: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
        model = target.read_bytes()
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(windows: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: windows.numpy()})[0]).float()

    return run, model


ONNX_METADATA_KEY = "medi2i"
"""The key of the ONNX file's metadata (``metadata_props``) holding the window and the
condition it was exported for, as JSON: ``medi2i predict --model`` checks its
description against it, since the description's SHA-256 covers the file, not itself."""


def with_onnx_metadata(model: bytes, *, window: Any, condition: Any, described: str) -> bytes:
    """``model`` with the window, the condition and ``described`` (the
    :func:`description_sha256` of its description) in its metadata
    (:data:`ONNX_METADATA_KEY`)."""
    import onnx

    proto = onnx.load_from_string(model)
    entry = proto.metadata_props.add()
    entry.key = ONNX_METADATA_KEY
    record = {"window": window, "condition": condition, "description_sha256": described}
    entry.value = json.dumps(record, sort_keys=True)
    written: bytes = proto.SerializeToString()
    return written


TORCH_ONNX_REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"


@contextlib.contextmanager
def _without_torchvision_notes() -> Iterator[None]:
    """Drop torch.onnx's "torchvision is not installed. Skipping torchvision::nms" lines:
    it logs one per torchvision operator on every export, and no medi2i network uses
    them, so a user read four warnings about a package medi2i does not need."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("torchvision is not installed")

    logger = logging.getLogger(TORCH_ONNX_REGISTRATION_LOGGER)
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


class _PreciseInstanceNorm(torch.nn.Module):
    """An instance normalization that computes its statistics in float64.

    onnxruntime's ``InstanceNormalization`` (and a float32 ``ReduceMean``) sums a channel
    of a 64³ window in float32, which loses the mean where it is large against the
    spread (a background channel): on real windows the lowered Pix2Pix generator was
    0.01 off in [-1, 1] where PyTorch's own float32 forward is 1e-5 from float64. The
    ONNX export swaps this in for every instance normalization that normalizes by
    the window's own statistics; the values are those of the layer it replaces."""

    def __init__(self, layer: torch.nn.modules.instancenorm._InstanceNorm) -> None:
        super().__init__()
        self.eps = layer.eps
        self.weight = layer.weight if layer.affine else None
        self.bias = layer.bias if layer.affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = tuple(range(2, x.dim()))
        wide = x.double()
        centred = wide - wide.mean(dim=axes, keepdim=True)
        variance = centred.square().mean(dim=axes, keepdim=True)
        result = (centred * torch.rsqrt(variance + self.eps)).to(x.dtype)
        if self.weight is None or self.bias is None:
            return result
        shape = (1, -1) + (1,) * len(axes)
        return result * self.weight.view(shape) + self.bias.view(shape)


@contextlib.contextmanager
def precise_instance_norms(network: torch.nn.Module) -> Iterator[None]:
    """Swap :class:`_PreciseInstanceNorm` into ``network`` for the ONNX lowering, and the
    original layers back afterwards (an instance normalization that uses running
    statistics in eval mode reduces nothing and is kept)."""
    from torch.nn.modules.instancenorm import _InstanceNorm

    swapped: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
    for parent in list(network.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _InstanceNorm) and not child.track_running_stats:
                setattr(parent, name, _PreciseInstanceNorm(child))
                swapped.append((parent, name, child))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
