"""The records of a folder scan: studies, series, their grid and what keeps them from being volumes.

:func:`~medi2i.dicom.reading.series_scan.scan_folder` builds them and
:mod:`medi2i.dicom.reading.stack_geometry` works out each series' grid and problems;
both use the frozen dataclasses defined here, so neither has to import the other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from medi2i.dicom.reading.file_records import ImageHeader, SkippedFile
from medi2i.text import one_line

__all__ = [
    "Problem",
    "ScanResult",
    "SeriesInfo",
    "StackGeometry",
    "StudyInfo",
    "VolumeKey",
]


@dataclass(frozen=True)
class Problem:
    """Why a series cannot be read as one volume.

    Attributes:
        text: The explanation, naming files and what to do.
        geometric: Whether it is about the slice geometry (positions, orientation,
            spacing) rather than the files' contents.
        scout: Whether it says the series is a localizer (scout): images for planning,
            never a volume, so a batch skips a study that holds nothing else.
    """

    text: str
    geometric: bool = True
    scout: bool = False

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class StackGeometry:
    """The grid of a series that can be one volume.

    Attributes:
        affine_lps: 4x4 voxel-to-patient (LPS) matrix in mm, rows as tuples; voxel
            ``(i, j, k)`` is column ``i``, row ``j`` of slice ``k``. With a gantry tilt
            its third column is the step between slice origins, not the slice normal.
        slice_spacing: Distance between slice planes in mm, from the positions.
        normal: Unit slice normal (row direction x column direction), LPS.
        tilt_deg: Angle between the step from slice to slice and the normal (gantry
            tilt), in degrees; 0 for an ordinary stack.
        position_residual_mm: The largest distance (mm) of a slice's Image Position
            (Patient) from the grid, which is fitted to all of them; 0 for exact positions.
    """

    affine_lps: tuple[tuple[float, ...], ...]
    slice_spacing: float
    normal: tuple[float, float, float]
    tilt_deg: float
    position_residual_mm: float = 0.0


@dataclass(frozen=True)
class VolumeKey:
    """Which volume of a series of several (echoes, time points, b-values) this one is.

    Attributes:
        index: 1-based number of the volume, in order of :attr:`value`.
        count: How many volumes the series holds.
        tag: The keyword of the element that tells them apart (``"EchoTime"``).
        value: Its value in this volume (ms for times, s/mm2 for b-values).
        label: The volume in words (``"echo 2 (TE 30 ms)"``).
    """

    index: int
    count: int
    tag: str
    value: float
    label: str


@dataclass(frozen=True)
class SeriesInfo:
    """One series found by the scan: what it is, its grid, and whether it is a volume.

    Attributes:
        study_instance_uid: Study Instance UID.
        series_instance_uid: Series Instance UID.
        modality: Modality (``"CT"``, ``"MR"``, ...).
        description: Series Description (may be empty).
        series_number: Series Number, when present.
        sop_class_uid: SOP Class UID of its first object.
        sop_class_name: The SOP class in words (``"CT Image Storage"``).
        frame_of_reference_uid: Frame of Reference UID, when present.
        number_of_images: Slices that make the volume (frames count for multi-frame
            files); for series that are not volumes, the images or objects found.
        rows: Rows of the images (``None`` when they vary or there are none).
        columns: Columns of the images.
        pixel_spacing: Row spacing and column spacing in mm, in DICOM's order.
        slice_spacing: Distance between slice planes in mm, from the positions (not
            Slice Thickness); ``None`` when it cannot be worked out.
        orientation: ``"axial"``, ``"sagittal"``, ``"coronal"`` (slice normal within
            30 degrees of that axis), ``"oblique"``, ``"mixed"`` or ``"none"``; an axis
            label is followed by how far the normal leans off that axis when it is 0.5
            degrees or more (``"axial (tilted 20 deg)"``); :attr:`plane` is the label
            alone.
        files: The image files, in slice order when the geometry allows.
        problems: Why the series cannot be read as one volume; empty when it can.
        notes: What a user should know that does not stop reading it (localizers set
            aside, gantry tilt, ...).
        images: The slices in order (for the reader).
        geometry: The volume's grid, when there are no problems.
        volume: For one volume of a series of several, which one; ``None`` otherwise.
        root: The folder (or file) the scan was given; its problems and notes name
            files by their path relative to it. ``None`` when not from a scan.
    """

    study_instance_uid: str
    series_instance_uid: str
    modality: str
    description: str
    series_number: int | None
    sop_class_uid: str
    sop_class_name: str
    frame_of_reference_uid: str | None
    number_of_images: int
    rows: int | None
    columns: int | None
    pixel_spacing: tuple[float, ...] | None
    slice_spacing: float | None
    orientation: str
    files: tuple[Path, ...]
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    images: tuple[ImageHeader, ...] = field(default=(), repr=False)
    geometry: StackGeometry | None = None
    volume: VolumeKey | None = None
    root: Path | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The series in words for messages: description, and the volume when one of several."""
        described = f"'{one_line(self.description)}'"
        return f"{described}, {self.volume.label}" if self.volume is not None else described

    @property
    def is_volume(self) -> bool:
        """Whether the series can be read as one volume (it has no problems)."""
        return not self.problems and self.geometry is not None

    @property
    def is_localizer(self) -> bool:
        """Whether the series is a localizer (scout) rather than a volume: Image Type
        ``LOCALIZER`` on every image, or a few images in several planes."""
        return any(problem.scout for problem in self.problems)

    @property
    def plane(self) -> str:
        """:attr:`orientation` without the tilt (``"axial"``), as a selector compares it."""
        return self.orientation.split(" (", 1)[0]

    @property
    def voxels(self) -> int:
        """Rows x columns x slices (0 when unknown); what ``largest`` compares."""
        return (self.rows or 0) * (self.columns or 0) * self.number_of_images

    @property
    def folder(self) -> Path:
        """The deepest folder holding all its files."""
        if not self.files:
            return Path()
        return Path(os.path.commonpath([str(path.parent) for path in self.files]))


@dataclass(frozen=True)
class StudyInfo:
    """One study: its identifiers and its series, in Series Number order."""

    study_instance_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    description: str
    series: tuple[SeriesInfo, ...]


@dataclass(frozen=True)
class ScanResult:
    """What :func:`~medi2i.dicom.reading.series_scan.scan_folder` found under :attr:`root`.

    ``aliases`` holds, for each folder reached by more than one path (links), the other
    paths that reach it, by the path its files are named by (the first one searched).
    ``searched`` lists every folder searched, by the path it was first reached by (so a
    caller can tell whether the scan went into a folder that held nothing).
    """

    root: Path
    studies: tuple[StudyInfo, ...]
    skipped: tuple[SkippedFile, ...]
    aliases: Mapping[Path, tuple[Path, ...]] = field(default_factory=dict, repr=False)
    searched: tuple[Path, ...] = field(default=(), repr=False)

    @property
    def series(self) -> tuple[SeriesInfo, ...]:
        """Every series of every study."""
        return tuple(series for study in self.studies for series in study.series)
