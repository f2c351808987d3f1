"""P5 start-up: ``medi2i --help`` and ``medi2i plugins`` against ``python -c pass``.

Each command runs as a fresh process, interleaved, ``--repeats`` times; the result is
the median wall time of each and the difference to the bare interpreter (target:
within 0.5 s). Also records whether torch or MONAI got imported on those paths.

Usage: python benchmarks/p5_startup.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
TARGET_S = 0.5
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "medi2i --help": [sys.executable, "-m", "medi2i", "--help"],
    "medi2i plugins": [sys.executable, "-m", "medi2i", "plugins"],
}
PROBE = (
    "import sys\nfrom medi2i.cli.main import main\n"
    "try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
    "heavy = sorted(m for m in ('torch', 'monai', 'numpy') if m in sys.modules)\n"
    "print('HEAVY', heavy, file=sys.stderr)"
)


def time_once(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def heavy_imports(args: list[str]) -> list[str]:
    probe = PROBE.format(args=args)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    line = next(ln for ln in done.stderr.splitlines() if ln.startswith("HEAVY"))
    return list(eval(line.removeprefix("HEAVY ")))  # a printed list of module names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for command in COMMANDS.values():
        time_once(command)  # warm the file cache
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            times[name].append(time_once(command))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["python -c pass"]
    rows = []
    for name in ("medi2i --help", "medi2i plugins"):
        extra = medians[name] - base
        imported = heavy_imports(["--help"] if "help" in name else ["plugins"])
        rows.append(
            {
                "command": name,
                "median_s": round(medians[name], 4),
                "over_python_s": round(extra, 4),
                "heavy_modules_imported": imported,
                "target_s": TARGET_S,
                "pass": extra <= TARGET_S and not {"torch", "monai"} & set(imported),
            }
        )
    result = {
        "benchmark": "P5 start-up",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "python": platform.python_version(),
        "repeats": args.repeats,
        "python_c_pass_median_s": round(base, 4),
        "commands": rows,
        "all_times_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "p5_startup.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# P5 start-up",
        "",
        f"{result['date']}, {result['machine']['platform']}, {os.cpu_count()} CPUs, Python "
        f"{result['python']}, median of {args.repeats} interleaved runs.",
        "",
        f"`python -c pass`: {base:.3f} s",
        "",
        "| command | median (s) | over `python -c pass` (s) | target (s) "
        "| torch/MONAI imported | pass |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        heavy = ", ".join(m for m in row["heavy_modules_imported"] if m != "numpy") or "no"
        lines.append(
            f"| `{row['command']}` | {row['median_s']:.3f} | {row['over_python_s']:.3f} | "
            f"{TARGET_S} | {heavy} | {'yes' if row['pass'] else 'NO'} |"
        )
    (RESULTS / "p5_startup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
