"""``medi2i batch`` over awkward trees: links, unreadable and hidden folders, a study
named like the manifest, localizers, a series no DICOM image type fits, reruns."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from monai.data.meta_tensor import MetaTensor
from pydicom.data import get_testdata_file

from medi2i.batch import run_batch
from medi2i.batch_records import StudyRecord
from medi2i.method import Method, PredictContext, Task, VolumeSpec
from medi2i.settings import InferenceSettings
from medi2i.testing.dicom_series import write_series
from tests.dicom_tree_support import METHOD, VALUES, command, last_records, mr

SETTINGS = InferenceSettings(device="cpu", progress=False)


class KeepsModality(Method):
    """Declares no modality: the output takes the input's (harmonization)."""

    id = "test-keeps-modality"
    tasks = (Task.HARMONIZATION,)
    input_spec = VolumeSpec(modality="any")
    output_spec = VolumeSpec(modality="any")

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        return image.as_tensor() + 1.0


def test_a_symlinked_study_folder_is_translated(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    mr(root / "real")
    mr(tmp_path / "elsewhere" / "linked")
    (root / "linked_study").symlink_to(tmp_path / "elsewhere" / "linked")
    (root / "real" / "back").symlink_to(root)  # a loop must not recurse forever
    result = command("batch", str(root), str(out), *METHOD)
    assert result.exit_code == 0, result.output
    assert "2 studies: 2 done, 0 skipped, 0 failed" in result.output
    assert {key: r["status"] for key, r in last_records(out).items()} == {
        "real": "done",
        "linked_study": "done",
    }


def test_an_unreadable_folder_is_recorded_failed_and_fails_the_batch(
    tmp_path: Path, locked: set[Path]
) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    mr(root / "p1")
    mr(root / "locked" / "p2")
    locked.add(root / "locked")
    result = command("batch", str(root), str(out), *METHOD)
    assert result.exit_code == 1, result.output
    assert "2 studies: 1 done, 0 skipped, 1 failed" in result.output
    record = last_records(out)["locked"]
    assert record["status"] == "failed"
    error = str(record["error"])
    assert error.startswith(f"{root / 'locked'}: cannot be read: Permission denied; ")
    assert "read permission" in error
    assert "\n" not in error


def test_a_hidden_folder_is_recorded_skipped_with_the_reason(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    mr(root / "p1")
    mr(root / ".p2")
    result = command("batch", str(root), str(out), *METHOD)
    assert result.exit_code == 0, result.output
    record = last_records(out)[".p2"]
    assert record["status"] == "skipped"
    assert "hidden folder" in str(record["reason"])
    assert "rename it" in str(record["reason"])


def test_a_study_folder_named_like_the_manifest_gets_a_hash_name(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    mr(root / "manifest.jsonl")
    mr(root / "p2")
    result = command("batch", str(root), str(out), *METHOD)
    assert result.exit_code == 0, result.output
    records = last_records(out)
    assert records["p2"]["status"] == "done"
    (hashed,) = (key for key in records if key.startswith("study-"))
    assert records[hashed]["status"] == "done"
    assert (out / "manifest.jsonl").is_file()


def test_a_rerun_counts_finished_studies_as_already_done(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    mr(root / "p1")
    write_series(root / "p2" / "ct", VALUES, modality="CT")
    args = ["batch", str(root), str(out), *METHOD]
    assert command(*args).exit_code == 0
    again = command(*args)
    assert again.exit_code == 0, again.output
    assert "2 studies: 0 done, 1 already done, 1 skipped, 0 failed" in again.output


def test_a_localizer_only_study_is_skipped_and_the_batch_succeeds(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    mr(root / "p1")
    write_series(
        root / "p2" / "scout",
        VALUES[:, :, :3],
        modality="MR",
        rescale=(1.0, 0.0),
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
    )
    result = command("batch", str(root), str(out), *METHOD)
    assert result.exit_code == 0, result.output
    assert "2 studies: 1 done, 1 skipped, 0 failed" in result.output
    record = last_records(out)["p2/scout"]
    assert record["status"] == "skipped"
    assert str(record["reason"]).startswith("only a localizer/scout series (MR ")


def _rt_dose(root: Path) -> None:
    (root / "dose").mkdir(parents=True)
    source = get_testdata_file("rtdose.dcm")
    assert isinstance(source, str)
    shutil.copy(source, root / "dose" / "rtdose.dcm")


def test_a_series_no_dicom_type_fits_is_skipped_with_the_reason(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _rt_dose(root)
    report = run_batch(root, tmp_path / "out", method=KeepsModality(), settings=SETTINGS)
    (record,) = report.records
    assert record.status == "skipped"
    assert record.reason is not None
    assert "is RTDOSE" in record.reason
    assert "add --format nifti" in record.reason
    assert not report.failed


def test_with_nifti_too_such_a_series_says_to_write_nifti(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _rt_dose(root)
    report = run_batch(
        root,
        tmp_path / "out",
        method=KeepsModality(),
        settings=SETTINGS,
        formats=("dicom", "nifti"),
    )
    (record,) = report.records
    assert isinstance(record, StudyRecord)
    assert record.status == "partial"
    assert record.error is not None
    assert "method 'test-keeps-modality'" in record.error
    assert "write a NIfTI file instead" in record.error
    assert "meta[" not in record.error
