"""A de-identified batch names no source anywhere under its output root, and keeps
its pseudonyms from run to run."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from monai.data.meta_tensor import MetaTensor
from pydicom.uid import generate_uid

from medi2i.batch import run_batch
from medi2i.dicom.writing.deidentify import SALT_FILE_NAME
from medi2i.errors import OptionsError, OutputError
from medi2i.hookspecs import hookimpl
from medi2i.method import Method, PredictContext, Task, VolumeSpec
from medi2i.plugins import load_plugins
from medi2i.registry import Registry
from medi2i.settings import InferenceSettings
from medi2i.testing.dicom_series import write_series

SETTINGS = InferenceSettings(device="cpu", progress=False)


class DoubleToCT(Method):
    """Synthetic CT as 2 x MR - 1000 HU."""

    id = "test-deid-double"
    tasks = (Task.TRANSLATION,)
    input_spec = VolumeSpec(modality="MR")
    output_spec = VolumeSpec(modality="CT", units="HU")

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        return image.as_tensor() * 2.0 - 1000.0


class _TestMethods:
    @hookimpl
    def register_methods(self, register: Callable[[type[Method]], None]) -> None:
        register(DoubleToCT)


PATIENT = {
    "PatientName": "Zebulon^Quixotewright",
    "PatientID": "MRN-7731904",
    "PatientBirthDate": "19520817",
    "AccessionNumber": "ACCX-5529013",
    "StudyID": "STQ-80417",
    "InstitutionName": "Marrowfield Infirmary",
    "ReferringPhysicianName": "Vandersloot^Agathe",
}
VISITS = {"visit_20190304": "20190304", "visit_20210611": "20210611", "visit_20230127": "20230127"}
FOLDER = "Quixotewright_Zebulon_MRN-7731904"


def _tree(root: Path) -> list[str]:
    """Three studies of one patient (the last one truncated); returns every identifier."""
    identifiers = [*PATIENT.values(), "Zebulon", "Quixotewright", FOLDER, str(root)]
    for number, (visit, date) in enumerate(VISITS.items()):
        study_uid = generate_uid()
        values = np.random.default_rng(number).integers(0, 800, size=(12, 10, 5))
        files = write_series(
            root / FOLDER / visit / "t1_mprage",
            values.astype(float),
            modality="MR",
            rescale=(1.0, 0.0),
            study_uid=study_uid,
            description="T1 MPRAGE",
        )
        for path in files:
            dataset = pydicom.dcmread(path)
            for keyword, value in PATIENT.items():
                setattr(dataset, keyword, value)
            dataset.StudyDate = dataset.SeriesDate = dataset.AcquisitionDate = date
            dataset.save_as(path)
            identifiers += [dataset.SOPInstanceUID, dataset.SeriesInstanceUID]
            identifiers += [dataset.FrameOfReferenceUID]
        identifiers += [study_uid, visit, date, str(files[0].parent)]
        if number == 2:
            files[1].write_bytes(files[1].read_bytes()[:-40])
    return identifiers


def _registry() -> Registry:
    plugins = load_plugins()
    plugins.manager.register(_TestMethods(), name="batch-deid-test")
    return Registry(plugins)


def _batch(root: Path, out: Path, **kwargs: object) -> list[str]:
    report = run_batch(
        root,
        out,
        method=DoubleToCT(),
        settings=SETTINGS,
        formats=("dicom", "nifti"),
        deidentify=True,
        registry=_registry(),
        **kwargs,  # type: ignore[arg-type]
    )
    return sorted(f"{record.study} {record.status}" for record in report.records)


def _found(identifiers: list[str], text: str) -> list[str]:
    # digits only as whole tokens: a date may occur by chance inside a long pseudonym UID
    return [
        value
        for value in identifiers
        if re.search(rf"(?<![0-9]){re.escape(value)}(?![0-9])", text, re.IGNORECASE)
    ]


def _leaks(out: Path, identifiers: list[str]) -> dict[str, list[str]]:
    leaks: dict[str, list[str]] = {}
    for path in sorted(out.rglob("*")):
        relative = str(path.relative_to(out))
        found = _found(identifiers, relative)
        if path.is_file():
            data = path.read_bytes()
            if path.name.endswith(".gz"):
                data = gzip.decompress(data)
            found += _found(identifiers, data.decode("latin-1"))
        if found:
            leaks[relative] = found
    return leaks


def _patient_ids(out: Path) -> set[str]:
    return {str(pydicom.dcmread(path).PatientID) for path in out.rglob("*.dcm")}


def test_a_deidentified_batch_names_no_source_and_keeps_its_pseudonyms(tmp_path: Path) -> None:
    root, out, key = tmp_path / "in", tmp_path / "out", tmp_path / "private" / "key.jsonl"
    identifiers = _tree(root)
    first = _batch(root, out, linkage=key)
    assert sorted(line.split()[1] for line in first) == ["done", "done", "failed"]
    assert _leaks(out, identifiers) == {}
    patients = {line.split("/")[0] for line in first}
    assert len(patients) == 1  # one patient, one pseudonym folder
    assert _patient_ids(out) == patients
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {line["input"] for line in manifest} == {None}
    assert "<input>" in manifest[-1]["error"]
    links = [json.loads(line) for line in key.read_text().splitlines()]
    assert {link["patient_id"] for link in links} == {PATIENT["PatientID"]}
    assert {Path(link["input"]).parent.name for link in links} == set(VISITS)

    # a resumed batch (a new process: nothing kept in memory) gives the same pseudonyms
    done = sorted(out.rglob("*.nii.gz"))[0]
    done.unlink()
    study_uids = {str(pydicom.dcmread(p).StudyInstanceUID) for p in out.rglob("*.dcm")}
    second = _batch(root, out)
    assert [line.split()[0] for line in second] == [line.split()[0] for line in first]
    assert sorted(line.split()[1] for line in second) == ["done", "failed", "skipped"]
    assert done.exists()
    assert _patient_ids(out) == patients
    assert {str(pydicom.dcmread(p).StudyInstanceUID) for p in out.rglob("*.dcm")} == study_uids
    assert _leaks(out, identifiers) == {}
    assert (out / SALT_FILE_NAME).stat().st_mode & 0o077 == 0


def test_a_linkage_file_inside_the_output_root_is_refused(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    with pytest.raises(OutputError, match="inside the output root"):
        _batch(root, out, linkage=out / "key.jsonl")
    with pytest.raises(OutputError, match="inside the input root"):
        _batch(root, out, linkage=root / "key.jsonl")
    with pytest.raises(OptionsError, match="--deidentify"):
        run_batch(
            root,
            out,
            method=DoubleToCT(),
            settings=SETTINGS,
            linkage=tmp_path / "key.jsonl",
        )
    assert not out.exists()


def test_a_linkage_file_that_is_a_file_of_the_users_is_refused_and_kept(tmp_path: Path) -> None:
    # the linkage file is appended to: notes or a scan under that name would be changed
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(gzip.compress(b"\x00\xff" * 64))
    for taken in (notes, scan):
        before = taken.read_bytes()
        with pytest.raises(OutputError, match="not the linkage file"):
            _batch(root, out, linkage=taken)
        assert taken.read_bytes() == before
    assert not out.exists()


def test_deidentified_messages_name_no_source_file_folder_or_description(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    folder = root / "Quixotewright_Zebulon_19520817"
    files = write_series(
        folder / "t1",
        np.zeros((6, 5, 5)),
        modality="MR",
        rescale=(1.0, 0.0),
        description="T1 Quixotewright Zebulon",
        series_number=5,
        attributes={"PatientName": PATIENT["PatientName"], "PatientID": PATIENT["PatientID"]},
    )
    positions = [pydicom.dcmread(path).ImagePositionPatient[2] for path in files]
    named = []
    for path, z in zip(files, positions, strict=True):
        named.append(path.rename(path.with_name(f"Quixotewright_Zebulon_{int(z):04d}.dcm")))
    missing = sorted(named)[2]
    missing.unlink()  # a gap: the study fails with a message naming its neighbours
    write_series(
        root / "Marrowfield_CT",
        np.zeros((6, 5, 4)),
        modality="CT",
        description="CT Quixotewright",
        series_number=2,
        attributes={"PatientName": "Vandersloot^Agathe", "PatientID": "MRN-5550001"},
    )
    assert _batch(root, out) != []
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    texts = [
        line["error"] or line["reason"] for line in manifest if line["error"] or line["reason"]
    ]
    assert any("between slice 2 of series 5 and slice 3 of series 5" in text for text in texts)
    assert any("CT series 2" in text for text in texts)  # the skipped study's description
    identifiers = ["Quixotewright", "Zebulon", "Marrowfield", "Vandersloot", "19520817"]
    assert _leaks(out, identifiers) == {}
