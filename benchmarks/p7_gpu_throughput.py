"""P7 GPU throughput: medi2i's sliding window against the network's own batched forward.

An nnU-Net-sized 3D U-Net, built as the regression U-Net method builds it (MONAI
``DynUNet``, filters 32-64-128-256-320-320, residual blocks, instance normalization,
untrained weights, eval mode), runs over a float32 volume held on the host (512×512×256
by default) in 96³ windows, with medi2i's default overlap (0.25) and Gaussian blending, 4
windows per batch, float16 autocast on CUDA. After one warm-up each, ``--repeats`` runs
in turn (the order alternating) of:

- ``medi2i``: ``SlidingWindowEngine.run`` end to end, host volume in, host output out;
- ``medi2i, host blending``: the same with the output and its weight sum held in host
  memory, as the engine does when they would take more than half the GPU's free memory
  (and as it did for every volume before it blended on the GPU);
- ``MONAI``: ``sliding_window_inference`` with the same network, windows and autocast,
  ``sw_device`` the device and ``device`` the CPU (output on the host, as medi2i's);
- ``forward alone``: the network on exactly the same windows, in the same batches and
  autocast, the batches gathered onto the device once beforehand: the bound.

The result is the throughput fraction, forward-alone time over medi2i time (target: at
least 0.8), with output voxels per second and peak GPU memory of each
(``torch.cuda.max_memory_allocated``, reset before each run; the bound's batches stay
allocated throughout: its peak counts them, medi2i's and MONAI's are given less them).
cuDNN's algorithm search is left off, as medi2i's predict path leaves it. The repeats
are cut, never below one, when the warm-ups say they would not fit in ``--budget-s``.

The split: one more pass of this script's own loop doing, step for step, what
``medi2i.window_blend.blend_windows`` does on a GPU with room (the same slicing and
``torch.cat``, pinned copy, float32 cast, weighting, accumulation of output and weight
sum on the device, division, the copy of the result to the host through pinned
buffers), with
``torch.cuda.synchronize()`` and a timer around each step (the engine has no hooks),
grouped into window gathering, forward, blending and host transfer. The
synchronizations stop the host from gathering the next batch while the GPU computes, so
the loop's total is longer than the engine's; it is shown beside the engine's median,
with its output's difference from the engine's.

The large volume (``--large-shape``, 512×512×1000 by default, 1000 MiB as float32): one
run of the engine with its blending on the GPU and one with host blending, for their time
and peak GPU memory: with host blending only batches of windows are on the GPU, so a
volume of any size that fits in host memory streams through it.

Usage: python benchmarks/p7_gpu_throughput.py [--device cuda] [--shape 512,512,256]
    [--roi 96,96,96] [--sw-batch-size 4] [--overlap 0.25] [--repeats 3] [--no-amp]
    [--output benchmarks/results/p7_gpu_throughput] [--budget-s 70]
CPU rehearsal: python benchmarks/p7_gpu_throughput.py --device cpu --shape 64,64,48
    --roi 32,32,32 --filters 8,16,32 --repeats 2 --output p7-rehearsal
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import monai
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers.utils import sliding_window_inference
from monai.networks.nets.dynunet import DynUNet

import medi2i
from medi2i import window_blend
from medi2i.engine import SlidingWindowEngine
from medi2i.settings import InferenceSettings

RESULTS = Path(__file__).parent / "results" / "p7_gpu_throughput"
TARGET = 0.8
Report = dict[str, Any]
Window = tuple[slice, slice, slice]
PARTS = ("gathering", "forward", "blending", "host transfer")
"""What the steps of the split are part of (each step is named ``PART: step``)."""


def triple(text: str) -> tuple[int, int, int]:
    x, y, z = (int(n) for n in text.split(","))
    return x, y, z


def build_network(filters: tuple[int, ...]) -> torch.nn.Module:
    """``medi2i_regression_unet.network.ResidualUNet``'s DynUNet with its defaults."""
    torch.manual_seed(0)
    strides = [1] + [2] * (len(filters) - 1)
    return DynUNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=1,
        kernel_size=[3] * len(filters),
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=list(filters),
        norm_name=("INSTANCE", {"affine": True}),
        act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
        res_block=True,
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[object]:
    """The engine's autocast: float16 on CUDA when asked."""
    if device.type == "cuda" and amp:
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def timed(run: Callable[[], Any], device: torch.device) -> tuple[float, Any, float | None]:
    """Seconds of one run, its result and its peak GPU memory in MiB."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    result = run()
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return seconds, result, peak


def windows_of(size: tuple[int, ...], roi: tuple[int, int, int], overlap: float) -> list[Window]:
    """The engine's windows (``blend_windows``: MONAI's scan interval)."""
    interval = [
        r if r == n else max(int(r * (1 - overlap)), 1) for n, r in zip(size, roi, strict=True)
    ]
    return dense_patch_slices(size, roi, interval)  # type: ignore[return-value]


def gather(volume: torch.Tensor, group: list[Window]) -> torch.Tensor:
    """A batch of windows of a ``(1, C, X, Y, Z)`` volume, as ``blend_windows`` gathers it."""
    return torch.cat([volume[(slice(None), slice(None), *window)] for window in group])


def runners(
    network: torch.nn.Module, image: torch.Tensor, settings: InferenceSettings, batches: list[Any]
) -> dict[str, Callable[[], Any]]:
    engine = SlidingWindowEngine(settings=settings)
    device, roi = engine.device, settings.roi_size
    assert roi is not None

    def monai_run() -> torch.Tensor:
        with torch.inference_mode(), autocast(device, settings.amp):
            out = sliding_window_inference(
                image[None],
                roi_size=roi,
                sw_batch_size=settings.sw_batch_size,
                predictor=network,
                overlap=settings.overlap,
                mode=settings.blend,
                sigma_scale=settings.sigma_scale,
                sw_device=device,
                device="cpu",
            )
        assert isinstance(out, torch.Tensor)
        return out[0]

    def forward_alone() -> None:
        with torch.inference_mode(), autocast(device, settings.amp):
            for batch in batches:
                network(batch)

    def medi2i_run() -> torch.Tensor:
        return engine.run(image, network, modules=[network], default_roi_size=roi)

    return {
        "medi2i": medi2i_run,
        "medi2i, host blending": lambda: host_blending(medi2i_run),
        "MONAI": monai_run,
        "forward alone": forward_alone,
    }


def host_blending(run: Callable[[], Any]) -> Any:
    """``run()`` with the engine's blending held in host memory."""
    share = window_blend.DEVICE_ACCUMULATION_SHARE
    window_blend.DEVICE_ACCUMULATION_SHARE = 0.0
    try:
        return run()
    finally:
        window_blend.DEVICE_ACCUMULATION_SHARE = share


