"""P6 memory and time of a voxelwise method on a CT-sized volume, file in, file out.

A user runs ``medi2i predict IN.nii OUT.nii --method intensity-inversion`` on a
512×512×400 int16 volume (400 MiB as float32). The baseline is what a user would write
instead: a nibabel/NumPy script doing the same voxelwise work (the 1st and 99th
percentiles, rescale, clip, ``lo + hi - x``, written as float32). Side by side, each run
in a fresh process (so that its peak resident memory is its own), ``--repeats`` times
in turn:

- ``numpy script``: the baseline;
- ``medi2i predict (pointwise)``: the command line as users run it; the method declares
  itself pointwise, so the core runs it on slabs of whole slices;
- ``medi2i predict (sliding window)``: the same command with the method's ``pointwise``
  switched off (as every method was run before), to show what the fast path saves;
- ``medi2i predict (U-Net, sliding window)``: a small untrained regression U-Net model
  (:data:`UNET_OPTIONS`: 64³ windows, no overlap), a real convolutional network on
  sliding windows, run once: its memory is the issue's measure; its time is not
  comparable with the script's;
- ``medi2i predict (U-Net, defaults)``: an untrained regression U-Net of the method's
  default options (its default network, 128³ windows, the body contour on) at the default
  overlap: the footprint a user meets, run once.

The U-Net rows are MR→CT methods: they read an MR-like volume of the same grid (a body of
tissue in dark air), as a user runs them (the CT-like volume would be refused by the
modality check). Every row is first run on a small volume, so that a row that cannot run
fails in seconds, before the long measurements.

Reported: median wall time, the ratio to the NumPy script (target for the pointwise
path: at most 1.3), and the peak resident memory over the idle baseline of a process
that has imported medi2i, torch and MONAI, in units of the float32 volume (the issue's
target for a sliding-window network method: at most 3). Uncompressed ``.nii`` in and
out, so that gzip does not dominate.

Usage: python benchmarks/p6_memory.py [--shape 512 512 400] [--repeats 3] [--no-default-unet]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from process_measure import (
    idle_baselines,
    measure,
    stage_rows,
    stage_table,
    staged_script,
    with_output,
)

RESULTS = Path(__file__).parent / "results"
TARGET_TIME_RATIO = 1.3
TARGET_MEMORY = 3.0
PLUGINS = "invert,medi2i-regression-unet"
"""The only plugins loaded (``MEDI2I_LOAD_PLUGINS``) by every medi2i process."""

IDLE = {
    "medi2i": "import medi2i, torch, monai, nibabel, numpy, medi2i.prediction",
    "numpy": "import nibabel, numpy",
}
"""What each kind of process imports before it reads a voxel: its idle baseline."""

NUMPY_SCRIPT = """
import sys
import nibabel as nib
import numpy as np
image = nib.load(sys.argv[1])
data = np.asanyarray(image.dataobj)
low, high = np.percentile(data, [1.0, 99.0])
span = float(high - low) or 1.0
out = data.astype(np.float32)
out -= low
out /= span
np.clip(out, 0.0, 1.0, out=out)
np.subtract(1.0, out, out=out)
out *= span
out += low
result = nib.Nifti1Image(out, image.affine)
result.header.set_data_dtype(np.float32)
nib.save(result, sys.argv[2])
"""

WINDOWED = """
import sys
from medi2i_invert.method import IntensityInversion
IntensityInversion.pointwise = False
from medi2i.cli.main import main
sys.argv = ["medi2i", *sys.argv[1:]]
main()
"""

STAGES = stage_table("predict (engine)")
"""The innermost medi2i function on the stack names the stage a sample falls in."""

WINDOWED_SETUP = """if sys.argv[1] == "windowed":
    from medi2i_invert.method import IntensityInversion
    IntensityInversion.pointwise = False
