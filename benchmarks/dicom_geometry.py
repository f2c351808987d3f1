"""DICOM geometry evidence: medi2i's reader against dcm2niix and SimpleITK, series by series.

Every multi-slice DICOM series that the installed Python packages ship as test data (the
folders of the venv's site-packages that hold ``.dcm`` files: pydicom's test files,
pydicom-data's store, nibabel's and pynetdicom's test data; files are taken as they are
on disk, nothing is downloaded) plus synthetic series with known geometry from
:mod:`medi2i.testing.dicom_series` (jittered positions, gantry tilt, oblique, coronal,
sagittal, reversed Instance Numbers, a gap, an enhanced multi-frame file, a Siemens
mosaic) is read three ways:

- medi2i: ``medi2i.read_volume(folder)``, a ``(1, X, Y, Z)`` volume with a RAS affine;
- dcm2niix: converted into a temporary folder, the NIfTI read with nibabel (RAS affine);
- SimpleITK: ``ImageSeriesReader`` with GDCM's series file names (LPS, made RAS).

A *series* is a folder of single-frame files grouped by Series Instance UID with at least
two distinct Image Positions (files that are one image in several transfer syntaxes are
left out and listed), a grayscale multi-frame file, or a Siemens mosaic. Each is copied
(gzipped ones decompressed) alone into its own folder, so the three readers see the same
files.

Geometry is compared without resampling: the world (RAS mm) positions of the 8 corner
voxel centres of each reader's grid are compared as unordered sets (the largest distance
from a corner to the nearest corner of the other grid, both ways), which holds whatever
axis order and flips a reader chose. Voxel values are compared after mapping the
reference array onto medi2i's axes with the permutation and flips that bring its grid
onto medi2i's; when they differ, every other axis mapping of equal shape is tried, so a
flipped or shuffled slice order shows as such.

Usage: python benchmarks/dicom_geometry.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import platform
import re
import shutil
import site
import subprocess
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.uid import generate_uid

import medi2i
from medi2i.grid import lps_to_ras
from medi2i.testing.dicom_series import (
    CORONAL,
    SAGITTAL,
    stack_geometry,
    write_enhanced,
    write_mosaic,
    write_series,
)

RESULTS = Path(__file__).parent / "results"
TOLERANCE_MM = 0.1
VALUE_TOLERANCE = 1e-3  # float32 rescale products against nibabel's float64 ones
SKIP_SUFFIXES = {".py", ".pyc", ".txt", ".json", ".bin", ".gz", ".nii", ".md", ".so"}
Row = dict[str, Any]

_MOSAIC_SITK = "SimpleITK (GDCM) has no mosaic support: it reads the tiled image as one 2D slice."
# Why a case disagrees, written after reading the files and the readers' messages, keyed
# by a part of the case name; a disagreement with no entry is reported as unexplained.
EXPLANATIONS: dict[str, str] = {
    "OBXXXX1A_": "Ultrasound with PALETTE COLOR pixels: medi2i refuses (not greyscale) and "
    "SimpleITK refuses (it applies the palette: 3 components); dcm2niix writes the palette "
    "indices as a 2-frame stack without geometry ('Unable to determine slice direction').",
    "emri_small": "Enhanced MR without Per-frame Functional Groups and without any Image "
    "Position or Orientation, so where the frames lie is unknown: medi2i refuses; dcm2niix "
    "and SimpleITK make up a grid (dcm2niix warns 'Unable to determine slice direction'). "
    "dcm2niix also refuses the RLE and JPEG-LS copies (decoders not built in), SimpleITK "
    "the truncated JPEG 2000 copy.",
    "liver": "DICOM SEG, 1 bit per pixel: medi2i refuses a binary segmentation; dcm2niix "
    "and SimpleITK unpack the bits into a 3-frame stack.",
    "siemens_dwi": _MOSAIC_SITK + " dcm2niix agrees with medi2i on grid and values.",
    "/0.dcm": _MOSAIC_SITK + " dcm2niix: same grid, values identical for the first tile "
    "row (slices 0-6) and different from slice 7 on. This 256x256 mosaic holds 48 slices "
    "as 7x7 tiles of 36 px with 4 px of padding; medi2i cuts tiles at 36-px strides of "
    "the 256-px rows (its slice 7 is mosaic rows 36-71, columns 0-35), dcm2niix takes its "
    "slice 7 elsewhere (found at row 4, column 146). The pixel data is a repeating 16-row "
    "test pattern, not an image, and nibabel's own mosaic reader refuses the file (cannot "
    "reshape 65536 values into 7x36x7x36), so neither cut can be checked against truth here.",
    "rtdose": "RT Dose, 15 frames placed by Grid Frame Offset Vector (0-70 mm, 5 mm steps), "
    "Dose Grid Scaling 1e-6. medi2i places frames 5 mm apart and scales to Gy. SimpleITK "
    "agrees on the grid but returns the stored integers (1e6 x medi2i). dcm2niix ignores "
    "Grid Frame Offset Vector and stacks frames 1 mm apart ('Unable to determine slice "
    "direction'), so its far corners are 56 mm (14 x 4 mm) short; it also returns stored "
    "integers. Where a reference's values are not proportional, its decoder fails on 32-bit "
    "pixels (dcm2niix on RLE, SimpleITK on big endian: values near +-2^31 or 2^32).",
    "CT2 (4 files": "4 slices of 'Routine Brain' far apart (medi2i counts 161 missing "
    "slices at 1.25 mm): medi2i refuses as missing slices; dcm2niix writes an uneven stack "
    "with a warning plus an equalized (resampled) copy; SimpleITK stacks them silently.",
    "CT2N": "A 2-image CT scout: medi2i refuses it as a localizer; both references stack it.",
    "MR2 (3 files": "A three-plane localizer (3 images in 3 orientations): medi2i refuses; "
    "dcm2niix writes 3 separate 2D images; SimpleITK stacks 3 orthogonal images into one "
    "volume whose geometry is meaningless.",
    "MR700": "7 angiography projections in 7 orientations: medi2i refuses as a localizer; "
    "dcm2niix writes 7 separate 2D images; SimpleITK stacks them into one volume.",
    "gantry tilt": "SimpleITK (GDCM) ignores gantry tilt: its grid is orthogonal, so the far "
    "corners are 5.9 mm off; dcm2niix's uncorrected output keeps the sheared grid as medi2i "
    "does (its tilt-corrected, resampled out_Tilt_1.nii is not compared).",
    "one slice missing": "medi2i refuses the gap; dcm2niix writes an uneven stack with a "
    "warning plus an equalized (resampled) copy; SimpleITK stacks the slices silently as "
    "if evenly spaced.",
    "frames shuffled": "SimpleITK (GDCM) takes the frames in stored order and ignores the "
    "per-frame positions, so with shuffled frames its slice order and grid are wrong; "
    "dcm2niix sorts the frames by position and agrees with medi2i.",
    "Siemens mosaic, 9": _MOSAIC_SITK + " dcm2niix agrees with medi2i.",
}
EXPLANATIONS["/1.dcm"] = EXPLANATIONS["/0.dcm"]  # the same pattern, another b-value
EXPLANATIONS["2 echoes in one series"] = (
    "medi2i splits the series by Echo Numbers and reads echo 1 (--volume 1), as dcm2niix "
    "writes it (out_e1.nii): identical. SimpleITK (GDCM) stacks the 20 files of both "
    "echoes into one 20-slice volume, each position twice, so it is not compared."
)


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


@dataclass(frozen=True)
class Reading:
    """One reader's result: the array in (X, Y, Z[, T]) order and its RAS affine."""

    array: np.ndarray | None = None
    affine: np.ndarray | None = None
    refused: str | None = None
    note: str = ""


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


