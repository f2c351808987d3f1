"""Predicting many volumes: one engine whose out-of-memory back-off carries over, shares
of the jobs per rank, resume."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from monai.data.meta_tensor import MetaTensor

from medi2i.batch import run_batch
from medi2i.cli import batch_commands
from medi2i.cli.main import build_cli
from medi2i.dicom.node.spool import TakenSeries
from medi2i.dicom.node.translation import SeriesTranslator
from medi2i.engine import SlidingWindowEngine
from medi2i.errors import DeviceError, Medi2iError, OptionsError
from medi2i.hookspecs import hookimpl
from medi2i.io import write_volume
from medi2i.method import Method, PredictContext, Task, VolumeSpec
from medi2i.plugins import load_plugins
from medi2i.prediction import predict_tensor
from medi2i.registry import Registry
from medi2i.settings import InferenceSettings
from medi2i.sharded_prediction import predict_sharded, predict_share, shard_from_environment
from medi2i.testing.dicom_series import write_series

SETTINGS = InferenceSettings(device="cpu", progress=False, sw_batch_size=4, roi_size=(8, 8, 8))
SHAPE = (16, 16, 16)
STUDIES = ("p1/mr", "p2/mr", "p3/mr", "p4/mr", "p5/mr")


class FitsOneWindow(Method):
    """Doubles the volume window by window; the device "fits" one window at a time, so a
    batch of more raises CUDA's out-of-memory error. Records every batch size it is given."""

    id = "test-fits-one-window"
    tasks = (Task.TRANSLATION,)
    input_spec = VolumeSpec(modality="MR")
    output_spec = VolumeSpec(modality="CT", units="HU")
    batches: ClassVar[list[list[int]]] = []
    """Batch sizes seen, one list per volume."""

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        seen: list[int] = []
        FitsOneWindow.batches.append(seen)

        def windows(batch: torch.Tensor) -> torch.Tensor:
            seen.append(int(batch.shape[0]))
            if batch.shape[0] > 1:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return batch * 2.0

        return context.engine.run(image.as_tensor(), windows, default_roi_size=(8, 8, 8))


def _volume(seed: int) -> MetaTensor:
    values = np.random.default_rng(seed).normal(100.0, 20.0, (1, *SHAPE))
    return MetaTensor(torch.from_numpy(values.astype(np.float32)), affine=torch.eye(4))


def test_one_engine_remembers_the_out_of_memory_back_off_across_volumes() -> None:
    FitsOneWindow.batches.clear()
    engine = SlidingWindowEngine(settings=SETTINGS)
    for seed in range(3):
        output = predict_tensor(FitsOneWindow(), _volume(seed), settings=SETTINGS, engine=engine)
        torch.testing.assert_close(output.as_tensor(), 2.0 * _volume(seed).as_tensor())
    first, *later = FitsOneWindow.batches
    assert max(first) == 4  # the first volume ran out of memory at 4 and 2 windows
    assert all(set(seen) == {1} for seen in later), later  # the others never did
    assert engine.sw_batch_size == 1
    assert engine.settings.sw_batch_size == 4


def test_without_an_engine_every_volume_starts_from_the_settings() -> None:
    FitsOneWindow.batches.clear()
    for seed in range(2):
        predict_tensor(FitsOneWindow(), _volume(seed), settings=SETTINGS)
    assert [max(seen) for seen in FitsOneWindow.batches] == [4, 4]


# -- the shared loop -----------------------------------------------------------------------


def test_ranks_from_the_environment_take_disjoint_shares_that_cover_every_job() -> None:
    engines: list[SlidingWindowEngine] = []

    def run(job: int, engine: SlidingWindowEngine) -> int:
        engines.append(engine)  # kept alive, so two engines are never one address
        return job

    done: dict[int, list[int]] = {}
    for rank in (0, 1):
        engines.clear()
        shard = shard_from_environment({"RANK": str(rank), "WORLD_SIZE": "2"})
        done[rank] = predict_share(list(range(7)), run, settings=SETTINGS, shard=shard)
        assert len({id(engine) for engine in engines}) == 1  # one engine for the share
    assert done == {0: [0, 2, 4, 6], 1: [1, 3, 5]}


