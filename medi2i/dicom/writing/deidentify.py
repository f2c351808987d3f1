"""De-identification of the DICOM series medi2i writes (never of its inputs).

The profile, ``medi2i-basic-1``, follows the DICOM PS3.15 Annex E Basic Application
Level Confidentiality Profile (Table E.1-1) for every attribute a derived series can
carry: the patient and study attributes copied from the source, the UIDs, and a few
equipment and acquisition attributes. It is applied to the output datasets just before
they are saved; source files and the source header held in memory are never modified.

Actions, as in PS3.15:

``Z`` (empty)
    Type 2 attributes kept with an empty value: Patient's Birth Date, Patient's Sex,
    Study Date and Time, Content Date and Time, Acquisition Date and Time, Referring
    Physician's Name, Accession Number.
``D`` (dummy)
    Patient's Name becomes ``ANONYMOUS^`` (family name ANONYMOUS); Patient ID becomes
    a pseudonym ``ANON-<12 hex digits>``, a salted hash of the original ID, so that two
    series of one patient written in the same run still share a Patient ID. Study ID
    (type 2, which a DICOMDIR needs) becomes ``S<12 hex digits>``, a salted hash of the
    original Study Instance UID, so the series of one study share it.
``X`` (remove)
    Everything else that can identify a person, place, device or time: see
    :data:`REMOVED`. Private attributes are removed too.
``U`` (remap UID)
    Study, Series, SOP Instance and Frame of Reference UIDs, and every referenced SOP
    Instance or Frame of Reference UID inside sequences, are replaced by UIDs derived
    from the original with a salted hash. Within one run (one :class:`Deidentifier`,
    by default one per process) the same original UID always maps to the same new
    UID, so the derived series still share a study and frame of reference, and
    references between outputs stay consistent; the original UIDs cannot be recovered.

Two attributes of the Basic Profile's ``X`` list are kept: Series Description and
Derivation Description. medi2i writes them itself from the method id and version and
the source modality only (no text is copied from the source), and they tell a reader
that the image is synthetic, which is a safety matter.

The de-identified datasets record what was done: Patient Identity Removed ``YES``,
De-identification Method ``medi2i-basic-1: PS3.15 E.1.1 Basic Profile`` and its code
sequence (DCM 113100, Basic Application Confidentiality Profile), Longitudinal Temporal
Information Modified ``REMOVED``.

Pixel data is not inspected: medi2i writes images computed by a method, which carry no
burned-in annotation (Burned In Annotation ``NO``).

Stable pseudonyms: a batch (``medi2i batch --deidentify``) keeps its salt in the file
:data:`SALT_FILE_NAME` in its output root (:func:`folder_deidentifier`): 32 random bytes
from :mod:`secrets`, written once (hex, owner-only permissions) and read by every later
run and shard, so a resumed batch gives a patient the same Patient ID and a study the
same UIDs, and every study of one patient shares the Patient ID pseudonym. The salt is
never written into an output. Whoever has it can test a guessed Patient ID or UID
against the pseudonyms: keep it with the batch, and leave it out when sharing the
outputs (a batch without it makes new pseudonyms).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.errors import InputError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

PROFILE_NAME = "medi2i-basic-1"
"""Name and version of the profile, written to De-identification Method."""

PLACEHOLDER_NAME = "ANONYMOUS^"
"""Patient's Name written by the profile and for series made without a DICOM source
(family name ``ANONYMOUS``; the caret is the PN form validators expect)."""

EMPTIED: frozenset[str] = frozenset(
    {
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "ContentDate",
        "ContentTime",
        "AcquisitionDate",
        "AcquisitionTime",
        "ReferringPhysicianName",
        "AccessionNumber",
    }
)
"""Attributes kept with an empty value (action ``Z``)."""

REMOVED: frozenset[str] = frozenset(
    {
        # patient
        "OtherPatientIDs",
        "OtherPatientIDsSequence",
        "OtherPatientNames",
        "PatientBirthName",
        "PatientBirthTime",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "PatientAddress",
        "PatientMotherBirthName",
        "PatientTelephoneNumbers",
        "MilitaryRank",
        "EthnicGroup",
        "Occupation",
        "AdditionalPatientHistory",
        "PatientComments",
        "MedicalRecordLocator",
        "IssuerOfPatientID",
        "PatientReligiousPreference",
        "ResponsiblePerson",
        "ResponsibleOrganization",
        # study and visit
        "StudyDescription",
        "NameOfPhysiciansReadingStudy",
        "PhysiciansOfRecord",
        "RequestingPhysician",
        "RequestedProcedureDescription",
        "AdmittingDiagnosesDescription",
        "ReferencedStudySequence",
        "ReferencedPatientSequence",
        "RequestAttributesSequence",
        # series, equipment and acquisition
        "SeriesDate",
        "SeriesTime",
        "AcquisitionDateTime",
        "InstanceCreationDate",
        "InstanceCreationTime",
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "StationName",
        "DeviceSerialNumber",
        "OperatorsName",
        "PerformingPhysicianName",
        "ProtocolName",
        "PerformedProcedureStepDescription",
        "PerformedProcedureStepID",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "ReferencedPerformedProcedureStepSequence",
        "ImageComments",
        "RequestedProcedureID",
        "ScheduledProcedureStepID",
    }
)
"""Attributes removed (action ``X``)."""

REMAPPED_UIDS: frozenset[str] = frozenset(
    {
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
        "ReferencedSOPInstanceUID",
        "ReferencedFrameOfReferenceUID",
        "SynchronizationFrameOfReferenceUID",
        "IrradiationEventUID",
        "MediaStorageSOPInstanceUID",
    }
)
"""UID attributes replaced consistently within a run (action ``U``)."""

_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")

SALT_FILE_NAME = ".medi2i-deidentify-salt"
"""The file in a batch's output root that holds its de-identification salt (hex)."""
_SALT_BYTES = 32


