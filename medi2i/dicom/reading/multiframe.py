"""Enhanced multi-frame images: the geometry of each frame from its functional groups.

Enhanced CT, MR and PET files (and their Legacy Converted forms) hold a whole series in
one file. What a single-frame file says once (position, orientation, pixel spacing,
rescale) is said per frame in the Per-frame Functional Groups Sequence, or once for all
frames in the Shared Functional Groups Sequence; a frame's own value wins. The frames
need not be stored in slice order, so the reader sorts frames by position and checks
them exactly as it does single-frame slices. One file may hold several volumes: stacks
(Stack ID of the Frame Content), time points (Temporal Position Index) or echoes
(Effective Echo Time of the MR Echo group); each frame's values of these split the file
into volumes as Echo Numbers or Temporal Position Identifier split a series of
single-frame files (:mod:`medi2i.dicom.reading.series_scan`).

RT Dose files are multi-frame without functional groups: the first frame's Image
Position (Patient) and the Grid Frame Offset Vector (3004,000C) place the frames along
the slice normal (:func:`grid_frame_positions`). Siemens mosaics, tiles of one image, are
read in :mod:`medi2i.dicom.reading.mosaic`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medi2i.dicom.reading.header_parser import (
    InvalidValue,
    decimals,
    integer,
    rescale_slope,
    values_of,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_GROUPS = ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")
_FRAME_TYPE_SEQUENCES = (
    "CTImageFrameTypeSequence",
    "MRImageFrameTypeSequence",
    "PETFrameTypeSequence",
)


@dataclass(frozen=True)
class FrameGeometry:
    """What one frame of an enhanced multi-frame file says about itself.

    Attributes:
        index: 0-based frame number in the file (the order of the pixel data).
        position: Image Position (Patient) of the frame's first pixel, LPS mm.
        orientation: Image Orientation (Patient), six direction cosines.
        pixel_spacing: Row spacing and column spacing in mm, as DICOM orders them.
        slice_thickness: Nominal slice thickness in mm.
        rescale: Rescale Slope and Rescale Intercept.
        frame_type: Frame Type values (e.g. ``("ORIGINAL", "PRIMARY", "LOCALIZER")``).
        stack_id: Stack ID of the Frame Content, when the file holds several stacks.
        temporal_index: Temporal Position Index, when it holds several time points.
        echo_time: Effective Echo Time (ms) of the MR Echo functional group, when the
            file holds several echoes.
    """

    index: int
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, ...] | None
    slice_thickness: float | None
    rescale: tuple[float, float]
    frame_type: tuple[str, ...]
    stack_id: str | None
    temporal_index: int | None
    echo_time: float | None = None


def has_functional_groups(dataset: Dataset) -> bool:
    """Whether ``dataset`` describes its frames in functional groups (enhanced IODs)."""
    return "PerFrameFunctionalGroupsSequence" in dataset


def grid_frame_positions(dataset: Dataset, frames: int) -> list[tuple[float, ...]] | None:
    """Each frame's Image Position (Patient) from the Grid Frame Offset Vector (RT Dose).

    The offsets are distances (mm) along the slice normal (row x column direction).
    The standard allows them relative to the first frame (the first offset is 0) or
    absolute along the normal (the first equals the first frame's position along it);
    both are taken relative to the first offset, which is the first frame's plane.

    Returns:
        ``frames`` positions, or ``None`` when the file has no offsets, position or
        orientation.

    Raises:
        InvalidValue: The offsets are not ``frames`` finite numbers.
    """
    values = values_of(dataset, "GridFrameOffsetVector")
    position = decimals(dataset, "ImagePositionPatient", 3)
    cosines = decimals(dataset, "ImageOrientationPatient", 6)
    if not values or position is None or cosines is None:
        return None
    try:
        offsets = [float(str(value)) for value in values]
    except (TypeError, ValueError):
        raise InvalidValue("GridFrameOffsetVector", f"{list(values)} are not numbers") from None
    if len(offsets) != frames or not all(math.isfinite(offset) for offset in offsets):
        raise InvalidValue(
            "GridFrameOffsetVector", f"{len(offsets)} finite offsets for {frames} frames"
        )
    normal = np.cross(cosines[:3], cosines[3:])
    length = float(np.linalg.norm(normal))
    if length == 0.0:
        return None  # the orientation check reports the cosines
    normal /= length
    start = np.asarray(position, dtype=np.float64)
    return [tuple(float(v) for v in start + (offset - offsets[0]) * normal) for offset in offsets]


def frame_geometries(dataset: Dataset, frames: int) -> list[FrameGeometry]:
    """The geometry of each of the ``frames`` frames of an enhanced multi-frame header.

    Raises:
        InvalidValue: A functional group holds a value that is not a number, or the
            Per-frame Functional Groups Sequence does not have one item per frame.
    """
    per_frame = list(dataset.PerFrameFunctionalGroupsSequence)
    if len(per_frame) != frames:
        raise InvalidValue(
            "PerFrameFunctionalGroupsSequence",
            f"{len(per_frame)} items for {frames} frames (Number of Frames)",
        )
    shared_items = dataset.get("SharedFunctionalGroupsSequence") or [None]
    shared = shared_items[0]
    return [_frame(index, item, shared) for index, item in enumerate(per_frame)]


def _frame(index: int, own: Dataset, shared: Dataset | None) -> FrameGeometry:
    def look_up(sequence: str, keyword: str) -> Dataset | None:
        # the frame's own functional group overrides the shared one
        for group in (own, shared):
            if group is None or sequence not in group or not group[sequence].value:
                continue
            item: Dataset = group[sequence].value[0]
            if keyword in item:
                return item
        return None

    def numbers(sequence: str, keyword: str, count: int) -> tuple[float, ...] | None:
        item = look_up(sequence, keyword)
        return None if item is None else decimals(item, keyword, count)

    thickness = numbers("PixelMeasuresSequence", "SliceThickness", 1)
    transformation = look_up("PixelValueTransformationSequence", "RescaleSlope")
    slope = None if transformation is None else rescale_slope(transformation)
    intercept = numbers("PixelValueTransformationSequence", "RescaleIntercept", 1)
    return FrameGeometry(
        index=index,
        position=numbers("PlanePositionSequence", "ImagePositionPatient", 3),
        orientation=numbers("PlaneOrientationSequence", "ImageOrientationPatient", 6),
        pixel_spacing=numbers("PixelMeasuresSequence", "PixelSpacing", 2),
        slice_thickness=thickness[0] if thickness else None,
        rescale=(slope or 1.0, intercept[0] if intercept else 0.0),
        frame_type=_frame_type(own, shared),
        stack_id=_content_value(own, "StackID"),
        temporal_index=_temporal_index(own),
        echo_time=_echo_time(look_up("MREchoSequence", "EffectiveEchoTime")),
    )


def _frame_type(own: Dataset, shared: Dataset | None) -> tuple[str, ...]:
    for group in (own, shared):
        for sequence in _FRAME_TYPE_SEQUENCES:
            if group is not None and group.get(sequence):
                values = group[sequence].value[0].get("FrameType") or ()
                return tuple(str(value) for value in values)
    return ()


def _echo_time(item: Dataset | None) -> float | None:
    """The Effective Echo Time (ms) of an MR Echo item; ``None`` when absent or not a
    finite number (it only tells echoes apart, so a bad value must not make the frame
    unreadable)."""
    if item is None:
        return None
    try:
        value = float(item.EffectiveEchoTime)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _content_value(frame_group: Dataset, keyword: str) -> str | None:
    content = frame_group.get("FrameContentSequence")
    if not content or keyword not in content[0]:
        return None
    return str(content[0][keyword].value)


def _temporal_index(frame_group: Dataset) -> int | None:
    content = frame_group.get("FrameContentSequence")
    if not content or "TemporalPositionIndex" not in content[0]:
        return None
    return integer(content[0], "TemporalPositionIndex")
