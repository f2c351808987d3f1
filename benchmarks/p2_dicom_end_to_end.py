"""P2 end to end: a DICOM MR folder in, a synthetic CT DICOM series out, per stage.

A head-sized MR series (176×240×256 voxels at 1 mm, int16, one file per axial slice) is
generated once from a seeded head phantom. Each run is a fresh Python process (so peak
RSS is that run's own) that goes the way ``medi2i predict mr_dicom/ out/sct`` goes:

read
    the DICOM folder into a volume (medi2i's DICOM reader);
preprocess
    the spatial plan (none here: the input grid is kept) and the method's z-score;
infer
    a MONAI UNet (3D, channels 16-32-64-128, strides 2-2-2, 2 residual units; untrained
    weights, which cost the same time) by sliding window: ROI 96³, overlap 0.25,
    Gaussian blending, 4 windows per batch, on the CPU;
postprocess
    back to HU and onto the input grid;
write
    the derived CT series (``DicomSeriesWriter``: 256 files, int16).

The stages are timed inside the real predict path (``predict_tensor``) by a method that
notes when its ``preprocess``/``predict``/``postprocess`` start and end. After each
stage the script notes the process's peak RSS so far (``getrusage``) and its current
RSS (``/proc/self/statm``); the import-only RSS of a process is measured the same way.
Timings on a shared 2-core machine are noisy: the result reports medians of the runs.

Usage: python benchmarks/p2_dicom_end_to_end.py [--repeats 3] [--shape 176 240 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
SHAPE = (176, 240, 256)
STAGES = ("read", "preprocess", "infer", "postprocess", "write")
NETWORK = "MONAI UNet(3D, channels 16-32-64-128, strides 2-2-2, num_res_units 2)"
Report = dict[str, Any]


# -- the source series ------------------------------------------------------------------


def head_phantom(shape: tuple[int, int, int], seed: int = 0) -> Any:
    """A T1-like head: scalp, dark skull, grey and white matter, ventricles, noise (int16)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    radius = np.sqrt((x / 0.85) ** 2 + (y / 0.9) ** 2 + ((z + 0.1) / 0.85) ** 2)
    values = np.zeros(shape, dtype=np.float32)
    values[radius < 1.0] = 900.0  # scalp and fat: bright on T1
    values[radius < 0.95] = 80.0  # skull: dark
    values[radius < 0.88] = 450.0  # grey matter
    values[radius < 0.7] = 650.0  # white matter
    ventricles = (x / 0.12) ** 2 + (y / 0.3) ** 2 + ((z - 0.05) / 0.2) ** 2 < 1.0
    values[ventricles] = 200.0  # CSF
    values += rng.normal(0.0, 15.0, size=shape).astype(np.float32)
    return np.clip(np.rint(values), 0, None).astype(np.int16)


def write_source_series(folder: Path, shape: tuple[int, int, int]) -> Path:
    """Write the phantom as an axial int16 MR series (1 mm, no rescale) into ``folder``."""
    from medi2i.testing.dicom_series import AXIAL, write_series

    origin = (-shape[0] / 2, -shape[1] / 2, -shape[2] / 2)
    write_series(
        folder,
        head_phantom(shape),
        spacing=(1.0, 1.0, 1.0),
        orientation=AXIAL,
        origin=origin,
        modality="MR",
        rescale=(1.0, 0.0),
        pixel_dtype="int16",
        description="T1 phantom",
    )
    return folder


# -- one run (a child process) ----------------------------------------------------------


