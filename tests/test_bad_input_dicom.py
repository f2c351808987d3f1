"""Bad DICOM input to ``medi2i predict`` and ``medi2i batch``.

Outputs that are, or lie inside, the input series; a series of the wrong modality;
several studies into one file; missing, garbage, truncated, duplicate or single
slices; empty folders; batch output roots inside the input tree or over other data.
The promise each case is held to is stated in ``bad_input_cases.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.bad_input_cases import (
    Case,
    CaseBuilder,
    blobs,
    case_registry,
    check_bad_input,
    nifti,
    predict,
)

CASES: dict[str, CaseBuilder] = {}
case = case_registry(CASES)


def series(folder: Path, modality: str = "MR", **kwargs: object) -> Path:
    from medi2i.testing.dicom_series import write_series

    volume = np.random.default_rng(3).normal(300.0, 80.0, (12, 10, 6)).round()
    write_series(folder, volume.astype(np.float32), modality=modality, rescale=(1.0, 0.0), **kwargs)  # type: ignore[arg-type]
    return folder


@case("dicom-output-is-the-input-series")
def _(tmp: Path) -> Case:
    folder = series(tmp / "mr")
    return Case(predict(folder, folder), "mr", "is the input")


@case("dicom-output-is-the-input-series-with-overwrite")
def _(tmp: Path) -> Case:
    folder = series(tmp / "mr")
    return Case(predict(folder, folder, "--overwrite"), "mr", "is the input")


@case("dicom-output-inside-the-input-series")
def _(tmp: Path) -> Case:
    folder = series(tmp / "mr")
    return Case(predict(folder, folder / "sct"), "sct", "inside the input")


@case("dicom-output-over-another-series")
def _(tmp: Path) -> Case:
    folder = series(tmp / "mr")
    series(tmp / "other", modality="CT")
    return Case(predict(folder, tmp / "other"), "other", "not empty")


@case("dicom-ct-series-into-an-mr-model")
def _(tmp: Path) -> Case:
    folder = series(tmp / "ct", modality="CT")
    args = ["predict", str(folder), str(tmp / "out.nii.gz"), "--method", "example-self-rescaling"]
    return Case([*args, "--no-progress"], "ct", "--force-modality", [tmp / "out.nii.gz"])


@case("dicom-tree-into-a-file")
def _(tmp: Path) -> Case:
    series(tmp / "tree" / "a", study_uid="1.2.3.4.1")
    series(tmp / "tree" / "b", study_uid="1.2.3.4.2")
    return Case(predict(tmp / "tree", tmp / "out.nii.gz"), "out.nii.gz", "2 DICOM studies")


@case("dicom-missing-slice")
def _(tmp: Path) -> Case:
    import pydicom

    folder = series(tmp / "gap")
    by_height = sorted(
        folder.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2])
    )
    by_height[2].unlink()  # a slice inside the stack, not at its ends
    return Case(predict(folder, tmp / "out.nii.gz"), "gap")


@case("dicom-garbage-slice")
def _(tmp: Path) -> Case:
    folder = series(tmp / "mr")
    victim = sorted(folder.iterdir())[3]
    victim.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 300)
    return Case(predict(folder, tmp / "out.nii.gz"), "mr")


@case("dicom-truncated-pixels")
def _(tmp: Path) -> Case:
    folder = series(tmp / "mr")
    victim = sorted(folder.iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-60])
    return Case(predict(folder, tmp / "out.nii.gz"), victim.name)


@case("dicom-empty-folder")
def _(tmp: Path) -> Case:
    (tmp / "nothing").mkdir()
    return Case(predict(tmp / "nothing", tmp / "out.nii.gz"), "nothing")


@case("dicom-folder-of-text")
def _(tmp: Path) -> Case:
    (tmp / "docs").mkdir()
    (tmp / "docs" / "a.txt").write_text("hello")
    return Case(predict(tmp / "docs", tmp / "out.nii.gz"), "docs")


@case("dicom-single-slice")
def _(tmp: Path) -> Case:
    from medi2i.testing.dicom_series import write_series

    volume = np.random.default_rng(0).normal(300, 50, (12, 10, 1)).round().astype(np.float32)
    write_series(tmp / "one", volume, modality="MR", rescale=(1.0, 0.0))
    return Case(predict(tmp / "one", tmp / "out.nii.gz"), "one")


@case("dicom-duplicate-positions")
def _(tmp: Path) -> Case:
    positions = np.zeros((6, 3))
    series(tmp / "dup2", positions=positions)
    return Case(predict(tmp / "dup2", tmp / "out.nii.gz"), "dup2")


@case("dicom-constant-series")
def _(tmp: Path) -> Case:
    from medi2i.testing.dicom_series import write_series

    write_series(tmp / "flat", np.full((12, 10, 6), 40.0, np.float32), modality="MR")
    return Case(predict(tmp / "flat", tmp / "out.nii.gz"), "flat", "constant")


@case("batch-output-inside-input-tree")
def _(tmp: Path) -> Case:
    series(tmp / "studies" / "p1")
    args = ["batch", str(tmp / "studies"), str(tmp / "studies" / "out")]
    return Case([*args, "--method", "intensity-inversion", "--no-progress"], "out", "inside")


@case("batch-output-is-input-root")
def _(tmp: Path) -> Case:
    series(tmp / "studies" / "p1")
    args = ["batch", str(tmp / "studies"), str(tmp / "studies")]
    return Case([*args, "--method", "intensity-inversion", "--no-progress"], "studies", "input")


@case("batch-output-root-with-other-data")
def _(tmp: Path) -> Case:
    series(tmp / "studies" / "p1")
    (tmp / "mine").mkdir()
    (tmp / "mine" / "thesis.tex").write_text("mine")
    args = ["batch", str(tmp / "studies"), str(tmp / "mine")]
    return Case([*args, "--method", "intensity-inversion", "--no-progress"], "mine", "manifest")


def _batch_with_manifest(tmp: Path, manifest: Path) -> list[str]:
    """A batch over one study whose --manifest is ``manifest``."""
    series(tmp / "studies" / "p1")
    return ["batch", str(tmp / "studies"), str(tmp / "out"), "--manifest", str(manifest),
            "--method", "intensity-inversion", "--no-progress"]  # fmt: skip


@case("batch-manifest-is-a-user-text-file")
def _(tmp: Path) -> Case:
    # the manifest is appended to: a file of the user's under that name would be changed
    (tmp / "notes.txt").write_text("my notes\n")
    return Case(_batch_with_manifest(tmp, tmp / "notes.txt"), "notes.txt", "manifest")


@case("batch-manifest-is-a-binary-file")
def _(tmp: Path) -> Case:
    scan = nifti(tmp / "scan.nii.gz", blobs())
    return Case(_batch_with_manifest(tmp, scan), "scan.nii.gz", "manifest")


@case("batch-manifest-inside-the-input-tree")
def _(tmp: Path) -> Case:
    manifest = tmp / "studies" / "manifest.jsonl"
    args = _batch_with_manifest(tmp, manifest)
    return Case(args, "manifest.jsonl", "inside the input", absent=[manifest])


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_one_line_and_changes_nothing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_bad_input(CASES[name], tmp_path, monkeypatch)
