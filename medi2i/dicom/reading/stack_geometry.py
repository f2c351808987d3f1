"""Whether the images of a series make one regular volume, and its grid.

A scanner's series is a volume when its slices share one orientation, matrix and pixel
spacing and their positions step evenly along one line. This module checks exactly
that from the headers, and says what is wrong otherwise:

- slices are ordered by their position projected on the slice normal
  (row direction x column direction), never by Instance Number;
- the slice spacing comes from the positions, never from Slice Thickness;
- duplicate positions, missing slices (a gap that is a multiple of the spacing),
  variable spacing (a run of at least three steps at one spacing followed by a run at
  another, told apart from missing slices and named where it changes), uneven spacing,
  positions off a line, mixed orientations, varying matrix or pixel spacing and a single
  slice are problems (the spacing is checked in :mod:`medi2i.dicom.reading.slice_spacing`);
  localizers (Image Type ``LOCALIZER``) are set aside with a note;
- copies of one file (the same SOP Instance UID and identical pixel data) are dropped
  with a note, or are a problem when their pixels differ
  (:mod:`medi2i.dicom.reading.duplicate_files`);
- an oblique stack gets its rotated affine; a stack with gantry tilt (the step between
  slices leans away from the normal) gets a sheared affine whose third column is that
  step, so every voxel keeps its exact position and nothing is resampled.

Slice positions need not be exact: scanners round them (GE to 0.1 mm, which puts the
slices of an oblique stack up to 0.09 mm off a straight line). A regular grid is fitted
to all positions by least squares (origin and step along the slice normal, one in-plane
offset) and the stack is a volume when every slice lies within the *slice tolerance* of
it; the volume is then placed on the fitted grid and the largest deviation is reported
(:attr:`~medi2i.dicom.reading.series_records.StackGeometry.position_residual_mm`). The
default tolerance is 0.2 mm or 5 % of the slice spacing, whichever is larger, but never
more than 25 % of the spacing, so that a missing slice (which puts slices half a spacing
off any regular grid) or a shifted slice is still refused; a selector's
``slice_tolerance_mm`` replaces it and is not capped (the reader warns when a stack is
read only because of it). When the in-plane offset drifts by more than the
tolerance, a line through all positions is fitted instead (gantry tilt). Positions
closer than 1e-3 mm along the normal are duplicates; direction cosines agree when within
1e-3.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from medi2i.dicom.reading.duplicate_files import without_copies
from medi2i.dicom.reading.file_records import ImageHeader
from medi2i.dicom.reading.header_parser import InvalidValue, integer
from medi2i.dicom.reading.series_records import Problem, SeriesInfo, StackGeometry
from medi2i.dicom.reading.slice_spacing import _LISTED, _along, _spacing_problems
from medi2i.dicom.reading.slice_spacing import DUPLICATE_POSITIONS as DUPLICATE_POSITIONS
from medi2i.dicom.reading.slice_spacing import MISSING_SLICES_ADVICE as MISSING_SLICES_ADVICE
from medi2i.dicom.reading.slice_spacing import POSITION_TOLERANCE_MM as POSITION_TOLERANCE_MM
from medi2i.dicom.reading.slice_spacing import SLICE_TOLERANCE_CAP as SLICE_TOLERANCE_CAP
from medi2i.dicom.reading.slice_spacing import SLICE_TOLERANCE_FRACTION as SLICE_TOLERANCE_FRACTION
from medi2i.dicom.reading.slice_spacing import SLICE_TOLERANCE_MM as SLICE_TOLERANCE_MM
from medi2i.dicom.reading.slice_spacing import slice_tolerance as slice_tolerance

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

ORIENTATION_TOLERANCE = 1e-3
"""Direction cosines that differ by more than this are different orientations."""
ORTHOGONAL_AXIS_DEG = 30.0
"""A normal within this angle of a patient axis labels the stack axial/coronal/sagittal."""
_SCOUT_PER_ORIENTATION = 2  # images per plane at most, in a localizer not marked as one
_T = TypeVar("_T")


@dataclass(frozen=True)
class StackAnalysis:
    """The outcome of :func:`analyse_stack`.

    Attributes:
        images: The slices in volume order (localizers removed); in Instance Number
            order when the geometry could not be worked out.
        geometry: The grid, when there are no problems.
        problems: Why the images are not one volume.
        notes: What was set aside or is unusual but readable.
        orientation: ``"axial"``, ``"sagittal"``, ``"coronal"``, ``"oblique"``,
            ``"mixed"`` or ``"none"``; an axis label is followed by the tilt of the
            slice normal off that axis when it is 0.5 degrees or more
            (``"axial (tilted 20 deg)"``).
    """

    images: tuple[ImageHeader, ...]
    geometry: StackGeometry | None
    problems: tuple[Problem, ...]
    notes: tuple[str, ...]
    orientation: str


def orientation_label(normal: Sequence[float] | np.ndarray) -> str:
    """``"axial"``, ``"coronal"`` or ``"sagittal"`` for a slice normal (LPS) within 30
    degrees (:data:`ORTHOGONAL_AXIS_DEG`) of the patient's S, P or L axis, else
    ``"oblique"``: a stack tilted 20 degrees off axial is axial, one tilted 45 degrees
    between axial and coronal is oblique."""
    vector = np.abs(np.asarray(normal, dtype=np.float64))
    vector /= np.linalg.norm(vector)
    axis = int(np.argmax(vector))
    if vector[axis] < math.cos(math.radians(ORTHOGONAL_AXIS_DEG)):
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def series_info(
    dataset: Dataset,
    study_uid: str,
    images: Sequence[ImageHeader],
    not_images: Sequence[tuple[Path, str]],
    *,
    tolerance_mm: float | None = None,
) -> SeriesInfo:
    """Summarise one series from its first file's header and all its images.

    ``tolerance_mm`` is how far a slice may lie from the fitted grid (see
    :func:`analyse_stack`).
    """
    from pydicom.uid import UID

    analysis = (
        analyse_stack(images, tolerance_mm=tolerance_mm) if images else _objects_only(not_images)
    )
    notes = list(analysis.notes)
    if images and not_images:
        notes.append(f"{len(not_images)} non-image object(s) set aside ({not_images[0][1]})")
    shown = analysis.images
    sop_class = _text(dataset, "SOPClassUID")
    return SeriesInfo(
        study_instance_uid=study_uid,
        series_instance_uid=_text(dataset, "SeriesInstanceUID"),
        modality=_text(dataset, "Modality"),
        description=_text(dataset, "SeriesDescription"),
        series_number=_integer(dataset, "SeriesNumber"),
        sop_class_uid=sop_class,
        sop_class_name=UID(sop_class).name if sop_class else "",
        frame_of_reference_uid=_text(dataset, "FrameOfReferenceUID") or None,
        number_of_images=len(shown) if shown else len(not_images),
        rows=_common(image.rows for image in shown),
        columns=_common(image.columns for image in shown),
        pixel_spacing=_common(image.pixel_spacing for image in shown),
        slice_spacing=analysis.geometry.slice_spacing if analysis.geometry else None,
        orientation=analysis.orientation,
        files=tuple(dict.fromkeys(image.path for image in shown))
        or tuple(path for path, _ in not_images),
        problems=analysis.problems,
        notes=tuple(notes),
        images=shown,
        geometry=analysis.geometry,
    )


def _objects_only(not_images: Sequence[tuple[Path, str]]) -> StackAnalysis:
    path, reason = not_images[0]
    more = f" (and {len(not_images) - 1} more objects)" if len(not_images) > 1 else ""
    problem = Problem(f"{path.name}: {reason}{more}", geometric=False)
    return StackAnalysis((), None, (problem,), (), "none")


def analyse_stack(
    images: Sequence[ImageHeader], *, tolerance_mm: float | None = None
) -> StackAnalysis:
    """Order the images of one series and check that they make one regular volume.

    Args:
        images: The images of one series.
        tolerance_mm: How far a slice may lie from the fitted grid; the default of
            :func:`slice_tolerance` when ``None``.
    """
    unique, duplicates = without_copies(images, _LISTED)
    if duplicates.problems:
        fallback = tuple(sorted(images, key=_instance_order))
        return StackAnalysis(fallback, None, duplicates.problems, (), "none")
    kept, notes = _without_localizers(unique)
    notes = duplicates.notes + notes
    fallback = tuple(sorted(kept, key=_instance_order))
    problems = _defects(kept) or _missing_geometry(kept)
    if problems:
        return StackAnalysis(fallback, None, problems, notes, "none")
    orientations = _orientation_groups(kept)
    problems = _invalid_orientation(orientations)
    if problems:
        return StackAnalysis(fallback, None, problems, notes, "none")
    label = _plane(orientations[0][0], listed=True) if len(orientations) == 1 else "mixed"
    problems = _scout(kept, orientations) or _mixed(kept, orientations)
    if problems:
        return StackAnalysis(fallback, None, problems, notes, label)
    normal = _normal(orientations[0][0])
    ordered = tuple(sorted(kept, key=lambda im: (_along(im, normal), _instance_order(im))))
    problems = _single(ordered) or _spacing_problems(ordered, normal, tolerance_mm)
    if problems:
        return StackAnalysis(ordered, None, problems, notes, label)
    geometry, problems = _geometry(ordered, normal, tolerance_mm)
    if geometry is not None and geometry.position_residual_mm > POSITION_TOLERANCE_MM:
        notes += (
            f"slice positions lie up to {geometry.position_residual_mm:.3g} mm off a "
            "regular grid (rounded positions?): the volume is placed on the grid fitted "
            "to all of them",
        )
    if geometry is not None and geometry.tilt_deg > 0.01:
        notes += (
            f"gantry tilt of {geometry.tilt_deg:.2f} degrees: the affine is sheared to keep "
            "every slice's exact position (nothing is resampled)",
        )
    return StackAnalysis(ordered, geometry, problems, notes, label)


def _without_localizers(
    images: Sequence[ImageHeader],
) -> tuple[list[ImageHeader], tuple[str, ...]]:
    localizers = [image for image in images if "LOCALIZER" in image.image_type]
    if not localizers or len(localizers) == len(images):
        return list(images), ()
    kept = [image for image in images if "LOCALIZER" not in image.image_type]
    names = _names(localizers)
    return kept, (f"{len(localizers)} localizer image(s) set aside: {names}",)


def _defects(images: Sequence[ImageHeader]) -> tuple[Problem, ...]:
    broken = [image for image in images if image.defect]
    if not broken:
        return ()
    by_defect: dict[str, list[ImageHeader]] = {}
    for image in broken:
        by_defect.setdefault(image.defect or "", []).append(image)
    return tuple(
        Problem(f"{_names(members)}: {defect}", geometric=False)
        for defect, members in by_defect.items()
    )


def _missing_geometry(images: Sequence[ImageHeader]) -> tuple[Problem, ...]:
    if all("LOCALIZER" in image.image_type for image in images) and len(images) > 0:
        return (
            Problem(
                f"a localizer (scout) series of {len(images)} image(s), not a volume",
                geometric=False,
                scout=True,
            ),
        )
    unplaced = [image for image in images if image.position is None or image.orientation is None]
    if unplaced:
        text = (
            f"{_names(unplaced)}: no Image Position or Orientation (Patient); a projection "
            "image (radiograph, scout) or secondary capture, not a slice of a volume"
        )
        return (Problem(text, geometric=False),)
    unscaled = [image for image in images if image.pixel_spacing is None]
    if unscaled:
        text = f"{_names(unscaled)}: no Pixel Spacing, so the in-plane voxel size is unknown"
        return (Problem(text),)
    # a spacing is a distance: a negative one (a non-conformant header) would mirror
    # the volume against its orientation, a zero one place every pixel at one point
    unsigned = [
        image
        for image in images
        if not all(value > 0 for value in image.pixel_spacing or ())  # NaN fails too
    ]
    if unsigned:
        spacing = "\\".join(f"{value:g}" for value in unsigned[0].pixel_spacing or ())
        text = (
            f"{_names(unsigned)}: Pixel Spacing {spacing} is not two positive distances in "
            "mm (a non-conformant header); fix or re-export the series"
        )
        return (Problem(text),)
    return ()


def _orientation_groups(
    images: Sequence[ImageHeader],
) -> list[tuple[tuple[float, ...], list[ImageHeader]]]:
    groups: list[tuple[tuple[float, ...], list[ImageHeader]]] = []
    for image in images:
        assert image.orientation is not None
        for cosines, members in groups:
            if (
                max(abs(a - b) for a, b in zip(cosines, image.orientation, strict=False))
                <= ORIENTATION_TOLERANCE
            ):
                members.append(image)
                break
        else:
            groups.append((image.orientation, [image]))
    return sorted(groups, key=lambda group: -len(group[1]))


def _invalid_orientation(
    groups: Sequence[tuple[tuple[float, ...], list[ImageHeader]]],
) -> tuple[Problem, ...]:
    for cosines, members in groups:
        row, column = np.array(cosines[:3]), np.array(cosines[3:])
        lengths = (np.linalg.norm(row), np.linalg.norm(column))
        if min(lengths) < 0.99 or max(lengths) > 1.01 or abs(row @ column) > 0.01:
            values = "\\".join(f"{value:g}" for value in cosines)
            text = (
                f"{_names(members)}: invalid Image Orientation (Patient) {values}: not two "
                "perpendicular unit vectors"
            )
            return (Problem(text, geometric=False),)
    return ()


def _scout(
    images: Sequence[ImageHeader],
    groups: Sequence[tuple[tuple[float, ...], list[ImageHeader]]],
) -> tuple[Problem, ...]:
    """A localizer that is not marked as one: a few images, each plane its own way."""
    if len(groups) < 2 or any(len(members) > _SCOUT_PER_ORIENTATION for _, members in groups):
        return ()
    what = "frames" if len({image.path for image in images}) == 1 else "images"
    planes = ", ".join(_plane(cosines) for cosines, _ in groups[:_LISTED])
    more = f" and {len(groups) - _LISTED} more" if len(groups) > _LISTED else ""
    text = (
        f"localizer: {len(images)} {what} in {len(groups)} orientations ({planes}{more}), "
        "a scout for planning, not a volume"
    )
    return (Problem(text, geometric=False, scout=True),)


def _plane(cosines: Sequence[float], *, listed: bool = False) -> str:
    """``"coronal"``, or ``"coronal tilted 12 deg"`` when the normal leans off the axis
    (``"coronal (tilted 12 deg)"`` for a series' :attr:`SeriesInfo.orientation`)."""
    normal = _normal(cosines)
    label = orientation_label(normal)
    off = math.degrees(math.acos(min(1.0, float(np.abs(normal).max()))))
    if off < 0.5 or label == "oblique":
        return label
    return f"{label} (tilted {off:.0f} deg)" if listed else f"{label} tilted {off:.0f} deg"


def _mixed(
    images: Sequence[ImageHeader],
    groups: Sequence[tuple[tuple[float, ...], list[ImageHeader]]],
) -> tuple[Problem, ...]:
    problems = []
    if len(groups) > 1:
        parts = [
            f"{len(members)} {_plane(cosines)} ({_names(members, 1)})"
            for cosines, members in groups[:_LISTED]
        ]
        if len(groups) > _LISTED:
            parts.append(f"{len(groups) - _LISTED} more orientations")
        problems.append(
            Problem(
                f"mixed orientations: {', '.join(parts)}; a volume needs one orientation "
                "(a localizer or several acquisitions in one series?)"
            )
        )
    frames = Counter(image.frame_of_reference_uid or "no UID" for image in images)
    if len(frames) > 1:
        parts = [f"{count} in {uid}" for uid, count in frames.most_common(_LISTED)]
        problems.append(
            Problem(
                f"slices in {len(frames)} Frames of Reference ({', '.join(parts)}); their "
                "positions are in different coordinate systems and do not make one volume "
                "(slices of another scan or registration mixed into the series?)"
            )
        )
    matrices = Counter(f"{image.columns}x{image.rows}" for image in images)
    if len(matrices) > 1:
        problems.append(Problem(f"varying matrix (columns x rows): {_counts(matrices)}"))
    spacings = Counter(
        "x".join(f"{value:g}" for value in image.pixel_spacing or ()) for image in images
    )
    if len(spacings) > 1:
        problems.append(Problem(f"varying pixel spacing (mm): {_counts(spacings)}"))
    return tuple(problems)


def _single(images: Sequence[ImageHeader]) -> tuple[Problem, ...]:
    if len(images) > 1:
        return ()
    text = (
        f"a single slice ({images[0].label}); a volume needs at least two slices: point at "
        "the folder holding the whole series"
    )
    return (Problem(text),)


def _geometry(
    images: Sequence[ImageHeader], normal: np.ndarray, tolerance_mm: float | None
) -> tuple[StackGeometry | None, tuple[Problem, ...]]:
    positions = np.array([image.position for image in images], dtype=np.float64)
    origin, step, off = _fit_grid(positions, normal)
    limit = slice_tolerance(float(step @ normal), tolerance_mm)
    if off > limit:
        # the in-plane offset drifts: a gantry tilt, when all positions are on a line
        origin, step, off = _fit_line(positions)
    spacing = float(step @ normal)
    if off > limit:
        text = (
            f"slice positions are not on a line: one lies {off:.3g} mm away from the line "
            f"fitted to all slices, more than the {limit:.3g} mm tolerated (shifted slices, "
            "or several stacks)"
        )
        return None, (Problem(text),)
    first = images[0]
    assert first.orientation is not None
    assert first.pixel_spacing is not None
    row_spacing, column_spacing = first.pixel_spacing
    row, column = _unit(first.orientation[:3]), _unit(first.orientation[3:])
    affine = np.eye(4)
    affine[:3, 0] = row * column_spacing
    affine[:3, 1] = column * row_spacing
    affine[:3, 2] = step
    affine[:3, 3] = origin
    tilt = math.degrees(math.acos(min(1.0, spacing / float(np.linalg.norm(step)))))
    geometry = StackGeometry(
        affine_lps=tuple(tuple(float(v) for v in line) for line in affine),
        slice_spacing=spacing,
        normal=(float(normal[0]), float(normal[1]), float(normal[2])),
        tilt_deg=tilt,
        position_residual_mm=off,
    )
    return geometry, ()


def _fit_grid(positions: np.ndarray, normal: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Origin, step and largest deviation (mm) of the untilted grid closest to ``positions``.

    The slices step along the normal (least squares of their distances along it) and
    share one in-plane offset (the mean of theirs).
    """
    along = positions @ normal
    index = np.arange(len(positions), dtype=np.float64)
    spacing, start = np.polyfit(index, along, 1)
    offset = (positions - along[:, None] * normal).mean(axis=0)
    grid = offset + (start + spacing * index)[:, None] * normal
    off = float(np.linalg.norm(positions - grid, axis=1).max())
    return grid[0], spacing * normal, off


def _fit_line(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Origin, step and largest deviation (mm) of the evenly stepped line closest to them."""
    index = np.arange(len(positions), dtype=np.float64)
    design = np.stack([np.ones_like(index), index], axis=1)
    (origin, step), *_ = np.linalg.lstsq(design, positions, rcond=None)
    off = float(np.linalg.norm(positions - (origin + index[:, None] * step), axis=1).max())
    return origin, step, off


def _normal(cosines: Sequence[float]) -> np.ndarray:
    return np.asarray(_unit(np.cross(_unit(cosines[:3]), _unit(cosines[3:]))))


def _unit(vector: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float64)
    return array / np.linalg.norm(array)


def _instance_order(image: ImageHeader) -> tuple[int, str, int]:
    number = image.instance_number if image.instance_number is not None else 1 << 30
    return (number, image.path.name, image.frame)


def _names(images: Sequence[ImageHeader], listed: int = _LISTED) -> str:
    labels = [image.label for image in images[:listed]]
    more = f" and {len(images) - listed} more" if len(images) > listed else ""
    return ", ".join(labels) + more


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} ({count} images)" for key, count in counter.most_common())


def _common(values: Iterable[_T]) -> _T | None:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def _text(dataset: Dataset, keyword: str) -> str:
    try:
        value = dataset.get(keyword)
    except Exception:  # a value pydicom cannot decode; the series still gets listed
        return ""
    return "" if value is None else str(value).strip()


def _integer(dataset: Dataset, keyword: str) -> int | None:
    try:
        return integer(dataset, keyword)
    except InvalidValue:
        return None
