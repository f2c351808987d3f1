"""P3 DICOM reading: medi2i's DICOM folder reader against SimpleITK's series reader.

A CT series of 512×512×300 slices (int16, rescale 1 / -1024, one file per slice,
Explicit VR Little Endian, written by ``medi2i.testing.dicom_series``) is read side by
side in one process: medi2i's ``read_dicom_folder`` (scan, select, read, rescale, the
``(1, X, Y, Z)`` float32 volume with its RAS affine) and SimpleITK's
``ImageSeriesReader`` with ``GetGDCMSeriesFileNames`` (GDCM scan, read, rescale, an
``sitk.Image``). One warm-up each (which also fills the page cache), then ``--repeats``
runs alternating which goes first, each after a short pause. The result is the ratio of
the median times, medi2i over SimpleITK (target: at most 1.0), after checking that both
give the same voxels and the same geometry.

Usage: python benchmarks/p3_dicom_read.py [--repeats 7] [--slices 300] [--folder DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk
import torch

import medi2i
from medi2i.dicom.reading.series_scan import scan_folder
from medi2i.dicom.reading.series_volume import read_dicom_folder, read_dicom_series
from medi2i.grid import lps_to_ras
from medi2i.testing.dicom_series import write_series

RESULTS = Path(__file__).parent / "results"
TARGET_RATIO = 1.0
SETTLE_S = 0.5
Report = dict[str, Any]
"""The JSON report; the script's own, so its layout lives in :func:`summary`."""


def make_series(folder: Path, slices: int) -> None:
    """A head-sized CT series: smooth anatomy-like values in HU plus noise."""
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.linspace(-1, 1, 512), np.linspace(-1, 1, 512), indexing="ij")
    body = np.where(x**2 + y**2 < 0.8, 40.0, -1000.0)
    volume = np.empty((512, 512, slices), dtype=np.int16)
    for k in range(slices):
        noise = rng.normal(0.0, 20.0, (512, 512))
        volume[:, :, k] = np.clip(body + noise + 3 * k, -1024, 3071).astype(np.int16)
    write_series(folder, volume, spacing=(0.48828125, 0.48828125, 0.625), origin=(-125, -125, 0))


def medi2i_read(folder: Path) -> Callable[[], object]:
    return lambda: read_dicom_folder(folder)


def sitk_read(folder: Path) -> Callable[[], object]:
    def run() -> sitk.Image:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
        return reader.Execute()

    return run


def timed(run: Callable[[], object]) -> float:
    gc.collect()
    # let the previous run's worker threads (ITK's pool, medi2i's readers) wind down, so
    # that neither reader pays for the other's leftovers
    time.sleep(SETTLE_S)
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    del result
    return seconds


