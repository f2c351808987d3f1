"""P4 training throughput: the medi2i trainer against a bare PyTorch loop.

Both train the same MONAI UNet (same initial weights) with Adam and an L1 loss on
batches of the same size, cut from the same cached, preprocessed volumes, in one
process: the bare loop crops uniformly at random with a NumPy generator and does
nothing else; the trainer runs :func:`medi2i.training.train` with augmentation off
(the same work per patch), foreground-aware sampling, per-step seeding, JSON Lines
logging of every step and its final checkpoint and model folder. Runs alternate which
goes first; one warm-up run each is discarded.

Throughput is patches per second over the steps after ``--warmup``, timed at the start
of every step on both sides (in the method's training step for the trainer, so that
everything the trainer does between steps counts); the result is the ratio of the
medians over runs, trainer over bare loop (target: at least 0.9). Because other work
on a shared machine only ever lengthens steps, the rate of the fastest quarter of
steps and the rate per CPU second of the process are reported too, with end-to-end
rates (set-up, volume loading, checkpoint and model saving included) and the trainer
with its default augmentation.

Usage: python benchmarks/p4_training_throughput.py [--repeats 7] [--steps 20] [--threads 1]

On a GPU (``--device cuda``), both sides use float16 mixed precision with gradient
scaling, and every step's start is taken after the GPU has finished the previous step
(``torch.cuda.synchronize``, on both sides). ``--gpu-size`` trains the U-Net of
medi2i's Q1 GPU runs (channels 32-64-128-256-320, 96³ patches from 128³ volumes)::

    python benchmarks/p4_training_throughput.py --device cuda --gpu-size --threads 0

The results go to ``p4_training_throughput.*`` on the CPU and
``p4_training_throughput_<device>.*`` elsewhere.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets.unet import UNet

import medi2i
from medi2i.data.cases import CaseSet
from medi2i.io import read_volume
from medi2i.method import TrainerAPI
from medi2i.testing.trainable_examples import TinyRegression, write_paired_cases
from medi2i.training import AugmentationConfig, TrainingConfig, train

RESULTS = Path(__file__).parent / "results"
TARGET_RATIO = 0.9
CPU_CHANNELS = (16, 32, 64)
GPU_CHANNELS = (32, 64, 128, 256, 320)
CHANNELS = CPU_CHANNELS  # set by --gpu-size
DEVICE = torch.device("cpu")  # set by --device
LEARNING_RATE = 1e-3
Report = dict[str, Any]
Rates = dict[str, Any]
"""One run: ``steady`` and ``end_to_end`` patches per second, and ``step_s``, the wall
time of every timed step in seconds."""


def build_unet() -> torch.nn.Module:
    """The benchmark's network (built after seeding, so both sides start equal)."""
    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=1,
        channels=CHANNELS,
        strides=(2,) * (len(CHANNELS) - 1),
        num_res_units=1,
    )


def network_name() -> str:
    return (
        f"MONAI UNet(3D, channels {'-'.join(map(str, CHANNELS))}, strides "
        f"{'-'.join(['2'] * (len(CHANNELS) - 1))}, num_res_units 1)"
    )


