"""Benchmark Q1x (cross-subject MR→CT): its splits, grid, body mask, cache key and harness.

Small phantoms stand in for the three real CTs; the real data is only needed by the
slow test that reproduces the committed baselines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from medi2i_bench.commands import bench_group
from medi2i_bench.datasets import (
    Volume,
    body_mask,
    build_dataset,
    build_splits,
    resample_to_spacing,
)
from medi2i_bench.harness import BenchResult, run_benchmarks
from medi2i_bench.mr_ct_data import (
    Q1X_SPACING_MM,
    Q1X_VALIDATION_FRACTION,
    Q1X_VALIDATION_GAP,
    validation_cut,
)
from medi2i_bench.source_files import CT_FILE, LUNG1_FILE, LUNG2_FILE
from monai.data.meta_tensor import MetaTensor

from medi2i.errors import OptionsError
from medi2i.evaluation import METRIC_PRESETS
from medi2i.io import write_volume
from medi2i.synth import head_phantom

REPOSITORY = Path(__file__).resolve().parents[3]
COMMITTED = REPOSITORY / "benchmarks" / "quality" / "results"


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    image = MetaTensor(
        torch.from_numpy(np.asarray(array, np.float32))[None], affine=torch.as_tensor(affine)
    )
    write_volume(image, path, overwrite=True)  # a test changes a source in place


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three phantom CTs under the shared files' names, on grids finer than Q1x's."""
    folder = tmp_path_factory.mktemp("q1x-sources")
    for seed, (name, slices) in enumerate(((CT_FILE, 12), (LUNG1_FILE, 14), (LUNG2_FILE, 16))):
        phantom = head_phantom(shape=(24, 24, slices), spacing_mm=(1.5, 1.5, 4.0), seed=seed)
        _save(phantom.ct, np.diag([1.0, 1.0, 2.5, 1.0]), folder / name)
    return folder


def _run(sources: Path, work: Path, **kwargs: Any) -> list[BenchResult]:
    with mock.patch.dict(os.environ, {"MEDI2I_DATA_DIR": str(sources)}):
        return run_benchmarks(work_dir=work / "cache", tasks=["q1x"], **kwargs)


def q1x_validation_cut(slices: int) -> tuple[int, int]:
    return validation_cut(slices, fraction=Q1X_VALIDATION_FRACTION, gap=Q1X_VALIDATION_GAP)


def _z_range(volume: Volume) -> tuple[float, float]:
    """World coordinates (mm) of the first and last slice centres along array z."""
    first = float(volume.affine[2, 3])
    return first, first + float(volume.affine[2, 2]) * (volume.array.shape[2] - 1)


def test_validation_cut_holds_out_the_last_fifth_after_a_gap() -> None:
    assert q1x_validation_cut(48) == (36, 38)  # lung1 on the 5 mm grid
    assert q1x_validation_cut(61) == (47, 49)  # lung2
    train_stop, validation_start = q1x_validation_cut(10)
    assert validation_start - train_stop == Q1X_VALIDATION_GAP


def test_splits_never_train_on_the_test_subject_or_the_validation_slices(
    sources: Path, tmp_path: Path
) -> None:
    split_a, split_b = build_splits("q1x", work_dir=tmp_path, source_dir=sources)
    for dataset, held, tested in ((split_a, "lung1", "lung2"), (split_b, "lung2", "lung1")):
        names = [case.name for case in dataset.train_pairs]
        assert names == [f"{dataset.split}-invesalius0051", f"{dataset.split}-{held}-train"]
        assert [case.name for case in dataset.validation] == [f"{dataset.split}-{held}-val"]
        assert [case.name for case in dataset.test] == [f"{dataset.split}-{tested}-test"]
        assert not any(tested in name for name in names)
        # the held subject: training slices end a gap before the validation slices begin
        (train,), (validation,) = dataset.train_pairs[1:], dataset.validation
        whole = split_b.test[0] if held == "lung1" else split_a.test[0]
        slices = whole.target.array.shape[2]
        train_stop, validation_start = q1x_validation_cut(slices)
        assert train.target.array.shape[2] == train_stop
        assert validation.target.array.shape[2] == slices - validation_start
        gap_mm = _z_range(validation.target)[0] - _z_range(train.target)[1]
        assert gap_mm == pytest.approx((Q1X_VALIDATION_GAP + 1) * Q1X_SPACING_MM[2])
        np.testing.assert_array_equal(train.target.array, whole.target.array[:, :, :train_stop])
        np.testing.assert_array_equal(
            validation.source.array, whole.source.array[:, :, validation_start:]
        )
        for case in (*dataset.train_pairs, *dataset.validation, *dataset.test):
            assert case.target.spacing_mm == pytest.approx(Q1X_SPACING_MM)
            assert case.source.array.shape == case.target.array.shape == case.mask.array.shape


