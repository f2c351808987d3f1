"""Train the Q1, Q1x and Q1u networks at GPU size, one after the other, in a time budget.

Each run first trains briefly for calibration, to measure its seconds per step; it then
trains for as many steps as fit in its share of what is left of the budget (rounded down
to a hundred), its learning-rate schedule spread over exactly those steps, validating
every ``--validate-every`` steps on the benchmark's validation part and keeping the best
validated model (``best-model/``), evaluated on the validation part by its workflow
(``metrics/metrics.md``). The test part is then scored once, by ``medi2i bench run`` on
that best model (``test/``). The step counts it chose are in each run's
``config.resolved.yaml``.

Runs (``--method``): ``regression-unet`` and ``pix2pix`` (Q1, within one subject),
``q1x-regression-unet`` (Q1x split a, cross-subject) and ``q1u-cyclegan`` (Q1u split a,
unpaired), each its workflow in ``workflows/`` with the GPU sizes below. Several
invocations may share one GPU (one ``--method`` each, started together), but then give
each fixed ``--steps``: calibrations that overlap only in part measured step times 2.2-2.8
times shorter than the shared GPU then gave (three runs on one H200, 2026-12-04).
``--deadline`` stops a training that outlasts its estimate; its best validated model is
still scored.

Usage, from the repository root, with the data prepared
(``medi2i bench prepare --task q1 --work-dir bench-work``, and ``--task q1x``)::

    python benchmarks/quality/q1_gpu.py --budget 840 --output q1-gpu-runs

With fixed step counts (no calibration), or one run only::

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

# nnU-Net-like sizes: 32 features in the first stage, widths capped at 320, patches as
# large as the training volumes allow (Q1's training half is 124 × 256 × 79 voxels, the
# Q1x training volumes 122-146 voxels across and 32-36 slices deep)
Q1_PATCH = "[96,160,64]"
Q1X_PATCH = "[96,96,32]"
GPU_SIZES: dict[str, tuple[str, list[str]]] = {
    "regression-unet": (
        "workflows/q1_regression_unet.yaml",
        [
            f"method.options.roi_size={Q1_PATCH}",
            "method.options.filters=[32,64,128,256,320]",
            "description=Q1 MR to synthetic CT with a regression U-Net at GPU size "
            "(32-320 features, 96 × 160 × 64 patches)",
        ],
    ),
    "q1x-regression-unet": (
        "workflows/q1x_regression_unet.yaml",
        [
            f"method.options.roi_size={Q1X_PATCH}",
            "method.options.filters=[32,64,128,256,320]",
            "description=Q1x split a, MR to synthetic CT with a regression U-Net at GPU "
            "size (32-320 features, 96 × 96 × 32 patches)",
        ],
    ),
    "q1u-cyclegan": (
        "workflows/q1u_cyclegan.yaml",
        [
            f"method.options.roi_size={Q1X_PATCH}",
            "method.options.generator_filters=32",
            "method.options.residual_blocks=9",
            "method.options.discriminator_filters=64",
            "description=Q1u split a, MR to synthetic CT with CycleGAN from unpaired "
            "patches at GPU size (the paper's 9 residual blocks, 32 generator and 64 "
            "discriminator features, 96 × 96 × 32 patches)",
        ],
    ),
    "pix2pix": (
        "workflows/q1_pix2pix.yaml",
        [
            f"method.options.roi_size={Q1_PATCH}",
            "method.options.generator=residual-unet",
            "method.options.generator_filters=32",
            "method.options.generator_depth=4",
            "method.options.discriminator_filters=32",
            "description=Q1 MR to synthetic CT with 3D Pix2Pix at GPU size (residual U-Net "
            "generator with 32-320 features, PatchGAN with 32, 96 × 160 × 64 windows)",
        ],
    ),
}
# the test part each run is scored on, once, by the bench harness
TEST = {
    "regression-unet": ["--task", "q1"],
    "pix2pix": ["--task", "q1"],
    "q1x-regression-unet": ["--task", "q1x", "--split", "a"],
    "q1u-cyclegan": ["--task", "q1x", "--split", "a"],
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


def _run(name: str, command: list[str], logs: Path, timeout: float | None = None) -> bool:
    """Run ``command`` with its output in ``logs/<name>.log``; stop with the log's tail if
    it fails. False if it was stopped after ``timeout`` seconds."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("w") as stream:
        try:
            returncode = subprocess.run(
                command, stdout=stream, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            print(f"{name}: stopped by the deadline after {timeout:.0f} s", flush=True)
            return False
    if returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        print(f"{name} failed (exit {returncode}):\n{tail}", file=sys.stderr)
        raise SystemExit(1)
    return True


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
    parser.add_argument("--deadline", type=float, help="seconds after which a training is stopped")
    parser.add_argument("--validate-every", type=int, default=250, help="steps")
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
        f"training.validate_every={args.validate_every}",
        *args.extra,
    ]
    chosen = args.method or list(GPU_SIZES)
    finished: dict[str, bool] = {}
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
        timeout = None if args.deadline is None else args.deadline - (time.monotonic() - start)
        run_dir = args.output / name
        finished[name] = _run(
            name, _medi2i("run", workflow, settings, run_dir), args.output, timeout
        )
        if not (run_dir / "best-model").is_dir():
            print(f"{name}: stopped before its first validation; nothing to score", flush=True)
            continue
        # the test part, once, with the model chosen on validation
        test = [sys.executable, "-m", "medi2i", "bench", "run", *TEST[name]]
        test += ["--model", str(run_dir / "best-model"), "--device", args.device]
        test += ["--work-dir", str(ROOT / "bench-work"), "--output", str(run_dir / "test")]
        _run(f"{name}-test", test, args.output)
    for name in chosen:
        stopped = "" if finished.get(name) else ", stopped by the deadline"
        print(f"== {name}, {steps[name]} steps{stopped}")
        for table in sorted((args.output / name / "test").glob("*_comparison.md")):
            print("\n".join(x for x in table.read_text().splitlines() if x.startswith("|")))
    print(f"total {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