def agreement(folder: Path) -> dict[str, float]:
    """Largest voxel and affine (mm) differences between the two readers."""
    ours = read_dicom_folder(folder)
    image = sitk_read(folder)()
    assert isinstance(image, sitk.Image)
    theirs = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    affine = np.eye(4)
    affine[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return {
        "max_abs_voxel_diff": float(np.abs(ours[0].numpy() - theirs).max()),
        "max_abs_affine_diff_mm": float(np.abs(ours.affine.numpy() - lps_to_ras(affine)).max()),
    }


def measure(folder: Path, repeats: int) -> Report:
    """Warm up each reader once, then interleave ``repeats`` runs, alternating the order."""
    runners = {"medi2i": medi2i_read(folder), "simpleitk": sitk_read(folder)}
    for run in runners.values():
        timed(run)
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            times[name].append(timed(runners[name]))
            print(f"  {name}: {times[name][-1]:.3f} s", flush=True)
    return {"times_s": times, "medi2i_parts_s": parts(folder, repeats)}


def parts(folder: Path, repeats: int) -> dict[str, float]:
    """Median time of medi2i's scan (headers) and of reading the scanned series."""
    scans, reads = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        series = scan_folder(folder).series[0]
        scans.append(time.perf_counter() - start)
        reads.append(timed(lambda series=series: read_dicom_series(series)))  # type: ignore[misc]
    return {"scan": statistics.median(scans), "read": statistics.median(reads)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--folder", type=Path, help="read this series instead of generating one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="p3-") as scratch:
        folder = args.folder or Path(scratch) / "series"
        if args.folder is None:
            print(f"P3: writing a 512x512x{args.slices} CT series", flush=True)
            make_series(folder, args.slices)
        print(f"P3: read_dicom_folder vs SimpleITK, {args.repeats} repeats", flush=True)
        measured = measure(folder, args.repeats)
        measured.update(agreement(folder))
        files = sorted(folder.iterdir())
        report = summary(measured, args.repeats, len(files), sum(f.stat().st_size for f in files))
    write(report)
    keys = ("medians_s", "ratio", "pass", "max_abs_voxel_diff", "max_abs_affine_diff_mm")
    print(json.dumps({key: report[key] for key in keys}))


def summary(measured: Report, repeats: int, files: int, size: int) -> Report:
    times = measured["times_s"]
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["medi2i"] / medians["simpleitk"]
    return {
        "benchmark": "P3 DICOM reading",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
        },
        "versions": {
            "python": platform.python_version(),
            "medi2i": medi2i.__version__,
            "pydicom": pydicom.__version__,
            "simpleitk": sitk.Version.VersionString(),
            "numpy": np.__version__,
            "torch": torch.__version__,
        },
        "setup": {
            "series": "CT, 512x512 int16 slices, rescale 1/-1024, Explicit VR Little Endian",
            "files": files,
            "bytes": size,
            "repeats": repeats,
            "medi2i": "medi2i.dicom.reading.series_volume.read_dicom_folder(folder)",
            "simpleitk": "ImageSeriesReader(GetGDCMSeriesFileNames(folder)).Execute()",
        },
        "times_s": times,
        "medians_s": medians,
        "medi2i_parts_s": measured["medi2i_parts_s"],
        "ratio": ratio,
        "target": f"ratio <= {TARGET_RATIO}",
        "pass": ratio <= TARGET_RATIO,
        "max_abs_voxel_diff": measured["max_abs_voxel_diff"],
        "max_abs_affine_diff_mm": measured["max_abs_affine_diff_mm"],
    }


def write(report: Report) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "p3_dicom_read.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "p3_dicom_read.md").write_text(markdown(report))


def markdown(report: Report) -> str:
    medians, times, parts = report["medians_s"], report["times_s"], report["medi2i_parts_s"]
    machine, versions, setup = report["machine"], report["versions"], report["setup"]
    runs = {name: ", ".join(f"{t:.3f}" for t in values) for name, values in times.items()}
    verdict = "pass" if report["pass"] else "FAIL"
    return "\n".join(
        [
            "# P3 DICOM reading",
            "",
            f"`{setup['medi2i']}` vs SimpleITK `{setup['simpleitk']}` on one series: "
            f"{setup['series']}, {setup['files']} files ({setup['bytes'] / 1e6:.0f} MB), "
            f"{setup['repeats']} interleaved runs after one warm-up each (warm page cache, "
            f"{SETTLE_S} s pause before each run).",
            "",
            "| reader | median (s) | runs (s) |",
            "|---|---|---|",
            f"| medi2i | {medians['medi2i']:.3f} | {runs['medi2i']} |",
            f"| SimpleITK (GDCM) | {medians['simpleitk']:.3f} | {runs['simpleitk']} |",
            "",
            f"Ratio medi2i / SimpleITK: **{report['ratio']:.3f}** (target {report['target']}: "
            f"{verdict}). medi2i's median scan (headers) {parts['scan']:.3f} s, read of the "
            f"scanned series {parts['read']:.3f} s. Same voxels (max |difference| "
            f"{report['max_abs_voxel_diff']:g}) and affine (max |difference| "
            f"{report['max_abs_affine_diff_mm']:.1e} mm).",
            "",
            f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs; Python "
            f"{versions['python']}, pydicom {versions['pydicom']}, SimpleITK "
            f"{versions['simpleitk']}, numpy {versions['numpy']}, torch {versions['torch']}, "
            f"medi2i {versions['medi2i']}; {report['date']}.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