def test_a_split_must_be_chosen_and_exist(sources: Path, tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="choose one"):
        build_dataset("q1x", work_dir=tmp_path, source_dir=sources)
    with pytest.raises(OptionsError, match="not 'c'"):
        build_dataset("q1x", work_dir=tmp_path, source_dir=sources, split="c")
    with pytest.raises(OptionsError, match="no splits"):
        build_dataset("q1", work_dir=tmp_path, source_dir=sources, split="a")


def test_the_fingerprint_follows_every_source(sources: Path, tmp_path: Path) -> None:
    first = build_dataset("q1x", work_dir=tmp_path, source_dir=sources, split="a")
    again = build_dataset("q1x", work_dir=tmp_path, source_dir=sources, split="a")
    assert again.fingerprint == first.fingerprint
    assert again.folder == first.folder
    fingerprints = {first.fingerprint}
    for changed_file in (CT_FILE, LUNG1_FILE, LUNG2_FILE):
        changed = tmp_path / f"changed-{changed_file}"
        changed.mkdir()
        for name in (CT_FILE, LUNG1_FILE, LUNG2_FILE):
            (changed / name).write_bytes((sources / name).read_bytes())
        _save(np.full((20, 20, 12), -1000.0), np.eye(4), changed / changed_file)
        split = build_dataset("q1x", work_dir=tmp_path, source_dir=changed, split="a")
        fingerprints.add(split.fingerprint)
    assert len(fingerprints) == 4


def test_resampling_keeps_the_extent_and_a_constant() -> None:
    affine = np.diag([0.5, 0.5, 1.0, 1.0])
    affine[:3, 3] = [10.0, 20.0, 30.0]
    volume = Volume(np.full((40, 40, 20), 37.0, np.float32), affine)
    coarse = resample_to_spacing(volume, (2.0, 2.0, 5.0))
    assert coarse.array.shape == (10, 10, 4)
    assert coarse.spacing_mm == pytest.approx((2.0, 2.0, 5.0))
    np.testing.assert_allclose(coarse.array, 37.0, rtol=1e-6)
    # the first voxel's corner stays where it was: old corner + half the new voxel
    old_corner = affine[:3, 3] - 0.5 * np.array([0.5, 0.5, 1.0])
    np.testing.assert_allclose(coarse.affine[:3, 3], old_corner + np.array([1.0, 1.0, 2.5]))


def test_the_mask_fills_lungs_that_reach_the_scan_ends() -> None:
    ct = np.full((20, 20, 6), -1000.0, np.float32)
    ct[3:17, 3:17] = 40.0  # the body, through every slice
    ct[6:14, 6:14] = -850.0  # a lung open at both ends of the scan
    assert not body_mask(ct)[10, 10, 3]  # open to the outside in 3D
    filled = body_mask(ct, fill_slices_axis=2)
    assert filled[10, 10].all()
    assert not filled[1, 1].any()


