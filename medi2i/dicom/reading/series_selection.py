"""Pick one series out of a scanned folder by rules a user writes.

The same rules serve the command line (``medi2i dicom ls PATH --modality CT``) and
workflow YAML files, where they read::

    series:
      modality: CT
      description: "(?i)bone|sharp"   # a regular expression, searched
      orientation: axial
      largest: true

A series matches when it passes every rule given. Only series that can be read as one
volume take part, except with ``series_uid``, which names one series outright (and a
series with problems then fails with its problems). When several series match,
``largest: true`` takes the one with the most voxels; otherwise that is an error that
lists them, since reading the wrong series silently is worse than asking. For the same
reason ``largest`` refuses a tie: when several series share the most voxels (and
slices), the message lists them and asks for one by its series UID.

A series of several volumes (echoes, time points, b-values; see
:mod:`medi2i.dicom.reading.series_scan`) is listed once per volume; ``volume: 2`` picks the second,
and without it reading such a series fails with a message that lists its volumes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medi2i.dicom.reading.series_records import SeriesInfo
from medi2i.errors import InputError
from medi2i.text import one_line

Orientation = Literal["axial", "sagittal", "coronal", "oblique"]
_LISTED = 8  # series named in an error before "and N more"


class SeriesSelector(BaseModel):
    """Rules that pick one series of a DICOM folder; unknown keys are rejected.

    Attributes:
        modality: Modality, compared without case (``"CT"``, ``"MR"``, ``"PT"``).
        description: Regular expression searched in the Series Description, without
            case (``"t1"`` matches ``"T1 MPRAGE"``; anchor it with ``^...$`` to match
            the whole description).
        orientation: ``"axial"``, ``"sagittal"``, ``"coronal"`` (slice normal within
            30 degrees of that axis, so a stack tilted 20 degrees off axial is axial) or
            ``"oblique"`` (further than 30 degrees from every axis).
        series_uid: Series Instance UID of the series, exactly; overrides nothing,
            the other rules must match too.
        largest: When several series match, take the one with the most voxels
            instead of failing; several series tied for the most are refused.
        volume: For a series of several volumes (echoes, time points, b-values), the
            1-based number of the one to read, as ``medi2i dicom ls`` lists them; only
            such series match it.
        slice_tolerance_mm: Not a rule but how series are checked: how far (mm) a slice
            may lie from the regular grid fitted to all slice positions of its series
            (positions rounded by the scanner); by default 0.2 mm or 5 % of the slice
            spacing, whichever is larger, at most 25 % of it. A value given here is not
            capped: a stack read only because of it warns
            (:class:`~medi2i.dicom.reading.series_volume.SliceToleranceWarning`).

    Example:
        >>> SeriesSelector(modality="CT", description="head", largest=True).modality
        'CT'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    modality: str | None = Field(default=None, description="Modality, e.g. CT or MR.")
    description: str | None = Field(
        default=None, description="Regular expression searched in the Series Description."
    )
    orientation: Orientation | None = Field(
        default=None,
        description=(
            "Slice orientation: axial, sagittal, coronal (slice normal within 30 degrees "
            "of that axis) or oblique (further from every axis)."
        ),
    )
    series_uid: str | None = Field(default=None, description="Series Instance UID, exactly.")
    largest: bool = Field(
        default=False,
        description=("Take the series with the most voxels when several match; a tie is refused."),
    )
    volume: int | None = Field(
        default=None,
        ge=1,
        description="Number (from 1) of the volume in a series of several (echo, time point).",
    )
    slice_tolerance_mm: float | None = Field(
        default=None,
        gt=0,
        description="How far (mm) a slice may lie from the regular grid fitted to all slices.",
    )

    @field_validator("description")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return pattern

    def rules(self) -> str:
        """The rules in words, for messages (``"modality=CT, largest"``)."""
        parts = [
            f"{name}={value!r}" if name == "description" else f"{name}={value}"
            for name, value in self.model_dump(exclude_defaults=True).items()
            if name not in ("largest", "slice_tolerance_mm")
        ]
        if self.largest:
            parts.append("largest")
        return ", ".join(parts) or "no rules"

    def matches(self, series: SeriesInfo) -> bool:
        """Whether ``series`` passes every rule (not whether it can be read)."""
        if self.series_uid is not None and series.series_instance_uid != self.series_uid:
            return False
        if self.modality is not None and series.modality.upper() != self.modality.upper():
            return False
        if self.orientation is not None and series.plane != self.orientation:
            return False
        if self.volume is not None and (
            series.volume is None or series.volume.index != self.volume
        ):
            return False
        return self.description is None or bool(
            re.search(self.description, series.description, re.IGNORECASE)
        )


