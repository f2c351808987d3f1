"""The fresh-process time and peak-RSS measurement and the stage sampler shared by the
memory benchmarks (``p6_memory.py``, ``p9_harmonization_memory.py``).

Every measured command runs in a child of a small wrapper process (:data:`MEASURE`), so
that its peak resident memory is its own; ``medi2i predict`` can run under a sampler of
its main thread's stack and resident memory (:func:`staged_script`), which reports the
time and peak memory of each stage.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - started
if done.returncode:
    sys.stderr.write(done.stdout + done.stderr)
    sys.exit(done.returncode)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
lines = done.stdout.strip().splitlines()
print(seconds, peak, lines[-1] if lines and lines[-1].startswith("{") else "")
"""
"""Runs a command in a child and prints its wall time, peak resident bytes and the
child's last line of output when it is JSON (the stage sampler's)."""

STAGED = """
import json, os, sys, threading, time
PAGE = os.sysconf("SC_PAGE_SIZE")
STAGES = {STAGES}
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE
def stage(frame):
    top = frame
    while top is not None:
        if top.f_code.co_filename.startswith("<frozen importlib"):
            return "import modules (torch, MONAI, plugins)"
        top = top.f_back
    while frame is not None:
        name = STAGES.get(frame.f_code.co_name)
        if name and "medi2i" in frame.f_code.co_filename:
            return name
        frame = frame.f_back
    return "start-up and set-up"
main_thread, samples, done = threading.get_ident(), [], threading.Event()
def sample():
    while not done.is_set():
        frame = sys._current_frames().get(main_thread)
        samples.append((time.perf_counter(), resident(), stage(frame)))
        time.sleep(0.005)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
{SETUP}from medi2i.cli.main import main
sys.argv = ["medi2i", *sys.argv[{FIRST}:]]
try:
    main()
except SystemExit as exc:
    if exc.code:
        raise
done.set()
sampler.join()
result = {{}}
for (t0, rss, name), (t1, _, _) in zip(samples, samples[1:]):
    seconds, peak = result.get(name, (0.0, 0))
    result[name] = (seconds + t1 - t0, max(peak, rss))
print(json.dumps(result))
"""
"""Runs medi2i predict under a sampler of the main thread's stack and resident memory
every 5 ms; prints each stage's time and peak resident bytes as JSON. Filled in by
:func:`staged_script`."""


def stage_table(predict: str) -> dict[str, str]:
    """The innermost medi2i function on the stack names the stage a sample falls in;
    ``predict`` names the prediction stage."""
    return {
        "read_volume": "read the input",
        "provenance": "hash the input (provenance)",
        "checked_input": "check the input",
        "prepared": "preprocess",
        "predict": predict,
        "postprocess": "postprocess",
        "_delivered": "check the output",
        "write_volume": "write the output",
        "staged_sidecar": "write the output",
    }


def staged_script(stages: dict[str, str], setup: str = "", first: int = 1) -> str:
    """The stage sampler (:data:`STAGED`) with its table of ``stages``; ``setup`` is
    code run before medi2i's command line is imported, and the command line's arguments
    start at ``sys.argv[first]``."""
    return STAGED.format(STAGES=repr(stages), SETUP=setup, FIRST=first)


def with_output(command: list[str], out: Path) -> list[str]:
    """``command`` with ``OUT`` replaced by the output path."""
    return [str(out) if part == "OUT" else part for part in command]


def measure(command: list[str], plugins: str) -> tuple[float, int, dict[str, tuple[float, int]]]:
    """Wall seconds, peak resident bytes and (for a command under the stage sampler)
    seconds and peak resident bytes by stage, with only ``plugins`` loaded."""
    seconds, peak, *found = run_python(
        [MEASURE, *command], " ".join(p for p in command if "\n" not in p), plugins
    ).split(maxsplit=2)
    stages = json.loads(found[0]) if found else {}
    return (
        float(seconds),
        int(peak),
        {stage: (float(t), int(p)) for stage, (t, p) in stages.items()},
    )


def run_python(arguments: list[str], what: str, plugins: str) -> str:
    """``python -c CODE ARGS...`` with only ``plugins`` loaded (``MEDI2I_LOAD_PLUGINS``);
    its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", *arguments],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MEDI2I_LOAD_PLUGINS": plugins},
    )
    if done.returncode:
        raise SystemExit(f"{what} failed: {done.stderr[-2000:]}")
    return done.stdout


def idle_baselines(
    idle: dict[str, str], repeats: int, plugins: str
) -> tuple[dict[str, float], dict[str, float]]:
    """The median peak resident bytes and wall seconds of a process that only runs
    each kind's imports (``idle``), ``repeats`` times each."""
    idle_runs = {
        kind: [measure([sys.executable, "-c", code], plugins)[:2] for _ in range(repeats)]
        for kind, code in idle.items()
    }
    peaks = {kind: statistics.median(p for _, p in found) for kind, found in idle_runs.items()}
    start_up = {kind: statistics.median(t for t, _ in found) for kind, found in idle_runs.items()}
    return peaks, start_up


def stage_rows(
    stages: dict[str, dict[str, tuple[float, int]]], idle: float, volume_bytes: int
) -> dict[str, list[dict[str, object]]]:
    """The report's ``stages``: each row's stages, their seconds and peak resident memory
    over ``idle`` in volumes."""
    return {
        name: [
            {
                "stage": stage,
                "seconds": round(seconds, 2),
                "peak_over_idle_volumes": round((peak - idle) / volume_bytes, 2),
            }
            for stage, (seconds, peak) in found.items()
        ]
        for name, found in stages.items()
    }