"""
"""The stage sampler's set-up: its first argument, ``windowed``, switches the
inversion's ``pointwise`` off; its command line starts at the second."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 400])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-default-unet",
        action="store_true",
        help="leave out the U-Net row of default options (tens of minutes on a CPU)",
    )
    args = parser.parse_args(argv)

    import numpy as np

    shape = tuple(args.shape)
    volume_bytes = 4 * int(np.prod(shape))
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        models = {UNET_ROW: _untrained_unet(work / "unet", UNET_OPTIONS)}
        if not args.no_default_unet:
            models[DEFAULT_UNET_ROW] = _untrained_unet(work / "unet-defaults", {})
        commands = _commands(work, models)
        _check_rows(work, commands)  # seconds on a small volume, before the long runs
        _write_inputs(work, shape)
        idle, start_up = idle_baselines(IDLE, args.repeats, PLUGINS)
        runs: dict[str, list[tuple[float, int]]] = {name: [] for name in commands}
        stages: dict[str, dict[str, tuple[float, int]]] = {}
        for repeat in range(args.repeats):
            for index, (name, command) in enumerate(commands.items()):
                if name in models and repeat > 0:
                    continue  # minutes of convolutions on a CPU: once is enough for memory
                out = work / f"out-{index}-{repeat}.nii"
                seconds, peak, found = _measure(with_output(command, out))
                runs[name].append((seconds, peak))
                if found:
                    stages[name] = found
                _compare(name, index, out)
                out.unlink()
        for name, kind in (
            ("medi2i predict (pointwise)", "pointwise"),
            ("medi2i predict (sliding window)", "windowed"),
        ):  # the U-Net rows were sampled in their one measured run
            line = commands["medi2i predict (pointwise)"][1:]  # predict IN OUT ...
            stages[name] = _measure(_staged(kind, line, work / f"staged-{kind}.nii"))[2]
    stages = {name: stages[name] for name in commands if name in stages}
    report = _report(shape, volume_bytes, idle, start_up, runs, args.repeats)
    report["stages"] = stage_rows(stages, idle["medi2i"], volume_bytes)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "p6_memory.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output / "p6_memory.md").write_text(_markdown(report))
    print(_markdown(report))


UNET_ROW = "medi2i predict (U-Net, sliding window)"
DEFAULT_UNET_ROW = "medi2i predict (U-Net, defaults)"
UNET_OPTIONS = {"filters": [4, 8, 16], "roi_size": [64, 64, 64]}
"""A small untrained regression U-Net: a real convolutional network on 64³ windows
(untrained weights cost the same time and memory as trained ones), run once, with
windows that do not overlap (the memory of the blending does not depend on the overlap;
the CPU time does, by 2.4 times at 0.25). The defaults row uses the method's default
options and the default overlap instead."""

CHECK_SHAPE = (48, 40, 24)
"""The small volume every row runs on before the measurements."""


