"""Shared by the tests of derived DICOM series: a CT volume on an oblique grid and a
source series header with patient, study and acquisition attributes."""

from __future__ import annotations

from pathlib import Path

from monai.data.meta_tensor import MetaTensor
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from medi2i.dicom.source import DicomSource
from medi2i.testing.volumes import make_volume

SHAPE = (24, 20, 16)
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def ct_volume(**kwargs: object) -> MetaTensor:
    """Fractional HU on an oblique, anisotropic grid (the rounding must be tested)."""
    base = make_volume(SHAPE, **kwargs)  # type: ignore[arg-type]
    values = base.as_tensor() * 3.0 - 1000.4
    return MetaTensor(values, affine=base.affine, meta={"original_affine": base.affine.numpy()})


def source(tmp_path: Path, slices: int = SHAPE[2]) -> DicomSource:
    header = Dataset()
    header.PatientName = "Doe^Jane"
    header.PatientID = "MRN-12345"
    header.PatientBirthDate = "19700101"
    header.PatientSex = "F"
    header.PatientAge = "054Y"
    header.StudyDate, header.StudyTime = "20240102", "101500"
    header.ReferringPhysicianName = "House^Gregory"
    header.StudyID = "S77"
    header.AccessionNumber = "ACC991"
    header.StudyDescription = "Head MRI for Jane"
    header.InstitutionName = "General Hospital"
    header.PatientPosition = "HFS"
    header.SeriesNumber = 3
    header.ScanningSequence, header.SequenceVariant = "GR", "SP"
    header.RepetitionTime, header.EchoTime = "2300", "2.98"
    return DicomSource(
        folder=tmp_path / "source",
        study_instance_uid=generate_uid(),
        series_instance_uid=generate_uid(),
        frame_of_reference_uid=generate_uid(),
        modality="MR",
        sop_class_uid=MR_STORAGE,
        sop_instance_uids=tuple(generate_uid() for _ in range(slices)),
        header=header,
    )
