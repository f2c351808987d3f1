"""Batch prediction over a DICOM tree: failures recorded, resuming, interrupted studies."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import pydicom
import pytest
import torch
from click.testing import CliRunner
from monai.data.meta_tensor import MetaTensor
from pydicom.uid import generate_uid

from medi2i.batch import run_batch
from medi2i.batch_records import Manifest, StudyRecord
from medi2i.cli.main import build_cli
from medi2i.dicom.reading.series_selection import SeriesSelector
from medi2i.dicom.reading.series_volume import read_dicom_folder
from medi2i.errors import OutputError
from medi2i.grid import Grid
from medi2i.hookspecs import hookimpl
from medi2i.method import Method, PredictContext, Task, VolumeSpec
from medi2i.plugins import load_plugins
from medi2i.provenance import volume_sha256
from medi2i.registry import Registry
from medi2i.settings import InferenceSettings
from medi2i.study_discovery import study_keys
from medi2i.testing.dicom_series import write_series
from tests.dicom_node_support import ConstantCT

SHAPE = (12, 10, 5)
SETTINGS = InferenceSettings(device="cpu", progress=False)
STUDIES = ("p1/visit1", "p2/visit1/t1", "p3/visit1/t1")
"""Output folders: a study's folder under the root (study 1 has two series, the others one)."""
SELECT_T1 = SeriesSelector(description="t1")


class DoubleToCT(Method):
    """Synthetic CT as 2 x MR - 1000 HU; counts its calls."""

    id = "test-double"
    tasks = (Task.TRANSLATION,)
    input_spec = VolumeSpec(modality="MR")
    output_spec = VolumeSpec(modality="CT", units="HU")
    calls: ClassVar[list[int]] = []

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        DoubleToCT.calls.append(1)
        context.facts["scaled_by"] = 2.0  # what the provenance's "run" records
        return image.as_tensor() * 2.0 - 1000.0


def _values(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 800, size=SHAPE).astype(np.float64)


def _tree(root: Path) -> dict[str, str]:
    """Three MR studies; the third has a truncated file, so it cannot be a volume."""
    study_uids: dict[str, str] = {}
    for seed, study in enumerate(STUDIES):
        study_uids[study] = generate_uid()
        files = write_series(
            root / study.removesuffix("/t1") / "t1",
            _values(seed),
            spacing=(1.0, 1.2, 3.0),
            modality="MR",
            rescale=(1.0, 0.0),
            study_uid=study_uids[study],
            description="T1 MPRAGE",
        )
        if study == STUDIES[2]:
            damaged = files[2].read_bytes()
            files[2].write_bytes(damaged[: len(damaged) - 40])
    write_series(
        root / STUDIES[0] / "t2",
        _values(9)[:, :, :3],
        modality="MR",
        rescale=(1.0, 0.0),
        study_uid=study_uids[STUDIES[0]],
        description="T2 FLAIR",
    )
    return study_uids


def _run(root: Path, out: Path, **kwargs: object) -> list[StudyRecord]:
    DoubleToCT.calls.clear()
    report = run_batch(
        root,
        out,
        method=DoubleToCT(),
        settings=SETTINGS,
        selector=SELECT_T1,
        **kwargs,  # type: ignore[arg-type]
    )
    return sorted(report.records, key=lambda record: record.study)