def _write_inputs(work: Path, shape: tuple[int, ...]) -> None:
    """``ct.nii``: CT-like int16 noise with a quarter of air (for intensity-inversion and
    the NumPy script); ``mr.nii``: an MR-like int16 volume on the same grid, an
    elliptic body of tissue in dark air (for the MR→CT U-Net rows)."""
    import nibabel as nib
    import numpy as np

    affine = np.diag([0.7, 0.7, 1.0, 1.0])
    rng = np.random.default_rng(0)
    data = rng.normal(0.0, 300.0, size=shape).astype(np.int16)
    data[: shape[0] // 4] = -1000  # some air, as a CT has
    nib.save(nib.Nifti1Image(data, affine), work / "ct.nii")  # type: ignore[no-untyped-call]
    x, y = np.ogrid[: shape[0], : shape[1]]
    body = ((x - shape[0] / 2) / (0.4 * shape[0])) ** 2 + (
        (y - shape[1] / 2) / (0.33 * shape[1])
    ) ** 2 < 1.0
    for first in range(0, shape[2], 16):  # in slabs: no float64 volume
        slab = rng.normal(0.0, 15.0, size=(*shape[:2], min(16, shape[2] - first)))
        np.abs(slab, out=slab)  # air: Rician-like noise near 0
        tissue = rng.normal(400.0, 80.0, size=slab.shape)
        slab[body] = tissue[body]
        data[:, :, first : first + slab.shape[2]] = slab
    nib.save(nib.Nifti1Image(data, affine), work / "mr.nii")  # type: ignore[no-untyped-call]


def _commands(work: Path, models: dict[str, Path]) -> dict[str, list[str]]:
    """Each row's command line; ``OUT`` stands for the output path, ``ct.nii`` and
    ``mr.nii`` in ``work`` are the inputs."""
    medi2i = str(Path(sys.executable).with_name("medi2i"))
    tail = ["--no-progress", "--device", "cpu"]
    ct, mr = str(work / "ct.nii"), str(work / "mr.nii")
    predict = ["predict", ct, "OUT", "--method", "intensity-inversion", *tail]
    commands = {
        "numpy script": [sys.executable, "-c", NUMPY_SCRIPT, ct, "OUT"],
        "medi2i predict (pointwise)": [medi2i, *predict],
        "medi2i predict (sliding window)": [sys.executable, "-c", WINDOWED, *predict],
    }
    for name, model in models.items():
        overlap = ["--overlap", "0"] if name == UNET_ROW else []  # else the default
        line = ["predict", mr, "OUT", "--model", str(model), *overlap, *tail]
        commands[name] = _staged("model", line, None)  # measured once, its stages sampled
    return commands


def _staged(kind: str, predict: list[str], out: Path | None) -> list[str]:
    """``medi2i predict`` under the stage sampler (:data:`process_measure.STAGED`)."""
    line = [str(out) if out is not None and part == "OUT" else part for part in predict]
    return [sys.executable, "-c", staged_script(STAGES, WINDOWED_SETUP, first=2), kind, *line]


def _check_rows(work: Path, commands: dict[str, list[str]]) -> None:
    """Run every row once on a small volume of the same kinds: a row that cannot run
    (a refused input, a missing plugin) fails here, in seconds."""
    import shutil

    small = work / "check"
    small.mkdir()
    _write_inputs(small, CHECK_SHAPE)
    for index, (name, command) in enumerate(commands.items()):
        line = [
            str(small / Path(part).name)
            if part in (str(work / "ct.nii"), str(work / "mr.nii"))
            else part
            for part in with_output(command, small / f"out-{index}.nii")
        ]
        try:
            _measure(line)
        except SystemExit as failed:
            raise SystemExit(
                f"row {name!r} cannot run (checked on {CHECK_SHAPE}): {failed}"
            ) from None
    shutil.rmtree(small)


_REFERENCE: dict[str, Any] = {}


def _compare(name: str, index: int, out: Path) -> None:
    """The voxelwise rows must agree with the NumPy script's output."""
    import nibabel as nib
    import numpy as np

    if index == 0:
        _REFERENCE["volume"] = cast("Any", nib.load(out)).get_fdata(dtype=np.float32)
    elif "U-Net" not in name:  # the network computes something else
        reference = _REFERENCE["volume"]
        got = cast("Any", nib.load(out)).get_fdata(dtype=np.float32)
        difference = float(np.abs(got - reference).max())
        if difference > 1e-3 * float(np.abs(reference).max()):
            raise SystemExit(f"{name} differs from the numpy script by {difference}")


def _untrained_unet(folder: Path, options: dict[str, Any]) -> Path:
    import torch

    from medi2i.model_folder import save_model
    from medi2i.registry import Registry

    torch.manual_seed(0)
    return save_model(Registry().method("regression-unet")(options), folder)


def _measure(command: list[str]) -> tuple[float, int, dict[str, tuple[float, int]]]:
    """:func:`process_measure.measure` with only :data:`PLUGINS` loaded."""
    return measure(command, PLUGINS)


def _report(
    shape: tuple[int, ...],
    volume_bytes: int,
    idle: dict[str, float],
    start_up: dict[str, float],
    runs: dict[str, list[tuple[float, int]]],
    repeats: int,
) -> dict[str, Any]:
    import monai
    import nibabel as nib
    import numpy as np
    import SimpleITK as sitk
    import torch

    import medi2i

    baseline = statistics.median(t for t, _ in runs["numpy script"])
    baseline_work = baseline - start_up["numpy"]
    rows: list[dict[str, Any]] = []
    for name, values in runs.items():
        seconds = statistics.median(t for t, _ in values)
        peak = statistics.median(p for _, p in values)
        kind = "numpy" if name == "numpy script" else "medi2i"
        floor = idle[kind]
        rows.append(
            {
                "path": name,
                "median_s": round(seconds, 2),
                "runs_s": [round(t, 2) for t, _ in values],
                "time_ratio": round(seconds / baseline, 3),
                "work_s": round(seconds - start_up[kind], 2),
                "work_ratio": round((seconds - start_up[kind]) / baseline_work, 3),
                "peak_rss_mib": round(peak / 2**20, 1),
                "peak_over_idle_volumes": round((peak - floor) / volume_bytes, 2),
            }
        )
    pointwise = next(r for r in rows if r["path"] == "medi2i predict (pointwise)")
    verdicts = {
        "time_ratio_pointwise": pointwise["time_ratio"],
        "time_ratio_pointwise_meets_target": pointwise["time_ratio"] <= TARGET_TIME_RATIO,
        "work_ratio_pointwise": pointwise["work_ratio"],
        "work_ratio_pointwise_meets_target": pointwise["work_ratio"] <= TARGET_TIME_RATIO,
        "memory_meets_target": {
            r["path"]: r["peak_over_idle_volumes"] <= TARGET_MEMORY
            for r in rows
            if "U-Net" in r["path"]
        },
    }
    return {
        "benchmark": "p6_memory",
        "shape": list(shape),
        "input_dtype": "int16",
        "volume_float32_mib": round(volume_bytes / 2**20, 1),
        "idle_rss_mib": {kind: round(value / 2**20, 1) for kind, value in idle.items()},
        "start_up_s": {kind: round(value, 2) for kind, value in start_up.items()},
        "repeats": repeats,
        "rows": rows,
        "targets": {"time_ratio": TARGET_TIME_RATIO, "peak_over_idle_volumes": TARGET_MEMORY},
        "verdicts": verdicts,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "versions": {
            "python": platform.python_version(),
            "medi2i": medi2i.__version__,
            "torch": torch.__version__,
            "monai": monai.__version__,
            "numpy": np.__version__,
            "nibabel": nib.__version__,
            "SimpleITK": sitk.Version.VersionString(),  # type: ignore[no-untyped-call]
        },
        "unet_models": {
            UNET_ROW: {"options": UNET_OPTIONS, "overlap": 0.0},
            DEFAULT_UNET_ROW: {"options": "the method's defaults", "overlap": "the default"},
        },
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _markdown(report: dict[str, Any]) -> str:
    shape = "×".join(str(n) for n in report["shape"])
    lines = [
        "# P6 memory and time of medi2i predict on a CT-sized volume, file in, file out",
        "",
        f"`intensity-inversion` on a {shape} int16 NIfTI ({report['volume_float32_mib']} MiB "
        f"as float32), uncompressed in and out, CPU; each run a fresh process, "
        f"{report['repeats']} runs each in turn; peak resident memory over the idle "
        f"baseline of the same kind of process ({report['idle_rss_mib']['medi2i']} MiB "
        "after importing medi2i, torch and MONAI; "
        f"{report['idle_rss_mib']['numpy']} MiB after importing nibabel and NumPy), in "
        "float32 volumes.",
        "",
        f"Start-up (the median wall time of the idle processes): "
        f"{report['start_up_s']['medi2i']} s for medi2i, torch and MONAI; "
        f"{report['start_up_s']['numpy']} s for nibabel and NumPy. The work is the wall "
        "time less that start-up.",
        "",
        "| path | median (s) | runs (s) | time / numpy | work (s) | work / numpy's | "
        "peak RSS (MiB) | (peak - idle) / volume |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        runs = ", ".join(f"{t:.2f}" for t in row["runs_s"])
        lines.append(
            f"| {row['path']} | {row['median_s']:.2f} | {runs} | {row['time_ratio']:.3f} | "
            f"{row['work_s']:.2f} | {row['work_ratio']:.3f} | "
            f"{row['peak_rss_mib']:.0f} | {row['peak_over_idle_volumes']:.2f} |"
        )
    for name, stages in report.get("stages", {}).items():
        lines += [
            "",
            f"Stages of `{name}` ("
            + ("its measured run" if "U-Net" in name else "one more run")
            + ", its main thread's stack and resident memory sampled every 5 ms; peak "
            "over the same idle baseline):",
            "",
            "| stage | seconds | peak - idle (volumes) |",
            "|---|---|---|",
        ]
        lines += [
            f"| {s['stage']} | {s['seconds']:.2f} | {s['peak_over_idle_volumes']:.2f} |"
            for s in stages
        ]
    targets, verdicts = report["targets"], report["verdicts"]
    machine, versions = report["machine"], report["versions"]
    memory = "; ".join(
        f"{path}: {'meets' if met else 'fails'} it"
        for path, met in verdicts["memory_meets_target"].items()
    )
    lines += [
        "",
        f"Time target: the pointwise path within {targets['time_ratio']}× the NumPy "
        f"script. Its whole-run ratio, {verdicts['time_ratio_pointwise']:.3f}, "
        f"{'meets' if verdicts['time_ratio_pointwise_meets_target'] else 'fails'} the "
        "target; its ratio of the work after start-up (the start-up being the import of "
        f"torch and MONAI, which the NumPy script does not pay), "
        f"{verdicts['work_ratio_pointwise']:.3f}, "
        f"{'meets' if verdicts['work_ratio_pointwise_meets_target'] else 'fails'} it. "
        "Times come from a shared machine and are noisy; the memory figures do not "
        "depend on the load.",
        "",
        f"Memory target: (peak - idle) at most {targets['peak_over_idle_volumes']} volumes "
        f"for a sliding-window network method. {memory}. The U-Net rows read an MR-like "
        "volume of the same grid (an elliptic body in dark air), each run once, untrained "
        "(the same time and memory as trained weights): "
        f"`{UNET_ROW}` is a regression U-Net with filters {UNET_OPTIONS['filters']}, 64³ "
        f"windows without overlap (a best case); `{DEFAULT_UNET_ROW}` is a model of the "
        "method's default options (its default network, 128³ windows, the body contour "
        "on) at the default overlap, the footprint a user meets. Their times are a "
        "network's work, not comparable with the script's. The NumPy script's own peak "
        "is its floor for the voxelwise work.",
        "",
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs (torch threads: "
        f"{machine['torch_threads']}); Python {versions['python']}, medi2i "
        f"{versions['medi2i']}, torch {versions['torch']}, MONAI {versions['monai']}, "
        f"NumPy {versions['numpy']}, nibabel {versions['nibabel']}, SimpleITK "
        f"{versions['SimpleITK']}; {report['repeats']} repeats; {report['date']}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
