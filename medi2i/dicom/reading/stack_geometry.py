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
  slice are problems; localizers (Image Type ``LOCALIZER``) are set aside with a note;
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
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from medi2i.dicom.reading.duplicate_files import copies_of_one_image, without_copies
from medi2i.dicom.reading.file_records import ImageHeader
from medi2i.dicom.reading.header_parser import InvalidValue, integer
from medi2i.dicom.reading.series_records import Problem, SeriesInfo, StackGeometry

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

SLICE_TOLERANCE_MM = 0.2
"""Distance (mm) a slice may lie from the fitted regular grid, at the least."""
SLICE_TOLERANCE_FRACTION = 0.05
"""... or this fraction of the slice spacing, when that is larger."""
SLICE_TOLERANCE_CAP = 0.25
"""... but never more than this fraction of the spacing (a gap puts slices 0.5 off)."""
POSITION_TOLERANCE_MM = 1e-3
"""Positions closer than this (mm) along the normal are duplicates."""
ORIENTATION_TOLERANCE = 1e-3
"""Direction cosines that differ by more than this are different orientations."""
ORTHOGONAL_AXIS_DEG = 30.0
"""A normal within this angle of a patient axis labels the stack axial/coronal/sagittal."""
MISSING_SLICES_ADVICE = "copy or export the whole series again"
"""What the missing-slices message advises, for files on disk (the DICOM node, whose
series come from a sender, replaces it)."""
DUPLICATE_POSITIONS = "duplicate positions"
"""How the problem of slices at one position starts (a series of several volumes)."""
"""How the note on dropped copies of a file starts (the reader repeats it as a warning)."""
_SCOUT_PER_ORIENTATION = 2  # images per plane at most, in a localizer not marked as one
_LISTED = 3  # examples a message names before it says "and N more"
_MIN_RUN = 3  # steps at one spacing that make a run, when the spacing changes
_T = TypeVar("_T")
_Run = tuple[int, int]  # a run of slice steps: the index of its first step, and its stop


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


def slice_tolerance(spacing: float, given: float | None = None) -> float:
    """How far (mm) a slice may lie from the regular grid of a stack spaced ``spacing`` mm.

    ``given`` (a user's choice) when set; otherwise 0.2 mm or 5 % of the spacing,
    whichever is larger, capped at 25 % of the spacing.

    Example:
        >>> slice_tolerance(7.0), slice_tolerance(2.0), slice_tolerance(0.5)
        (0.35000000000000003, 0.2, 0.125)
    """
    if given is not None:
        return given
    spacing = abs(spacing)
    return min(
        max(SLICE_TOLERANCE_MM, SLICE_TOLERANCE_FRACTION * spacing),
        SLICE_TOLERANCE_CAP * spacing,
    )


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


def _spacing_problems(
    images: Sequence[ImageHeader], normal: np.ndarray, tolerance_mm: float | None
) -> tuple[Problem, ...]:
    along = np.array([_along(image, normal) for image in images])
    steps = np.diff(along)
    duplicates = np.flatnonzero(steps < POSITION_TOLERANCE_MM)
    if duplicates.size:
        first = int(duplicates[0])
        distinct = len(images) - duplicates.size
        why = "several echoes, phases or time points in one series?"
        if copies_of_one_image(images[first], images[first + 1]):
            why = (
                "they are copies of the same image, with identical pixel data under new "
                "SOP Instance UIDs: the series exported twice into this folder? keep one "
                "export and move the other away"
            )
        text = (
            f"{DUPLICATE_POSITIONS}: {images[first].label} and {images[first + 1].label} are "
            f"both at {along[first]:.2f} mm along the slice normal ({len(images)} images at "
            f"{distinct} positions: {why})"
        )
        return (Problem(text),)
    fitted, off = _fit_steps(along)
    limit = slice_tolerance(fitted, tolerance_mm)
    if off <= limit and np.all(np.abs(steps - fitted) < 0.5 * fitted):
        return ()
    changes = _spacing_changes(steps, limit)
    if changes:
        return (Problem(_variable_message(images, steps, changes)),)
    spacing = float(np.median(steps))
    uneven = np.flatnonzero(np.abs(steps - spacing) > limit)
    if not uneven.size:  # a slow drift: name the largest step
        uneven = np.array([int(np.argmax(np.abs(steps - spacing)))])
    return (Problem(_uneven_message(images, steps, spacing, uneven, off, limit)),)


