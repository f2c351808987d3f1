"""P9 memory and time of harmonization and interpolation on an MR head, file in, file out.

A user runs ``medi2i predict IN.nii OUT.nii`` with a method that needs no network on a
512×512×300 float32 MR volume (300 MiB): ``--method zscore``, ``--model NYUL`` (a Nyúl
model) or ``--method interpolation -o slice_factor=2`` (twice the slices, so an output
of two input volumes). The baseline is what a user would write instead, a
nibabel/NumPy script doing the same work:

- for ``zscore``: Otsu's threshold of the volume (``skimage.filters.threshold_otsu``),
  the mean and standard deviation of the voxels above it, ``(x - mean) / std`` written
  as float32;
- for ``interpolation``: ``scipy.ndimage.zoom`` of order 3 (cubic B-spline, edges
  replicated) by 2 along the slice axis, written as float32. The method places its
  slices by the voxel edges (scipy's zoom keeps the first and last centres) and clips
  to the input's range widened by a margin, so the two outputs differ slightly: the
  script is a reference for time and memory, not the same output;
- for ``nyul``: no baseline (a user would have to write the landmark fit and the
  piecewise linear map); its row reports time and memory only.

The Nyúl model is fitted once by this script on two small heads of the same kind (the
decile landmarks of the method's default options), saved as a model folder and given
to ``--model``. Side by side, each run in a fresh process (so that its peak resident
memory is its own), ``--repeats`` times in turn; every row is first run on a small
volume, so that a row that cannot run fails in seconds, before the long measurements.
Each medi2i row runs once more under a sampler of its stages (time and peak memory of
reading, predicting and writing).

The input is an MR-like synthetic head: an ellipsoid of tissue in shells of a few
intensity classes (scalp, skull, CSF, grey and white matter) with Gaussian noise, in
dark air of Rician-like noise near 0; voxels of 0.5×0.5×0.8 mm, so that the slice
axis is the third.

Reported: median wall time, the ratio to the baseline script of the same method, and
the peak resident memory over the idle baseline of the same kind of process (one that
has imported medi2i, torch, MONAI and the two plugins; or nibabel, NumPy and
scikit-image or SciPy), in units of the float32 input volume. The first run's outputs
are compared with the baseline's (largest absolute difference), for information.
Uncompressed ``.nii`` in and out, so that gzip does not dominate.

Usage: python benchmarks/p9_harmonization_memory.py [--shape 512 512 300] [--repeats 3]
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
from importlib.metadata import version
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
PLUGINS = "harmonization,super-resolution"
"""The only plugins loaded (``MEDI2I_LOAD_PLUGINS``) by every medi2i process."""

IDLE = {
    "medi2i": (
        "import medi2i, torch, monai, nibabel, numpy, medi2i.prediction, "
        "medi2i_harmonization, medi2i_super_resolution"
    ),
    "skimage": "import nibabel, numpy\nfrom skimage.filters import threshold_otsu",
    "scipy": "import nibabel, numpy\nfrom scipy import ndimage",
}
"""What each kind of process imports before it reads a voxel: its idle baseline."""

ZSCORE_SCRIPT = """
import sys
import nibabel as nib
import numpy as np
from skimage.filters import threshold_otsu
image = nib.load(sys.argv[1])
data = np.asanyarray(image.dataobj)
threshold = threshold_otsu(data)
foreground = data[data > threshold]
mean = foreground.mean(dtype=np.float64)
std = foreground.std(dtype=np.float64)
del foreground
out = data - np.float32(mean)
out /= np.float32(std)
result = nib.Nifti1Image(out, image.affine)
result.header.set_data_dtype(np.float32)
nib.save(result, sys.argv[2])
"""

INTERPOLATION_SCRIPT = """
import sys
import nibabel as nib
import numpy as np
from scipy import ndimage
image = nib.load(sys.argv[1])
data = np.asanyarray(image.dataobj)
out = ndimage.zoom(data, (1, 1, 2), order=3, mode="nearest")
affine = image.affine.copy()
affine[:3, 2] /= 2
result = nib.Nifti1Image(out.astype(np.float32, copy=False), affine)
result.header.set_data_dtype(np.float32)
nib.save(result, sys.argv[2])
"""

STAGES = stage_table("predict (method)")
"""The innermost medi2i function on the stack names the stage a sample falls in."""

ZSCORE_SCRIPT_ROW = "zscore: numpy + scikit-image script"
ZSCORE_ROW = "zscore: medi2i predict"
NYUL_ROW = "nyul: medi2i predict"
INTERPOLATION_SCRIPT_ROW = "interpolation ×2: scipy script"
INTERPOLATION_ROW = "interpolation ×2: medi2i predict"
BASELINES = {ZSCORE_ROW: ZSCORE_SCRIPT_ROW, INTERPOLATION_ROW: INTERPOLATION_SCRIPT_ROW}
"""Each medi2i row's baseline row (nyul has none)."""
KINDS = {ZSCORE_SCRIPT_ROW: "skimage", INTERPOLATION_SCRIPT_ROW: "scipy"}
"""The idle baseline of each script row (:data:`IDLE`); every other row's is medi2i's."""

