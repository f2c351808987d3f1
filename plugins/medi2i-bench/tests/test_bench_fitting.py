"""Tests of how the benchmarks fit unpaired and multi-domain methods, describe trained
models' training data, and find prepared data without the shared data folder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from medi2i_bench.cases import BenchDataset
from medi2i_bench.contenders import Contender, fit_for, fitted_note
from medi2i_bench.datasets import build_dataset
from medi2i_bench.harness import BenchResult, _origin_note, _serves, environment
from medi2i_bench.model_origin import model_training_note
from medi2i_bench.source_files import COLIN27_FILE, MNI152_FILE
from monai.data.meta_tensor import MetaTensor

from medi2i import DataKind, Method, StateValue, Task, Training, VolumeSpec
from medi2i.errors import InputError, OptionsError
from medi2i.io import write_volume
from medi2i.model_folder import save_model
from medi2i.testing.example_methods import FittedStandardization

MR = VolumeSpec(modality="MR")


class DomainRange(Method):
    """Maps an input onto the last domain's intensity range, as writing-a-method.md's
    ``fit_domains`` example does; records what it was given."""

    id = "test-domain-range"
    tasks = (Task.HARMONIZATION,)
    data = DataKind.UNPAIRED
    training = Training.FIT
    input_spec = output_spec = MR

    def __init__(self, options: Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self.high = 1.0
        self.given: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    def fit_domains(self, volumes: Mapping[str, Sequence[MetaTensor]]) -> None:
        self.given = (tuple(volumes), self.domain_names)
        target = self.domain_names[-1]  # the documented example's first line
        self.high = float(torch.cat([v.as_tensor().flatten() for v in volumes[target]]).max())

    def predict(self, image: MetaTensor, context: object) -> torch.Tensor:
        return image / image.max().clamp_min(1e-6) * self.high

    def state_values(self) -> dict[str, StateValue]:
        return {"high": self.high}

    def load_state_values(self, values: Mapping[str, StateValue]) -> None:
        self.high = float(values["high"])  # type: ignore[arg-type]


class MultiDomainRange(DomainRange):
    """The multi-domain variant."""

    id = "test-multi-domain-range"
    data = DataKind.MULTI_DOMAIN


class GradientDomainRange(DomainRange):
    """An unpaired method trained by gradient steps: the benchmarks cannot fit it."""

    id = "test-gradient-domain-range"
    training = Training.GRADIENT


def _save(array: np.ndarray, path: Path) -> None:
    image = MetaTensor(torch.from_numpy(np.asarray(array, np.float32))[None], affine=torch.eye(4))
    write_volume(image, path, overwrite=True)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny stand-ins for Q3's two source files: a head and a brain, 12 mm voxels."""
    from medi2i.synth import head_phantom

    folder = tmp_path_factory.mktemp("sources")
    head = head_phantom(shape=(14, 16, 14), spacing_mm=(12.0, 12.0, 12.0), seed=1)
    _save(head.clean_t1() * 200.0, folder / COLIN27_FILE)
    _save(head.clean_t1() * 250.0, folder / MNI152_FILE)
    return folder