def test_one_process_takes_every_job() -> None:
    assert shard_from_environment({}) is None
    assert shard_from_environment({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert predict_share([1, 2], lambda job, engine: job, settings=SETTINGS) == [1, 2]


def test_skipped_jobs_are_not_run_and_need_no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_engine(settings: InferenceSettings) -> SlidingWindowEngine:
        raise AssertionError("an engine was made for jobs that all were skipped")

    monkeypatch.setattr("medi2i.sharded_prediction.rank_engine", no_engine)
    records = predict_share(
        ["a", "b"],
        lambda job, engine: f"ran {job}",
        settings=SETTINGS,
        skip=lambda job: f"skipped {job}",
    )
    assert records == ["skipped a", "skipped b"]


def test_a_rank_outside_its_world_is_refused() -> None:
    with pytest.raises(OptionsError, match="invalid shard"):
        predict_share([1], lambda job, engine: job, settings=SETTINGS, shard=(2, 2))
    with pytest.raises(Medi2iError, match="torchrun"):
        shard_from_environment({"RANK": "2", "WORLD_SIZE": "2"})


# -- medi2i batch: one engine per process, shares per rank, resume ------------------------


class _Plugin:
    @hookimpl
    def register_methods(self, register: Callable[[type[Method]], None]) -> None:
        register(FitsOneWindow)


def _tree(root: Path) -> Path:
    """One MR study per folder of :data:`STUDIES`."""
    for seed, study in enumerate(STUDIES):
        values = np.random.default_rng(seed).integers(0, 800, size=SHAPE).astype(np.float64)
        write_series(root / study, values, modality="MR", rescale=(1.0, 0.0))
    return root


def test_a_batch_predicts_every_study_on_one_engine(tmp_path: Path) -> None:
    FitsOneWindow.batches.clear()
    report = run_batch(
        _tree(tmp_path / "in"),
        tmp_path / "out",
        method=FitsOneWindow(),
        settings=SETTINGS,
        formats=("nifti",),
    )
    assert [record.status for record in report.records] == ["done"] * len(STUDIES)
    first, *later = FitsOneWindow.batches
    assert max(first) == 4
    assert len(later) == len(STUDIES) - 1
    assert all(set(seen) == {1} for seen in later), later


def test_an_unusable_device_stops_the_batch_before_its_first_study(tmp_path: Path) -> None:
    settings = SETTINGS.model_copy(update={"device": "cuda:99"})
    with pytest.raises(DeviceError, match="cuda:99"):
        run_batch(
            _tree(tmp_path / "in"), tmp_path / "out", method=FitsOneWindow(), settings=settings
        )
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def _batch_as_rank(
    root: Path, out: Path, rank: int, monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, object]]:
    """``medi2i batch`` as rank ``rank`` of two started by torchrun; its manifest records."""
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")
    plugins = load_plugins()
    plugins.manager.register(_Plugin(), name="sharded-prediction-test")
    cli = build_cli(plugins)
    batch_commands.add_to(cli)
    manifest = out / "manifest.jsonl"
    before = len(manifest.read_text().splitlines()) if manifest.exists() else 0
    args = ["batch", str(root), str(out), "--method", FitsOneWindow.id, "--format", "nifti"]
    args += ["--roi-size", "8", "--no-progress", "--device", "cpu"]
    result = CliRunner().invoke(cli, args, obj=plugins)
    assert result.exit_code == 0, result.output
    lines = manifest.read_text().splitlines()[before:]
    return [json.loads(line) for line in lines]


def _final(records: list[dict[str, object]]) -> dict[str, object]:
    return {str(r["study"]): r["status"] for r in records if r["status"] != "started"}


def test_two_torchrun_ranks_split_a_batch_and_a_rerun_skips_what_they_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, out = _tree(tmp_path / "in"), tmp_path / "out"
    FitsOneWindow.batches.clear()
    shares = [_final(_batch_as_rank(root, out, rank, monkeypatch)) for rank in (0, 1)]
    assert all(set(share.values()) == {"done"} for share in shares)
    assert not set(shares[0]) & set(shares[1])
    assert sorted([*shares[0], *shares[1]]) == sorted(STUDIES)
    assert {len(share) for share in shares} == {2, 3}
    assert len(FitsOneWindow.batches) == len(STUDIES)  # each study predicted once
    assert all((out / study / f"{FitsOneWindow.id}.nii.gz").is_file() for study in STUDIES)

    FitsOneWindow.batches.clear()
    again = _batch_as_rank(root, out, 1, monkeypatch)
    assert _final(again) == {study: "skipped" for study in shares[1]}
    assert {r["reason"] for r in again} == {"finished by an earlier run"}
    assert FitsOneWindow.batches == []


# -- predict_sharded: volume files, as a script under torchrun ------------------------------


def _registry() -> Registry:
    plugins = load_plugins()
    plugins.manager.register(_Plugin(), name="sharded-prediction-test")
    return Registry(plugins)


def _file_jobs(folder: Path, count: int) -> list[tuple[Path, Path]]:
    jobs = []
    for seed in range(count):
        source = write_volume(_volume(seed), folder / "in" / f"{seed}.nii.gz")
        jobs.append((source, folder / "out" / f"{seed}.nii.gz"))
    return jobs


def test_predict_sharded_splits_files_between_two_ranks_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = _file_jobs(tmp_path, 5)
    registry = _registry()
    monkeypatch.setenv("WORLD_SIZE", "2")
    reports = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        FitsOneWindow.batches.clear()
        reports.append(
            predict_sharded(jobs, method=FitsOneWindow.id, settings=SETTINGS, registry=registry)
        )
        first, *later = FitsOneWindow.batches
        assert max(first) == 4
        assert all(set(seen) == {1} for seen in later)  # one engine for the rank's files
    assert [report.rank for report in reports] == [0, 1]
    assert reports[0].written == tuple(output for _, output in jobs[0::2])
    assert reports[1].written == tuple(output for _, output in jobs[1::2])
    assert all(report.skipped == () and report.failed == () for report in reports)
    assert all(output.is_file() for _, output in jobs)

    FitsOneWindow.batches.clear()
    again = predict_sharded(jobs, method=FitsOneWindow.id, settings=SETTINGS, registry=registry)
    assert again.rank == 1
    assert again.written == ()
    assert again.skipped == reports[1].written
    assert FitsOneWindow.batches == []


# -- the DICOM node: one engine for every series it receives -------------------------------


def test_the_node_translates_every_series_on_one_engine(tmp_path: Path) -> None:
    translator = SeriesTranslator(
        method=FitsOneWindow(),
        settings=SETTINGS,
        manifest=tmp_path / "manifest.jsonl",
        work=tmp_path / "spool",
        output=tmp_path / "out",
        registry=_registry(),
    )
    FitsOneWindow.batches.clear()
    for seed in range(3):
        folder = tmp_path / "spool" / f".taken-{seed}"
        values = np.random.default_rng(seed).integers(0, 800, size=SHAPE).astype(np.float64)
        files = write_series(folder, values, modality="MR", rescale=(1.0, 0.0))
        record = translator.handle(
            TakenSeries(
                series_uid=f"series {seed}",
                folder=folder,
                instances=len(files),
                complete=True,
                receive_seconds=0.0,
                calling_ae_titles=("SCANNER",),
            )
        )
        assert record.status == "done", record.error
    first, *later = FitsOneWindow.batches
    assert max(first) == 4
    assert len(later) == 2
    assert all(set(seen) == {1} for seen in later), later