def matching_series(
    series: Sequence[SeriesInfo], selector: SeriesSelector | None = None
) -> list[SeriesInfo]:
    """The series that pass the rules and can be read (any, for ``series_uid``)."""
    selector = selector or SeriesSelector()
    return [
        info
        for info in series
        if selector.matches(info) and (info.is_volume or selector.series_uid is not None)
    ]


def select_series(
    series: Sequence[SeriesInfo], selector: SeriesSelector | None = None
) -> SeriesInfo:
    """The one series ``selector`` picks.

    Args:
        series: Series of a scan (:attr:`medi2i.dicom.reading.series_records.ScanResult.series`).
        selector: The rules; without any, the only series that can be a volume.

    Returns:
        The chosen series. When no readable series matches but exactly one series of
        images does, that one is returned, so that reading it reports its problems.

    Raises:
        InputError: No series matches (the message lists what there is, and why
            matching series cannot be read), or several match and ``largest`` is off.
    """
    selector = selector or SeriesSelector()
    found = matching_series(series, selector)
    if not found:
        images = [info for info in series if selector.matches(info) and info.images]
        if len(images) == 1:
            return images[0]  # reading it fails with its own problems, the clearest message
        raise InputError(_none_message(series, selector))
    matching = found
    if selector.volume is None and _volumes_of_one_series(found):
        found = found[:1]  # the volumes of one series: which one is asked below
    if len(found) == 1:
        chosen = found[0]
    elif selector.largest:
        chosen = _largest(found)
    else:
        chosen = None
    # a volume of a series of several is taken when the rules (an orientation) leave
    # only it; otherwise which one is asked
    if chosen is not None and selector.volume is None and _sibling_volumes(matching, chosen):
        raise InputError(_volumes_message(series, chosen))
    if chosen is not None:
        return chosen
    if len({info.series_instance_uid for info in found}) == 1:
        raise InputError(_shared_uid_message(found))
    raise InputError(
        f"{len(found)} series match ({selector.rules()}): {_listing(found)}; pick one with "
        f"{_by_modality(found, selector)}a description pattern, an orientation or its series "
        "UID, or take the largest (--largest, or largest: true in a workflow); 'medi2i dicom "
        "ls' lists them"
    )


def _largest(found: Sequence[SeriesInfo]) -> SeriesInfo:
    """The series with the most voxels (then slices); refused when several series tie,
    since taking the first scanned would pick one silently by file order."""

    def size(info: SeriesInfo) -> tuple[int, int]:
        return (info.voxels, info.number_of_images)

    biggest = max(size(info) for info in found)
    tied = [info for info in found if size(info) == biggest]
    if _volumes_of_one_series(tied):
        return tied[0]  # volumes of one series: which one is asked for by the caller
    listed = "; ".join(
        f"#{info.series_number if info.series_number is not None else '?'} "
        f"{info.modality or '?'} {info.name} (UID {info.series_instance_uid})"
        for info in tied[:_LISTED]
    )
    more = f" and {len(tied) - _LISTED} more" if len(tied) > _LISTED else ""
    raise InputError(
        f"largest: {len(tied)} series tie for the largest ({biggest[0]} voxels): "
        f"{listed}{more}; pick one with its series UID (--series-uid UID, or series_uid: in "
        "a workflow) or a description pattern (--description); 'medi2i dicom ls' lists them"
    )