@pytest.fixture(scope="module")
def q3(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> BenchDataset:
    return build_dataset("q3", work_dir=tmp_path_factory.mktemp("cache"), source_dir=sources)


# -- fitting on the training images of several scanners -----------------------------------


def test_a_multi_domain_method_gets_its_domains_before_fit_domains(q3: BenchDataset) -> None:
    method = MultiDomainRange()
    fit_for(method, "method", q3, method.id)
    assert method.given == (("A", "B", "C"), ("A", "B", "C"))
    assert [d.modality for d in method.domains] == ["MR", "MR", "MR"]
    assert "scanners A, B, C" in fitted_note(method, "method", q3)


def test_a_single_domain_fitted_method_row_says_what_it_was_fitted_on(
    q3: BenchDataset, tmp_path: Path
) -> None:
    method = FittedStandardization()
    fit_for(method, "method", q3, method.id)
    assert fitted_note(method, "method", q3) == "; fitted on scanner A's training image"
    q3m = BenchDataset("q3m", (), (), (), tmp_path, "0" * 64)
    assert "each case's target scanner's training images" in fitted_note(method, "method", q3m)
    # a trained model is never refitted: its row says where its folder says it was trained
    assert fitted_note(method, "model", q3) == ""


def test_an_unpaired_method_is_fitted_on_the_two_scanners_q3_translates_between(
    q3: BenchDataset,
) -> None:
    method = DomainRange()
    fit_for(method, "method", q3, method.id)
    assert method.given == (("A", "B"), ("A", "B"))
    # it learns two scanners: Q3m, which translates among three, does not score it
    assert _serves(method, "q3")
    assert not _serves(method, "q3m")
    assert _serves(MultiDomainRange(), "q3m")


def test_a_method_trained_by_gradient_steps_is_refused_saying_why(q3: BenchDataset) -> None:
    with pytest.raises(OptionsError, match=r"by gradient steps: train it first .* --model"):
        fit_for(GradientDomainRange(), "method", q3, "g")


# -- what a model row says about its training data ----------------------------------------


def test_a_model_row_says_what_its_folder_records_not_the_benchmarks_cases(
    tmp_path: Path,
) -> None:
    fitted = FittedStandardization()
    fitted.fit([np.full((4, 4, 4), 800.0)])
    with_card = save_model(fitted, tmp_path / "m1", data_cards=["one_subject"])
    note = model_training_note(with_card, ["a-lung2-test"])
    assert note.startswith("trained outside the benchmark, on data card one_subject")
    assert "check that its training left out a-lung2-test" in note
    without = save_model(fitted, tmp_path / "m2")
    assert "its folder does not record" in model_training_note(without)
    dataset = BenchDataset("q1x", (), (), (), tmp_path, "0" * 64, split="a")
    assert _origin_note(None, dataset) == ""


def test_the_splits_line_says_model_rows_were_trained_elsewhere() -> None:
    model = Contender("m", "model", lambda case: np.zeros(1, np.float32), "model x")
    result = BenchResult(
        task="q1x",
        contenders=(model,),
        metrics=(),
        scores={"m": {}},
        seconds={"m": 0.0},
        predictions={},
        dataset_fingerprint="0" * 64,
        cases=(),
        environment=environment(),
        splits={"a": {"train": ["a-x-train"], "validation": ["a-x-val"], "test": ["a-y-test"]}},
    )
    text = result.to_markdown()
    assert "cases the baselines and methods are fitted on" in text
    assert "a model row was trained outside the benchmark" in text


# -- prepared data without MEDI2I_DATA_DIR ------------------------------------------------


def _prepared(q3: BenchDataset, tmp_path: Path) -> Path:
    """A copy of ``q3``'s cache folder (with its ``q3`` link) under ``tmp_path``."""
    cache = tmp_path / "cache"
    shutil.copytree(q3.folder.parent, cache, symlinks=True)
    return cache


def test_a_prepared_work_dir_needs_no_data_dir(
    q3: BenchDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _prepared(q3, tmp_path)
    monkeypatch.delenv("MEDI2I_DATA_DIR", raising=False)
    again = build_dataset("q3", work_dir=cache)
    assert again.fingerprint == q3.fingerprint
    assert again.folder == cache / q3.folder.name
    np.testing.assert_array_equal(again.test[0].source.array, q3.test[0].source.array)


def test_a_stale_or_unrecorded_prepared_folder_asks_for_the_data_dir(
    q3: BenchDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _prepared(q3, tmp_path)
    monkeypatch.delenv("MEDI2I_DATA_DIR", raising=False)
    index_path = cache / q3.folder.name / "dataset.json"
    index = json.loads(index_path.read_text())
    index["source_sha256"] = dict.fromkeys(index["source_sha256"], "00" * 32)
    index_path.write_text(json.dumps(index))
    with pytest.raises(InputError, match=r"stale cache.*MEDI2I_DATA_DIR"):
        build_dataset("q3", work_dir=cache)
    del index["source_sha256"]
    index_path.write_text(json.dumps(index))
    with pytest.raises(InputError, match="does not record its source files"):
        build_dataset("q3", work_dir=cache)
    with pytest.raises(InputError, match="holds no prepared q3m data"):
        build_dataset("q3m", work_dir=cache)
