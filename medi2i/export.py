"""Export a trained network method's window function as a PyTorch ExportedProgram.

A :class:`~medi2i.PatchNetworkMethod` predicts by running ``forward(windows,
condition)`` on every sliding window of the preprocessed input; the core does the rest
(reading, orientation and spacing, intensity normalization, blending the windows,
postprocessing, writing). :func:`export_program` captures that window function for one
predict-time condition (a direction, a target domain) with ``torch.export`` into a
``.pt2`` file that runs without medi2i or its plugins (``torch.export.load(path)
.module()``), with the batch size free, and writes beside it a JSON file that says what
the function expects: the window size, channels, the output scale, the method and its
options, the condition, and what medi2i does around it. (TorchScript is not offered:
PyTorch 2.13 deprecates ``torch.jit.trace``, its warning pointing to ``torch.export``,
whose programs are also what ONNX and other runtimes are lowered from.)

The export is checked before it is kept: the exported function and medi2i's own forward
are run on the same windows (a batch of two, float32, CPU: white noise, and constant
boxes on a background as a normalized image has them) and must agree to
:data:`EXPORT_TOLERANCE` relative to the output's largest magnitude; the largest
difference seen is stored in the JSON. A program whose window may shrink (as medi2i's
engine shrinks it on a short volume) is also run on every window size it promises; one
that fails any of them is captured again for the full window alone.

Methods that run no network by window (interpolation, intensity mappings, methods fitted
at predict time) have nothing to export; a network method whose prediction does not go
through ``forward`` alone for the condition refuses with its reason
(:meth:`~medi2i.PatchNetworkMethod.export_refusal`), e.g. MUNIT, which decodes with
sampled styles, and the regression U-Net with ``statistics=input``, which recomputes its
normalization statistics on each volume.

Example:
    >>> from medi2i import load_model  # doctest: +SKIP
    >>> export_program(load_model("run/model"), "model.pt2")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medi2i.errors import ExportError
from medi2i.export_files import place_pair, replace_pair, require_free, require_writable_target
from medi2i.export_onnx import (
    onnx_runner,
    precise_instance_norms,
    with_onnx_metadata,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from medi2i.method import Method

EXPORT_TOLERANCE = 1e-4
"""Largest accepted difference between the exported function and medi2i's forward on
the check windows, relative to the largest magnitude of medi2i's output (at least 1)."""
CHECK_BATCH = 2
"""Windows in the check batch (and in the example batch given to ``torch.export``)."""
MAX_BATCH = 4096
"""Largest batch of windows the exported program accepts."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_program` wrote.

    Attributes:
        path: The ``.pt2`` file.
        sidecar: The JSON description beside it.
        max_difference: Largest absolute difference on the check windows.
    """

    path: Path
    sidecar: Path
    max_difference: float


def _canonical_sha256(value: object) -> str:
    """SHA-256 of ``value`` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def description_sha256(
    method: Mapping[str, object],
    options: Mapping[str, object],
    domains: list[Any],
    state: Mapping[str, object],
) -> str:
    """SHA-256 of what an ONNX export's description gives the method around the network:
    the method (id, version, distribution), its options, domains and fitted values
    (intensity scales, landmarks), as JSON. The export records it in the ONNX file's
    metadata, so that ``medi2i predict --model`` refuses a description whose
    ``body_contour`` or ``mr_normalization`` was edited (the description's SHA-256 of
    the file cannot cover the description itself)."""
    parts = {"method": method, "options": options, "domains": domains, "state": state}
    return _canonical_sha256(json.loads(json.dumps(parts)))


def model_sha256(model: str | Path) -> str:
    """SHA-256 that identifies a model folder's (or zip's) content: of its manifest as
    canonical JSON, which holds the method, options, fitted values, specs and the
    weights file's SHA-256 (which loading checks the weights against). An export
    records it (``model_sha256`` in its description), so that a MONAI bundle's run
    refuses another model folder put in place of the exported one.

    Raises:
        ModelFormatError: ``model`` is not a readable model folder or zip.
    """
    from medi2i.model_folder import read_manifest

    return _canonical_sha256(read_manifest(model).model_dump(mode="json"))


class _WindowFunction(torch.nn.Module):
    """``method.forward(windows, condition)`` as a module, holding the method's network
    so that its parameters are the module's."""

    def __init__(self, method: Any, condition: Any) -> None:
        super().__init__()
        self.network = method.network
        self._method = method
        self._condition = condition

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self._method.forward(windows, self._condition)
        return output