def test_both_splits_are_fitted_and_scored_on_their_own_cases(
    sources: Path, tmp_path: Path
) -> None:
    (result,) = _run(sources, tmp_path, output_dir=tmp_path / "out")
    assert result.cases == ("a-lung1-val", "a-lung2-test", "b-lung2-val", "b-lung1-test")
    assert [c.name for c in result.contenders] == ["bulk-water", "monotone-mapping"]
    monotone = result.contenders[1].description
    assert "split a: " in monotone
    assert "(a-invesalius0051, a-lung1-train)" in monotone
    assert "split b: " in monotone
    assert "(b-invesalius0051, b-lung2-train)" in monotone
    for case in result.cases:
        assert list(result.scores["monotone-mapping"][case]) == list(METRIC_PRESETS["synthrad"])
    record = json.loads((tmp_path / "out" / "q1x_baselines.json").read_text())
    assert record["splits"]["a"]["test"] == ["a-lung2-test"]
    assert record["protocol"] == "BENCHMARKS.md, Q1x"
    table = (tmp_path / "out" / "q1x_baselines.md").read_text()
    assert "| monotone-mapping | baseline | b-lung1-test |" in table
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
        "q1x_baselines_a-lung2-test.png",
        "q1x_baselines_b-lung1-test.png",
    ]


def test_a_trained_model_is_scored_on_one_split_only(sources: Path, tmp_path: Path) -> None:
    from medi2i_bench import harness

    fake = [("model", "model", object(), Path("model"))]
    with (
        mock.patch.object(harness, "_load_contenders", return_value=fake),
        mock.patch.object(harness, "_check_served"),
        pytest.raises(OptionsError, match="--split"),
    ):
        _run(sources, tmp_path, models=["model"], output_dir=tmp_path / "out")


def test_bench_run_command_runs_one_split(sources: Path, tmp_path: Path) -> None:
    arguments = ["run", "--task", "q1x", "--split", "b", "--output", str(tmp_path / "out")]
    arguments += ["--work-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(bench_group(), arguments, env={"MEDI2I_DATA_DIR": str(sources)})
    assert result.exit_code == 0, result.output
    assert "| bulk-water | baseline | b-lung1-test |" in result.output
    assert "a-lung2-test" not in result.output


@pytest.mark.slow
def test_committed_q1x_baselines_are_reproduced(tmp_path: Path) -> None:
    folder = Path(os.environ.get("MEDI2I_DATA_DIR", ""))
    if not os.environ.get("MEDI2I_DATA_DIR") or not (folder / LUNG2_FILE).is_file():
        pytest.skip("MEDI2I_DATA_DIR is unset or lacks the shared volumes")
    committed = json.loads((COMMITTED / "q1x_baselines.json").read_text())
    (result,) = run_benchmarks(tasks=["q1x"], output_dir=tmp_path, work_dir=tmp_path / "cache")
    assert committed["dataset_fingerprint"] == result.dataset_fingerprint
    for entry in committed["results"]:
        for case, values in entry["cases"].items():
            for metric, value in values.items():
                assert result.scores[entry["name"]][case][metric] == pytest.approx(value, rel=1e-6)


# -- Q4: Q1x split a under three scanner styles ------------------------------------------


def test_q4_styles_split_as_q1x_a_and_keep_the_ct(sources: Path, tmp_path: Path) -> None:
    q4 = build_dataset("q4", work_dir=tmp_path, source_dir=sources)
    q1x = build_dataset("q1x", work_dir=tmp_path, source_dir=sources, split="a")

    assert [c.name for c in q4.train_pairs] == [
        f"{part}-{style}" for part in ("invesalius0051", "lung1-train") for style in "ABC"
    ]
    assert [c.name for c in q4.validation] == ["lung1-val-A", "lung1-val-B", "lung1-val-C"]
    assert [c.name for c in q4.test] == ["lung2-test-A", "lung2-test-B", "lung2-test-C"]
    assert [c.source_domain for c in q4.test] == ["A", "B", "C"]
    plain = {c.name.removeprefix("a-"): c for c in (*q1x.train_pairs, *q1x.validation, *q1x.test)}
    for case in (*q4.train_pairs, *q4.validation, *q4.test):
        same = plain[case.name.rsplit("-", 1)[0]]
        # the CT, mask and grid are Q1x's; only the MR's look changes
        np.testing.assert_array_equal(case.target.array, same.target.array)
        np.testing.assert_array_equal(case.mask.array, same.mask.array)
        np.testing.assert_allclose(case.source.affine, same.source.affine)
        assert case.source.array.shape == same.source.array.shape
    b, c = q4.test[1].source.array, q4.test[2].source.array
    inside = q4.test[0].mask.array > 0
    assert np.median(b[inside]) < np.median(c[inside])  # scanner B's units are C's smaller