# ----------------------------------------------------------------------------- readers


def lay_out(case: Case, folder: Path) -> Path:
    """Copy the case's files alone into ``folder`` (gzipped ones decompressed)."""
    folder.mkdir(parents=True)
    for number, path in enumerate(case.files):
        target = folder / f"{number:03d}_{path.name.removesuffix('.gz')}"
        if path.suffix == ".gz":
            with gzip.open(path) as stream:
                target.write_bytes(stream.read())
        else:
            shutil.copyfile(path, target)
    return folder


def read_medi2i(folder: Path, volume_number: int | None = None) -> Reading:
    from medi2i.dicom.reading.series_selection import SeriesSelector
    from medi2i.dicom.reading.volume_reader import DicomFolderReader

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if volume_number is None:
                volume = medi2i.read_volume(folder)
            else:
                selector = SeriesSelector(volume=volume_number)
                volume = DicomFolderReader(selector=selector).read(folder)
    except Exception as exc:
        return Reading(refused=_message(exc))
    return Reading(
        volume[0].numpy().astype(np.float64), np.asarray(volume.affine, dtype=np.float64)
    )


def read_dcm2niix(folder: Path, out: Path) -> Reading:
    out.mkdir()
    command = ["dcm2niix", "-b", "n", "-z", "n", "-f", "out", "-o", str(out), str(folder)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return Reading(refused="timed out after 120 s")
    log = [line.strip() for line in done.stdout.splitlines() + done.stderr.splitlines()]
    said = [line for line in log if line.startswith(("Error", "Warning", "Unsupported"))]
    files = sorted(out.glob("*.nii"))
    if not files:
        return Reading(refused="; ".join(said) or f"no NIfTI written (exit {done.returncode})")
    # a tilt-corrected copy is dcm2niix's resampling, not the series' own grid
    primary = [f for f in files if "_Tilt_" not in f.name and "_Eq_" not in f.name] or files
    image = nib.load(primary[0])
    notes = []
    if len(files) > 1:
        notes.append(
            f"dcm2niix wrote {', '.join(f.name for f in files)}; compared {primary[0].name}"
        )
    notes += [line for line in said if "Tilt" in line or "slice" in line.lower()][:2]
    return Reading(
        np.asarray(image.get_fdata(dtype=np.float64)), image.affine, note="; ".join(notes)
    )


def read_simpleitk(folder: Path) -> Reading:
    try:
        names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))
        if not names:
            return Reading(refused="GDCM found no series")
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(names)
        image = reader.Execute()
    except RuntimeError as exc:
        return Reading(refused=_message(exc))
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        return Reading(refused=f"{image.GetNumberOfComponentsPerPixel()} components per pixel")
    dimension = image.GetDimension()
    array = array.transpose(tuple(range(dimension - 1, -1, -1)))
    if dimension == 2:
        array = array[:, :, None]
    affine = np.eye(4)
    direction = np.array(image.GetDirection()).reshape(dimension, dimension)
    affine[:dimension, :dimension] = direction @ np.diag(image.GetSpacing())
    affine[:dimension, 3] = image.GetOrigin()
    note = f"{len(names)} file(s) in GDCM's series" if len(names) > 1 else ""
    return Reading(array.astype(np.float64), lps_to_ras(affine), note=note)


