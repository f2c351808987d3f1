"""The sliding-window engine: a patch network over a whole volume, blended as MONAI's
inferer blends (:mod:`medi2i.window_blend`) with one output volume in memory.

The volume stays on the CPU; windows are copied to the device in batches, run through
the network (float16 autocast on CUDA when asked), blended back on the CPU. When the
device runs out of memory the batch of windows is halved and the volume run again.

An engine is meant to outlive one volume: what it learns while running (the lowered
batch of windows after an out-of-memory error) stays on the engine object, so a caller
that predicts many volumes makes one engine and passes it to every
:func:`medi2i.prediction.predict_tensor` call, and only the first volume pays for the
back-off.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence

import torch

from medi2i.errors import DeviceError, GeometryError, Medi2iError, OptionsError
from medi2i.settings import InferenceSettings, wants_progress
from medi2i.window_blend import blend_windows, volume_like

Predictor = Callable[[torch.Tensor], torch.Tensor]
"""Maps a batch of windows ``(N, C, x, y, z)`` to network outputs ``(N, C', x', y', z')``."""

_logger = logging.getLogger(__name__)

DEFAULT_WINDOW_BATCH = 4
"""Windows a forward pass takes when the settings leave it to the engine (at most)."""
CPU_BATCH_VOXELS = 4 * 96**3
"""Most voxels the engine's own choice puts in one CPU batch: 4 windows of 96³, one of
128³. On 2 CPU cores, four 128³ windows of the regression U-Net's default network in one
batch added 6.5 GB of memory (1.7 GB for one window) and ran 1.04 times as fast per
window; four of 64³ and 96³ ran 1.25 and 1.1 times as fast as one at a time, for 0.8
and 2.8 GB (``benchmarks/cpu_window_batch.py``, ``results/cpu_window_batch.md``)."""


def window_batch(device: torch.device, roi: Sequence[int]) -> int:
    """Windows per forward pass when the settings leave it to the engine
    (``sw_batch_size=None``): :data:`DEFAULT_WINDOW_BATCH` on a GPU; on the CPU as many
    as :data:`CPU_BATCH_VOXELS` allows, at least one.

    Example:
        >>> [window_batch(torch.device("cpu"), (r, r, r)) for r in (64, 96, 128)]
        [4, 4, 1]
    """
    if device.type != "cpu":
        return DEFAULT_WINDOW_BATCH
    voxels = max(1, math.prod(int(n) for n in roi))
    return max(1, min(DEFAULT_WINDOW_BATCH, CPU_BATCH_VOXELS // voxels))


_LARGEST_ROI_DIVISOR = 32
"""Largest power of two a network may need its input size to be divisible by (five
stride-2 levels); clamped windows keep this much of the ROI's divisibility."""


