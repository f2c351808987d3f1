"""The node's messages about a received series: its reader's messages told for the node
(slices by Instance Number, advice for the sender), and why a series failed or was
discarded."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from medi2i.dicom.reading.slice_spacing import MISSING_SLICES_ADVICE

if TYPE_CHECKING:
    import warnings

    from medi2i.dicom.node.spool import TakenSeries
    from medi2i.dicom.reading.file_records import ImageHeader

NODE_ADVICE = "have the sender send the whole series again"


def node_message(text: str, taken: TakenSeries, images: Sequence[ImageHeader]) -> str:
    """A reader's message about a received series, as the node tells it.

    The reader names the folder it read (the hidden ``.taken-...`` folder, which does
    not outlive the series: drop it), names slices by their spooled file names (the
    SOP Instance UIDs; name them by Instance Number where they have one) and advises
    on files (advise the sender instead).
    """
    text = text.replace(f"{taken.folder}: ", "").replace(MISSING_SLICES_ADVICE, NODE_ADVICE)
    labels = {
        image.label: f"instance {image.instance_number}"
        for image in images
        if image.instance_number is not None and image.label == (image.name or image.path.name)
    }  # a frame of a multi-frame file keeps its label
    if not labels or len(set(labels.values())) < len(labels):  # ambiguous: keep the files
        return text
    # longest first, and not inside a longer name: one UID may end another
    pattern = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    return re.sub(rf"(?<![\w.])(?:{pattern})(?!\w)", lambda m: labels[m.group(0)], text)


def collision_message(collisions: Sequence[str]) -> str:
    """The cause of a failure when images of the series shared a SOP Instance UID."""
    return (
        f"{len(collisions)} SOP Instance UID(s) were received twice with different images "
        f"(e.g. {collisions[0]}): the later copy replaced the earlier, so the series lacks "
        "an image; have the sender give every image its own SOP Instance UID"
    )


def warning_text(caught: warnings.WarningMessage) -> str:
    """One line for a warning raised while a series was handled (no source path)."""
    text = " ".join(str(caught.message).split())
    return f"{caught.category.__name__}: {text}"


def is_series_warning(caught: warnings.WarningMessage) -> bool:
    """Whether a warning caught while a series was handled is about the series.

    Python's warning filters are global, so the node also catches warnings of other
    threads (the network's); a ``ResourceWarning`` about a socket is the networking
    library's housekeeping, never something about the series, and is left out.
    """
    if issubclass(caught.category, ResourceWarning):
        text = str(caught.message)
        return "socket" not in text and "pynetdicom" not in str(caught.filename)
    return True


def discard_reason(taken: TakenSeries) -> str:
    """Why a series is discarded: an instance of it refused, or its association aborted."""
    if taken.refused:
        why = (
            f"{len(taken.refused)} instance(s) of it were refused and not sent again whole "
            f"(SOP Instance {taken.refused[0]})"
        )
    else:
        why = "the association was aborted and the series was not sent again"
    return f"{why}; nothing was translated"