def large_volume(
    network: torch.nn.Module, settings: InferenceSettings, shape: tuple[int, int, int]
) -> dict[str, Any]:
    """One engine run each with blending on the device and in host memory."""
    engine = SlidingWindowEngine(settings=settings)
    torch.manual_seed(2)
    image = torch.rand(1, *shape)
    roi = settings.roi_size

    def run() -> torch.Tensor:
        return engine.run(image, network, modules=[network], default_roi_size=roi)

    result: dict[str, Any] = {"shape": list(shape), "volume_mib": image.numel() * 4 / 2**20}
    for name, fn in (("device blending", run), ("host blending", lambda: host_blending(run))):
        seconds, out, peak = timed(fn, engine.device)
        result[name] = {
            "seconds": seconds,
            "voxels_per_s": image.numel() / seconds,
            "peak_gpu_mib": peak,
            "finite": bool(torch.isfinite(out).all()),
        }
        del out
        print(f"  large {name}: {seconds:.2f} s, peak GPU {peak} MiB", flush=True)
    return result


def split(
    network: torch.nn.Module,
    image: torch.Tensor,
    settings: InferenceSettings,
    windows: list[Window],
    device: torch.device,
) -> tuple[dict[str, float], torch.Tensor]:
    """Seconds of each step of ``blend_windows`` blending on the device, mirrored, and
    the output."""
    parts: dict[str, float] = {}

    @contextlib.contextmanager
    def part(name: str) -> Iterator[None]:
        sync(device)
        start = time.perf_counter()
        yield
        sync(device)
        parts[name] = parts.get(name, 0.0) + time.perf_counter() - start

    volume = image.float()[None]
    roi = settings.roi_size
    assert roi is not None
    weight = compute_importance_map(
        roi, mode=settings.blend, sigma_scale=settings.sigma_scale, device=device
    )[None, None]
    pinned = device.type == "cuda"
    with torch.no_grad():
        with part("blending: allocate output and weight sum (device)"):
            output = torch.zeros(volume.shape, device=device)
            count = torch.zeros(volume.shape, device=device)
        for first in range(0, len(windows), settings.sw_batch_size):
            group = windows[first : first + settings.sw_batch_size]
            with part("gathering: slice and concatenate windows (host)"):
                inputs = gather(volume, group)
            with part("gathering: copy windows host→device (pinned)"):
                if pinned:
                    inputs = inputs.pin_memory()
                inputs = inputs.to(device, non_blocking=True)
            with part("forward: network"), torch.inference_mode(), autocast(device, settings.amp):
                out = network(inputs)
            with part("blending: cast to float32 (device)"):
                out = out.to(torch.float32, copy=True)
            with part("blending: weight and accumulate (device)"):
                out *= weight
                for w, values in zip(group, out, strict=True):
                    output[(slice(None), slice(None), *w)] += values
                    count[(slice(None), slice(None), *w)] += weight[0]
        with part("blending: divide by the weight sum (device)"):
            output /= count
        with part("host transfer: copy the output device→host (pinned buffers)"):
            host = window_blend._to_host(output, volume)
    return parts, host[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--shape", type=triple, default=(512, 512, 256), help="x,y,z voxels")
    parser.add_argument("--roi", type=triple, default=(96, 96, 96), help="window, x,y,z")
    parser.add_argument("--sw-batch-size", type=int, default=4)
    parser.add_argument("--overlap", type=float, default=InferenceSettings().overlap)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--filters", default="32,64,128,256,320,320", help="U-Net features")
    parser.add_argument("--budget-s", type=float, default=70.0, help="time for all but imports")
    parser.add_argument(
        "--large-shape",
        default="512,512,1000",
        help="x,y,z of the large volume run once each way ('none': skip)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="stem of .json and .md")
    args = parser.parse_args()
    started = time.perf_counter()
    filters = tuple(int(n) for n in args.filters.split(","))
    divisor = 2 ** (len(filters) - 1)
    if any(
        r % divisor or r < 2 * divisor or r > n for r, n in zip(args.roi, args.shape, strict=True)
    ):
        parser.error(  # instance norm needs more than one voxel at the bottleneck
            f"every ROI axis must be a multiple of {divisor}, at least {2 * divisor}, at most "
            "the shape's"
        )

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"P7 needs a CUDA GPU (--device {args.device}) and torch sees none on this "
            "machine; for a CPU rehearsal pass --device cpu (see --help); nothing was written"
        )
        raise SystemExit(2)
    settings = InferenceSettings(
        roi_size=args.roi,
        sw_batch_size=args.sw_batch_size,
        overlap=args.overlap,
        device=args.device,
        amp=args.amp,
        progress=False,
    )
    device = SlidingWindowEngine(settings=settings).device
    network = build_network(filters).to(device).eval()
    torch.manual_seed(1)
    image = torch.rand(1, *args.shape)  # on the host, as medi2i's predict path holds it
    windows = windows_of(args.shape, args.roi, args.overlap)
    size = args.sw_batch_size
    groups = [windows[i : i + size] for i in range(0, len(windows), size)]
    batches = [gather(image[None], group).to(device) for group in groups]
    resident = sum(b.numel() * b.element_size() for b in batches) / 2**20
    run = runners(network, image, settings, batches)
    with torch.inference_mode(), autocast(device, args.amp):  # CUDA and cuDNN start-up
        network(batches[0]), network(batches[-1])
    print(f"P7: {len(windows)} windows of {args.roi} in {len(batches)} batches on {device}")
    warm = {name: timed(fn, device)[0] for name, fn in reversed(run.items())}  # bound first
    print("  warm-ups: " + ", ".join(f"{k} {v:.2f} s" for k, v in warm.items()), flush=True)
    left = args.budget_s - (time.perf_counter() - started) - warm["medi2i"]  # the split's
    repeats = max(1, min(args.repeats, int(left // sum(warm.values()))))
    times: dict[str, list[float]] = {name: [] for name in run}
    peaks: dict[str, float | None] = dict.fromkeys(run)
    outputs: dict[str, Any] = {}
    for repeat in range(repeats):
        for name in list(run) if repeat % 2 == 0 else list(run)[::-1]:
            seconds, outputs[name], peak = timed(run[name], device)
            times[name].append(seconds)
            if peak is not None:  # medi2i and MONAI do not use the bound's resident windows
                peak -= 0.0 if name == "forward alone" else resident
                peaks[name] = max(peaks[name] or 0.0, peak)
            print(f"  {name}: {seconds:.2f} s", flush=True)
    split_s, (parts, split_out), _ = timed(
        lambda: split(network, image, settings, windows, device), device
    )
    large = None
    if args.large_shape != "none":
        large = large_volume(network, settings, triple(args.large_shape))
    medians = {name: statistics.median(values) for name, values in times.items()}
    fraction = medians["forward alone"] / medians["medi2i"]
    cudnn = torch.backends.cudnn.version() if device.type == "cuda" else None  # type: ignore[no-untyped-call]
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    report: Report = {
        "benchmark": "P7 GPU throughput",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": (
            f"{platform.platform()}, {os.cpu_count()} CPUs ({torch.get_num_threads()} torch "
            f"threads), device {device}, GPU {gpu}; Python {platform.python_version()}, torch "
            f"{torch.__version__} (CUDA {torch.version.cuda}, cuDNN {cudnn}), MONAI "
            f"{monai.__version__}, medi2i {medi2i.__version__}"
        ),
        "device": str(device),
        "network": f"DynUNet as regression-unet builds it: filters {args.filters}, residual, "
        "instance norm, untrained",
        "shape": list(args.shape),
        "settings": settings.model_dump(mode="json"),
        "windows": len(windows),
        "batches": len(batches),
        "repeats": {"asked": args.repeats, "run": repeats, "budget_s": args.budget_s},
        "warm_up_s": warm,
        "paths": {
            name: {
                "times_s": times[name],
                "median_s": medians[name],
                "voxels_per_s": image.numel() / medians[name],
                "peak_gpu_mib": peaks[name],
            }
            for name in run
        },
        "resident_windows_mib": resident,
        "throughput_fraction": fraction,
        "host_blending_throughput_fraction": medians["forward alone"]
        / medians["medi2i, host blending"],
        "monai_throughput_fraction": medians["forward alone"] / medians["MONAI"],
        "target": f"throughput_fraction >= {TARGET}",
        "pass": fraction >= TARGET,
        "max_abs_diff_medi2i_monai": float((outputs["medi2i"] - outputs["MONAI"]).abs().max()),
        "split_s": parts,
        "split_total_s": split_s,
        "split_max_abs_diff_from_engine": float((split_out - outputs["medi2i"]).abs().max()),
        "max_abs_diff_host_blending": float(
            (outputs["medi2i, host blending"] - outputs["medi2i"]).abs().max()
        ),
        "large_volume": large,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    args.output.with_suffix(".md").write_text(text)
    print(text)
    print(f"total {time.perf_counter() - started:.1f} s after imports")


def markdown(report: Report) -> str:
    settings, paths, total = report["settings"], report["paths"], report["split_total_s"]
    amp = "float16" if settings["amp"] and report["device"].startswith("cuda") else "off"
    repeats = report["repeats"]
    lines = [
        "# P7 GPU throughput",
        "",
        f"{report['network']}; host volume {'×'.join(map(str, report['shape']))} float32, "
        f"ROI {'×'.join(map(str, settings['roi_size']))}, overlap {settings['overlap']}, "
        f"{settings['blend']} blending, sw_batch_size {settings['sw_batch_size']}: "
        f"{report['windows']} windows in {report['batches']} batches; AMP {amp}; "
        f"{repeats['run']} runs each after one warm-up ({repeats['asked']} asked, budget "
        f"{repeats['budget_s']:.0f} s).",
        "",
        "| path | median (s) | runs (s) | output voxels/s | peak GPU memory (MiB) |",
        "|---|---|---|---|---|",
    ]
    for name, p in paths.items():
        runs = ", ".join(f"{t:.3f}" for t in p["times_s"])
        memory = "-" if p["peak_gpu_mib"] is None else f"{p['peak_gpu_mib']:.0f}"
        lines.append(
            f"| {name} | {p['median_s']:.3f} | {runs} | {p['voxels_per_s'] / 1e6:.1f} M | "
            f"{memory} |"
        )
    steps = [(*name.split(": "), s) for name, s in report["split_s"].items()]
    groups = {g: sum(s for part, _, s in steps if part == g) for g in PARTS}
    lines += [
        "",
        f"Throughput fraction, forward alone / medi2i: **{report['throughput_fraction']:.3f}** "
        f"(target {report['target']}: {'pass' if report['pass'] else 'FAIL'}); MONAI's: "
        f"{report['monai_throughput_fraction']:.3f}; medi2i's with host blending: "
        f"{report['host_blending_throughput_fraction']:.3f}. Max |medi2i - MONAI|: "
        f"{report['max_abs_diff_medi2i_monai']:.2e}; max |medi2i - medi2i with host blending|: "
        f"{report['max_abs_diff_host_blending']:.2e}. The forward alone's batches of windows "
        f"({report['resident_windows_mib']:.0f} MiB) stay on the device throughout: its peak "
        "memory counts them, medi2i's and MONAI's do not.",
        "",
        "Split (one pass of a loop that repeats the engine's steps, synchronized around each):",
        "",
        "| step | part of | seconds | share |",
        "|---|---|---|---|",
        *(f"| {step} | {part} | {s:.3f} | {s / total:.1%} |" for part, step, s in steps),
        "",
        "By part: " + ", ".join(f"{g} {s:.3f} s" for g, s in groups.items()) + f"; total "
        f"{total:.3f} s against the engine's median {paths['medi2i']['median_s']:.3f} s; max "
        f"|loop - engine| {report['split_max_abs_diff_from_engine']:.2e}.",
        "",
        *large_lines(report["large_volume"]),
        f"Machine: {report['machine']}; {report['date']}.",
        "",
    ]
    return "\n".join(lines)


def large_lines(large: dict[str, Any] | None) -> list[str]:
    if large is None:
        return []
    lines = [
        f"Large volume {'×'.join(map(str, large['shape']))} float32 "
        f"({large['volume_mib']:.0f} MiB), one run each:",
        "",
        "| blending | seconds | output voxels/s | peak GPU memory (MiB) | finite |",
        "|---|---|---|---|---|",
    ]
    for name in ("device blending", "host blending"):
        r = large[name]
        memory = "-" if r["peak_gpu_mib"] is None else f"{r['peak_gpu_mib']:.0f}"
        lines.append(
            f"| {name} | {r['seconds']:.2f} | {r['voxels_per_s'] / 1e6:.1f} M | {memory} "
            f"| {r['finite']} |"
        )
    return [*lines, ""]


if __name__ == "__main__":
    main()
