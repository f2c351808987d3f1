"""The ``dicom`` volume reader: DICOM folders and files for ``read_volume`` and ``predict``.

Example:
    >>> from medi2i.dicom.reading.series_selection import SeriesSelector
    >>> reader = DicomFolderReader(selector=SeriesSelector(modality="CT", largest=True))
    >>> reader.name
    'dicom'
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.dicom.reading.file_records import DICOM_SUFFIXES
from medi2i.io.base import VolumeReader, require_existing

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.dicom.reading.series_selection import SeriesSelector

_PROBE_LIMIT = 64  # folder entries looked at by can_read before it answers no


class DicomFolderReader(VolumeReader):
    """Reads a DICOM series from a folder tree, or an enhanced multi-frame file.

    A folder is scanned (headers only), one series is picked by the reader's
    :class:`~medi2i.dicom.reading.series_selection.SeriesSelector` (by default: the only
    series that can be a volume) and read with
    :func:`medi2i.dicom.reading.series_volume.read_dicom_series`.

    Args:
        selector: Rules that pick the series in folders holding several.
    """

    name = "dicom"
    description = "DICOM series folders and multi-frame files (.dcm) via pydicom"

    def __init__(self, selector: SeriesSelector | None = None) -> None:
        self.selector = selector

    def can_read(self, path: Path) -> bool:
        """A folder with a DICOM file among its first entries, or a DICOM file.

        Cheap: at most 64 folder entries are looked at, and of files only the 132
        bytes of the preamble and ``DICM`` marker (or the first element of a bare
        dataset without them, as old exports hold).
        """
        path = Path(path)
        if path.is_dir():
            return any(_is_dicom_file(file) for file in _first_files(path))
        if path.name.lower().endswith(DICOM_SUFFIXES):
            return True
        return path.is_file() and not path.suffix and _is_dicom_file(path)

    def read(self, path: Path) -> MetaTensor:
        """Read the selected series of a folder, or one file; see :meth:`VolumeReader.read`."""
        from medi2i.dicom.reading.series_volume import read_dicom_folder

        require_existing(Path(path))
        return read_dicom_folder(path, self.selector)


def _first_files(folder: Path) -> Iterator[Path]:
    """Files of ``folder`` and its subfolders, breadth first, at most 64 entries in all."""
    pending, seen = [folder], 0
    while pending and seen < _PROBE_LIMIT:
        try:
            entries = sorted(os.scandir(pending.pop(0)), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if seen > _PROBE_LIMIT:
                return
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                pending.append(Path(entry.path))
            elif entry.is_file():
                yield Path(entry.path)


def _is_dicom_file(path: Path) -> bool:
    if path.name.upper() == "DICOMDIR":
        return True
    from medi2i.dicom.reading.header_parser import raw_dataset_syntax

    try:
        with path.open("rb") as stream:
            start = stream.read(132)
    except OSError:
        return False
    # a bare dataset (old exports: no preamble or file meta) starts with group 0008
    return start[128:132] == b"DICM" or raw_dataset_syntax(start[:8]) is not None