CHECK_SHAPE = (48, 40, 24)
"""The small volume every row runs on before the measurements."""
FIT_SHAPE = (64, 64, 40)
"""The two small heads the Nyúl model is fitted on."""
SPACING = (0.5, 0.5, 0.8)
"""Voxel size (mm): the third axis is clearly the slice axis."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import numpy as np

    shape = tuple(args.shape)
    volume_bytes = 4 * int(np.prod(shape))
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        model = _fitted_nyul(work)
        commands = _commands(work, model)
        _check_rows(work, commands)  # seconds on a small volume, before the long runs
        _write_head(work / "mr.nii", shape, seed=0)
        idle, start_up = idle_baselines(IDLE, args.repeats, PLUGINS)
        runs: dict[str, list[tuple[float, int]]] = {name: [] for name in commands}
        differences: dict[str, dict[str, Any]] = {}
        for repeat in range(args.repeats):
            outputs: dict[str, Path] = {}
            for index, (name, command) in enumerate(commands.items()):
                out = work / f"out-{index}-{repeat}.nii"
                seconds, peak, _ = _measure(with_output(command, out))
                runs[name].append((seconds, peak))
                outputs[name] = out
                if repeat == 0 and name in BASELINES:
                    differences[name] = _difference(out, outputs[BASELINES[name]])
            for out in outputs.values():
                for written in work.glob(f"{out.stem}*"):
                    written.unlink()
        stages: dict[str, dict[str, tuple[float, int]]] = {}
        for name, command in commands.items():
            if command[0] != sys.executable:  # the medi2i rows
                out = work / f"staged-{len(stages)}.nii"
                stages[name] = _measure(_staged(command[1:], out))[2]
    report = _report(shape, volume_bytes, idle, start_up, runs, differences, args.repeats)
    report["stages"] = stage_rows(stages, idle["medi2i"], volume_bytes)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "p9_harmonization_memory.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output / "p9_harmonization_memory.md").write_text(_markdown(report))
    print(_markdown(report))


def _write_head(path: Path, shape: tuple[int, ...], *, seed: int) -> None:
    """An MR-like float32 head: an ellipsoid in shells of scalp, skull, CSF, grey and
    white matter (each with Gaussian noise) in dark air of Rician-like noise near 0.
    Made in slabs of 16 slices: no float64 array of the volume's size."""
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(seed)
    data = np.empty(shape, np.float32)
    centre = [n / 2 for n in shape]
    semi_axes = (0.40 * shape[0], 0.45 * shape[1], 0.42 * shape[2])
    x, y = (
        ((np.arange(n, dtype=np.float32) - c) / a) ** 2
        for n, c, a in zip(shape[:2], centre[:2], semi_axes[:2], strict=True)
    )
    across = x[:, None, None] + y[None, :, None]
    # squared radii of the shells' inner surfaces, and each class's mean and noise
    inner = np.array([0.55, 0.80, 0.85, 0.92, 1.0], np.float32) ** 2
    means = np.array([750.0, 550.0, 150.0, 80.0, 900.0, 0.0], np.float32)
    noise = np.array([40.0, 40.0, 30.0, 20.0, 60.0, 15.0], np.float32)
    for first in range(0, shape[2], 16):
        z = np.arange(first, min(first + 16, shape[2]), dtype=np.float32)
        radius = across + (((z - centre[2]) / semi_axes[2]) ** 2)[None, None, :]
        classes = np.digitize(radius, inner)  # 0 white matter ... 4 scalp, 5 air
        slab = rng.standard_normal(radius.shape, dtype=np.float32)
        slab *= noise[classes]
        slab += means[classes]
        air = classes == len(inner)
        slab[air] = np.abs(slab[air])  # Rician-like noise near 0
        data[:, :, first : first + slab.shape[2]] = slab
    affine = np.diag([*SPACING, 1.0])
    nib.save(nib.Nifti1Image(data, affine), path)  # type: ignore[no-untyped-call]


def _fitted_nyul(work: Path) -> Path:
    """A Nyúl model of the method's default options fitted on two small heads."""
    from medi2i.model_folder import save_model
    from medi2i.registry import Registry

    heads = [work / f"fit-{seed}.nii" for seed in (1, 2)]
    for seed, head in enumerate(heads, start=1):
        _write_head(head, FIT_SHAPE, seed=seed)
    method = Registry().method("nyul")({})
    method.fit(cast("Any", [str(head) for head in heads]))  # paths are read too
    return save_model(method, work / "nyul")


