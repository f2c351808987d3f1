"""The series of the DICOM geometry benchmark (``dicom_geometry.py``): those shipped as
test data by the installed packages, and synthetic ones with known geometry.

A *series* is a folder of single-frame files grouped by Series Instance UID with at least
two distinct Image Positions (files that are one image in several transfer syntaxes are
left out and listed), a grayscale multi-frame file, or a Siemens mosaic.
"""

from __future__ import annotations

import gzip
import os
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from medi2i.testing.dicom_series import (
    CORONAL,
    SAGITTAL,
    stack_geometry,
    write_enhanced,
    write_mosaic,
    write_series,
)

SKIP_SUFFIXES = {".py", ".pyc", ".txt", ".json", ".bin", ".gz", ".nii", ".md", ".so"}
Row = dict[str, Any]
"""One JSON object of the report: a series' results, a left-out file, the summary."""


@dataclass(frozen=True)
class Case:
    """One series to read: a name, where it came from, and how to lay it out."""

    name: str
    source: str
    kind: str
    files: tuple[Path, ...]
    volume: int | None = None
    """For a series of several volumes: the one medi2i reads (``--volume N``); the
    references' first output is compared with it."""


# ----------------------------------------------------------------------------- discovery


def shipped_cases(site_packages: Path) -> tuple[list[Case], list[Row]]:
    """The multi-slice series in site-packages' DICOM test data, and what was left out."""
    headers = dict(_headers(_candidate_files(site_packages)))
    cases, excluded = [], []
    groups: dict[tuple[Path, str], list[Path]] = defaultdict(list)
    for path, ds in headers.items():
        rel = str(path.relative_to(site_packages))
        frames = _frames(ds)
        mosaic = "MOSAIC" in [str(v).upper() for v in ds.get("ImageType", [])]
        if frames > 1 or mosaic:
            if int(ds.get("SamplesPerPixel", 1)) != 1:
                excluded.append({"file": rel, "why": f"colour multi-frame ({frames} frames)"})
                continue
            kind = "mosaic" if mosaic else f"multi-frame ({frames})"
            cases.append(Case(rel, rel, kind, (path,)))
            continue
        groups[(path.parent, str(ds.get("SeriesInstanceUID", "")))].append(path)
    for (folder, uid), paths in sorted(groups.items()):
        positions = {tuple(headers[p].get("ImagePositionPatient") or ()) for p in paths}
        instances = {str(headers[p].get("SOPInstanceUID", "")) for p in paths}
        rel = str(folder.relative_to(site_packages))
        if len(paths) < 2:
            continue
        if len(positions) < 2 or len(instances) < 2:
            names = ", ".join(sorted(p.name for p in paths))
            excluded.append({"file": f"{rel}: {names}", "why": "one image in several files"})
            continue
        name = f"{rel} ({len(paths)} files, series ...{uid[-6:]})"
        cases.append(Case(name, rel, "single-frame series", tuple(sorted(paths))))
    return cases, excluded


def _candidate_files(site_packages: Path) -> Iterator[Path]:
    folders = set()
    for root, _, names in os.walk(site_packages):
        if any(n.lower().endswith((".dcm", ".dcm.gz")) for n in names):
            folders.add(Path(root))
    seen = set()
    for folder in sorted(folders):
        for path in sorted(folder.rglob("*")):
            if path in seen or not path.is_file() or "__pycache__" in path.parts:
                continue
            seen.add(path)
            if path.name.lower().endswith(".dcm.gz") or path.suffix.lower() not in SKIP_SUFFIXES:
                yield path


def _headers(paths: Iterator[Path]) -> Iterator[tuple[Path, pydicom.Dataset]]:
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if path.suffix == ".gz":
                    with gzip.open(path) as stream:
                        ds = pydicom.dcmread(stream, stop_before_pixels=True, force=True)
                else:
                    ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # not DICOM: test data of other kinds lives beside it
            continue
        if (
            "Rows" in ds
            and "SOPClassUID" in ds
            and ds.SOPClassUID.name != "Media Storage Directory Storage"
        ):
            yield path, ds


def _frames(ds: pydicom.Dataset) -> int:
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


# ----------------------------------------------------------------------------- synthetic


