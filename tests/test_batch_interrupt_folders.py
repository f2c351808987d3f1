"""An interrupted or failed study of ``medi2i batch`` leaves no empty folder of its own,
and never removes a folder that existed before or holds anything."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.data.meta_tensor import MetaTensor

from medi2i.batch import run_batch
from medi2i.batch_study import StudyRunner
from medi2i.io.atomic import atomic_path
from medi2i.method import PredictContext
from tests.test_batch import SELECT_T1, SETTINGS, STUDIES, DoubleToCT, _tree


class InterruptedInPredict(DoubleToCT):
    """Ctrl-C (or SIGTERM) while the first study is predicted."""

    id = "test-double"

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        raise KeyboardInterrupt


def _write_then(error: BaseException) -> object:
    """A writer that starts the output's atomic write (creating the study's folder) and
    is stopped by ``error`` before the output is in place."""

    def write(self: StudyRunner, result: MetaTensor, folder: Path, name: str) -> Path:
        with atomic_path(folder / f"{self.method.id}.nii.gz") as tmp:
            tmp.write_bytes(b"partial")
            raise error
        raise AssertionError("unreachable")

    return write


def _batch(root: Path, out: Path, method: DoubleToCT | None = None) -> None:
    run_batch(
        root,
        out,
        method=method or DoubleToCT(),
        settings=SETTINGS,
        selector=SELECT_T1,
        overwrite=True,  # for the folders a test made there first
    )


def test_an_interrupted_write_leaves_no_empty_study_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    monkeypatch.setattr(StudyRunner, "_write", _write_then(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        _batch(root, out)
    assert not (out / STUDIES[0]).exists()
    assert not (out / STUDIES[0]).parent.exists()  # the patient's folder, made for it
    assert [path.name for path in out.iterdir()] == ["manifest.jsonl"]


def test_a_failed_write_leaves_no_empty_study_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    monkeypatch.setattr(StudyRunner, "_write", _write_then(RuntimeError("disk gone")))
    _batch(root, out)
    assert sorted(path.name for path in out.iterdir()) == ["manifest.jsonl"]


def test_folders_that_existed_or_hold_files_are_kept(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _tree(root)
    kept = out / STUDIES[0]
    kept.mkdir(parents=True)  # the interrupted study's folder: empty, but there before
    neighbour = kept.parent / "notes.txt"
    neighbour.write_text("mine")
    with pytest.raises(KeyboardInterrupt):
        _batch(root, out, InterruptedInPredict())
    assert kept.is_dir()
    assert neighbour.read_text() == "mine"