def _commands(work: Path, model: Path) -> dict[str, list[str]]:
    """Each row's command line; ``OUT`` stands for the output path, ``mr.nii`` in
    ``work`` is the input."""
    medi2i = str(Path(sys.executable).with_name("medi2i"))
    tail = ["--no-progress", "--device", "cpu"]
    mr = str(work / "mr.nii")
    return {
        ZSCORE_SCRIPT_ROW: [sys.executable, "-c", ZSCORE_SCRIPT, mr, "OUT"],
        ZSCORE_ROW: [medi2i, "predict", mr, "OUT", "--method", "zscore", *tail],
        NYUL_ROW: [medi2i, "predict", mr, "OUT", "--model", str(model), *tail],
        INTERPOLATION_SCRIPT_ROW: [sys.executable, "-c", INTERPOLATION_SCRIPT, mr, "OUT"],
        INTERPOLATION_ROW: [
            *(medi2i, "predict", mr, "OUT", "--method", "interpolation"),
            *("-o", "slice_factor=2", *tail),
        ],
    }


def _staged(predict: list[str], out: Path) -> list[str]:
    """``medi2i predict`` under the stage sampler (:data:`process_measure.STAGED`)."""
    line = [str(out) if part == "OUT" else part for part in predict]
    return [sys.executable, "-c", staged_script(STAGES), *line]


def _check_rows(work: Path, commands: dict[str, list[str]]) -> None:
    """Run every row once on a small head: a row that cannot run (a refused input, a
    missing plugin) fails here, in seconds."""
    import shutil

    small = work / "check"
    small.mkdir()
    _write_head(small / "mr.nii", CHECK_SHAPE, seed=3)
    for index, (name, command) in enumerate(commands.items()):
        line = [
            str(small / "mr.nii") if part == str(work / "mr.nii") else part
            for part in with_output(command, small / f"out-{index}.nii")
        ]
        try:
            _measure(line)
        except SystemExit as failed:
            raise SystemExit(
                f"row {name!r} cannot run (checked on {CHECK_SHAPE}): {failed}"
            ) from None
    shutil.rmtree(small)


def _difference(got: Path, baseline: Path) -> dict[str, Any]:
    """The largest absolute difference between a medi2i output and its baseline's, and
    the baseline output's range (for scale); ``None`` where the grids differ."""
    import nibabel as nib
    import numpy as np

    reference = cast("Any", nib.load(baseline)).get_fdata(dtype=np.float32)
    output = cast("Any", nib.load(got)).get_fdata(dtype=np.float32)
    span = float(reference.max() - reference.min())
    if output.shape != reference.shape:
        return {"max_abs": None, "baseline_range": round(span, 4), "shapes_differ": True}
    np.subtract(output, reference, out=output)
    np.abs(output, out=output)
    return {"max_abs": round(float(output.max()), 4), "baseline_range": round(span, 4)}


def _measure(command: list[str]) -> tuple[float, int, dict[str, tuple[float, int]]]:
    """:func:`process_measure.measure` with only :data:`PLUGINS` loaded."""
    return measure(command, PLUGINS)