def _capture(
    method: Any, wrapper: torch.nn.Module, example: torch.Tensor, *, shrinking: bool = True
) -> tuple[Any, list[int] | None]:
    """``torch.export`` of the window function, the batch size free, and the steps by
    which its window may shrink along each axis (``None`` when it takes only the full
    window).

    medi2i's engine shrinks the window along an axis where the volume is shorter, to a
    multiple of :func:`medi2i.engine.shrink_step`; with ``shrinking`` the program is
    first captured with those sizes free, so it runs the very windows the engine runs.
    A network whose forward fixes a size falls back to the full window alone (a short
    volume is then padded to it, which a network normalizing by window statistics
    feels)."""
    from medi2i.engine import shrink_step

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    roi = [int(n) for n in example.shape[2:]]
    steps = [shrink_step(n) for n in roi]
    free: dict[int, Any] = {0: batch}
    for axis, (size, step) in enumerate(zip(roi, steps, strict=True)):
        if shrinking and size // step > 1:
            free[axis + 2] = step * torch.export.Dim(f"window{axis}", min=1, max=size // step)
    if len(free) > 1:
        with contextlib.suppress(Exception), _sizes_of_one_not_special():
            program = torch.export.export(wrapper, (example,), dynamic_shapes={"windows": free})
            return program, steps
    try:
        program = torch.export.export(wrapper, (example,), dynamic_shapes={"windows": {0: batch}})
    except Exception as exc:  # torch.export raises many kinds of errors
        raise ExportError(
            f"method {method.id!r}: torch.export cannot capture its forward: "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    return program, None


def _sizes_of_one_not_special() -> contextlib.AbstractContextManager[Any]:
    """Capture without assuming that a free size is never 1.

    ``torch.export`` traces with the example's sizes and, wherever an operation asks
    whether a size is 1 (a convolution's stride check skips axes of one voxel), records
    the answer as a condition of the program. A U-Net's bottleneck is one voxel thick
    on the smallest window the engine may run along an axis (a 112-voxel window shrinks
    by 16, which four stride-2 stages bring to 1), so the program refused that window
    ("Guard failed: 1 + (-1 + windows.size()[2]) // 16 != 1"). Size-oblivious capture
    answers those questions for every size alike instead; the export's check then runs
    every window size the engine may run."""
    from torch.fx.experimental import _config

    if not hasattr(_config, "backed_size_oblivious"):  # another torch: capture as it does
        return contextlib.nullcontext()
    patched: contextlib.AbstractContextManager[Any] = _config.patch(  # type: ignore[attr-defined]
        backed_size_oblivious=True
    )
    return patched


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (empty when it has none)."""
    text = str(exc)
    return text.splitlines()[0] if text else ""


@dataclass(frozen=True)
class _Exported:
    """One capture of the window function: the program, a function running it (in
    onnxruntime for ONNX), the lowered ONNX model (``None`` for torch.export) and the
    steps its window may shrink by (``None``: the full window only)."""

    program: Any
    run: Callable[[torch.Tensor], torch.Tensor]
    onnx_model: bytes | None
    steps: list[int] | None


def _export_function(
    method: Any, wrapper: torch.nn.Module, example: torch.Tensor, *, onnx: bool, shrinking: bool
) -> _Exported:
    """Capture ``wrapper`` (:func:`_capture`), lowered to ONNX with ``onnx``."""
    if onnx:
        with precise_instance_norms(method.network):
            program, steps = _capture(method, wrapper, example, shrinking=shrinking)
            run, onnx_model = onnx_runner(method, program, example)
        return _Exported(program, run, onnx_model, steps)
    program, steps = _capture(method, wrapper, example, shrinking=shrinking)
    exported = program.module()

    def run_program(windows: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            result: torch.Tensor = exported(windows).float()
        return result

    return _Exported(program, run_program, None, steps)


def _shrunk_windows(check: torch.Tensor, steps: list[int]) -> Iterator[torch.Tensor]:
    """The windows the engine may run besides the full one, cut from ``check``: the
    smallest (one step along every axis), then along each axis every multiple of its
    step up to the full size, the other axes at one step."""
    roi = list(check.shape[2:])
    yield check[:, :, : steps[0], : steps[1], : steps[2]]
    for axis, (size, step) in enumerate(zip(roi, steps, strict=True)):
        for length in range(2 * step, size + 1, step):
            sizes = [length if other == axis else steps[other] for other in range(3)]
            yield check[:, :, : sizes[0], : sizes[1], : sizes[2]]


def _compared(
    exported: _Exported,
    check: torch.Tensor,
    expected: torch.Tensor,
    forward: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, float, str | None]:
    """``exported``'s output on the check windows, its largest difference from
    ``expected`` and ``forward`` (on the check windows and, for a program whose window
    may shrink, on every shrunk window cut from the first, white-noise, check window:
    :func:`_shrunk_windows`), and why the program failed on one (``None`` when it ran
    them all)."""
    try:
        got = exported.run(check)
    except Exception as exc:  # a condition of the program, or onnxruntime's error
        return expected, math.nan, f"{type(exc).__name__}: {_first_line(exc)}"
    if got.shape != expected.shape:
        return got, math.inf, None
    difference = float((got - expected).abs().max())
    for windows in _shrunk_windows(check[:1], exported.steps) if exported.steps else ():
        wanted = forward(windows)
        try:
            shrunk = exported.run(windows)
        except Exception as exc:
            return got, difference, f"{type(exc).__name__}: {_first_line(exc)}"
        if shrunk.shape != wanted.shape:
            return got, math.inf, None
        difference = max(difference, float((shrunk - wanted).abs().max()))
    return got, difference, None


def _check_windows(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """The check batch: white noise in the first window, and in the others what a
    normalized image looks like: a background at -1 with boxes of constant intensity
    and a little noise. Noise alone missed the lowered network's errors on channels
    whose mean is large against their spread, which real images make."""
    windows = torch.randn(shape, generator=generator)
    spatial = shape[2:]
    for index in range(1, shape[0]):
        image = torch.full(shape[1:], -1.0)
        for _ in range(6):
            lows = [
                int(torch.randint(0, max(1, size - 2), (1,), generator=generator))
                for size in spatial
            ]
            highs = [
                low + 1 + int(torch.randint(0, max(1, size - low), (1,), generator=generator))
                for low, size in zip(lows, spatial, strict=True)
            ]
            box = tuple(slice(low, high) for low, high in zip(lows, highs, strict=True))
            image[(slice(None), *box)] = float(torch.rand((1,), generator=generator)) * 2 - 1
        windows[index] = image + 0.01 * torch.randn(shape[1:], generator=generator)
    return windows


def export_program(
    method: Method[Any, Any],
    path: str | Path,
    *,
    condition: BaseModel | Mapping[str, object] | None = None,
    seed: int = 0,
    onnx: bool = False,
    model: str | Path | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Export ``method``'s window function for ``condition`` with ``torch.export`` and
    save it with a JSON description (``<path>.json``).

    Args:
        method: A ready network method (trained, or loaded from a model folder).
        path: The file to write (``.pt2``, or ``.onnx`` with ``onnx``); it must not exist.
        condition: The predict-time condition the function is exported for (its default
            when ``None``).
        seed: Seed of the random check windows.
        onnx: Write ONNX instead (the captured program lowered by ``torch.onnx``, opset
            the batch size free), checked by running it in onnxruntime; needs the
            ``onnx`` extra (onnx, onnxscript, onnxruntime).
        model: The model folder (or zip) ``method`` was loaded from: its content's
            SHA-256 (:func:`model_sha256`) is recorded as ``model_sha256``, which a
            MONAI bundle's run checks its model folder against.
        overwrite: Replace an existing file at ``path`` and at its description's path
            (either alone too). Both are written in full under temporary names first
            and put in place together; a failed export keeps the old ones.

    The method's network is left on the CPU in eval mode (export and check run there).

    Returns:
        The written files and the check's largest difference.

    Raises:
        ExportError: The method runs no network by window, refuses the condition,
            ``torch.export`` cannot capture its forward, or the exported function
            differs from medi2i's forward on the check windows.
        OptionsError: The condition is invalid, or a file exists at ``path`` or its
            description's path and ``overwrite`` is not set.
        OutputError: The folder of ``path`` cannot be written to (checked before the
            work), or a file appeared at ``path`` or its description's path while the
            export ran; it is kept, and nothing of the export is left.

    The description records the written file's SHA-256 (``sha256``), which a MONAI
    bundle's run checks its program against.
    """
    from medi2i.model_folder import method_distribution
    from medi2i.patch_network import PatchNetworkMethod

    path = Path(path)
    sidecar = path.with_name(path.name + ".json")
    if not isinstance(method, PatchNetworkMethod):
        raise ExportError(
            f"method {method.id!r} runs no network on sliding windows: there is nothing "
            "to export (medi2i predict runs it as it is)"
        )
    parsed = method.parse_condition(condition)
    refusal = method.export_refusal(parsed)
    if refusal:
        raise ExportError(f"method {method.id!r} cannot be exported: {refusal}")
    require_free(path, sidecar, overwrite=overwrite)
    require_writable_target(path)
    recorded_model = model_sha256(model) if model is not None else None

    method.network.cpu().eval()
    wrapper = _WindowFunction(method, parsed).eval()
    shape = (CHECK_BATCH, method.input_spec.channels, *method.roi_size())
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(shape, generator=generator)
    check = _check_windows(shape, generator)
    with torch.no_grad():
        expected = method.forward(check, parsed).float()
    if not bool(torch.isfinite(expected).all()):
        raise ExportError(
            f"method {method.id!r}: medi2i's forward gives NaN or infinite values on the "
            "check windows (NaN or infinite weights: a diverged model); nothing was written"
        )
    scale = max(1.0, float(expected.abs().max()))

    def forward(windows: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            output: torch.Tensor = method.forward(windows, parsed).float()
        return output

    result = _export_function(method, wrapper, example, onnx=onnx, shrinking=True)
    got, difference, failure = _compared(result, check, expected, forward)
    if result.steps is not None and (failure or not difference <= EXPORT_TOLERANCE * scale):
        # a program that fails a window the engine may run: the full window alone
        result = _export_function(method, wrapper, example, onnx=onnx, shrinking=False)
        got, difference, failure = _compared(result, check, expected, forward)
    if failure is not None:
        subject = f"model {model}" if model is not None else f"method {method.id!r}"
        other = "torch-export" if onnx else "onnx"
        raise ExportError(
            f"{subject}: the exported program fails on the check windows ({failure}); "
            f"nothing was written: export it with --format {other}, or with another torch "
            "version"
        )
    if got.shape != expected.shape:
        raise ExportError(
            f"method {method.id!r}: the exported function returns {tuple(got.shape)} where "
            f"medi2i's forward returns {tuple(expected.shape)}"
        )
    if not difference <= EXPORT_TOLERANCE * scale:  # a NaN difference fails too
        raise ExportError(
            f"method {method.id!r}: the exported function differs from medi2i's forward by "
            f"{difference:.3g} on the check windows (tolerance {EXPORT_TOLERANCE * scale:.3g})"
        )
    program, steps, onnx_model = result.program, result.steps, result.onnx_model
    window = {
        "input_shape": ["batch", method.input_spec.channels, *method.roi_size()],
        "output_channels": int(got.shape[1]),
        "output_scale": list(method.output_scale),
        # None: the full window only; else each axis may be any multiple of its
        # step up to the full size (the windows medi2i's engine runs on a volume
        # shorter than the window)
        "shrinks_by": steps,
        "dtype": "float32",
    }
    condition_json = json.loads(parsed.model_dump_json())
    method_json: dict[str, object] = {
        "id": method.id,
        "version": method.version,
        "distribution": method_distribution(method),
    }
    options_json = json.loads(method.options.model_dump_json())
    domains_json = [domain.model_dump(mode="json") for domain in method.domains]
    state_json = json.loads(json.dumps(method.state_values()))
    if onnx_model is not None:  # the window, condition and options' hash inside the file too
        described = description_sha256(method_json, options_json, domains_json, state_json)
        written = with_onnx_metadata(
            onnx_model, window=window, condition=condition_json, described=described
        )
    else:  # saved to memory first, so that its description can name its SHA-256
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        written = buffer.getvalue()
    description = {
        "format": "medi2i-onnx/1" if onnx else "medi2i-torch-export/1",
        "method": method_json,
        "options": options_json,
        "condition": condition_json,
        "window": window,
        "input": method.input_spec.model_dump(mode="json"),
        "output": method.output_spec.model_dump(mode="json"),
        "check": {
            "windows": CHECK_BATCH,
            "kinds": "white noise; constant boxes on a -1 background with noise 0.01",
            "seed": seed,
            "max_abs_difference": difference,
            "tolerance": EXPORT_TOLERANCE * scale,
        },
        "torch": torch.__version__,
        # what a MONAI bundle checks its models/model.pt2 against before it runs
        "sha256": hashlib.sha256(written).hexdigest(),
        # the model folder's content (null: exported from a method in memory), which a
        # MONAI bundle's run checks its models/medi2i against
        "model_sha256": recorded_model,
        "load": (
            "onnxruntime.InferenceSession(path); input 'windows', any batch size; "
            "medi2i predict --model path runs it with medi2i's steps around it"
            if onnx
            else "torch.export.load(path).module()"
        ),
        "around_the_function": (
            "The file is the network's function on one batch of windows, for the "
            "condition above. medi2i runs it on the input after reading it, reorienting "
            "and resampling it as the method's spatial plan says and normalizing its "
            "intensities (the method's preprocess), blends the overlapping windows, then "
            "maps the result back to the input's grid and units (postprocess). A user of "
            "the file alone must do the same; medi2i predict --model does it."
        ),
    }
    if onnx:  # what medi2i predict --model file.onnx rebuilds the method from
        from medi2i import __version__

        description["model"] = {
            "onnx_sha256": hashlib.sha256(written).hexdigest(),
            "domains": domains_json,
            "state": state_json,
            "medi2i": __version__,
        }

    def write(tmp: Path) -> None:
        tmp.write_bytes(written)

    text = json.dumps(description, indent=2) + "\n"
    if overwrite:
        replace_pair(path, sidecar, text, write)
    else:
        place_pair(path, sidecar, text, write)
    return ExportResult(path=path, sidecar=sidecar, max_difference=difference)
