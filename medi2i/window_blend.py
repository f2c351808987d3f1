"""Sliding-window blending that holds one output volume, not an output and a count map.

:func:`blend_windows` gives, bit for bit, what MONAI's ``sliding_window_inference``
gives for one volume (same windows in the same order, same importance map, the same
additions in the same order for every voxel), but never allocates the full-size count
map MONAI divides by at the end: the weights' sum is rebuilt slab by slab along the last
axis and divided into the output in place. On a 512×512×400 CT that is one float32
volume (400 MiB) less at the peak of every prediction.

On a GPU with room for the output and its weight sum (half its free memory, at most),
both are accumulated there instead: windows go up through pinned memory without waiting
for the batch before, nothing comes back until the volume is done, and the host keeps
gathering the next batch while the GPU runs the last one. The additions are the same, in
the same order, so the result is the same to the bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from monai.data.utils import compute_importance_map, dense_patch_slices

Window = tuple[slice, slice, slice]

COUNT_SLAB_VOXELS = 1 << 24
"""Most output voxels in one slab of the rebuilt weight sum: 16 Mi (64 MiB float32)."""

TRANSFER_CHUNK_BYTES = 1 << 26
"""Size of each of the two pinned buffers through which a result blended on the GPU is
copied to host memory: 64 MiB."""

DEVICE_ACCUMULATION_SHARE = 0.5
"""Largest share of the GPU's free memory that the output and its weight sum may take
for blending on the GPU; above it they are blended in host memory."""


def blend_windows(
    volume: torch.Tensor,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    roi: tuple[int, int, int],
    *,
    batch_size: int,
    overlap: float,
    mode: str,
    sigma_scale: float,
    device: torch.device,
    progress: bool = False,
    accumulate_on_device: bool | None = None,
) -> torch.Tensor:
    """Run ``predictor`` on overlapping windows of ``volume`` and blend the outputs.

    Args:
        volume: ``(1, C, X, Y, Z)`` float32 on the CPU; not modified.
        predictor: Maps a batch of windows ``(N, C, *roi)`` on ``device`` to float32
            outputs ``(N, C', *roi')``, where ``roi'`` is ``roi`` times the network's
            output scale.
        roi: Window size in voxels (at most the volume's size along an axis, or the
            volume is padded by edge replication and the padding cropped off).
        batch_size: Windows per call of ``predictor``.
        overlap: Fraction of a window shared with its neighbour, in [0, 1).
        mode: ``"gaussian"`` or ``"constant"`` weights within a window.
        sigma_scale: Gaussian standard deviation as a fraction of the window size.
        device: Where windows are sent to run.
        progress: Show a progress bar over the batches.
        accumulate_on_device: Blend on ``device`` (``True``) or in host memory
            (``False``); ``None`` blends on a CUDA device when the output and its weight
            sum take at most :data:`DEVICE_ACCUMULATION_SHARE` of its free memory.

    Returns:
        ``(1, C', X', Y', Z')`` float32 on the CPU.
    """
    spatial = tuple(int(n) for n in volume.shape[2:])
    short = [max(r - n, 0) for n, r in zip(spatial, roi, strict=True)]
    padding = [(amount // 2, amount - amount // 2) for amount in short]
    if any(sum(pair) for pair in padding):
        flat = [amount for pair in reversed(padding) for amount in pair]  # last axis first
        volume = F.pad(volume, pad=flat, mode="replicate")
    size = tuple(int(n) for n in volume.shape[2:])
    # MONAI's scan interval: a window as long as the volume does not move
    interval = [
        r if r == n else max(int(r * (1 - overlap)), 1) for n, r in zip(size, roi, strict=True)
    ]
    windows: list[Window] = dense_patch_slices(size, roi, interval)  # type: ignore[assignment]
    weight = compute_importance_map(
        roi, mode=mode, sigma_scale=sigma_scale, device=device, dtype=torch.float32
    )[None, None]
    output: torch.Tensor | None = None
    count: torch.Tensor | None = None  # the weight sum, when blending on the device
    scale: list[float] | None = None
    pinned = device.type == "cuda"
    batches = range(0, len(windows), batch_size)
    for first in _with_progress(batches, progress):
        group = windows[first : first + batch_size]
        inputs = torch.cat([volume[(slice(None), slice(None), *window)] for window in group])
        if pinned:
            inputs = inputs.pin_memory()
        out = predictor(inputs.to(device, non_blocking=pinned))
        if output is None:
            out_roi = tuple(int(n) for n in out.shape[2:])
            if out_roi != roi:
                scale = [o / float(r) for o, r in zip(out_roi, roi, strict=True)]
                weight = F.interpolate(weight, out_roi, mode="nearest-exact")
            shape = [int(n * z) for n, z in zip(size, scale, strict=True)] if scale else list(size)
            output, count = _accumulators(
                volume, (1, int(out.shape[1]), *shape), device, accumulate_on_device
            )
        out *= weight
        if count is None:
            out = out.to("cpu")
        for window, values in zip(group, out, strict=True):
            place = (slice(None), slice(None), *_scaled(window, scale))
            output[place] += values
            if count is not None:
                count[place] += weight[0]
    assert output is not None  # a volume has at least one window
    if count is None:
        _divide_by_weight_sum(output, [_scaled(w, scale) for w in windows], weight.to("cpu"))
    else:
        output /= count
        del count
    if any(sum(pair) for pair in padding):
        zoom = scale or [1.0] * 3
        crop = [
            slice(round(before * z), round((before + n) * z))
            for (before, _), n, z in zip(padding, spatial, zoom, strict=True)
        ]
        output = output[(slice(None), slice(None), *crop)]
    if output.device.type != "cpu":
        return _to_host(output, volume)
    return output


def _to_host(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``output`` (on a GPU) copied into a new host tensor laid out as ``reference``.

    The copy goes through two pinned buffers of at most :data:`TRANSFER_CHUNK_BYTES`, in
    turn: the GPU fills one while the host empties the other into the result, the same
    to the bit. (A plain copy into pageable memory took 0.146 s for 256 MiB on an H200,
    15 % of P7's time.)
    """
    host = volume_like(reference, tuple(output.shape))
    if output.device.type != "cuda":
        host.copy_(output)
        return host
    rows = int(output.shape[2])
    per_row = max(1, output[:, :, :1].numel() * output.element_size())
    step = max(1, min(rows, TRANSFER_CHUNK_BYTES // per_row))
    shape = (*output.shape[:2], step, *output.shape[3:])
    stages = [torch.empty(shape, dtype=output.dtype, pin_memory=True) for _ in range(2)]
    done = [torch.cuda.Event(), torch.cuda.Event()]  # type: ignore[no-untyped-call]
    starts = list(range(0, rows, step))

    def fill(index: int) -> None:
        start = starts[index]
        stop = min(rows, start + step)
        stages[index % 2][:, :, : stop - start].copy_(output[:, :, start:stop], non_blocking=True)
        done[index % 2].record()

    fill(0)
    for index, start in enumerate(starts):
        if index + 1 < len(starts):
            fill(index + 1)  # into the other buffer, emptied in the last round
        done[index % 2].synchronize()
        stop = min(rows, start + step)
        host[:, :, start:stop].copy_(stages[index % 2][:, :, : stop - start])
    return host


def _accumulators(
    volume: torch.Tensor,
    shape: tuple[int, ...],
    device: torch.device,
    on_device: bool | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The zeroed output, and a zeroed weight sum when blending on ``device`` (``None``
    when blending in host memory, where the sum is rebuilt slab by slab at the end)."""
    if on_device is None:
        on_device = False
        if device.type == "cuda":
            needed = 4 * (math.prod(shape) + math.prod(shape[2:]))
            free, _ = torch.cuda.mem_get_info(device)
            on_device = needed <= DEVICE_ACCUMULATION_SHARE * free
    if on_device:
        try:
            output = torch.zeros(shape, dtype=torch.float32, device=device)
            count = torch.zeros((1, 1, *shape[2:]), dtype=torch.float32, device=device)
            return output, count
        except torch.cuda.OutOfMemoryError:
            pass  # blend in host memory instead
    return volume_like(volume, shape).zero_(), None


def volume_like(reference: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """An uninitialised float32 CPU tensor of ``shape`` (``(..., X, Y, Z)``) in the
    memory order of ``reference``'s spatial axes: x fastest when the input is (as a
    NIfTI file or a DICOM series stores it), so that the output is written back to such
    a file without a transposing pass."""
    leading, spatial = tuple(shape[:-3]), tuple(shape[-3:])
    if reference.ndim >= 3 and reference.stride(-3) < reference.stride(-1):
        flipped = torch.empty((*leading, *spatial[::-1]), dtype=torch.float32)
        order = (*range(len(leading)), *(len(leading) + i for i in (2, 1, 0)))
        return flipped.permute(order)
    return torch.empty(tuple(shape), dtype=torch.float32)


def _scaled(window: Sequence[slice], scale: list[float] | None) -> Window:
    if scale is None:
        return (window[0], window[1], window[2])
    x, y, z = (slice(int(s.start * k), int(s.stop * k)) for s, k in zip(window, scale, strict=True))
    return (x, y, z)


def _divide_by_weight_sum(
    output: torch.Tensor, windows: list[Window], weight: torch.Tensor
) -> None:
    """``output /= Σ weights``, the sum built slab by slab along the last axis.

    Each voxel's sum adds the same weights in the same (window) order as a full count
    map would, so the result is bitwise the same without holding that map.
    """
    x, y, z = (int(n) for n in output.shape[2:])
    step = max(1, COUNT_SLAB_VOXELS // max(1, x * y))
    for start in range(0, z, step):
        stop = min(z, start + step)
        total = torch.zeros((1, 1, x, y, stop - start), dtype=torch.float32)
        for wx, wy, wz in windows:
            low, high = max(wz.start, start), min(wz.stop, stop)
            if low < high:
                part = weight[..., low - wz.start : high - wz.start]
                total[:, :, wx, wy, low - start : high - start] += part
        output[..., start:stop] /= total


def _with_progress(batches: range, enabled: bool) -> Iterable[int]:
    if not enabled:
        return batches
    from tqdm.auto import tqdm

    bar: Iterable[int] = tqdm(batches, leave=False)
    return bar