def synthetic_cases(root: Path) -> list[Case]:
    """Series with known geometry, one per geometric situation a reader must handle."""
    rng = np.random.default_rng(0)
    shape = (20, 16, 10)
    volume = rng.integers(-1000, 2000, size=shape).astype(np.float64)
    oblique = _oblique_orientation(20.0, 10.0, 30.0)
    jitter = stack_geometry(
        shape, spacing=(0.8, 0.8, 2.5), orientation=oblique, origin=(10, -20, 5)
    )
    jittered = jitter.positions + rng.uniform(-0.05, 0.05, jitter.positions.shape)
    gap = stack_geometry(shape, spacing=(1, 1, 2), orientation=(1, 0, 0, 0, 1, 0), origin=(0, 0, 0))
    gapped = gap.positions.copy()
    gapped[5:] += gap.positions[1] - gap.positions[0]
    series: dict[str, Callable[[Path], object]] = {
        "axial": lambda f: write_series(f, volume, spacing=(0.7, 0.9, 2.0), origin=(-30, 40, 12.5)),
        "axial, Instance Numbers reversed": lambda f: write_series(
            f, volume, spacing=(1, 1, 3), origin=(5, 5, -50), instance_numbers=range(10, 0, -1)
        ),
        "coronal": lambda f: write_series(f, volume, orientation=CORONAL, spacing=(0.9, 1.1, 2)),
        "sagittal": lambda f: write_series(f, volume, orientation=SAGITTAL, spacing=(1, 1.2, 1.5)),
        "oblique 20/10/30 deg": lambda f: write_series(
            f, volume, orientation=oblique, spacing=(0.7, 0.9, 2.0), origin=(-30, 40, 12.5)
        ),
        "oblique, positions jittered +-0.05 mm": lambda f: write_series(
            f, volume, orientation=oblique, spacing=(0.8, 0.8, 2.5), positions=jittered
        ),
        "gantry tilt 15 deg": lambda f: write_series(
            f, volume, spacing=(0.5, 0.5, 2.5), tilt_deg=15.0
        ),
        "axial, one slice missing (gap)": lambda f: write_series(f, volume, positions=gapped),
        "MR uint16, rescale 0.5/10": lambda f: write_series(
            f, np.abs(volume) * 0.5 + 10, modality="MR", rescale=(0.5, 10.0), pixel_dtype="uint16"
        ),
    }
    cases = []
    for name, write in series.items():
        folder = root / f"synthetic-{len(cases):02d}"
        write(folder)
        cases.append(
            Case(
                f"synthetic: {name}",
                "medi2i.testing",
                "single-frame series",
                tuple(sorted(folder.iterdir())),
            )
        )
    enhanced = write_enhanced(
        root / "synthetic-enhanced" / "enhanced.dcm",
        np.abs(volume),
        orientation=oblique,
        spacing=(0.7, 0.9, 2.0),
        origin=(-30, 40, 12.5),
        frame_order=list(rng.permutation(shape[2])),
    )
    cases.append(
        Case(
            "synthetic: enhanced MR, oblique, frames shuffled",
            "medi2i.testing",
            "multi-frame (10)",
            (enhanced,),
        )
    )
    mosaic = write_mosaic(
        root / "synthetic-mosaic" / "mosaic.dcm",
        np.abs(volume[:, :, :9]),
        spacing=(2, 2, 3),
        origin=(-20, -16, 0),
    )
    cases.append(Case("synthetic: Siemens mosaic, 9 slices", "medi2i.testing", "mosaic", (mosaic,)))
    echoes = root / "synthetic-echoes"
    series_uid, study_uid = generate_uid(), generate_uid()
    for number, echo_time in enumerate((10.0, 30.0)):  # two echoes at the same positions
        write_series(
            echoes,
            np.abs(volume) * (number + 1),
            modality="MR",
            rescale=(1.0, 0.0),
            orientation=oblique,
            spacing=(0.8, 0.8, 2.5),
            series_uid=series_uid,
            study_uid=study_uid,
            instance_numbers=[number * shape[2] + k + 1 for k in range(shape[2])],
            attributes={"EchoTime": echo_time, "EchoNumbers": number + 1},
        )
    cases.append(
        Case(
            "synthetic: 2 echoes in one series, oblique (echo 1)",
            "medi2i.testing",
            "single-frame series, 2 volumes",
            tuple(sorted(echoes.iterdir())),
            volume=1,
        )
    )
    return cases


def _oblique_orientation(*angles_deg: float) -> tuple[float, ...]:
    a, b, c = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    rotation = rz @ ry @ rx
    return tuple(float(f"{v:.6f}") for v in (*rotation[:, 0], *rotation[:, 1]))