def _regular_runs(steps: np.ndarray, limit: float) -> list[_Run]:
    """``(first, stop)`` step indices of the runs of at least :data:`_MIN_RUN` steps that
    agree within ``limit`` mm of their mean."""
    runs: list[_Run] = []
    first = 0
    for k in range(1, steps.size + 1):
        if k < steps.size and abs(steps[k] - steps[first:k].mean()) <= limit:
            continue
        if k - first >= _MIN_RUN:
            runs.append((first, k))
        first = k
    return runs


def _spacing_changes(steps: np.ndarray, limit: float) -> list[tuple[_Run, _Run]]:
    """The pairs of regular runs of steps where the second is at another spacing.

    The runs may be separated by one transition step (slices of two thicknesses that
    abut put their centres half of each apart), and the step must change abruptly (by
    more than ``limit`` mm), so that a slow drift is not taken for a change.
    """
    runs = _regular_runs(steps, limit)
    changes: list[tuple[_Run, _Run]] = []
    for before, after in pairwise(runs):
        abrupt = abs(steps[after[0]] - steps[before[1] - 1]) > limit
        changed = abs(_mean_step(steps, after) - _mean_step(steps, before)) > limit
        if after[0] - before[1] <= 1 and abrupt and changed:
            changes.append((before, after))
    return changes


def _mean_step(steps: np.ndarray, run: _Run) -> float:
    return float(steps[run[0] : run[1]].mean())


def _variable_message(
    images: Sequence[ImageHeader], steps: np.ndarray, changes: Sequence[tuple[_Run, _Run]]
) -> str:
    before, after = changes[0]
    more = f" ({len(changes)} changes in all)" if len(changes) > 1 else ""
    return (
        f"variable slice spacing: the spacing changes from {_mean_step(steps, before):.3g} mm "
        f"to {_mean_step(steps, after):.3g} mm between {images[before[1]].label} and "
        f"{images[after[0] + 1].label}{more}, a variable-spacing acquisition, not missing "
        "slices; medi2i reads evenly spaced stacks only: resample the series to one "
        "spacing (dcm2niix, for one, writes an equalized copy) or copy the slices of one "
        "spacing into a folder of their own"
    )


def _fit_steps(along: np.ndarray) -> tuple[float, float]:
    """Least-squares step of ``along`` (one value per slice) and the largest residual."""
    index = np.arange(along.size, dtype=np.float64)
    step, start = np.polyfit(index, along, 1)
    return float(step), float(np.abs(along - (start + step * index)).max())


def _uneven_message(
    images: Sequence[ImageHeader],
    steps: np.ndarray,
    spacing: float,
    uneven: np.ndarray,
    off: float,
    limit: float,
) -> str:
    ratios = steps[uneven] / spacing
    missing = np.round(ratios)
    if np.all((missing >= 2) & (np.abs(ratios - missing) < 0.1)):
        gaps = [
            f"{int(count) - 1} between {images[k].label} and {images[k + 1].label}"
            for k, count in zip(uneven[:_LISTED], missing[:_LISTED], strict=False)
        ]
        more = f" and {uneven.size - _LISTED} more gaps" if uneven.size > _LISTED else ""
        return (
            f"missing slices: {int((missing - 1).sum())} slice(s) missing in a stack spaced "
            f"{spacing:.4g} mm ({'; '.join(gaps)}{more}); {MISSING_SLICES_ADVICE}"
        )
    return (
        f"uneven slice spacing: steps from {steps.min():.4g} to {steps.max():.4g} mm "
        f"(mostly {spacing:.4g} mm), first at {images[int(uneven[0])].label}; the slices "
        f"do not lie on a regular grid (one lies {off:.3g} mm off the grid fitted to all "
        f"positions, more than the {limit:.3g} mm tolerated)"
    )


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


def _along(image: ImageHeader, normal: np.ndarray) -> float:
    assert image.position is not None
    return float(np.dot(image.position, normal))


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