def _message(exc: BaseException) -> str:
    # ITK names its source files by the folder it was built in; that folder says nothing
    text = re.sub(r"/\S*?SimpleITK-build/", "", " ".join(str(exc).split()))
    return f"{type(exc).__name__}: {text[:400]}"


# ----------------------------------------------------------------------------- comparison


def corners(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """RAS positions of the 8 corner voxel centres, ``(8, 3)``."""
    index = np.array(list(itertools.product(*[(0, n - 1) for n in shape[:3]])), dtype=np.float64)
    return index @ affine[:3, :3].T + affine[:3, 3]


def corner_set_error(ours: Reading, theirs: Reading) -> float:
    """Largest distance (mm) from a corner of one grid to the nearest corner of the other."""
    a = corners(ours.array.shape, ours.affine)  # type: ignore[union-attr]
    b = corners(theirs.array.shape, theirs.affine)  # type: ignore[union-attr]
    distances = np.linalg.norm(a[:, None] - b[None], axis=2)
    return float(max(distances.min(axis=1).max(), distances.min(axis=0).max()))


def _mappings(
    shape: tuple[int, ...], target: tuple[int, ...]
) -> Iterator[tuple[tuple[int, ...], tuple[bool, ...]]]:
    for order in itertools.permutations(range(3)):
        if tuple(shape[o] for o in order) != target:
            continue
        for flips in itertools.product((False, True), repeat=3):
            yield order, flips


def _mapped(
    reading: Reading, order: tuple[int, ...], flips: tuple[bool, ...]
) -> tuple[np.ndarray, np.ndarray]:
    assert reading.array is not None
    assert reading.affine is not None
    array = reading.array.transpose(order)
    shape = reading.array.shape
    step = np.zeros((4, 4))
    step[3, 3] = 1.0
    for axis, (old, flip) in enumerate(zip(order, flips, strict=True)):
        step[old, axis] = -1.0 if flip else 1.0
        step[old, 3] = shape[old] - 1 if flip else 0.0
    flipped = array[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    return flipped, reading.affine @ step


def compare(ours: Reading, theirs: Reading) -> Row:
    """Shape, corner error and voxel agreement of a reference reading with medi2i's."""
    if ours.refused or theirs.refused:
        return {}
    assert ours.array is not None
    assert theirs.array is not None
    spatial = theirs.array.shape[:3]
    extra = theirs.array.shape[3:]
    row: Row = {
        "shape": list(theirs.array.shape),
        "corner_error_mm": corner_set_error(ours, theirs),
    }
    if extra and int(np.prod(extra)) > 1:
        row["values"] = f"not compared: {int(np.prod(extra))} volumes"
        return row
    reference = Reading(theirs.array.reshape(spatial), theirs.affine)
    candidates = list(_mappings(spatial, ours.array.shape))
    if not candidates:
        row["values"] = "not compared: shapes differ"
        return row
    best = min(candidates, key=lambda m: _ordered_error(ours, *_mapped(reference, *m)))
    values, _ = _mapped(reference, *best)
    difference = float(np.abs(values - ours.array).max())
    row["mapping"] = _describe(best)
    row["max_abs_value_diff"] = difference
    row["values"] = "identical" if difference <= VALUE_TOLERANCE else "differ"
    if difference > VALUE_TOLERANCE:
        scale = float(np.vdot(values, ours.array) / max(np.vdot(ours.array, ours.array), 1e-30))
        if np.abs(values - scale * ours.array).max() <= 1e-6 * np.abs(values).max():
            row["values"] = f"proportional: reference = {scale:g} x medi2i"
        matching = [
            _describe(m)
            for m in candidates
            if float(np.abs(_mapped(reference, *m)[0] - ours.array).max()) <= VALUE_TOLERANCE
        ]
        row["values_match_under"] = matching
    return row


def _ordered_error(ours: Reading, array: np.ndarray, affine: np.ndarray) -> float:
    assert ours.affine is not None
    return float(
        np.linalg.norm(
            corners(array.shape, affine) - corners(array.shape, ours.affine), axis=1
        ).max()
    )


def _describe(mapping: tuple[tuple[int, ...], tuple[bool, ...]]) -> str:
    order, flips = mapping
    return " ".join(f"{'-' if f else '+'}{'ijk'[o]}" for o, f in zip(order, flips, strict=True))


# ----------------------------------------------------------------------------- run


def measure(case: Case, scratch: Path) -> Row:
    folder = lay_out(case, scratch / "in")
    ours = read_medi2i(folder, case.volume)
    references = {
        "dcm2niix": read_dcm2niix(folder, scratch / "dcm2niix"),
        "simpleitk": read_simpleitk(folder),
    }
    row: Row = {
        "case": case.name,
        "source": case.source,
        "kind": case.kind,
        "files": len(case.files),
    }
    row["medi2i"] = (
        {"shape": list(ours.array.shape)} if ours.array is not None else {"refused": ours.refused}
    )
    for name, reading in references.items():
        result = (
            compare(ours, reading) if reading.array is not None and ours.array is not None else {}
        )
        if reading.refused:
            result["refused"] = reading.refused
        elif ours.array is None:
            result["shape"] = list(reading.array.shape)  # type: ignore[union-attr]
        if reading.note:
            result["note"] = reading.note
        result["agrees"] = _agrees(ours, reading, result)
        row[name] = result
    row["explanation"] = next((text for key, text in EXPLANATIONS.items() if key in case.name), "")
    return row


def _agrees(ours: Reading, theirs: Reading, result: Row) -> bool:
    """Both refuse, or both read the same grid (corners within tolerance) and values."""
    if ours.refused or theirs.refused:
        return bool(ours.refused and theirs.refused)
    return (
        result.get("corner_error_mm", np.inf) <= TOLERANCE_MM
        and result.get("values") == "identical"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keep", type=Path, help="keep the laid-out series and conversions here")
    args = parser.parse_args()
    site_packages = Path(next(p for p in site.getsitepackages() if Path(p, "pydicom").is_dir()))
    with tempfile.TemporaryDirectory(prefix="dicom-geometry-") as temporary:
        root = args.keep or Path(temporary)
        shipped, excluded = shipped_cases(site_packages)
        cases = shipped + synthetic_cases(root / "synthetic")
        rows = []
        for number, case in enumerate(cases):
            print(f"[{number + 1}/{len(cases)}] {case.name}", flush=True)
            rows.append(measure(case, root / f"case-{number:03d}"))
        report = summary(rows, excluded)
        # the scratch folder means nothing to a reader of the results: name it <scratch>
        scratch = str(root)
        text = json.dumps(report, indent=2).replace(scratch, "<scratch>")
        report = json.loads(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dicom_geometry.json").write_text(text + "\n")
    (RESULTS / "dicom_geometry.md").write_text(markdown(report))
    print(json.dumps(report["summary"], indent=2))


def summary(rows: list[Row], excluded: list[Row]) -> Row:
    counts: Row = {"series": len(rows), "medi2i_read": sum("shape" in r["medi2i"] for r in rows)}
    for name in ("dcm2niix", "simpleitk"):
        both = [r for r in rows if "shape" in r["medi2i"] and "corner_error_mm" in r[name]]
        counts[name] = {
            "both_read": len(both),
            "corners_within_0.1mm": sum(r[name]["corner_error_mm"] <= TOLERANCE_MM for r in both),
            "corners_and_values_agree": sum(r[name]["agrees"] for r in both),
            "both_refused": sum(r[name]["agrees"] for r in rows if "refused" in r["medi2i"]),
            "medi2i_refused_reference_read": sum(
                "refused" in r["medi2i"] and "refused" not in r[name] for r in rows
            ),
            "reference_refused_medi2i_read": sum(
                "shape" in r["medi2i"] and "refused" in r[name] for r in rows
            ),
            "disagreements": sum(not r[name]["agrees"] for r in rows),
        }
    counts["unexplained"] = [
        r["case"]
        for r in rows
        if not (r["dcm2niix"]["agrees"] and r["simpleitk"]["agrees"]) and not r["explanation"]
    ]
    return {
        "benchmark": "DICOM geometry: medi2i vs dcm2niix and SimpleITK",
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
            "dcm2niix": _dcm2niix_version(),
            "nibabel": nib.__version__,
            "numpy": np.__version__,
        },
        "setup": {
            "tolerance_mm": TOLERANCE_MM,
            "value_tolerance": VALUE_TOLERANCE,
            "medi2i": "medi2i.read_volume(folder)",
            "dcm2niix": "dcm2niix -b n -z n -f out -o OUT folder; nibabel get_fdata, affine",
            "simpleitk": "ImageSeriesReader(GetGDCMSeriesFileNames(folder)); LPS -> RAS",
            "corner_error": "symmetric max nearest-corner distance of the 8 corner voxel "
            "centres (RAS mm)",
        },
        "summary": counts,
        "excluded": excluded,
        "rows": rows,
    }


def _dcm2niix_version() -> str:
    done = subprocess.run(["dcm2niix", "-v"], capture_output=True, text=True, check=False)
    return (done.stdout.strip().splitlines() or ["?"])[-1]


def markdown(report: Row) -> str:
    counts, versions, machine = report["summary"], report["versions"], report["machine"]
    lines = [
        "# DICOM geometry: medi2i vs dcm2niix and SimpleITK",
        "",
        f"{counts['series']} series ({counts['medi2i_read']} read by medi2i): the multi-slice "
        "DICOM "
        "series in the test data of the installed packages and synthetic ones from "
        "`medi2i.testing.dicom_series`. Corner error: the 8 corner voxel centres in RAS mm, "
        "compared as unordered sets (largest nearest-corner distance). Values: after mapping the "
        "reference's axes onto medi2i's by geometry (mapping shown as medi2i axis <- reference "
        f"axis). Agreement: corners within {TOLERANCE_MM} mm and identical values, or both refuse.",
        "",
        "| reference | both read | corners within 0.1 mm | corners + values agree | both refused "
        "| only medi2i refused | only reference refused | disagreements |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("dcm2niix", "simpleitk"):
        c = counts[name]
        lines.append(
            f"| {name} | {c['both_read']} | {c['corners_within_0.1mm']} "
            f"| {c['corners_and_values_agree']} "
            f"| {c['both_refused']} | {c['medi2i_refused_reference_read']} "
            f"| {c['reference_refused_medi2i_read']} | {c['disagreements']} |"
        )
    lines += [
        "",
        "| series | kind | medi2i | dcm2niix | SimpleITK |",
        "|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['case']} | {row['kind']} | {_cell(row['medi2i'])} "
            f"| {_cell(row['dcm2niix'])} | {_cell(row['simpleitk'])} |"
        )
    lines += ["", "## Disagreements", ""]
    for row in report["rows"]:
        if row["dcm2niix"]["agrees"] and row["simpleitk"]["agrees"]:
            continue
        lines.append(f"- **{row['case']}**: {row['explanation'] or 'UNEXPLAINED'}")
        for name in ("medi2i", "dcm2niix", "simpleitk"):
            part = row[name]
            if "refused" in part:
                lines.append(f"  - {name} refused: `{part['refused']}`")
            if part.get("note"):
                lines.append(f"  - {name}: {part['note']}")
    lines += ["", "## Left out", ""]
    lines += [f"- {item['file']}: {item['why']}" for item in report["excluded"]]
    lines += [
        "",
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs; "
        f"Python {versions['python']}, medi2i {versions['medi2i']}, "
        f"pydicom {versions['pydicom']}, SimpleITK {versions['simpleitk']}, "
        f"dcm2niix {versions['dcm2niix']}, nibabel {versions['nibabel']}, "
        f"numpy {versions['numpy']}; "
        f"{report['date']}.",
        "",
    ]
    return "\n".join(lines)


def _cell(part: Row) -> str:
    if "refused" in part:
        return "refused"
    shape = "x".join(str(n) for n in part.get("shape", []))
    if "corner_error_mm" not in part:
        return shape
    mark = "" if part["agrees"] else " **≠**"
    values = part["values"]
    if values == "differ" and part.get("values_match_under"):
        values = f"differ; match under {part['values_match_under'][0]}"
    elif values == "differ":
        values = f"differ (max {part['max_abs_value_diff']:.3g})"
    return f"{shape}; {part['corner_error_mm']:.3g} mm; {values}{mark}"


if __name__ == "__main__":
    main()
