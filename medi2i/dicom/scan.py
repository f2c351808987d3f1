"""Scan a folder tree of DICOM files without reading pixel data; group studies and series.

Each file's header is read only up to the Pixel Data element, and only the elements the
scan needs are decoded (:mod:`medi2i.dicom.header`, with pydicom's ``dcmread`` for
the files it leaves out), so a folder of thousands of files takes well under a
millisecond per file. Where the pixel data starts is remembered, so that the volume
reader can fetch uncompressed pixels straight from the files without parsing headers
again. Files are grouped by Study and Series Instance UID and each series is checked
for what keeps it from being one volume (see :mod:`medi2i.dicom.stack`): its
:attr:`SeriesInfo.problems` say why in words a user can act on.

A series that holds several volumes at the same slice positions (echoes, time points or
phases, b-values) is split into one :class:`SeriesInfo` per volume, each with its
:attr:`SeriesInfo.volume`: the first of Echo Numbers, Echo Time, Temporal Position
Identifier, Trigger Time, Acquisition Number and Diffusion b-value (0018,9087) whose
values part the slices into complete stacks of one size is the one that tells them
apart. A selector's ``volume`` then picks one of them.

Files that are not DICOM, have no file meta information or cannot be parsed are listed
in :attr:`ScanResult.skipped` with the reason; nothing raises for one bad file.

Example:
    >>> result = scan_folder("export/")  # doctest: +SKIP
    >>> [(s.modality, s.description, s.number_of_images) for s in result.series]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.dicom.header import InvalidValue, text
from medi2i.dicom.images import (
    SCAN_TAGS,
    VOLUME_TAGS,
    FileRecord,
    ImageHeader,
    PixelFormat,
    SkippedFile,
    read_file_record,
)
from medi2i.errors import InputError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = [
    "SCAN_TAGS",
    "ImageHeader",
    "PixelFormat",
    "Problem",
    "ScanResult",
    "SeriesInfo",
    "SkippedFile",
    "StackGeometry",
    "StudyInfo",
    "VolumeKey",
    "scan_folder",
]


@dataclass(frozen=True)
class Problem:
    """Why a series cannot be read as one volume.

    Attributes:
        text: The explanation, naming files and what to do.
        geometric: Whether it is about the slice geometry (positions, orientation,
            spacing) rather than the files' contents.
    """

    text: str
    geometric: bool = True

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
            30 degrees of that axis), ``"oblique"``, ``"mixed"`` or ``"none"``.
        files: The image files, in slice order when the geometry allows.
        problems: Why the series cannot be read as one volume; empty when it can.
        notes: What a user should know that does not stop reading it (localizers set
            aside, gantry tilt, ...).
        images: The slices in order (for the reader).
        geometry: The volume's grid, when there are no problems.
        volume: For one volume of a series of several, which one; ``None`` otherwise.
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

    @property
    def name(self) -> str:
        """The series in words for messages: description, and the volume when one of several."""
        described = f"'{self.description}'"
        return f"{described}, {self.volume.label}" if self.volume is not None else described

    @property
    def is_volume(self) -> bool:
        """Whether the series can be read as one volume (it has no problems)."""
        return not self.problems and self.geometry is not None

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
    """What :func:`scan_folder` found under :attr:`root`."""

    root: Path
    studies: tuple[StudyInfo, ...]
    skipped: tuple[SkippedFile, ...]

    @property
    def series(self) -> tuple[SeriesInfo, ...]:
        """Every series of every study."""
        return tuple(series for study in self.studies for series in study.series)


def scan_folder(path: str | Path, *, slice_tolerance_mm: float | None = None) -> ScanResult:
    """Scan a folder tree (or one file) for DICOM files and group them into series.

    Headers only: no pixel data is read. Hidden files and folders are skipped.

    Args:
        path: A folder (searched recursively) or a single DICOM file.
        slice_tolerance_mm: How far (mm) a slice may lie from the regular grid fitted to
            its series' positions; by default 0.2 mm or 5 % of the slice spacing,
            whichever is larger, at most 25 % of it (see :mod:`medi2i.dicom.stack`).

    Returns:
        The studies with their series (see :class:`SeriesInfo`), and the files that
        were skipped with the reason.

    Raises:
        InputError: ``path`` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root} does not exist; check the path and its spelling")
    records: list[FileRecord] = []
    skipped: list[SkippedFile] = []
    with warnings.catch_warnings():
        # invalid values are reported per file below; pydicom's warnings would repeat them
        warnings.simplefilter("ignore")
        for file in _files_under(root):
            record = read_file_record(file)
            if isinstance(record, SkippedFile):
                skipped.append(record)
            else:
                records.append(record)
        studies = _group(records, slice_tolerance_mm)
    return ScanResult(root=root, studies=studies, skipped=tuple(skipped))


