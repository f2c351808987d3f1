"""Windows per forward pass on the CPU: time per window and activation memory.

The sliding window runs a method's network on a batch of windows at a time. On a GPU a
batch of four keeps the device busy; on the CPU it is not obvious that batching pays,
and the network's activations grow with the batch. This measures, for the regression
U-Net's default network (nnU-Net-like, 32-320 features, untrained; the plugin's
defaults) at windows of 64³, 96³ and 128³ voxels, one window against four a batch:

- the memory a forward pass adds: the peak of the resident memory sampled every 5 ms
  during the first pass, less the resident memory before it (in MiB and per window;
  Linux), each run in a fresh process;
- seconds per window of the second pass on the same windows (the first warms the
  kernels up for that shape), the median over ``--repeats`` runs taken in turn.

The engine's default (:func:`medi2i.engine.window_batch`, ``CPU_BATCH_VOXELS``) is
chosen from these results: four windows where batching was faster per window, fewer
where it only cost memory.

Usage: python benchmarks/cpu_window_batch.py [--sizes 64 96 128] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
BATCHES = (1, 4)

CHILD = """
import json, os, sys, threading, time
import torch
from medi2i_regression_unet.method import RegressionUNet
size, batch = int(sys.argv[1]), int(sys.argv[2])
page = os.sysconf("SC_PAGE_SIZE")

def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * page

peak, running = [0], [True]

def sample():
    while running[0]:
        peak[0] = max(peak[0], resident())
        time.sleep(0.005)

network = RegressionUNet({}).network.eval()
with torch.inference_mode():
    windows = torch.randn(batch, 1, size, size, size)
    before = resident()
    sampler = threading.Thread(target=sample)
    sampler.start()
    network(windows)  # the first pass: its memory (it also warms up)
    running[0] = False
    sampler.join()
    start = time.perf_counter()
    network(windows)  # the second: its time
    seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "added_mib": (peak[0] - before) / 2**20}))
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    for _ in range(args.repeats):
        for size in args.sizes:
            for batch in BATCHES:
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, str(size), str(batch)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                runs.setdefault(str(size), {}).setdefault(str(batch), []).append(
                    json.loads(out.strip().splitlines()[-1])
                )
    report = _report(runs, args)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "cpu_window_batch.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output / "cpu_window_batch.md").write_text(_markdown(report))
    print(_markdown(report))


def _report(runs: dict[str, dict[str, list[dict[str, float]]]], args: argparse.Namespace) -> dict:
    import torch

    import medi2i
    from medi2i.engine import window_batch

    rows = []
    for size, batches in runs.items():
        row: dict[str, object] = {"window": int(size)}
        for batch, measured in batches.items():
            per_window = statistics.median(m["seconds"] for m in measured) / int(batch)
            added = max(m["added_mib"] for m in measured)
            row[f"batch_{batch}"] = {
                "seconds_per_window": round(per_window, 3),
                "added_mib": round(added),
                "added_mib_per_window": round(added / int(batch)),
                "runs": measured,
            }
        one, four = (row[f"batch_{b}"] for b in BATCHES)
        row["speed_up_of_4"] = round(one["seconds_per_window"] / four["seconds_per_window"], 2)  # type: ignore[index]
        row["engine_default"] = window_batch(torch.device("cpu"), (int(size),) * 3)
        rows.append(row)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "repeats": args.repeats,
        "network": "regression-unet default options (32-320 features), untrained",
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "versions": {
            "python": platform.python_version(),
            "medi2i": medi2i.__version__,
            "torch": torch.__version__,
        },
        "rows": rows,
    }


def _markdown(report: dict) -> str:
    lines = [
        "# Windows per forward pass on the CPU",
        "",
        f"{report['network']}; seconds per window of one forward pass (median of "
        f"{report['repeats']} runs, taken in turn) and the peak memory the pass adds "
        "(the largest of the runs).",
        "",
        "| window | 1 a batch: s/window | 4 a batch: s/window | speed-up of 4 | added MiB, 1 | "
        "added MiB, 4 (per window) | engine's default batch |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        one, four = row["batch_1"], row["batch_4"]
        lines.append(
            f"| {row['window']}³ | {one['seconds_per_window']} | {four['seconds_per_window']} | "
            f"{row['speed_up_of_4']}× | {one['added_mib']} | {four['added_mib']} "
            f"({four['added_mib_per_window']}) | {row['engine_default']} |"
        )
    machine, versions = report["machine"], report["versions"]
    lines += [
        "",
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs (torch threads: "
        f"{machine['torch_threads']}); Python {versions['python']}, medi2i "
        f"{versions['medi2i']}, torch {versions['torch']}; {report['date']}. Times come "
        "from a shared machine and are noisy; the memory figures do not depend on load.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
