"""The provenance sidecar of a ``medi2i batch`` study lists the outputs it describes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medi2i.errors import OutputError
from tests.test_batch import STUDIES, _registry, _run, _tree


def _sidecar(out: Path) -> dict[str, object]:
    path = out / STUDIES[0] / "test-double.provenance.json"
    record: dict[str, object] = json.loads(path.read_text())
    return record


def _statuses(root: Path, out: Path) -> list[str]:
    records = _run(root, out, formats=("dicom", "nifti"), registry=_registry())
    return [record.status for record in records]


def test_the_sidecar_lists_both_outputs(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    assert _statuses(root, out)[0] == "done"
    assert _sidecar(out)["outputs"] == ["test-double/", "test-double.nii.gz"]


def test_a_study_whose_nifti_failed_has_a_sidecar_naming_only_the_dicom_series(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)

    def full_disk(*args: object, **kwargs: object) -> Path:
        raise OutputError("cannot write it: No space left on device")

    monkeypatch.setattr("medi2i.io.write_volume", full_disk)
    assert _statuses(root, out)[0] == "partial"
    assert _sidecar(out)["outputs"] == ["test-double/"]
    assert not (out / STUDIES[0] / "test-double.nii.gz").exists()


def test_a_sidecar_that_cannot_be_written_keeps_the_outputs_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)

    def full_disk(*args: object, **kwargs: object) -> dict[str, object]:
        raise OutputError("cannot write it: No space left on device")

    monkeypatch.setattr("medi2i.provenance.provenance", full_disk)
    first = _run(root, out, formats=("dicom", "nifti"), registry=_registry())[0]
    assert first.status == "partial"
    assert first.error is not None
    assert first.error.startswith("provenance: cannot write it")
    assert len(first.outputs) == 2


def test_mask_help_names_the_sidecar_that_mask_writes() -> None:
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli
    from medi2i.provenance import sidecar_path

    text = " ".join(CliRunner().invoke(build_cli(), ["mask", "--help"]).output.split())
    assert "OUTPUT.provenance.json" not in text
    assert f"mask.nii.gz gets {sidecar_path(Path('mask.nii.gz')).name}" in text
