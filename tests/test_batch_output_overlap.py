"""Batch outputs that would land in another study's, and resuming over outputs that
changed since they were written."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from medi2i.batch import ChangedOutputWarning, run_batch
from medi2i.batch_records import Manifest, StudyRecord
from medi2i.settings import InferenceSettings
from medi2i.study_discovery import StudyJob, keys_apart
from medi2i.testing.dicom_series import write_series
from tests.test_batch import DoubleToCT

SETTINGS = InferenceSettings(device="cpu", progress=False)


def _study(folder: Path, seed: int) -> None:
    values = np.random.default_rng(seed).integers(0, 800, size=(12, 10, 5)).astype(np.float64)
    write_series(folder, values, modality="MR", rescale=(1.0, 0.0), study_uid=generate_uid())


def _run(root: Path, out: Path, **kwargs: object) -> list[StudyRecord]:
    report = run_batch(root, out, method=DoubleToCT(), settings=SETTINGS, **kwargs)  # type: ignore[arg-type]
    return sorted(report.records, key=lambda record: record.study)


def test_a_study_in_a_folder_named_like_another_study_s_output_gets_its_own(
    tmp_path: Path,
) -> None:
    """``x`` and ``x/test-double`` used to write the second study's series into the
    first study's series folder, and every rerun then failed."""
    root, out = tmp_path / "in", tmp_path / "out"
    _study(root / "x", 0)
    _study(root / "x" / "test-double", 1)
    records = _run(root, out, formats=("dicom", "nifti"))
    assert [record.status for record in records] == ["done", "done"]
    inner = next(record for record in records if record.study != "x")
    assert inner.study.startswith("study-")
    assert sorted(p.name for p in (out / "x" / "test-double").iterdir()) == [
        f"{n:05d}.dcm" for n in range(1, 6)
    ]
    assert (out / inner.study / "test-double").is_dir()
    again = _run(root, out, formats=("dicom", "nifti"))
    assert [record.status for record in again] == ["skipped", "skipped"]


def test_keys_apart_leaves_studies_beside_each_other_alone() -> None:
    jobs = [
        StudyJob("x", "1.1", Path("x"), None),
        StudyJob("x/t1", "1.2", Path("x/t1"), None),
        StudyJob("x/m.nii.gz/deep", "1.3", Path("x/m.nii.gz/deep"), None),
        StudyJob("y/m", "1.4", Path("y/m"), None),
    ]
    keys = [job.key for job in keys_apart(jobs, {"m", "m.nii.gz"})]
    assert keys[:2] == ["x", "x/t1"]
    assert keys[3] == "y/m"
    assert keys[2].startswith("study-")


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    root, out = tmp_path / "in", tmp_path / "out"
    _study(root / "a", 0)
    _study(root / "b", 1)
    return root, out


def test_a_resume_redoes_outputs_that_changed_since_they_were_written(tmp_path: Path) -> None:
    root, out = _tree(tmp_path)
    _run(root, out, formats=("dicom", "nifti"))
    (out / "a" / "test-double" / "00003.dcm").unlink()  # a slice removed
    nifti = out / "b" / "test-double.nii.gz"
    nifti.write_bytes(nifti.read_bytes()[:100])  # a file cut short
    with pytest.warns(ChangedOutputWarning) as said:
        records = _run(root, out, formats=("dicom", "nifti"))
    assert [record.status for record in records] == ["done", "done"]
    messages = sorted(str(warning.message) for warning in said)
    assert "holds 4 file(s)" in messages[0]
    assert "study a is redone" in messages[0]
    assert "holds 1 file(s) of 100 bytes" in messages[1]
    assert "study b is redone" in messages[1]
    assert len(list((out / "a" / "test-double").iterdir())) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChangedOutputWarning)
        again = _run(root, out, formats=("dicom", "nifti"))
    assert [record.status for record in again] == ["skipped", "skipped"]
    last = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()][-1]
    assert last["status"] == "skipped"  # and it keeps the measures a later resume checks
    assert last["contents"] == {
        str(out / last["study"] / "test-double"): [5, _size(out / last["study"] / "test-double")],
        str(out / last["study"] / "test-double.nii.gz"): [
            1,
            (out / last["study"] / "test-double.nii.gz").stat().st_size,
        ],
    }


def _size(folder: Path) -> int:
    return sum(item.stat().st_size for item in folder.iterdir())


def test_a_manifest_without_contents_falls_back_to_existence(tmp_path: Path) -> None:
    """Records of earlier versions hold no ``contents``: outputs that exist are trusted."""
    root, out = _tree(tmp_path)
    _run(root, out, formats=("nifti",))
    manifest = out / "manifest.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    for line in lines:
        line.pop("contents", None)
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert all(record.contents is None for record in Manifest(manifest).latest.values())
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChangedOutputWarning)
        records = _run(root, out, formats=("nifti",))
    assert [record.status for record in records] == ["skipped", "skipped"]
