"""P1 engine overhead: medi2i's predict path against MONAI's bare sliding window.

Both run the same MONAI UNet (same weights) over the same 1×1×160×192×160 volume with
a 96³ window, overlap 0.25 and Gaussian blending, side by side in one process: one
warm-up each, then ``--repeats`` runs alternating which goes first. The result is the
ratio of the median times, medi2i over MONAI (target: at most 1.05), and the largest
difference between the two outputs.

The medi2i side is ``medi2i.prediction.predict_tensor`` when it exists, otherwise
``PatchNetworkMethod.predict`` with a ``PredictContext`` around a ``SlidingWindowEngine``.

Usage: python benchmarks/p1_engine_overhead.py [--repeats 5] [--device auto]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import monai
import torch
from monai.data.meta_tensor import MetaTensor
from monai.inferers.utils import sliding_window_inference
from monai.networks.nets.unet import UNet

import medi2i
from medi2i.engine import SlidingWindowEngine
from medi2i.method import PredictContext, Task, VolumeSpec
from medi2i.patch_network import PatchNetworkMethod
from medi2i.settings import InferenceSettings

RESULTS = Path(__file__).parent / "results"
TARGET_RATIO = 1.05
SHAPE = (160, 192, 160)
Report = dict[str, Any]
"""The JSON report; the script's own, so its layout lives in :func:`summary`."""
Runner = Callable[[MetaTensor], torch.Tensor]
NETWORK = "MONAI UNet(3D, channels 16-32-64-128, strides 2-2-2, num_res_units 2)"


class BenchUNet(PatchNetworkMethod):
    """A MONAI UNet run by the sliding-window engine."""

    id = "p1-unet"
    tasks = (Task.TRANSLATION,)
    input_spec = output_spec = VolumeSpec()
    default_roi_size = (96, 96, 96)

    def build_network(self) -> torch.nn.Module:
        torch.manual_seed(0)
        return UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=1,
            channels=(16, 32, 64, 128),
            strides=(2, 2, 2),
            num_res_units=2,
        )


def medi2i_runner(method: BenchUNet, settings: InferenceSettings) -> tuple[str, Runner]:
    """The medi2i predict path, and its name."""
    try:
        predict_module = importlib.import_module("medi2i.prediction")
    except ImportError:
        return "PatchNetworkMethod.predict", method_predict(method, settings)
    if not hasattr(predict_module, "predict_tensor"):
        return "PatchNetworkMethod.predict", method_predict(method, settings)

    def run(image: MetaTensor) -> torch.Tensor:
        output: torch.Tensor = predict_module.predict_tensor(method, image, settings=settings)
        return output

    return "medi2i.prediction.predict_tensor", run


def method_predict(method: BenchUNet, settings: InferenceSettings) -> Runner:
    """The method's own predict with an engine, as the core calls it."""

    def run(image: MetaTensor) -> torch.Tensor:
        engine = SlidingWindowEngine(settings=settings)
        condition = method.parse_condition(None)
        context = PredictContext(engine=engine, condition=condition, device=engine.device)
        return method.predict(image, context)

    return run


def monai_runner(network: torch.nn.Module, settings: InferenceSettings) -> Runner:
    """What a MONAI user writes: the network on the device, the volume and output on CPU."""
    device = SlidingWindowEngine(settings=settings).device
    roi = settings.roi_size
    assert roi is not None

    def run(image: MetaTensor) -> torch.Tensor:
        network.to(device).eval()
        autocast: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if device.type == "cuda" and settings.amp:
            autocast = torch.autocast(device_type="cuda", dtype=torch.float16)
        with torch.inference_mode(), autocast:
            output = sliding_window_inference(
                image.as_tensor()[None],
                roi_size=roi,
                sw_batch_size=settings.sw_batch_size,
                predictor=network,
                overlap=settings.overlap,
                mode=settings.blend,
                sigma_scale=settings.sigma_scale,
                sw_device=device,
                device=torch.device("cpu"),
            )
        assert isinstance(output, torch.Tensor)
        return output[0]

    return run