def rss_mib() -> tuple[float, float]:
    """(peak RSS so far, current RSS) of this process, in MiB."""
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return peak_kib / 1024, pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(series: Path, output: Path, imports_only: bool) -> Report:
    """Run the pipeline once; return per-stage seconds and RSS."""
    import torch
    from monai.networks.nets.unet import UNet

    from medi2i.dicom.writing.volume_writer import DicomSeriesWriter
    from medi2i.method import Task, VolumeSpec
    from medi2i.patch_network import PatchNetworkMethod
    from medi2i.prediction import predict_tensor
    from medi2i.settings import InferenceSettings

    marks: dict[str, float] = {}
    memory: dict[str, tuple[float, float]] = {"imports": rss_mib()}
    if imports_only:
        return {"memory_mib": memory}

    class BenchSyntheticCT(PatchNetworkMethod):
        """An MR-to-CT UNet whose stages note when they run."""

        id = "p2-unet"
        tasks = (Task.TRANSLATION,)
        input_spec = VolumeSpec(modality="MR")
        output_spec = VolumeSpec(modality="CT", units="HU", value_range=(-1024.0, 3071.0))
        default_roi_size = (96, 96, 96)

        def build_network(self) -> torch.nn.Module:
            torch.manual_seed(0)
            return UNet(3, 1, 1, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)

        def preprocess(self, image: Any, **_: Any) -> Any:
            foreground = image[image > 0]
            result = (image - foreground.mean()) / foreground.std().clamp_min(1e-6)
            marks["preprocess_end"] = time.perf_counter()
            memory["preprocess"] = rss_mib()
            return result

        def predict(self, image: Any, context: Any) -> Any:
            result = super().predict(image, context)
            marks["infer_end"] = time.perf_counter()
            memory["infer"] = rss_mib()
            return result

        def postprocess(self, output: Any, image: Any, **_: Any) -> Any:
            return (output * 1000.0).clamp(-1024.0, 3071.0)

    settings = InferenceSettings(
        roi_size=(96, 96, 96), overlap=0.25, sw_batch_size=4, device="cpu", progress=False
    )
    method = BenchSyntheticCT()
    method.network.eval()  # built before the clock starts, like a loaded model
    start = time.perf_counter()
    image = read_series(series)
    marks["read_end"] = time.perf_counter()
    memory["read"] = rss_mib()
    result = predict_tensor(method, image, settings=settings)
    marks["postprocess_end"] = time.perf_counter()
    memory["postprocess"] = rss_mib()
    DicomSeriesWriter().write(result, output)
    marks["write_end"] = time.perf_counter()
    memory["write"] = rss_mib()
    ends = [marks[f"{stage}_end"] for stage in STAGES]
    seconds = {stage: b - a for stage, a, b in zip(STAGES, [start, *ends[:-1]], ends, strict=True)}
    return {
        "seconds": seconds,
        "memory_mib": memory,
        "files_written": len(list(output.iterdir())),
        "shape": list(image.shape[1:]),
    }


def read_series(folder: Path) -> Any:
    """Read a DICOM folder with medi2i's DICOM reader (scan, select, read)."""
    from medi2i.dicom.reading.series_volume import read_dicom_folder

    return read_dicom_folder(folder)


# -- the parent: runs, summary, results ---------------------------------------------------


def run_child(series: Path, output: Path, *, imports_only: bool = False) -> Report:
    command = [sys.executable, __file__, "--child", str(series), str(output)]
    if imports_only:
        command.append("--imports-only")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"a run failed:\n{done.stderr}")
    result: Report = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=3, default=SHAPE, help="voxels")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--imports-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        series, output = args.child
        print(json.dumps(child(series, output, imports_only=args.imports_only)))
        return
    shape = tuple(args.shape)
    with tempfile.TemporaryDirectory(prefix="medi2i-p2-") as scratch:
        series = write_source_series(Path(scratch) / "mr", shape)
        baseline = run_child(series, Path(scratch) / "unused", imports_only=True)
        runs = []
        for repeat in range(args.repeats):
            runs.append(run_child(series, Path(scratch) / f"sct{repeat}"))
            print(f"run {repeat + 1}: {json.dumps(runs[-1]['seconds'])}", flush=True)
    report = summary(runs, baseline, shape)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "p2_dicom_end_to_end.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "p2_dicom_end_to_end.md").write_text(markdown(report))
    print(json.dumps({"median_s": report["median_s"], "peak_rss_mib": report["peak_rss_mib"]}))