def _report(
    shape: tuple[int, ...],
    volume_bytes: int,
    idle: dict[str, float],
    start_up: dict[str, float],
    runs: dict[str, list[tuple[float, int]]],
    differences: dict[str, dict[str, Any]],
    repeats: int,
) -> dict[str, Any]:
    import monai
    import nibabel as nib
    import numpy as np
    import scipy
    import torch

    import medi2i

    medians = {name: statistics.median(t for t, _ in values) for name, values in runs.items()}
    rows: list[dict[str, Any]] = []
    for name, values in runs.items():
        seconds = medians[name]
        peak = statistics.median(p for _, p in values)
        kind = KINDS.get(name, "medi2i")
        work = seconds - start_up[kind]
        row: dict[str, Any] = {
            "path": name,
            "baseline": BASELINES.get(name),
            "median_s": round(seconds, 2),
            "runs_s": [round(t, 2) for t, _ in values],
            "time_ratio": None,
            "work_s": round(work, 2),
            "work_ratio": None,
            "peak_rss_mib": round(peak / 2**20, 1),
            "peak_over_idle_volumes": round((peak - idle[kind]) / volume_bytes, 2),
        }
        if name in BASELINES:
            baseline = BASELINES[name]
            baseline_work = medians[baseline] - start_up[KINDS[baseline]]
            row["time_ratio"] = round(seconds / medians[baseline], 3)
            row["work_ratio"] = round(work / baseline_work, 3)
            row["difference_to_baseline"] = differences.get(name)
        rows.append(row)
    return {
        "benchmark": "p9_harmonization_memory",
        "shape": list(shape),
        "spacing_mm": list(SPACING),
        "input_dtype": "float32",
        "volume_float32_mib": round(volume_bytes / 2**20, 1),
        "idle_rss_mib": {kind: round(value / 2**20, 1) for kind, value in idle.items()},
        "start_up_s": {kind: round(value, 2) for kind, value in start_up.items()},
        "repeats": repeats,
        "rows": rows,
        "nyul_model": {"options": "the method's defaults", "fitted_on": list(FIT_SHAPE)},
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
            "scipy": scipy.__version__,
            "scikit-image": version("scikit-image"),
        },
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _markdown(report: dict[str, Any]) -> str:
    shape = "×".join(str(n) for n in report["shape"])
    idle, start_up = report["idle_rss_mib"], report["start_up_s"]
    lines = [
        "# P9 memory and time of harmonization and interpolation on an MR head, file in, file out",
        "",
        f"`medi2i predict` with `zscore`, a Nyúl model and `interpolation` "
        f"(`slice_factor=2`) on a {shape} float32 MR-like NIfTI "
        f"({report['volume_float32_mib']} MiB), uncompressed in and out, CPU, against "
        "the NumPy/scikit-image and SciPy scripts a user would write (none for Nyúl); "
        f"each run a fresh process, {report['repeats']} runs each in turn; peak resident "
        "memory over the idle baseline of the same kind of process "
        f"({idle['medi2i']} MiB after importing medi2i, torch, MONAI and the two "
        f"plugins; {idle['skimage']} MiB after nibabel, NumPy and scikit-image's "
        f"`threshold_otsu`; {idle['scipy']} MiB after nibabel, NumPy and "
        "`scipy.ndimage`), in float32 input volumes (the interpolated output is two).",
        "",
        f"Start-up (the median wall time of the idle processes): {start_up['medi2i']} s "
        f"for medi2i; {start_up['skimage']} s and {start_up['scipy']} s for the "
        "scripts. The work is the wall time less that start-up.",
        "",
        "| path | median (s) | runs (s) | time / baseline | work (s) | work / baseline's | "
        "peak RSS (MiB) | (peak - idle) / volume |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        runs = ", ".join(f"{t:.2f}" for t in row["runs_s"])
        time_ratio = "—" if row["time_ratio"] is None else f"{row['time_ratio']:.3f}"
        work_ratio = "—" if row["work_ratio"] is None else f"{row['work_ratio']:.3f}"
        lines.append(
            f"| {row['path']} | {row['median_s']:.2f} | {runs} | {time_ratio} | "
            f"{row['work_s']:.2f} | {work_ratio} | "
            f"{row['peak_rss_mib']:.0f} | {row['peak_over_idle_volumes']:.2f} |"
        )
    for name, stages in report.get("stages", {}).items():
        lines += [
            "",
            f"Stages of `{name}` (one more run, its main thread's stack and resident "
            "memory sampled every 5 ms; peak over the same idle baseline):",
            "",
            "| stage | seconds | peak - idle (volumes) |",
            "|---|---|---|",
        ]
        lines += [
            f"| {s['stage']} | {s['seconds']:.2f} | {s['peak_over_idle_volumes']:.2f} |"
            for s in stages
        ]
    compared = [
        f"{row['path']}: "
        + (
            "grids differ"
            if row["difference_to_baseline"]["max_abs"] is None
            else f"{row['difference_to_baseline']['max_abs']:g}"
        )
        + f" (the baseline output's range: {row['difference_to_baseline']['baseline_range']:g})"
        for row in report["rows"]
        if row.get("difference_to_baseline")
    ]
    machine, versions = report["machine"], report["versions"]
    lines += [
        "",
        "Largest absolute difference to the baseline's output in the first run: "
        + "; ".join(compared)
        + ". `zscore` finds its foreground by its own Otsu threshold and counts extreme "
        "voxels at a robust range, so its mean and standard deviation may differ "
        "slightly from the script's; `interpolation` places its slices by the voxel edges "
        "(scipy's zoom keeps the first and last centres) and clips to the input's range "
        "widened by a margin: the scripts are references for time and memory, not the "
        "same outputs. The Nyúl row has no baseline: a model of the method's default "
        "options (1st and 99th percentiles and deciles of the Otsu foreground) fitted on "
        f"two {'×'.join(str(n) for n in report['nyul_model']['fitted_on'])} heads of the "
        "same kind. Times come from a shared machine and are noisy; the memory figures "
        "do not depend on the load.",
        "",
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs (torch threads: "
        f"{machine['torch_threads']}); Python {versions['python']}, medi2i "
        f"{versions['medi2i']}, torch {versions['torch']}, MONAI {versions['monai']}, "
        f"NumPy {versions['numpy']}, nibabel {versions['nibabel']}, SciPy "
        f"{versions['scipy']}, scikit-image {versions['scikit-image']}; "
        f"{report['repeats']} repeats; {report['date']}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
