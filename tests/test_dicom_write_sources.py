"""Derived DICOM series and their sources: what a source's compression and frames
oblige a derived series to say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medi2i.dicom.reading.series_volume import read_dicom_folder
from medi2i.dicom.source import META_KEY
from medi2i.dicom.writing.derived_series import write_derived_series
from tests.dicom_write_sources import ct_volume
from tests.dicom_write_sources import source as source_series


@pytest.mark.parametrize(
    ("stated", "syntax", "expected"),
    [
        ({}, "1.2.840.10008.1.2.1", ("00", None, None)),
        (
            {"LossyImageCompression": "01", "LossyImageCompressionRatio": "8.2"},
            "1.2.840.10008.1.2.1",
            ("01", None, None),  # the ratio is the first image's, not every image's
        ),
        ({}, "1.2.840.10008.1.2.4.50", ("01", None, "ISO_10918_1")),  # JPEG baseline
        ({}, "1.2.840.10008.1.2.4.70", ("00", None, None)),  # JPEG lossless
    ],
)
def test_a_source_once_lossy_compressed_stays_so_in_the_derived_series(
    tmp_path: Path,
    stated: dict[str, str],
    syntax: str,
    expected: tuple[str, str | None, str | None],
) -> None:
    """The standard forbids setting Lossy Image Compression back to 00 once it is 01."""
    from pydicom.dataset import FileMetaDataset

    source = source_series(tmp_path)
    for keyword, value in stated.items():
        setattr(source.header, keyword, value)
    source.header.file_meta = FileMetaDataset()
    source.header.file_meta.TransferSyntaxUID = syntax
    files = write_derived_series(
        ct_volume(),
        tmp_path / "s",
        source=source,
        modality="CT",
        method_id="m",
        method_version="1",
    )
    first = pydicom.dcmread(files[0])
    found = (
        first.LossyImageCompression,
        str(first.LossyImageCompressionRatio) if "LossyImageCompressionRatio" in first else None,
        first.get("LossyImageCompressionMethod"),
    )
    assert found == expected


def test_slices_derived_from_a_multi_frame_image_reference_their_frame(tmp_path: Path) -> None:
    """Each derived slice points at the frame it came from (Referenced Frame Number),
    not at the whole multi-frame image; frames stored out of order included."""
    from medi2i.testing.dicom_series import write_enhanced

    volume = (np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4) * 10.0) + 100.0
    source_file = write_enhanced(
        tmp_path / "mf" / "mr.dcm", volume, spacing=(1.0, 1.0, 2.0), frame_order=[2, 0, 3, 1]
    )
    read = read_dicom_folder(tmp_path / "mf")
    files = write_derived_series(
        read,
        tmp_path / "out",
        source=read.meta[META_KEY],
        modality="MR",
        method_id="m",
        method_version="1",
    )
    frames_by_z = {}
    for frame, item in enumerate(pydicom.dcmread(source_file).PerFrameFunctionalGroupsSequence):
        z = float(item.PlanePositionSequence[0].ImagePositionPatient[2])
        frames_by_z[round(z, 3)] = frame + 1
    for path in files:
        written = pydicom.dcmread(path)
        [reference] = written.SourceImageSequence
        z = round(float(written.ImagePositionPatient[2]), 3)
        assert reference.ReferencedFrameNumber == frames_by_z[z]
        assert reference.ReferencedSOPInstanceUID == pydicom.dcmread(source_file).SOPInstanceUID


def test_a_series_lossy_in_any_image_makes_a_lossy_derived_series(tmp_path: Path) -> None:
    """The first image uncompressed and a later one stored as JPEG baseline: the flag
    came from the first image only and said 00."""
    import dataclasses

    source = source_series(tmp_path)
    source = dataclasses.replace(source, lossy_transfer_syntax="1.2.840.10008.1.2.4.50")
    files = write_derived_series(
        ct_volume(), tmp_path / "s", source=source, modality="CT", method_id="m", method_version="1"
    )
    first = pydicom.dcmread(files[0])
    assert (first.LossyImageCompression, first.LossyImageCompressionMethod) == (
        "01",
        "ISO_10918_1",
    )