def summary(runs: list[Report], baseline: Report, shape: tuple[int, ...]) -> Report:
    import monai
    import pydicom
    import SimpleITK
    import torch

    import medi2i

    median = {s: statistics.median(r["seconds"][s] for r in runs) for s in STAGES}
    total = sum(median.values())
    peaks = [r["memory_mib"]["write"][0] for r in runs]
    volume_mib = 4 * shape[0] * shape[1] * shape[2] / 2**20
    stage_peak = {s: statistics.median(r["memory_mib"][s][0] for r in runs) for s in STAGES}
    return {
        "benchmark": "P2 DICOM end to end",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": "cpu",
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "monai": monai.__version__,
            "pydicom": pydicom.__version__,
            "SimpleITK": SimpleITK.__version__,
            "medi2i": medi2i.__version__,
        },
        "setup": {
            "shape": list(shape),
            "spacing_mm": [1.0, 1.0, 1.0],
            "source": "int16 MR Image Storage, one file per slice",
            "output": "int16 CT Image Storage, one file per slice",
            "network": NETWORK,
            "roi": [96, 96, 96],
            "overlap": 0.25,
            "sw_batch_size": 4,
            "repeats": len(runs),
        },
        "runs": runs,
        "median_s": median,
        "median_total_s": total,
        "share_of_total": {s: median[s] / total for s in STAGES},
        "peak_rss_after_stage_mib": stage_peak,
        "imports_only_rss_mib": baseline["memory_mib"]["imports"][0],
        "peak_rss_mib": statistics.median(peaks),
        "volume_float32_mib": volume_mib,
        "peak_rss_over_volume": statistics.median(peaks) / volume_mib,
        "peak_rss_above_imports_over_volume": (
            statistics.median(peaks) - baseline["memory_mib"]["imports"][0]
        )
        / volume_mib,
    }


def markdown(report: Report) -> str:
    setup, machine, versions = report["setup"], report["machine"], report["versions"]
    rows = [
        f"| {s} | {report['median_s'][s]:.2f} | {100 * report['share_of_total'][s]:.0f} % | "
        f"{report['peak_rss_after_stage_mib'][s]:.0f} |"
        for s in STAGES
    ]
    return "\n".join(
        [
            "# P2 DICOM end to end",
            "",
            f"MR DICOM folder ({'×'.join(map(str, setup['shape']))} at 1 mm, {setup['source']}) "
            f"→ synthetic CT DICOM series ({setup['output']}); {setup['network']}, untrained, "
            f"ROI 96³, overlap 0.25, sw_batch_size 4, CPU; median of {setup['repeats']} runs, "
            "each in a fresh process.",
            "",
            "| stage | median (s) | share | peak RSS after stage (MiB) |",
            "|---|---|---|---|",
            *rows,
            f"| **total** | **{report['median_total_s']:.2f}** | 100 % | "
            f"**{report['peak_rss_mib']:.0f}** |",
            "",
            f"Peak RSS {report['peak_rss_mib']:.0f} MiB = "
            f"{report['peak_rss_over_volume']:.1f}× the float32 volume "
            f"({report['volume_float32_mib']:.0f} MiB); a process that only imports medi2i, "
            f"torch and MONAI peaks at {report['imports_only_rss_mib']:.0f} MiB, so the "
            f"pipeline itself adds {report['peak_rss_above_imports_over_volume']:.1f}× the "
            "volume.",
            "",
            f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs "
            f"({machine['torch_threads']} torch threads), device {machine['device']}; "
            f"Python {versions['python']}, torch {versions['torch']}, MONAI {versions['monai']}, "
            f"pydicom {versions['pydicom']}, SimpleITK {versions['SimpleITK']}, "
            f"medi2i {versions['medi2i']}; {report['date']}.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