def _files_under(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                yield Path(folder) / name


def _group(records: list[FileRecord], tolerance_mm: float | None) -> tuple[StudyInfo, ...]:

    by_series: dict[tuple[str, str], list[FileRecord]] = {}
    for record in records:
        by_series.setdefault((record.study_uid, record.series_uid), []).append(record)
    by_study: dict[str, list[SeriesInfo]] = {}
    first_of_study: dict[str, Dataset] = {}
    for (study_uid, _), members in by_series.items():
        images = [image for record in members for image in record.images]
        not_images = [
            (record.path, record.not_image or "") for record in members if record.not_image
        ]
        infos = _series_volumes(
            members[0].dataset, study_uid, images, not_images, tolerance_mm=tolerance_mm
        )
        by_study.setdefault(study_uid, []).extend(infos)
        first_of_study.setdefault(study_uid, members[0].dataset)
    return tuple(
        _study(study_uid, first_of_study[study_uid], series)
        for study_uid, series in by_study.items()
    )


def _series_volumes(
    dataset: Dataset,
    study_uid: str,
    images: list[ImageHeader],
    not_images: list[tuple[Path, str]],
    *,
    tolerance_mm: float | None,
) -> list[SeriesInfo]:
    """The series as one :class:`SeriesInfo`, or one per volume when it holds several."""
    from medi2i.dicom.stack import DUPLICATE_POSITIONS, series_info

    whole = series_info(dataset, study_uid, images, not_images, tolerance_mm=tolerance_mm)
    if not any(problem.text.startswith(DUPLICATE_POSITIONS) for problem in whole.problems):
        return [whole]
    for position, tag in enumerate(VOLUME_TAGS):
        groups = _partition(whole.images, position)
        if groups is None:
            continue
        volumes = [
            series_info(dataset, study_uid, members, not_images, tolerance_mm=tolerance_mm)
            for members in groups.values()
        ]
        if any(
            problem.text.startswith(DUPLICATE_POSITIONS)
            for volume in volumes
            for problem in volume.problems
        ):
            continue
        return [
            replace(
                volume,
                notes=tuple(dict.fromkeys(whole.notes + volume.notes)),
                volume=VolumeKey(
                    index, len(groups), tag, value, _volume_label(tag, index, value, volume)
                ),
            )
            for index, (value, volume) in enumerate(zip(groups, volumes, strict=True), start=1)
        ]
    return [whole]


def _partition(
    images: tuple[ImageHeader, ...], position: int
) -> dict[float, list[ImageHeader]] | None:
    """The images by their value of ``VOLUME_TAGS[position]``, in order of value, when
    that parts them into two or more stacks of the same slice positions; else ``None``."""
    groups: dict[float, list[ImageHeader]] = {}
    for image in images:
        value = image.volume_tags[position] if len(image.volume_tags) > position else None
        if value is None:
            return None
        groups.setdefault(value, []).append(image)
    if len(groups) < 2:
        return None
    places = {
        frozenset(
            tuple(round(coordinate, 2) for coordinate in image.position or ()) for image in members
        )
        for members in groups.values()
    }
    if len(places) != 1 or len({len(members) for members in groups.values()}) != 1:
        return None
    return dict(sorted(groups.items()))


def _volume_label(tag: str, index: int, value: float, volume: SeriesInfo) -> str:
    if tag == "EchoNumbers":
        times = {image.volume_tags[1] for image in volume.images}
        time = times.pop() if len(times) == 1 else None
        return f"echo {value:g}" + (f" (TE {time:g} ms)" if time is not None else "")
    return {
        "EchoTime": f"echo {index} (TE {value:g} ms)",
        "TemporalPositionIdentifier": f"time point {value:g}",
        "TriggerTime": f"phase {index} (trigger time {value:g} ms)",
        "AcquisitionNumber": f"acquisition {value:g}",
    }.get(tag, f"b = {value:g} s/mm2")


def _study(uid: str, dataset: Dataset, series: list[SeriesInfo]) -> StudyInfo:
    def order(info: SeriesInfo) -> tuple[int, str, int]:
        number = info.series_number if info.series_number is not None else 1 << 30
        return (number, info.description, info.volume.index if info.volume else 0)

    def value(keyword: str) -> str:
        try:
            return text(dataset, keyword)
        except InvalidValue:
            return ""

    return StudyInfo(
        study_instance_uid=uid,
        patient_id=value("PatientID"),
        patient_name=value("PatientName"),
        study_date=value("StudyDate"),
        description=value("StudyDescription"),
        series=tuple(sorted(series, key=order)),
    )