def timed(run: Runner, image: MetaTensor) -> tuple[float, torch.Tensor]:
    """Wall time of one run in seconds, and its output."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    output = run(image)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, output


def measure(runners: dict[str, Runner], image: MetaTensor, repeats: int) -> Report:
    """Warm up each runner once, then interleave ``repeats`` runs, alternating the order."""
    outputs = {name: timed(run, image)[1] for name, run in runners.items()}
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            seconds, outputs[name] = timed(runners[name], image)
            times[name].append(seconds)
            print(f"  {name}: {seconds:.2f} s", flush=True)
    first, second = (torch.as_tensor(o).float() for o in outputs.values())
    return {"times_s": times, "max_abs_diff": float((first - second).abs().max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sw-batch-size", type=int, default=4)
    parser.add_argument("--shape", type=int, nargs=3, default=SHAPE, help="volume size, voxels")
    args = parser.parse_args()

    settings = InferenceSettings(
        roi_size=(96, 96, 96),
        sw_batch_size=args.sw_batch_size,
        overlap=0.25,
        blend="gaussian",
        device=args.device,
        progress=False,
    )
    method = BenchUNet()
    torch.manual_seed(1)
    image = MetaTensor(torch.rand(1, *args.shape), affine=torch.eye(4, dtype=torch.float64))
    path, medi2i_run = medi2i_runner(method, settings)
    runners = {"medi2i": medi2i_run, "monai": monai_runner(method.network, settings)}
    print(f"P1: {path} vs sliding_window_inference, {args.repeats} repeats", flush=True)
    measured = measure(runners, image, args.repeats)
    report = summary(measured, settings, path, args.repeats, tuple(args.shape))
    write(report)
    print(json.dumps({k: report[k] for k in ("medians_s", "ratio", "pass", "max_abs_diff")}))


def summary(
    measured: Report,
    settings: InferenceSettings,
    path: str,
    repeats: int,
    shape: tuple[int, ...],
) -> Report:
    times = measured["times_s"]
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["medi2i"] / medians["monai"]
    # other work on a shared machine only ever adds time: the fastest runs show the engine's
    # own cost with the least interference
    minimums = {name: min(values) for name, values in times.items()}
    return {
        "benchmark": "P1 engine overhead",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": str(SlidingWindowEngine(settings=settings).device),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "monai": monai.__version__,
            "medi2i": medi2i.__version__,
        },
        "setup": {
            "medi2i_path": path,
            "network": NETWORK,
            "input_shape": [1, 1, *shape],
            "repeats": repeats,
            "settings": settings.model_dump(mode="json"),
        },
        "times_s": times,
        "medians_s": medians,
        "ratio": ratio,
        "minimums_s": minimums,
        "ratio_of_minimums": minimums["medi2i"] / minimums["monai"],
        "target": f"ratio <= {TARGET_RATIO}",
        "pass": ratio <= TARGET_RATIO,
        "max_abs_diff": measured["max_abs_diff"],
    }


def write(report: Report) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "p1_engine_overhead.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "p1_engine_overhead.md").write_text(markdown(report))


def markdown(report: Report) -> str:
    medians, minimums, times = report["medians_s"], report["minimums_s"], report["times_s"]
    machine, versions, setup = report["machine"], report["versions"], report["setup"]
    runs = {name: ", ".join(f"{t:.2f}" for t in values) for name, values in times.items()}
    verdict = "pass" if report["pass"] else "FAIL"
    return "\n".join(
        [
            "# P1 engine overhead",
            "",
            f"{setup['medi2i_path']} vs MONAI `sliding_window_inference`; {setup['network']}, "
            f"input {'×'.join(str(n) for n in setup['input_shape'])}, ROI 96³, overlap 0.25, "
            f"gaussian blending, sw_batch_size {setup['settings']['sw_batch_size']}, "
            f"{setup['repeats']} interleaved runs after one warm-up each.",
            "",
            "| path | median (s) | fastest (s) | runs (s) |",
            "|---|---|---|---|",
            f"| medi2i | {medians['medi2i']:.2f} | {minimums['medi2i']:.2f} | {runs['medi2i']} |",
            f"| MONAI | {medians['monai']:.2f} | {minimums['monai']:.2f} | {runs['monai']} |",
            "",
            f"Ratio of medians medi2i / MONAI: **{report['ratio']:.3f}** (target "
            f"{report['target']}: {verdict}); ratio of fastest runs: "
            f"{report['ratio_of_minimums']:.3f}; max |difference| of outputs: "
            f"{report['max_abs_diff']:.2e}.",
            "",
            f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs "
            f"({machine['torch_threads']} torch threads), device {machine['device']}; "
            f"Python {versions['python']}, torch {versions['torch']}, MONAI {versions['monai']}, "
            f"medi2i {versions['medi2i']}; {report['date']}.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
