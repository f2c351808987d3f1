"""Copies of one file in a series folder: the same instance exported twice.

Files with the same SOP Instance UID (and frame) and the same pixel values are copies,
as a second export into the same folder leaves them (in any transfer syntax: the values
are compared as decoded, not the bytes in the files): all but one are dropped with a
note. Files that share a SOP Instance UID but differ in their pixels are a problem.
Two files at one slice position with different UIDs but the same pixel values are one
image exported twice under new UIDs: they stay a problem (which export to keep is the
user's choice), named as copies rather than as echoes (:func:`copies_of_one_image`).
Only for these files are pixels read during the scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medi2i.dicom.reading.file_records import ImageHeader
from medi2i.dicom.reading.series_records import Problem

DUPLICATE_FILES_NOTE = "duplicate file(s) dropped"
"""The words that start the note on dropped copies (a reader warns when it sees them)."""


@dataclass(frozen=True)
class Copies:
    """What leaving copies out found: notes on dropped files, or a conflict."""

    notes: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()


def without_copies(images: Sequence[ImageHeader], listed: int) -> tuple[list[ImageHeader], Copies]:
    """The images with copies of one instance (same UID and pixels) left out."""
    by_instance: dict[tuple[str, int], list[ImageHeader]] = {}
    for image in images:
        if image.sop_instance_uid and image.defect is None:
            by_instance.setdefault((image.sop_instance_uid, image.frame), []).append(image)
    dropped: list[tuple[ImageHeader, ImageHeader]] = []
    for members in by_instance.values():
        members.sort(key=lambda image: str(image.path))
        first = members[0]
        for other in members[1:]:
            if other.path == first.path:
                continue
            if not _same_pixels(first, other):
                text = (
                    f"{first.label} and {other.label} are the same instance (SOP Instance "
                    f"UID {first.sop_instance_uid}) with different pixel data; keep the "
                    "right one and move the other away, or export the series again"
                )
                return list(images), Copies(problems=(Problem(text, geometric=False),))
            dropped.append((other, first))
    if not dropped:
        return list(images), Copies()
    gone = {id(image) for image, _ in dropped}
    pairs = ", ".join(f"{copy.label} = {kept.label}" for copy, kept in dropped[:listed])
    more = f" and {len(dropped) - listed} more" if len(dropped) > listed else ""
    note = (
        f"{len(dropped)} {DUPLICATE_FILES_NOTE}: copies of another file (same SOP Instance "
        f"UID and pixel data): {pairs}{more}"
    )
    return [image for image in images if id(image) not in gone], Copies(notes=(note,))


def copies_of_one_image(first: ImageHeader, other: ImageHeader) -> bool:
    """Whether two images at one position with different SOP Instance UIDs hold the same
    pixel values: one image exported twice under new UIDs, not two echoes or phases.
    Such pairs are not dropped (nothing says which export is right) but named."""
    return first.sop_instance_uid != other.sop_instance_uid and _same_pixels(first, other)


def _same_pixels(first: ImageHeader, other: ImageHeader) -> bool:
    """Whether two images of one instance hold the same pixel values (read for this only).

    The stored values are compared as decoded, never the bytes in the files: a copy in
    another transfer syntax (big endian, implicit VR, JPEG-LS, deflated) holds the same
    values in other bytes.
    """
    try:
        return bool(np.array_equal(_stored_values(first), _stored_values(other)))
    except Exception:  # unreadable or undecodable: not known to be the same
        return False


def _stored_values(image: ImageHeader) -> np.ndarray:
    """The image's stored values, in native byte order, unused high bits cleared."""
    import warnings

    from medi2i.dicom.reading.series_volume import read_stack

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's notes on oddities it tolerates
        values: np.ndarray = read_stack([image])[0]
    return values
