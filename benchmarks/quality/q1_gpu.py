"""Train the Q1 regression U-Net and Pix2Pix at GPU size, one after the other, in a time budget.

Each method first runs a short calibration training, alone on the GPU, to measure its
seconds per step; it then trains for as many steps as fit in its share of what is left of
the budget (rounded down to a hundred), its learning-rate schedule spread over exactly
those steps, and is evaluated on the Q1 test half by its workflow
(``workflows/q1_regression_unet.yaml``, ``workflows/q1_pix2pix.yaml`` with the GPU sizes
below). The step counts it chose are in each run's ``config.resolved.yaml``; the scores
in ``metrics/metrics.md``. (Side by side on one GPU, a calibration cannot tell how much
of the GPU the other run will take: the first attempt of this script measured Pix2Pix
alone, at half the time a step it then took beside the U-Net.)

Usage, from the repository root, with the Q1 data prepared
(``medi2i bench prepare --task q1 --work-dir bench-work``)::

    python benchmarks/quality/q1_gpu.py --budget 840 --output q1-gpu-runs

With fixed step counts (no calibration), or one method only::

    python benchmarks/quality/q1_gpu.py --steps 3000 --method pix2pix --output q1-gpu-runs

``--device cpu --set ...`` shrinks it for a rehearsal on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# nnU-Net-like sizes: 96³ patches, 32 features in the first stage, widths capped at 320
GPU_SIZES: dict[str, tuple[str, list[str]]] = {
    "regression-unet": (
        "workflows/q1_regression_unet.yaml",
        [
            "method.options.roi_size=[96,96,96]",
            "method.options.filters=[32,64,128,256,320]",
            "description=Q1 MR to synthetic CT with a regression U-Net at GPU size "
            "(32-320 features, 96³ patches)",
        ],
    ),
    "pix2pix": (
        "workflows/q1_pix2pix.yaml",
        [
            "method.options.roi_size=[96,96,96]",
            "method.options.generator=residual-unet",
            "method.options.generator_filters=32",
            "method.options.generator_depth=4",
            "method.options.discriminator_filters=32",
            "description=Q1 MR to synthetic CT with 3D Pix2Pix at GPU size (residual U-Net "
            "generator with 32-320 features, PatchGAN with 32, 96³ windows)",
        ],
    ),
}
CALIBRATION_STEPS = 30
CALIBRATION_FROM = 10  # steps before this one warm up (cuDNN algorithm search, caches)
RESERVE_S = 45.0  # process start, data loading and the evaluation after training
MARGIN = 0.85  # of the seconds left, for steps slower than calibrated


def _medi2i(verb: str, workflow: str, settings: list[str], run_dir: Path) -> list[str]:
    command = [sys.executable, "-m", "medi2i", verb, str(ROOT / workflow)]
    for setting in settings:
        command += ["--set", setting]
    return [*command, "--run-dir", str(run_dir)]


def _run(name: str, command: list[str], logs: Path) -> None:
    """Run ``command`` with its output in ``logs/<name>.log``; stop with the log's tail if
    it fails."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("w") as stream:
        returncode = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT).returncode
    if returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        print(f"{name} failed (exit {returncode}):\n{tail}", file=sys.stderr)
        raise SystemExit(1)


def _seconds_per_step(history: Path) -> float:
    records = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    timed = {r["step"]: r["elapsed_s"] for r in records if "elapsed_s" in r}
    first, last = CALIBRATION_FROM, max(timed)
    return (timed[last] - timed[first]) / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="folder of the runs")
    parser.add_argument("--budget", type=float, default=840.0, help="seconds for all of it")
    parser.add_argument("--steps", type=int, help="fixed steps for each (no calibration)")
    parser.add_argument(
        "--method", action="append", choices=list(GPU_SIZES), help="train only this (repeat)"
    )
    parser.add_argument("--device", default="cuda", help="training and inference device")
    parser.add_argument("--num-workers", type=int, default=4, help="patch workers per run")
    parser.add_argument(
        "--set", dest="extra", action="append", default=[], help="extra override, both runs"
    )
    args = parser.parse_args()
    start = time.monotonic()
    common = [
        f"training.device={args.device}",
        f"inference.device={args.device}",
        f"training.num_workers={args.num_workers}",
        "training.checkpoint_every=500",
        *args.extra,
    ]
    chosen = args.method or list(GPU_SIZES)
    steps = {}
    for index, name in enumerate(chosen):
        workflow, sizes = GPU_SIZES[name]
        if args.steps is not None:
            steps[name] = args.steps
        else:
            calibration = args.output / "calibration"
            shutil.rmtree(calibration / name, ignore_errors=True)
            settings = [
                *sizes,
                *common,
                f"training.steps={CALIBRATION_STEPS}",
                f"method.options.schedule_steps={CALIBRATION_STEPS}",
                "training.log_every=5",
                "training.progress=false",
            ]
            _run(name, _medi2i("train", workflow, settings, calibration / name), calibration)
            share = (args.budget - (time.monotonic() - start)) / (len(chosen) - index)
            per_step = _seconds_per_step(calibration / name / "logs" / "train.jsonl")
            steps[name] = max(100, int(MARGIN * (share - RESERVE_S) / per_step) // 100 * 100)
            print(f"{name}: {per_step:.3f} s a step; {steps[name]} steps fit", flush=True)
        settings = [
            *sizes,
            *common,
            f"training.steps={steps[name]}",
            f"method.options.schedule_steps={steps[name]}",
            "training.progress=false",
        ]
        _run(name, _medi2i("run", workflow, settings, args.output / name), args.output)
    for name in chosen:
        print(f"== {name}, {steps[name]} steps")
        print((args.output / name / "metrics" / "metrics.md").read_text().split("\n\n")[0])
    print(f"total {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