def resolve_device(name: str) -> torch.device:
    """The torch device for a device setting.

    Args:
        name: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns:
        The device windows should run on.

    Raises:
        DeviceError: The name is not a device, or CUDA was asked for and is not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(
            f"unknown device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DeviceError(
            f"device {name!r} is not supported: use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        )
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {name!r} was requested but torch sees no CUDA device "
            f"(torch {torch.__version__}); use --device cpu (training.device or "
            "inference.device: cpu in a workflow), or install a CUDA build of torch"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise DeviceError(
            f"device {name!r} was requested but only {count} CUDA device(s) are visible "
            f"(cuda:0 to cuda:{count - 1}); pick one of those"
        )
    return device


def window_size(image_size: Sequence[int], roi_size: Sequence[int]) -> tuple[int, int, int]:
    """The window actually used on an image: the ROI, shrunk along axes shorter than it.

    A window longer than the image only adds padding to compute. Along such an axis the
    window becomes the image length rounded up to a multiple of the ROI's largest
    power-of-two divisor (at most 32), so a network that needs sizes divisible by 2**k
    (a UNet with k stride-2 levels) still gets one, whatever the image length. The few
    voxels of rounding are padded by edge replication (as the trainer pads patches) and
    cropped from the output.

    Args:
        image_size: Spatial size of the image in voxels.
        roi_size: Requested window size in voxels.

    Returns:
        The window size in voxels, never larger than ``roi_size``.
    """
    sizes = [_shrunk_axis(int(n), int(r)) for n, r in zip(image_size, roi_size, strict=True)]
    return (sizes[0], sizes[1], sizes[2])


def shrink_step(roi: int) -> int:
    """The step by which a window of ``roi`` voxels shrinks along an axis where the
    volume is shorter: its largest power-of-two divisor, at most 32."""
    return min(roi & -roi, _LARGEST_ROI_DIVISOR)  # roi & -roi: largest power of two dividing roi


def _shrunk_axis(length: int, roi: int) -> int:
    if length >= roi:
        return roi
    step = shrink_step(roi)
    return -(-length // step) * step


class SlidingWindowEngine:
    """Runs a patch network over a whole volume window by window.

    Args:
        settings: Inference settings; the defaults when ``None``.

    One engine can run any number of volumes, one after the other; what it learns on
    one is kept for the next. Today that is the out-of-memory back-off: after the
    device ran out of memory, :attr:`sw_batch_size` stays at the batch that fitted for
    every later :meth:`run` of this engine (``settings.sw_batch_size`` keeps the
    requested value; when that is ``None``, each run's batch is :func:`window_batch`'s
    for its window until memory runs out). A new engine starts from the settings again,
    so predict many volumes with one engine (the ``engine`` argument of
    :func:`medi2i.prediction.predict_tensor`). An engine is not meant to be shared by
    threads running at the same time.

    Attributes:
        settings: The settings the engine was made with.
        device: The device windows run on.
        sw_batch_size: Windows per forward pass now (``None``: :func:`window_batch`'s
            choice for each volume's window); lowered for good after an out-of-memory
            error, so later volumes run by this engine do not hit it again.

    Example:
        >>> engine = SlidingWindowEngine(settings=InferenceSettings(device="cpu", progress=False))
        >>> image = torch.rand(1, 20, 20, 20)
        >>> engine.run(image, lambda w: 2 * w, default_roi_size=(16, 16, 16)).shape
        torch.Size([1, 20, 20, 20])
    """

    def __init__(self, *, settings: InferenceSettings | None = None) -> None:
        self.settings = settings if settings is not None else InferenceSettings()
        self.device = resolve_device(self.settings.device)
        self.sw_batch_size = self.settings.sw_batch_size

    def run(
        self,
        image: torch.Tensor,
        predictor: Predictor,
        *,
        modules: Sequence[torch.nn.Module] = (),
        default_roi_size: tuple[int, int, int] = (96, 96, 96),
        output_scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
        output_origin: tuple[float, float, float] | None = None,
        mirror_axes: Sequence[int] | None = None,
        eval_modules: bool = True,
        method_id: str | None = None,
    ) -> torch.Tensor:
        """Predict a whole volume by sliding ``predictor`` over it.

        Along axes shorter than the window, the window shrinks to fit (see
        :func:`window_size`) rather than padding the volume to the full window.

        Args:
            image: Channel-first volume ``(C, X, Y, Z)`` on the CPU (``MetaTensor`` or
                plain tensor); it is not modified.
            predictor: Maps a batch of windows to the network's outputs.
            modules: Networks used by ``predictor``; moved to the device and set to eval
                mode (unless ``eval_modules`` is off).
            default_roi_size: Window size in voxels when the settings give none.
            output_scale: Output voxels per input voxel along each axis (e.g. ``(1, 1, 4)``
                for a network that upsamples the last axis four times).
            output_origin: Where the first output voxel's centre lies in a window, in
                input voxels from the first input voxel's centre, per axis; ``None``:
                the output voxels split the input voxels evenly (``-0.5 + 0.5 / scale``,
                as :meth:`medi2i.Grid.scaled`). A network whose output keeps the input
                centres (``0``: sub-voxel ``s`` of voxel ``i`` at ``i + s / scale``) says
                so, for test-time mirroring to put each mirrored output back where it
                belongs (see :func:`mirror_shift`).
            mirror_axes: Axes of ``image`` to mirror along (test-time mirroring);
                ``None``: the settings' ``mirror_axes``. A method that reorders the
                volume's axes before the engine passes the settings' axes reordered.
            eval_modules: Set ``modules`` to eval mode; off for a method that keeps its
                networks' modes itself (e.g. batch-norm statistics of the input, AdaBN).
            method_id: The method whose network runs, named in the errors.

        Returns:
            A float32 CPU tensor ``(C', X', Y', Z')`` with ``X' = round(X * scale_x)`` etc.

        Raises:
            GeometryError: ``image`` is not a channel-first 3D volume.
            DeviceError: Even one window at a time does not fit in device memory.
            Medi2iError: The network's output windows do not match ``output_scale``, or
                are not of a floating-point dtype.
        """
        volume = _batch_of_one(image)
        spatial = tuple(int(n) for n in volume.shape[2:])
        roi = window_size(spatial, self.settings.roi_size or default_roi_size)
        for module in modules:
            module.to(self.device)
            if eval_modules:
                module.eval()
        mirrors = mirror_combinations(
            self.settings.mirror_axes if mirror_axes is None else mirror_axes
        )
        shifts = tuple(
            mirror_shift(s, None if output_origin is None else output_origin[i])
            for i, s in enumerate(output_scale)
        )
        windows = self._window_predictor(
            predictor, roi, output_scale, mirrors, shifts, _network_of(method_id)
        )
        output = self._infer_lowering_batch(volume, windows, roi)
        _check_output_size(output, spatial, output_scale, roi)
        return output[0]

    def run_pointwise(
        self,
        image: torch.Tensor,
        predictor: Predictor,
        *,
        modules: Sequence[torch.nn.Module] = (),
        eval_modules: bool = True,
        method_id: str | None = None,
    ) -> torch.Tensor:
        """Predict a whole volume with a voxelwise ``predictor``: no windows, overlap or
        blending, the volume passed in slabs of whole slices (last axis) of at most
        :data:`POINTWISE_SLAB_VOXELS` voxels, each written once into the output.

        For a method whose output at a voxel depends on the input at that voxel only
        (:attr:`medi2i.PatchNetworkMethod.pointwise`), this gives what the sliding window
        gives, without its copies, padding and count map. Mirroring is skipped (a
        voxelwise function does not change under a flip).

        Args:
            image: Channel-first volume ``(C, X, Y, Z)`` on the CPU; not modified.
            predictor: Maps a batch ``(1, C, X, Y, z)`` of slices to ``(1, C', X, Y, z)``.
            modules: Networks used by ``predictor``, moved to the device (eval mode
                unless ``eval_modules`` is off).
            eval_modules: As in :meth:`run`.
            method_id: As in :meth:`run`.

        Returns:
            A float32 CPU tensor ``(C', X, Y, Z)``.

        Raises:
            GeometryError: ``image`` is not a channel-first 3D volume.
            Medi2iError: The predictor changed the spatial size of a slab, or its output
                is not of a floating-point dtype.
        """
        plain = _channel_first(image)
        for module in modules:
            module.to(self.device)
            if eval_modules:
                module.eval()
        x, y, z = (int(n) for n in plain.shape[1:])
        step = max(1, POINTWISE_SLAB_VOXELS // max(1, x * y * int(plain.shape[0])))
        output: torch.Tensor | None = None
        for start in range(0, z, step):
            stop = min(z, start + step)
            slab = plain[None, :, :, :, start:stop].to(self.device, torch.float32)
            with torch.inference_mode(), self._autocast():
                out = predictor(slab)
            _require_floating(out, _network_of(method_id))
            if tuple(out.shape[2:]) != tuple(slab.shape[2:]) or out.shape[0] != 1:
                where = f" {method_id!r}" if method_id else ""
                raise Medi2iError(
                    f"a pointwise method{where} turned slices of {tuple(slab.shape[2:])} voxels "
                    f"into {tuple(out.shape[2:])}; a method whose output is not voxel for "
                    "voxel its input's must not declare itself pointwise"
                )
            if output is None:
                output = volume_like(plain, (int(out.shape[1]), x, y, z))
            output[:, :, :, start:stop] = out[0].to("cpu", torch.float32)
        assert output is not None  # a volume has at least one slice
        return output

    def _window_predictor(
        self,
        predictor: Predictor,
        roi: tuple[int, int, int],
        scale: tuple[float, float, float],
        mirrors: list[tuple[int, ...]],
        shifts: tuple[int, ...],
        network: str,
    ) -> Predictor:
        expected = tuple(round(r * s) for r, s in zip(roi, scale, strict=True))

        def run_windows(windows: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode(), self._autocast(), _window_too_small(roi):
                out = predictor(windows)
                _require_floating(out, network)
                if mirrors:
                    # the sum in float32: float16 outputs of 2^k passes could overflow
                    total = out.float()
                    for dims in mirrors:
                        back = predictor(windows.flip(dims)).float().flip(dims)
                        total = total + unshifted(back, out, dims, shifts)
                    out = total / (len(mirrors) + 1)
            if tuple(out.shape[2:]) != expected:
                raise Medi2iError(
                    f"{network} turned windows of {roi} voxels into {tuple(out.shape[2:])}, "
                    f"but the method's output_scale {scale} says {expected}; fix the method's "
                    "output_scale or its network"
                )
            # the blending weighs windows in place, which inference tensors forbid outside
            # inference mode; this copy is also the cast back from float16 under AMP.
            return out.to(torch.float32, copy=True)

        return run_windows

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.device.type == "cuda" and self.settings.amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _infer_lowering_batch(
        self, volume: torch.Tensor, windows: Predictor, roi: tuple[int, int, int]
    ) -> torch.Tensor:
        while True:
            batch = self.sw_batch_size or window_batch(self.device, roi)
            try:
                return self._sliding_window(volume, windows, roi, batch)
            except torch.cuda.OutOfMemoryError as exc:
                if batch == 1:
                    raise DeviceError(
                        f"one window of {roi} voxels does not fit in the memory of "
                        f"{self.device}; use a smaller --roi-size or --device cpu"
                    ) from exc
            # past the except block the failed batch's tensors are freed, so the cache can go
            _release_cached_device_memory()
            _logger.warning(
                "out of memory on %s with %d windows per batch; retrying with %d",
                self.device,
                batch,
                batch // 2,
            )
            self.sw_batch_size = batch // 2

    def _sliding_window(
        self, volume: torch.Tensor, windows: Predictor, roi: tuple[int, int, int], batch: int
    ) -> torch.Tensor:
        settings = self.settings
        with torch.no_grad():
            # MONAI's sliding_window_inference, bit for bit, without its full-size count
            # map; windows past a short volume are padded by edge replication, as the
            # trainer pads patches (MONAI's zeros would be mid-grey after most
            # normalizations, a false structure at the edge)
            return blend_windows(
                volume,
                windows,
                roi,
                batch_size=batch,
                overlap=settings.overlap,
                mode=settings.blend,
                sigma_scale=settings.sigma_scale,
                device=self.device,
                progress=wants_progress(settings.progress),
            )


_TOO_SMALL_FOR_THE_NETWORK = (
    "Expected more than 1 spatial element",  # a norm layer that reached 1 voxel
    "Padding size should be less than",  # reflection padding wider than the window
    "Kernel size can't be greater than actual input size",
    "Output size is too small",
)
"""Torch's messages for a window that a network's layers shrink below what they accept."""


@contextlib.contextmanager
def _window_too_small(roi: tuple[int, int, int]) -> Iterator[None]:
    """Turn torch's error for a window too small for the network into one line."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError) as exc:
        if not any(text in str(exc) for text in _TOO_SMALL_FOR_THE_NETWORK):
            raise
        raise OptionsError(
            f"windows of {roi} voxels are too small for this network (its layers shrink "
            "them below what they accept); use a larger --roi-size, or leave it out for "
            "the method's default"
        ) from exc


POINTWISE_SLAB_VOXELS = 1 << 24
"""Most voxels (times channels) in one slab of :meth:`SlidingWindowEngine.run_pointwise`:
16 Mi, 64 MiB as float32."""


def mirror_combinations(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """The tensor dimensions to flip for test-time mirroring along array ``axes`` of a
    batch ``(N, C, X, Y, Z)``: every non-empty combination (``2**len(axes) - 1``).

    Example:
        >>> mirror_combinations((0, 2))
        [(2,), (4,), (2, 4)]
    """
    dims = [2 + int(axis) for axis in axes]
    return [
        combination
        for size in range(1, len(dims) + 1)
        for combination in itertools.combinations(dims, size)
    ]


def mirror_shift(scale: float, origin: float | None) -> int:
    """Output voxels by which a window's output, predicted on the mirrored window and
    mirrored back, lies off the unmirrored output along one axis.

    Output voxel ``k`` lies at input index ``origin + k / scale``; mirrored, it lies at
    ``n - 1 - origin - k / scale``, which mirrored back puts voxel ``k`` at
    ``k / scale + 1 / scale - 1 - origin``. Outputs that split the input voxels evenly
    (``origin = -0.5 + 0.5 / scale``, the default) mirror exactly (shift 0); outputs
    that keep the input voxel centres (``origin = 0``, sub-voxel ``s`` of voxel ``i`` at
    ``i + s / scale``) come back ``scale - 1`` voxels late.

    Raises:
        OptionsError: The shift is not a whole number of output voxels.

    Example:
        >>> mirror_shift(4.0, None), mirror_shift(4.0, 0.0), mirror_shift(1.0, 0.0)
        (0, -3, 0)
    """
    if origin is None:
        return 0
    shift = 1.0 - scale - 2.0 * origin * scale
    if abs(shift - round(shift)) > 1e-6:
        raise OptionsError(
            f"test-time mirroring cannot put back an output whose first voxel lies at "
            f"{origin:g} input voxels with {scale:g} output voxels per input voxel (the "
            "mirrored output would fall between output voxels); leave --mirror-axes out"
        )
    return round(shift)


def unshifted(
    back: torch.Tensor, plain: torch.Tensor, dims: Sequence[int], shifts: Sequence[int]
) -> torch.Tensor:
    """The mirrored-back output ``back`` moved by each mirrored dimension's shift (see
    :func:`mirror_shift`), so that every voxel lies where the unmirrored output
    ``plain``'s does; the few voxels the mirrored pass does not predict (past the
    window's last input voxel centre) take ``plain``'s values."""
    for dim in dims:
        shift = shifts[dim - 2]
        if shift == 0:
            continue
        size = back.shape[dim]
        if shift < 0:  # voxel k belongs at k + shift
            kept = back.narrow(dim, -shift, size + shift)
            back = torch.cat([kept, plain.narrow(dim, size + shift, -shift)], dim=dim)
        else:
            kept = back.narrow(dim, 0, size - shift)
            back = torch.cat([plain.narrow(dim, 0, shift), kept], dim=dim)
    return back


def _release_cached_device_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _channel_first(image: torch.Tensor) -> torch.Tensor:
    """``image`` as a plain tensor, checked to be a channel-first 3D volume."""
    if image.ndim != 4:
        shape = tuple(image.shape)
        if image.ndim == 3 and shape[0] > 1:
            fix = "add a channel axis with image[None]"
        elif image.ndim == 3:
            fix = (
                "it looks like a 2D image with a channel axis (C, X, Y); medi2i translates "
                "3D volumes: stack the slices into (1, X, Y, Z)"
            )
        elif image.ndim == 5 and shape[0] == 1:
            fix = "drop the batch axis with image[0]"
        else:
            fix = "give one volume, (1, X, Y, Z) or (X, Y, Z) with image[None]"
        raise GeometryError(
            f"the engine takes a channel-first 3D volume (C, X, Y, Z), got shape {shape}; {fix}"
        )
    return image.as_tensor() if hasattr(image, "as_tensor") else image


def _network_of(method_id: str | None) -> str:
    """How the engine's messages name the network it runs."""
    return f"the network of method {method_id!r}" if method_id else "the network"


def _require_floating(out: torch.Tensor, network: str) -> None:
    """Refuse an integer or boolean network output: it would be turned into float32 in
    silence, rounded or clipped, and written as if the network meant it."""
    if not out.is_floating_point():
        raise Medi2iError(
            f"{network} returned windows of dtype {out.dtype}, not a floating-point type; "
            "return float values from its forward (e.g. .float()), which medi2i writes as "
            "float32"
        )


def _batch_of_one(image: torch.Tensor) -> torch.Tensor:
    return _channel_first(image).float()[None]


def _check_output_size(
    output: torch.Tensor,
    spatial: tuple[int, ...],
    scale: tuple[float, float, float],
    roi: tuple[int, int, int],
) -> None:
    expected = tuple(round(n * s) for n, s in zip(spatial, scale, strict=True))
    if tuple(output.shape[2:]) != expected:
        raise Medi2iError(
            f"sliding-window output has {tuple(output.shape[2:])} voxels, expected {expected} "
            f"for an image of {spatial} scaled by {scale}; with a non-integer output_scale the "
            f"image size, the window size (now {roi}) and the window step (set by --overlap) "
            "times the scale must all be whole numbers"
        )
