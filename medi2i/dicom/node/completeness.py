"""Signs in a received series that it is incomplete, for the node's warning.

C-STORE has no "end of series", so a sender that pauses longer than ``--idle-timeout``
between two associations of one series has its first part translated alone
(:mod:`medi2i.dicom.node.spool`). The instances sometimes tell: Images in Acquisition
(0020,1002) above the number received, or Instance Numbers that do not start at 1 or
leave gaps. The node then translates the series as usual and says so in its line
(a warning); a series without these signs gets no warning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medi2i.dicom.reading.file_records import ImageHeader

ADVICE = (
    "the series may be incomplete (a sender that pauses between associations longer "
    "than the node's --idle-timeout splits it): if so, have the sender send the whole "
    "series again"
)


def incompleteness_warnings(images: Sequence[ImageHeader]) -> tuple[str, ...]:
    """``("Warning: ...",)`` when ``images`` (one file each, or frames of multi-frame
    files) show their series is incomplete, else ``()``."""
    files = {image.path: image for image in images}
    signs = [sign for sign in (_acquisition_sign(files), _numbering_sign(files)) if sign]
    if not signs:
        return ()
    return (f"Warning: {'; '.join(signs)}: {ADVICE}",)


def _acquisition_sign(files: Mapping[Path, ImageHeader]) -> str | None:
    """Images in Acquisition of the first file above the number of files received."""
    import pydicom

    if not files:
        return None
    first = next(iter(files.values()))
    try:
        header = pydicom.dcmread(
            first.path, stop_before_pixels=True, specific_tags=["ImagesInAcquisition"]
        )
        expected = int(header.get("ImagesInAcquisition", 0) or 0)
    except Exception:  # a value the scan did not need: no sign either way
        return None
    if expected > len(files):
        return f"Images in Acquisition (0020,1002) is {expected} but {len(files)} were received"
    return None


def _numbering_sign(files: Mapping[Path, ImageHeader]) -> str | None:
    """Instance Numbers of the files that do not run from 1 without gaps."""
    numbers = [image.instance_number for image in files.values()]
    if not numbers or None in numbers or len(set(numbers)) != len(numbers):
        return None  # missing or shared numbers tell nothing
    known = sorted(n for n in numbers if n is not None)
    first, last = known[0], known[-1]
    if first > 1:
        return f"Instance Numbers start at {first}, not 1"
    if last - first + 1 > len(known):
        return f"Instance Numbers {first}-{last} have {last - first + 1 - len(known)} gap(s)"
    return None
