"""Output paths ``medi2i predict`` must refuse before it writes anything.

The input itself (by name, symlink or hard link), an existing output without
``--overwrite``, a folder where a file goes (or one that is not empty, or holds the
input), an unknown suffix, a parent that is a file. The promise each case is held to
is stated in ``bad_input_cases.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.bad_input_cases import (
    Case,
    CaseBuilder,
    blobs,
    case_registry,
    check_bad_input,
    nifti,
    predict,
    sitk_file,
)

CASES: dict[str, CaseBuilder] = {}
case = case_registry(CASES)


@case("output-is-input")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "same.nii.gz", blobs())
    return Case(predict(path, path), "same.nii.gz", "is the input")


@case("output-is-input-with-overwrite")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "same.nii.gz", blobs())
    return Case(predict(path, path, "--overwrite"), "same.nii.gz", "is the input")


@case("output-symlink-to-input")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "real.nii.gz", blobs())
    (tmp / "link.nii.gz").symlink_to(path)
    return Case(predict(path, tmp / "link.nii.gz", "--overwrite"), "link.nii.gz", "is the input")


@case("output-hardlink-to-input")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "real.nii.gz", blobs())
    os.link(path, tmp / "twin.nii.gz")
    return Case(predict(path, tmp / "twin.nii.gz", "--overwrite"), "twin.nii.gz", "is the input")


@case("output-existing-nifti")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    nifti(tmp / "earlier.nii.gz", blobs(seed=1))
    return Case(predict(path, tmp / "earlier.nii.gz"), "earlier.nii.gz", "--overwrite")


@case("output-existing-nrrd")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    sitk_file(tmp / "earlier.nrrd", blobs(seed=1))
    return Case(predict(path, tmp / "earlier.nrrd"), "earlier.nrrd", "--overwrite")


@case("output-existing-mha")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    sitk_file(tmp / "earlier.mha", blobs(seed=1))
    return Case(predict(path, tmp / "earlier.mha"), "earlier.mha", "--overwrite")


@case("output-is-a-folder-with-a-suffix")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    (tmp / "out.nii.gz").mkdir()
    (tmp / "out.nii.gz" / "keep.txt").write_text("mine")
    return Case(predict(path, tmp / "out.nii.gz", "--overwrite"), "out.nii.gz", "folder")


@case("output-series-into-a-full-folder")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    (tmp / "results").mkdir()
    (tmp / "results" / "notes.txt").write_text("mine")
    return Case(predict(path, tmp / "results"), "results", "not empty")


@case("output-folder-holds-the-input")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "data" / "t1.nii.gz", blobs())
    return Case(predict(path, tmp / "data", "--overwrite"), "data", "holds the input")


@case("output-unknown-suffix")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    return Case(predict(path, tmp / "out.xyz"), "out.xyz", "no writer", [tmp / "out.xyz"])


@case("output-parent-is-a-file")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    (tmp / "report").write_text("a file")
    return Case(predict(path, tmp / "report" / "out.nii.gz"), "report", "is a file")


@case("output-existing-sidecar-target-is-folder")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    (tmp / "out.provenance.json").mkdir()
    (tmp / "out.provenance.json" / "x").write_text("mine")
    return Case(predict(path, tmp / "out.nii.gz"), "out.provenance.json", "folder")


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_one_line_and_changes_nothing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_bad_input(CASES[name], tmp_path, monkeypatch)
