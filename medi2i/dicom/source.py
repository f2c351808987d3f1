"""What a DICOM-read volume remembers about its source series.

The DICOM reader stores a :class:`DicomSource` in the volume's metadata under
:data:`META_KEY`; the derived-series writer uses it for the patient and study modules,
the Frame of Reference and the references to the source images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

META_KEY = "medi2i.dicom"

LOSSY_COMPRESSION_METHODS = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",  # JPEG extended
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",  # JPEG 2000
    "1.2.840.10008.1.2.4.93": "ISO_15444_1",  # JPEG 2000 multi-component
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",  # HTJ2K
}
"""Lossy transfer syntaxes of still images, with their Lossy Image Compression Method
(0028,2114) defined term."""
LOSSY_TRANSFER_SYNTAXES = frozenset(LOSSY_COMPRESSION_METHODS) | {
    f"1.2.840.10008.1.2.4.{n}"
    for n in range(100, 109)  # MPEG, HEVC video
}
"""Transfer syntaxes whose pixel data may have lost information."""


@dataclass(frozen=True)
class DicomSource:
    """The source series of a volume read from DICOM.

    Attributes:
        folder: The folder the series was read from.
        study_instance_uid: Study Instance UID, kept by derived series.
        series_instance_uid: Series Instance UID of the source.
        frame_of_reference_uid: Frame of Reference UID, kept by derived series.
        modality: Source modality (``"MR"``, ``"CT"``).
        sop_class_uid: SOP Class UID of the source images.
        sop_instance_uids: SOP Instance UIDs in the volume's slice order (one for a
            multi-frame file).
        header: The first image's header without pixel data (patient, study and
            equipment modules to copy).
        slices: For each slice of the volume, in order: the SOP Instance UID of its
            image and its 1-based frame number in a multi-frame image (0 for a
            single-frame one), which a derived slice references; ``()`` when unknown.
        lossy_transfer_syntax: A lossy transfer syntax (:data:`LOSSY_TRANSFER_SYNTAXES`)
            that one of the source's images is stored in; ``""`` when none is.
        position_residual_mm: How far the slice furthest from the fitted regular grid
            lay from it, in mm (each slice is placed on the grid); a predict's
            provenance records it.
    """

    folder: Path
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str | None
    modality: str
    sop_class_uid: str
    sop_instance_uids: tuple[str, ...]
    header: Dataset
    slices: tuple[tuple[str, int], ...] = field(default=(), repr=False)
    lossy_transfer_syntax: str = ""
    position_residual_mm: float = 0.0

    def slice_reference(self, index: int) -> tuple[str, int]:
        """The image and frame (0: a single-frame image) of the volume's slice ``index``,
        or of source image ``index`` when the slices are unknown."""
        if self.slices:
            return self.slices[index]
        return self.sop_instance_uids[index], 0

    @property
    def slice_count(self) -> int:
        """How many source slices :meth:`slice_reference` tells apart."""
        return len(self.slices) or len(self.sop_instance_uids)
