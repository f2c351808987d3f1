"""The three readers of the DICOM geometry benchmark (``dicom_geometry.py``): medi2i,
dcm2niix (its NIfTI read with nibabel) and SimpleITK, each giving a RAS affine."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from dicom_geometry_cases import Case

import medi2i
from medi2i.grid import lps_to_ras


@dataclass(frozen=True)
class Reading:
    """One reader's result: the array in (X, Y, Z[, T]) order and its RAS affine."""

    array: np.ndarray | None = None
    affine: np.ndarray | None = None
    refused: str | None = None
    note: str = ""


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