class Deidentifier:
    """Applies the ``medi2i-basic-1`` profile; one instance is one run's UID mapping.

    Args:
        salt: Secret mixed into the UID and Patient ID hashes. Random by default, so
            the mapping cannot be reversed or repeated; pass the same bytes to keep
            pseudonyms identical across runs (keep them secret).

    Example:
        >>> deidentifier = Deidentifier(salt=b"seed")
        >>> deidentifier.uid("1.2.3") == deidentifier.uid("1.2.3")
        True
    """

    def __init__(self, *, salt: bytes | None = None) -> None:
        self._salt = salt if salt is not None else secrets.token_bytes(32)

    def uid(self, original: str) -> str:
        """The UID that replaces ``original`` in this run (a 2.25 UUID-derived UID)."""
        digest = hashlib.sha256(self._salt + b"uid:" + original.encode()).digest()
        # 2.25.<integer of 128 bits> is the UUID-based root of PS3.5 B.2, max 44 chars
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"

    def patient_id(self, original: str) -> str:
        """The pseudonymous Patient ID that replaces ``original`` in this run."""
        digest = hashlib.sha256(self._salt + b"pid:" + original.encode()).hexdigest()
        return f"ANON-{digest[:12].upper()}"

    def study_id(self, study_uid: str) -> str:
        """The Study ID that replaces the original one of study ``study_uid``."""
        digest = hashlib.sha256(self._salt + b"sid:" + study_uid.encode()).hexdigest()
        return f"S{digest[:12].upper()}"

    def apply(self, dataset: Dataset) -> None:
        """De-identify ``dataset`` in place (an output dataset, never a source one).

        Nested sequences are processed too; the file meta, when present, gets its
        Media Storage SOP Instance UID remapped like the SOP Instance UID.
        """
        dataset.remove_private_tags()
        study_uid = str(dataset.get("StudyInstanceUID", ""))
        self._clean(dataset)
        file_meta = getattr(dataset, "file_meta", None)
        if file_meta is not None:
            self._clean(file_meta)
        dataset.PatientName = PLACEHOLDER_NAME
        dataset.PatientID = self.patient_id(str(dataset.get("PatientID", "")))
        if "StudyID" in dataset:
            dataset.StudyID = self.study_id(study_uid)
        _record_profile(dataset)

    def _clean(self, dataset: Dataset) -> None:
        for keyword in list(_keywords(dataset)):
            if keyword in REMOVED:
                delattr(dataset, keyword)
            elif keyword in EMPTIED:
                dataset[keyword].value = None
            elif keyword in REMAPPED_UIDS:
                value = dataset[keyword].value
                if value:
                    dataset[keyword].value = self.uid(str(value))
        for element in dataset:
            if element.VR == "SQ":
                for item in element.value:
                    self._clean(item)


def _keywords(dataset: Dataset) -> Iterator[str]:
    for element in dataset:
        if element.keyword:
            yield element.keyword


def _record_profile(dataset: Dataset) -> None:
    from pydicom.dataset import Dataset

    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = _PROFILE_CODE
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = f"{PROFILE_NAME}: PS3.15 E.1.1 Basic Profile"
    dataset.DeidentificationMethodCodeSequence = [code]
    dataset.LongitudinalTemporalInformationModified = "REMOVED"


_DEFAULT: Deidentifier | None = None


def folder_deidentifier(root: Path) -> Deidentifier:
    """The :class:`Deidentifier` of the batch written into ``root``: its salt is read from
    ``root / SALT_FILE_NAME``, which is created (once, atomically) when missing.

    Raises:
        InputError: The salt file exists but does not hold a salt.
    """
    path = Path(root) / SALT_FILE_NAME
    if not path.exists():
        _create_salt(path)
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        salt = bytes.fromhex(text)
    except ValueError:
        salt = b""
    if len(salt) != _SALT_BYTES:
        raise InputError(
            f"{path} does not hold a de-identification salt ({_SALT_BYTES * 2} hex digits); "
            "restore it from a backup to keep the batch's pseudonyms, or remove it to start "
            "new ones (outputs written earlier then no longer share them)"
        )
    return Deidentifier(salt=salt)


def _create_salt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as stream:
            stream.write(secrets.token_hex(_SALT_BYTES) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        with contextlib.suppress(FileExistsError):  # a salt another shard made first stays
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def run_deidentifier() -> Deidentifier:
    """The process-wide :class:`Deidentifier`: one run is one process by default."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Deidentifier()
    return _DEFAULT
