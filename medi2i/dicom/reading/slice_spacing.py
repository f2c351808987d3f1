"""Whether the slices of a stack are evenly spaced, and what is wrong when they are not.

The slices, already ordered along the normal of :mod:`medi2i.dicom.reading.stack_geometry`,
are spaced by their positions, never by Slice Thickness. A stack is evenly spaced when a
least-squares step fits every position within the *slice tolerance*
(:func:`slice_tolerance`). Otherwise the problem is named: duplicate positions (or copies
of one image under new UIDs), missing slices (a gap that is a multiple of the spacing),
variable spacing (a run of at least three steps at one spacing followed by a run at
another, named where it changes) or uneven spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from medi2i.dicom.reading.duplicate_files import copies_of_one_image
from medi2i.dicom.reading.file_records import ImageHeader
from medi2i.dicom.reading.series_records import Problem

SLICE_TOLERANCE_MM = 0.2
"""Distance (mm) a slice may lie from the fitted regular grid, at the least."""
SLICE_TOLERANCE_FRACTION = 0.05
"""... or this fraction of the slice spacing, when that is larger."""
SLICE_TOLERANCE_CAP = 0.25
"""... but never more than this fraction of the spacing (a gap puts slices 0.5 off)."""
POSITION_TOLERANCE_MM = 1e-3
"""Positions closer than this (mm) along the normal are duplicates."""
MISSING_SLICES_ADVICE = "copy or export the whole series again"
"""What the missing-slices message advises, for files on disk (the DICOM node, whose
series come from a sender, replaces it)."""
DUPLICATE_POSITIONS = "duplicate positions"
"""How the problem of slices at one position starts (a series of several volumes)."""
_LISTED = 3  # examples a message names before it says "and N more"
_MIN_RUN = 3  # steps at one spacing that make a run, when the spacing changes
_Run = tuple[int, int]  # a run of slice steps: the index of its first step, and its stop


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


def _along(image: ImageHeader, normal: np.ndarray) -> float:
    assert image.position is not None
    return float(np.dot(image.position, normal))