def _lines(manifest: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    root = tmp_path / "in"
    return root, tmp_path / "out", _tree(root)


def test_a_broken_study_is_recorded_and_the_batch_goes_on(
    tree: tuple[Path, Path, dict[str, str]],
) -> None:
    root, out, study_uids = tree
    records = _run(root, out, formats=("dicom", "nifti"))
    assert [(r.study, r.status) for r in records] == [
        (STUDIES[0], "done"),
        (STUDIES[1], "done"),
        (STUDIES[2], "failed"),
    ]
    assert records[2].error is not None
    assert "truncated" in records[2].error
    assert set(records[0].timings) == {"read", "predict", "write"}
    series = out / STUDIES[0] / "test-double"
    assert records[0].outputs == (str(series), str(out / STUDIES[0] / "test-double.nii.gz"))
    written = read_dicom_folder(series)
    np.testing.assert_array_equal(written.numpy()[0], _values(0) * 2.0 - 1000.0)
    first = pydicom.dcmread(sorted(series.iterdir())[0])
    assert first.Modality == "CT"
    assert first.StudyInstanceUID == study_uids[STUDIES[0]]
    statuses = [(line["study"], line["status"]) for line in _lines(out / "manifest.jsonl")]
    assert statuses.count((STUDIES[2], "started")) == 1
    assert statuses.count((STUDIES[2], "failed")) == 1


def test_a_rerun_skips_finished_studies_and_retries_failed_ones(
    tree: tuple[Path, Path, dict[str, str]],
) -> None:
    root, out, _ = tree
    _run(root, out)
    stamp = (out / STUDIES[0] / "test-double" / "00001.dcm").stat().st_mtime_ns
    records = _run(root, out)
    assert [r.status for r in records] == ["skipped", "skipped", "failed"]
    assert DoubleToCT.calls == []
    assert (out / STUDIES[0] / "test-double" / "00001.dcm").stat().st_mtime_ns == stamp
    assert records[0].outputs == (str(out / STUDIES[0] / "test-double"),)


def test_an_interrupted_study_is_redone_cleanly(
    tree: tuple[Path, Path, dict[str, str]],
) -> None:
    root, out, _ = tree
    _run(root, out)
    # a run killed while writing study 2: its manifest says started, a temporary
    # series folder with some slices is left, the old output is gone
    study = out / STUDIES[1]
    (study / "test-double").rename(study / ".test-double.medi2i-tmp-99999-0badc0de")
    (study / ".test-double.medi2i-tmp-99999-0badc0de" / "00003.dcm").unlink()
    Manifest(out / "manifest.jsonl").append(
        StudyRecord(study=STUDIES[1], input=str(root / STUDIES[1]), series_uid=None)
    )
    records = _run(root, out)
    assert [r.status for r in records] == ["skipped", "done", "failed"]
    assert sorted(p.name for p in study.iterdir()) == ["test-double"]
    assert len(list((study / "test-double").iterdir())) == SHAPE[2]
    np.testing.assert_array_equal(
        read_dicom_folder(study / "test-double").numpy()[0], _values(1) * 2.0 - 1000.0
    )


def test_missing_outputs_make_a_done_study_run_again(
    tree: tuple[Path, Path, dict[str, str]],
) -> None:
    root, out, _ = tree
    _run(root, out, formats=("dicom", "nifti"))
    (out / STUDIES[0] / "test-double.nii.gz").unlink()
    records = _run(root, out, formats=("dicom", "nifti"))
    assert [r.status for r in records] == ["done", "skipped", "failed"]


def test_a_rerun_adding_a_format_redoes_the_study(
    tree: tuple[Path, Path, dict[str, str]],
) -> None:
    root, out, _ = tree
    _run(root, out, formats=("nifti",))
    records = _run(root, out, formats=("dicom", "nifti"))
    assert [r.status for r in records] == ["done", "done", "failed"]
    assert (out / STUDIES[0] / "test-double").is_dir()


class TripleToCT(DoubleToCT):
    id = "test-triple"


@pytest.mark.parametrize(
    ("changed", "said"),
    [
        ({"method": TripleToCT()}, "method test-double 0.1.0 there, test-triple 0.1.0 now"),
        ({"settings": SETTINGS.model_copy(update={"seed": 7})}, "seed 0 there, 7 now"),
        ({"settings": SETTINGS.model_copy(update={"overlap": 0.5})}, "other window settings"),
    ],
)
def test_a_rerun_under_another_configuration_is_refused(
    tree: tuple[Path, Path, dict[str, str]], changed: dict[str, object], said: str
) -> None:
    root, out, _ = tree
    _run(root, out, formats=("nifti",))
    manifest = (out / "manifest.jsonl").read_text()
    arguments = {"method": DoubleToCT(), "settings": SETTINGS, **changed}
    with pytest.raises(OutputError, match="another configuration") as refused:
        run_batch(root, out, selector=SELECT_T1, formats=("nifti",), **arguments)  # type: ignore[arg-type]
    assert said in str(refused.value)
    assert (out / "manifest.jsonl").read_text() == manifest
    assert not list(out.rglob("test-triple*"))


def test_a_manifest_of_another_output_root_is_refused(
    tree: tuple[Path, Path, dict[str, str]],
) -> None:
    root, out, _ = tree
    _run(root, out, formats=("nifti",))
    copied = root.parent / "copied.jsonl"
    copied.write_text((out / "manifest.jsonl").read_text())
    elsewhere = root.parent / "out2"
    with pytest.raises(OutputError, match="outside the output root"):
        _run(root, elsewhere, formats=("nifti",), manifest=copied)
    assert not elsewhere.exists()


def test_a_manifest_line_cut_short_by_a_crash_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    done = StudyRecord(study="a", input="in/a", series_uid="1.2", outputs=("x",), status="done")
    path.write_text(done.to_json() + "\n" + '{"study": "b", "inp')
    manifest = Manifest(path)
    assert manifest.latest == {"a": done}


def test_study_keys_mirror_the_tree_and_hash_what_cannot(tmp_path: Path) -> None:
    folders = {"1.1": tmp_path / "a" / "x", "1.2": tmp_path / "b", "1.3": tmp_path / "b"}
    folders["1.4"] = tmp_path
    keys = study_keys(folders, tmp_path)
    assert keys["1.1"] == "a/x"
    assert keys["1.2"].startswith("study-")
    assert keys["1.2"] != keys["1.3"]
    assert keys["1.4"].startswith("study-")


def test_sharding_splits_the_studies(tree: tuple[Path, Path, dict[str, str]]) -> None:
    root, out, _ = tree
    first = _run(root, out, shard=(0, 2))
    second = _run(root, out, shard=(1, 2))
    assert sorted(r.study for r in first + second) == list(STUDIES)


class _TestMethods:
    @hookimpl
    def register_methods(self, register: Callable[[type[Method]], None]) -> None:
        register(DoubleToCT)


def test_batch_command_writes_outputs_and_exits_1_when_a_study_failed(
    tree: tuple[Path, Path, dict[str, str]],
) -> None:
    root, out, _ = tree
    plugins = load_plugins()
    plugins.manager.register(_TestMethods(), name="batch-test")
    cli = build_cli(plugins)
    args = ["batch", str(root), str(out), "--method", "test-double", "--description", "t1"]
    args += ["--format", "dicom,nifti"]
    result = CliRunner().invoke(cli, [*args, "--no-progress", "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert "2 done" in result.output
    assert "1 failed" in result.output
    assert (out / STUDIES[1] / "test-double.nii.gz").exists()
    assert (out / STUDIES[1] / "test-double.provenance.json").exists()


class ShearedToCT(DoubleToCT):
    """Delivers its output on a grid whose rows and columns are not perpendicular."""

    id = "test-sheared"

    def output_grid(self, input_grid: Grid, condition: object = None) -> Grid:
        affine = input_grid.affine.copy()
        affine[:3, 1] += 0.3 * affine[:3, 0]
        return Grid(shape=input_grid.shape, affine=affine)


def test_an_unwritable_dicom_grid_is_found_before_inference(
    tree: tuple[Path, Path, dict[str, str]],
) -> None:
    root, out, _ = tree
    DoubleToCT.calls.clear()
    report = run_batch(
        root, out, method=ShearedToCT(), settings=SETTINGS, selector=SELECT_T1, formats=("dicom",)
    )
    first = sorted(report.records, key=lambda record: record.study)[0]
    assert first.status == "failed"
    assert first.error is not None
    assert first.error.startswith("dicom: ")
    assert "not perpendicular" in first.error
    assert "predict" not in first.timings
    assert DoubleToCT.calls == []


def test_a_format_that_cannot_be_written_does_not_lose_the_other(
    tree: tuple[Path, Path, dict[str, str]],
) -> None:
    root, out, _ = tree
    report = run_batch(
        root,
        out,
        method=ShearedToCT(),
        settings=SETTINGS,
        selector=SELECT_T1,
        formats=("dicom", "nifti"),
    )
    first = sorted(report.records, key=lambda record: record.study)[0]
    assert first.status == "partial"
    assert first.outputs == (str(out / STUDIES[0] / "test-sheared.nii.gz"),)
    assert first.error is not None
    assert "not perpendicular" in first.error
    assert (out / STUDIES[0] / "test-sheared.nii.gz").exists()
    assert not (out / STUDIES[0] / "test-sheared").exists()
    assert report.summary() == "3 studies: 0 done, 0 skipped, 2 partial, 1 failed"


def test_a_failing_dicom_write_keeps_the_nifti_output(
    tree: tuple[Path, Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, out, _ = tree

    def broken(*args: object, **kwargs: object) -> None:
        raise OutputError("disk full")

    monkeypatch.setattr("medi2i.dicom.writing.derived_series.write_derived_series", broken)
    records = _run(root, out, formats=("dicom", "nifti"))
    assert [r.status for r in records] == ["partial", "partial", "failed"]
    assert records[0].error == "dicom: disk full"
    assert records[0].outputs == (str(out / STUDIES[0] / "test-double.nii.gz"),)
    records = _run(root, out, formats=("dicom", "nifti"))  # a partial study is redone
    assert len(DoubleToCT.calls) == 2


def _with_ct_study(root: Path) -> None:
    write_series(root / "p4" / "ct", _values(4), modality="CT", description="CT head")


def test_a_study_without_the_modality_is_skipped_with_the_reason(
    tree: tuple[Path, Path, dict[str, str]],
) -> None:
    root, out, _ = tree
    _with_ct_study(root)
    report = run_batch(root, out, method=DoubleToCT(), settings=SETTINGS)
    ct = next(record for record in report.records if record.study == "p4/ct")
    assert ct.status == "skipped"
    assert ct.reason is not None
    assert "no series matches" in ct.reason
    assert "modality=MR" in ct.reason
    assert ct not in report.failed


def _registry() -> Registry:
    plugins = load_plugins()
    plugins.manager.register(_TestMethods(), name="batch-test")
    return Registry(plugins)


def test_a_skipped_study_does_not_fail_the_command(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    write_series(root / "p1" / "t1", _values(0), modality="MR", rescale=(1.0, 0.0))
    _with_ct_study(root)
    plugins = load_plugins()
    plugins.manager.register(_TestMethods(), name="batch-test")
    cli = build_cli(plugins)
    args = ["batch", str(root), str(out), "--method", "test-double", "--modality", "MR"]
    result = CliRunner().invoke(cli, [*args, "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "1 done, 1 skipped, 0 failed" in result.output


def test_provenance_hashes_the_dicom_input_volume(
    tree: tuple[Path, Path, dict[str, str]],
) -> None:
    root, out, _ = tree
    _run(root, out, registry=_registry())
    sidecar = json.loads((out / STUDIES[1] / "test-double.provenance.json").read_text())
    image = read_dicom_folder(root / STUDIES[1])
    assert sidecar["input"]["hashed"] == "volume"
    assert sidecar["input"]["sha256"] == volume_sha256(image)
    assert sidecar["run"] == {"scaled_by": 2.0}  # what the method reported, as predict keeps it
    assert "condition" in sidecar
    assert volume_sha256(image) != volume_sha256(read_dicom_folder(root / STUDIES[0] / "t1"))


def test_a_collapsed_translation_fails_its_study_and_writes_nothing(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    write_series(root / "p1" / "t1", _values(0), modality="MR", rescale=(1.0, 0.0))
    report = run_batch(root, out, method=ConstantCT(), settings=SETTINGS, formats=("nifti",))
    (record,) = report.records
    assert record.status == "failed"
    assert "every voxel is 0" in str(record.error)
    assert not list(out.rglob("*.nii.gz"))