def _now() -> tuple[float, float]:
    """Wall and process CPU time, after the GPU has finished what was queued."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)
    return time.perf_counter(), time.process_time()


class BenchUNet(TinyRegression):
    """The toy regression method with the benchmark's UNet and learning rate; notes the
    wall and process CPU time (s) at the start of every training step."""

    id = "p4-unet"

    def __init__(self, options: Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self.marks: list[tuple[float, float]] = []
        self.ends: list[float] = []

    def build_network(self) -> torch.nn.Module:
        return build_unet()

    def training_step(
        self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
    ) -> dict[str, float]:
        self.marks.append(_now())
        losses = super().training_step(batch, trainer)
        self.ends.append(_now()[0])
        return losses


def medi2i_run(
    cases: CaseSet, config: TrainingConfig, run_dir: Path, warmup: int
) -> Callable[[], Rates]:
    """One training run of the medi2i trainer."""

    def run() -> Rates:
        start = time.perf_counter()
        method = BenchUNet({"learning_rate": LEARNING_RATE})
        train(method, cases, config=config, run_dir=run_dir, resume=False)
        total = time.perf_counter() - start
        return _rates(
            method.marks, method.ends, warmup=warmup, batch_size=config.batch_size, total_s=total
        )

    return run


def bare_run(
    cases: CaseSet, config: TrainingConfig, warmup: int, weights: Path
) -> Callable[[], Rates]:
    """One training run of the plain loop a PyTorch user would write."""
    assert config.patch_size is not None
    size = config.patch_size

    def run() -> Rates:
        start = time.perf_counter()
        volumes = [
            (read_volume(c.images["source"]).as_tensor() / 1000.0,
             read_volume(c.images["target"]).as_tensor() / 1000.0)
            for c in cases.cases
        ]  # fmt: skip
        torch.manual_seed(config.seed)
        network = build_unet().train().to(DEVICE)
        optimizer = torch.optim.Adam(network.parameters(), lr=LEARNING_RATE)
        amp = config.amp and DEVICE.type == "cuda"
        scaler = torch.amp.GradScaler(DEVICE.type, enabled=amp)
        rng = np.random.default_rng(config.seed)
        marks: list[tuple[float, float]] = []
        ends: list[float] = []
        for _ in range(config.steps):
            sources, targets = [], []
            for _ in range(config.batch_size):
                source, target = volumes[int(rng.integers(len(volumes)))]
                x, y, z = (
                    int(rng.integers(0, n - p + 1))
                    for n, p in zip(source.shape[1:], size, strict=True)
                )
                window = (
                    slice(None),
                    slice(x, x + size[0]),
                    slice(y, y + size[1]),
                    slice(z, z + size[2]),
                )
                sources.append(source[window])
                targets.append(target[window])
            marks.append(_now())
            inputs = torch.stack(sources).to(DEVICE, non_blocking=True)
            wanted = torch.stack(targets).to(DEVICE, non_blocking=True)
            with torch.autocast(DEVICE.type, dtype=torch.float16, enabled=amp):
                loss = F.l1_loss(network(inputs).float(), wanted)
            scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            ends.append(_now()[0])
        torch.save(network.state_dict(), weights)
        total = time.perf_counter() - start
        return _rates(marks, ends, warmup=warmup, batch_size=config.batch_size, total_s=total)

    return run


def _rates(
    marks: list[tuple[float, float]],
    ends: list[float],
    *,
    warmup: int,
    batch_size: int,
    total_s: float,
) -> Rates:
    """Rates of one run from the wall and CPU time (s) at which each network step (forward,
    backward, update) started, and the wall time at which it ended."""
    timed = marks[warmup:]
    steps = len(timed) - 1
    outside = [marks[i + 1][0] - ends[i] for i in range(warmup, len(marks) - 1)]
    return {
        "outside_ms": 1000.0 * statistics.median(outside),
        "steady": steps * batch_size / (timed[-1][0] - timed[0][0]),
        "cpu": steps * batch_size / (timed[-1][1] - timed[0][1]),
        "end_to_end": len(marks) * batch_size / total_s,
        "step_s": [b[0] - a[0] for a, b in itertools.pairwise(timed)],
    }


def measure(runners: dict[str, Callable[[], Rates]], repeats: int) -> dict[str, list[Rates]]:
    """One warm-up run each, then ``repeats`` rounds alternating the order."""
    for run in runners.values():
        run()
    rates: dict[str, list[Rates]] = {name: [] for name in runners}
    names = list(runners)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            rates[name].append(runners[name]())
            print(f"  {name}: {rates[name][-1]['steady']:.1f} patches/s", flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=4, help="untimed steps of each run")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument(
        "--patch", type=int, help="cubic patch edge, voxels [default: 32; 96 with --gpu-size]"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (0: torch's default); on a shared machine one thread per "
        "process keeps other work from stretching steps by waits between threads",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--gpu-size",
        action="store_true",
        help="the Q1 GPU runs' U-Net (32-320 channels), 96³ patches of 128³ volumes",
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    global CHANNELS, DEVICE
    DEVICE = torch.device(args.device)
    if args.gpu_size:
        CHANNELS = GPU_CHANNELS
    if args.patch is None:
        args.patch = 96 if args.gpu_size else 32
    args.volume = 128 if args.gpu_size else 64

    config = TrainingConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        patch_size=(args.patch, args.patch, args.patch),
        augmentation=AugmentationConfig(enabled=False),
        log_every=1,
        checkpoint_every=args.steps,
        device=args.device,
        progress=False,
    )
    with tempfile.TemporaryDirectory(prefix="p4-") as folder:
        root = Path(folder)
        cases = write_paired_cases(root / "cases", count=4, shape=(args.volume,) * 3)
        augmented = config.model_copy(update={"augmentation": AugmentationConfig()})
        runners = {
            "medi2i": medi2i_run(cases, config, root / "medi2i", args.warmup),
            "bare": bare_run(cases, config, args.warmup, root / "bare-weights.pt"),
            "medi2i_augmented": medi2i_run(cases, augmented, root / "augmented", args.warmup),
        }
        print(f"P4: {args.repeats} rounds of {args.steps} steps", flush=True)
        rates = measure(runners, args.repeats)
    report = summary(rates, args)
    write(report)
    print(json.dumps({k: report[k] for k in ("medians_patches_per_s", "ratio", "pass")}))


def summary(rates: dict[str, list[Rates]], args: argparse.Namespace) -> Report:
    medians = {name: statistics.median(r["steady"] for r in runs) for name, runs in rates.items()}
    cpu = {name: statistics.median(r["cpu"] for r in runs) for name, runs in rates.items()}
    outside = {
        name: statistics.median(r["outside_ms"] for r in runs) for name, runs in rates.items()
    }
    inside = {
        name: 1000.0 * statistics.median(t for r in runs for t in r["step_s"])
        for name, runs in rates.items()
    }  # on a shared machine other work only ever lengthens a step: the faster steps, pooled
    # over all runs, show each loop's own cost with the least interference
    fast = {
        name: args.batch_size / float(np.percentile([t for r in runs for t in r["step_s"]], 25))
        for name, runs in rates.items()
    }
    end_to_end = {
        name: statistics.median(r["end_to_end"] for r in runs) for name, runs in rates.items()
    }
    ratio = medians["medi2i"] / medians["bare"]
    return {
        "benchmark": "P4 training throughput",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": str(DEVICE),
            "gpu": torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else None,
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "monai": monai.__version__,
            "medi2i": medi2i.__version__,
        },
        "setup": {
            "network": network_name(),
            "optimizer": f"Adam(lr={LEARNING_RATE}), L1 loss"
            + (", float16 mixed precision" if DEVICE.type == "cuda" else ""),
            "batch_size": args.batch_size,
            "patch_size": [args.patch] * 3,
            "steps": args.steps,
            "warmup_steps": args.warmup,
            "repeats": args.repeats,
            "volumes": f"4 paired volumes of {args.volume}³ voxels, cached in memory",
        },
        "runs": rates,
        "medians_patches_per_s": medians,
        "fast_quartile_patches_per_s": fast,
        "cpu_medians_patches_per_cpu_s": cpu,
        "median_step_ms": inside,
        "median_ms_between_network_steps": outside,
        "end_to_end_medians_patches_per_s": end_to_end,
        "ratio": ratio,
        "ratio_augmented": medians["medi2i_augmented"] / medians["bare"],
        "ratio_end_to_end": end_to_end["medi2i"] / end_to_end["bare"],
        "ratio_fast_quartile": fast["medi2i"] / fast["bare"],
        "ratio_cpu": cpu["medi2i"] / cpu["bare"],
        # the network's own step is the same code on both sides: what differs is the time
        # between steps, measured in windows too short for other work to distort much
        "ratio_from_time_between_steps": inside["bare"]
        / (inside["bare"] + outside["medi2i"] - outside["bare"]),
        "target": f"ratio >= {TARGET_RATIO}",
        "pass": ratio >= TARGET_RATIO,
    }


def write(report: Report) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    device = report["machine"]["device"]
    name = "p4_training_throughput" + ("" if device == "cpu" else f"_{device.split(':')[0]}")
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(report))


def markdown(report: Report) -> str:
    medians, end_to_end = (
        report["medians_patches_per_s"],
        report["end_to_end_medians_patches_per_s"],
    )
    fast = report["fast_quartile_patches_per_s"]
    cpu = report["cpu_medians_patches_per_cpu_s"]
    machine, versions, setup = report["machine"], report["versions"], report["setup"]
    runs = {
        name: ", ".join(f"{r['steady']:.1f}" for r in values)
        for name, values in report["runs"].items()
    }
    rows = [
        ("bare PyTorch loop", "bare"),
        ("medi2i trainer", "medi2i"),
        ("medi2i trainer, default augmentation", "medi2i_augmented"),
    ]
    table = [
        f"| {label} | {medians[key]:.1f} | {fast[key]:.1f} | {cpu[key]:.1f} "
        f"| {end_to_end[key]:.1f} | {runs[key]} |"
        for label, key in rows
    ]
    verdict = "pass" if report["pass"] else "FAIL"
    patch = "×".join(str(n) for n in setup["patch_size"])
    return "\n".join(
        [
            "# P4 training throughput",
            "",
            f"{setup['network']}, {setup['optimizer']}, batch {setup['batch_size']}, patches "
            f"{patch}, {setup['steps']} steps per run ({setup['warmup_steps']} untimed), "
            f"{setup['repeats']} interleaved runs after one warm-up each; {setup['volumes']}; "
            f"torch threads: {machine['torch_threads']} per process"
            + (
                " (on a machine shared with other work, two threads per process let steps "
                "swing by up to 30× as threads wait for each other; one thread keeps the "
                "side-by-side comparison stable)."
                if machine["device"] == "cpu"
                else "; every step timed from the end of the GPU's work on the previous one."
            ),
            "",
            "| loop | median patches/s | fast-quartile patches/s | patches per CPU s "
            "| end to end patches/s | runs (patches/s) |",
            "|---|---|---|---|---|---|",
            *table,
            "",
            f"Ratio of medians medi2i / bare: **{report['ratio']:.3f}** (target "
            f"{report['target']}: {verdict}); with default augmentation "
            f"{report['ratio_augmented']:.3f}; from the fastest quarter of steps (least "
            f"interference from other work on the machine) {report['ratio_fast_quartile']:.3f}; "
            f"per CPU second of the process {report['ratio_cpu']:.3f}; "
            f"end to end (set-up, loading, checkpoint and model folder included) "
            f"{report['ratio_end_to_end']:.3f}.",
            "",
            "Median time per step outside the network's forward, backward and update (batch "
            "preparation; for medi2i everything the trainer does between two steps: sampling, "
            "seeding, logging, bookkeeping): "
            + ", ".join(
                f"{label} {report['median_ms_between_network_steps'][key]:.2f} ms"
                for label, key in (("bare", "bare"), ("medi2i", "medi2i"))
            )
            + f", of a median step of {report['median_step_ms']['bare']:.0f} ms (bare); the "
            f"ratio this difference alone implies: {report['ratio_from_time_between_steps']:.4f}.",
            "",
            f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs "
            f"(torch threads: {machine['torch_threads']}), device {machine['device']}"
            + (f" ({machine['gpu']})" if machine.get("gpu") else "")
            + "; "
            f"Python {versions['python']}, torch {versions['torch']}, MONAI {versions['monai']}, "
            f"medi2i {versions['medi2i']}; {report['date']}.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