def _volumes_of_one_series(found: Sequence[SeriesInfo]) -> bool:
    """Whether ``found`` are the volumes (echoes, time points) of one series of one study,
    or that one series alone; not different series (another study, another orientation)
    that happen to share a Series Instance UID."""
    if len(found) == 1:
        return True
    keys = {(info.study_instance_uid, info.series_instance_uid) for info in found}
    return len(keys) == 1 and all(info.volume is not None for info in found)


def _sibling_volumes(found: Sequence[SeriesInfo], chosen: SeriesInfo) -> bool:
    """Whether ``chosen`` is one of several volumes of its series in ``found``."""
    if chosen.volume is None:
        return False
    key = (chosen.study_instance_uid, chosen.series_instance_uid)
    siblings = [
        info
        for info in found
        if info.volume is not None and (info.study_instance_uid, info.series_instance_uid) == key
    ]
    return len(siblings) > 1


def _shared_uid_message(found: Sequence[SeriesInfo]) -> str:
    """Several series that match share one Series Instance UID (reused in two studies)."""
    studies = len({info.study_instance_uid for info in found})
    where = f" of {studies} studies" if studies > 1 else ""
    return (
        f"{len(found)} series{where} share the Series Instance UID "
        f"{found[0].series_instance_uid}: {_listing(found)}; a series UID should name one "
        "series, so none is picked: give the folder of one study, or pick one with a "
        "description pattern or an orientation (--orientation), or take the largest "
        "(--largest); 'medi2i dicom ls' lists them"
    )


def _by_modality(found: Sequence[SeriesInfo], selector: SeriesSelector) -> str:
    """``"--modality CT or --modality MR (modality: in a workflow), "`` when the series
    that match differ in modality, the plainest way to tell them apart; else ``""``."""
    modalities = sorted({info.modality.upper() for info in found if info.modality})
    if selector.modality is not None or len(modalities) < 2:
        return ""
    flags = " or ".join(f"--modality {modality}" for modality in modalities)
    return f"{flags} (modality: in a workflow), "


def _volumes_message(series: Sequence[SeriesInfo], chosen: SeriesInfo) -> str:
    assert chosen.volume is not None
    volumes = [
        info
        for info in series
        if info.series_instance_uid == chosen.series_instance_uid and info.volume is not None
    ]
    listed = "; ".join(
        f"{info.volume.index}: {info.volume.label}" for info in volumes if info.volume
    )
    stacks = chosen.volume.tag == "StackID"
    where = "stacks" if stacks else "volumes at the same slice positions"
    orientation = (
        " or --orientation (orientation: in a workflow)"
        if stacks and len({info.orientation for info in volumes}) > 1
        else ""
    )
    return (
        f"series '{one_line(chosen.description)}' (UID {chosen.series_instance_uid}) holds "
        f"{chosen.volume.count} {where}, told apart by {chosen.volume.tag} ({listed}); pick "
        f"one with --volume N (volume: N in a workflow){orientation}; 'medi2i dicom ls' "
        "lists them"
    )


def _none_message(series: Sequence[SeriesInfo], selector: SeriesSelector) -> str:
    unreadable = [info for info in series if selector.matches(info) and not info.is_volume]
    if not series:
        return "no series found"
    lead = f"no series matches ({selector.rules()})"
    if unreadable:
        reasons = "; ".join(
            f"{_name(info)} cannot be read: {info.problems[0]}" for info in unreadable[:3]
        )
        return f"{lead} and can be read as a volume: {reasons}; the folder holds {_listing(series)}"
    return f"{lead}; the folder holds {_listing(series)}; 'medi2i dicom ls' shows them in full"


def _listing(series: Sequence[SeriesInfo]) -> str:
    names = [_name(info) for info in series[:_LISTED]]
    more = f" and {len(series) - _LISTED} more" if len(series) > _LISTED else ""
    return "; ".join(names) + more


def _name(info: SeriesInfo) -> str:
    size = f"{info.columns}x{info.rows}x{info.number_of_images}" if info.rows else "no image"
    return (
        f"{info.modality or '?'} {info.name} {info.orientation} {size} "
        f"(UID {info.series_instance_uid})"
    )
