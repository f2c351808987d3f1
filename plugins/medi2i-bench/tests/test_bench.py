"""Tests of medi2i_bench: data building per protocol, baselines, harness, figures, CLI.

Most tests run on small stand-ins for the shared files (phantoms written under the
real file names); the full benchmark on the real data is a slow test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import medi2i_harmonization
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from medi2i_bench.baselines import baselines_for, bulk_water
from medi2i_bench.cases import mirrored_case, read_volume_file
from medi2i_bench.commands import bench_group
from medi2i_bench.datasets import body_mask, build_dataset, head_mask
from medi2i_bench.harness import BenchResult, run_benchmarks
from medi2i_bench.mr_ct_data import Q1_VALIDATION_MIRROR_AXIS
from medi2i_bench.source_files import COLIN27_FILE, CT_FILE, MNI152_FILE
from monai.data.meta_tensor import MetaTensor
from pydantic import BaseModel

import medi2i.builtins
from medi2i.errors import InputError, OptionsError
from medi2i.evaluation import METRIC_PRESETS
from medi2i.io import write_volume
from medi2i.method import DomainSpec
from medi2i.synth import Tissue, head_phantom
from medi2i.testing import example_methods, isolated_registry

REPOSITORY = Path(__file__).resolve().parents[3]
COMMITTED = REPOSITORY / "benchmarks" / "quality" / "results"
MAX_PNG_BYTES = 300_000


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    image = MetaTensor(
        torch.from_numpy(np.asarray(array, np.float32))[None], affine=torch.as_tensor(affine)
    )
    write_volume(image, path, overwrite=True)  # a test changes a source in place


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small phantoms under the shared files' names: a CT wide enough for Q1's split,
    a whole-head T1 (Colin27's role) and a brain-only T1 (MNI152's role), on 1 mm grids."""
    folder = tmp_path_factory.mktemp("sources")
    ct_phantom = head_phantom(shape=(160, 24, 16), spacing_mm=(1.0, 8.0, 10.0), seed=0)
    _save(ct_phantom.ct, np.diag([1.0, 1.0, 1.5, 1.0]), folder / CT_FILE)
    head = head_phantom(shape=(24, 28, 25), spacing_mm=(7.0, 7.0, 7.0), seed=1)
    _save(head.clean_t1() * 200.0, np.eye(4), folder / COLIN27_FILE)
    brain = head_phantom(shape=(26, 30, 25), spacing_mm=(6.0, 6.0, 7.0), seed=2)
    inside = np.isin(brain.labels, [Tissue.GREY_MATTER, Tissue.WHITE_MATTER, Tissue.VENTRICLE])
    _save(brain.clean_t1() * 250.0 * inside, np.eye(4), folder / MNI152_FILE)
    return folder


# -- datasets ---------------------------------------------------------------------------


def test_q1_follows_the_protocol_split_and_mask(sources: Path, tmp_path: Path) -> None:
    dataset = build_dataset("q1", work_dir=tmp_path, source_dir=sources)
    (train,), (validation,), (test,) = dataset.train_pairs, dataset.validation, dataset.test
    # validation: the training half's first fifth of slices (3 of 16), a 7-slice gap before
    # the training slices
    assert train.target.array.shape == (124, 24, 6)
    assert validation.target.array.shape == (124, 24, 3)
    # ... mirrored left-right (the side of the head training never sees, as the test half
    # is), on the same grid
    assert Q1_VALIDATION_MIRROR_AXIS == 0
    np.testing.assert_array_equal(validation.target.affine[:3, :3], train.target.affine[:3, :3])
    source_ct = read_volume_file(sources / CT_FILE).array
    np.testing.assert_array_equal(validation.target.array, source_ct[123::-1, :, :3])
    validation = mirrored_case(validation, 0)
    assert train.target.affine[2, 3] - validation.target.affine[2, 3] == pytest.approx(10 * 1.5)
    assert test.target.array.shape == (28, 24, 16)  # x >= 132 of 160
    # the test half keeps its place in the world: its first voxel is source voxel x = 132
    np.testing.assert_allclose(test.target.affine[:3, 3], [132.0, 0.0, 0.0], atol=1e-4)
    assert test.source.array.shape == test.target.array.shape
    half = np.concatenate(
        [validation.target.array, np.zeros((124, 24, 7)), train.target.array], axis=2
    )
    ct = np.concatenate([half, np.zeros((8, 24, 16)), test.target.array])
    expected = body_mask(ct)
    np.testing.assert_array_equal(test.mask.array > 0, expected[132:])
    np.testing.assert_array_equal(validation.mask.array > 0, expected[:124, :, :3])
    # the MR is dark where the CT is air, bright where it is fat
    air, fat = test.target.array < -900, np.abs(test.target.array + 100) < 20
    assert test.source.array[fat].mean() > 4 * test.source.array[air].mean()


def test_datasets_are_cached_and_keyed_by_their_sources(sources: Path, tmp_path: Path) -> None:
    first = build_dataset("q2", work_dir=tmp_path, source_dir=sources)
    index = first.folder / "dataset.json"
    stamp = index.stat().st_mtime_ns
    again = build_dataset("q2", work_dir=tmp_path, source_dir=sources)
    assert again.folder == first.folder
    assert index.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.test[0].source.array, first.test[0].source.array)
    changed = tmp_path / "changed"
    changed.mkdir()
    for name in (COLIN27_FILE, MNI152_FILE):
        (changed / name).write_bytes((sources / name).read_bytes())
    _save(np.ones((8, 8, 9)), np.eye(4), changed / COLIN27_FILE)
    assert build_dataset("q2", work_dir=tmp_path, source_dir=changed).folder != first.folder


def test_a_cached_file_changed_after_the_build_is_refused(sources: Path, tmp_path: Path) -> None:
    built = build_dataset("q3", work_dir=tmp_path, source_dir=sources)
    mask = built.folder / "test" / built.test[0].name / "mask.nii.gz"
    volume = read_volume_file(mask)
    halved = np.asarray(volume.array, np.float32).copy()
    halved[: halved.shape[0] // 2] = 0  # half of the scored region gone
    _save(halved, volume.affine, mask)
    with pytest.raises(InputError, match=r"mask.nii.gz is not the file the build wrote"):
        build_dataset("q3", work_dir=tmp_path, source_dir=sources)


def test_q2_keeps_every_fourth_and_second_slice(sources: Path, tmp_path: Path) -> None:
    dataset = build_dataset("q2", work_dir=tmp_path, source_dir=sources)
    assert [c.name for c in dataset.test] == ["colin27-x4", "colin27-x2"]
    assert [c.name for c in dataset.train_pairs] == ["mni152-x4", "mni152-x2"]
    x4, x2 = dataset.test
    assert x4.source.array.shape == (24, 28, 7)
    assert x2.source.array.shape == (24, 28, 13)
    assert x4.source.spacing_mm == pytest.approx((1.0, 1.0, 4.0))
    assert x4.target.array.shape == (24, 28, 25)


def test_q2c_has_a_5mm_and_an_anisotropic_case_on_whole_slice_grids(
    sources: Path, tmp_path: Path
) -> None:
    dataset = build_dataset("q2c", work_dir=tmp_path, source_dir=sources)
    assert [c.name for c in dataset.test] == ["colin27-5mm", "colin27-aniso"]
    assert [c.name for c in dataset.train_pairs] == ["mni152-5mm", "mni152-aniso"]
    five, aniso = dataset.test
    # Colin27's stand-in has 25 slices of 1 mm: 24 = 4 × 5 mm, slices 0, 5, ..., 20 kept
    assert five.target.array.shape == (24, 28, 21)
    assert five.source.array.shape == (24, 28, 5)
    assert five.source.spacing_mm == pytest.approx((1.0, 1.0, 5.0))
    # 0.8 mm grid from the same first voxel centre: (n - 1) / 0.8 + 1 voxels per axis,
    # then the slices cut to a whole number of 4 mm slices plus one
    assert aniso.target.spacing_mm == pytest.approx((0.8, 0.8, 0.8))
    assert aniso.target.array.shape == (29, 34, 31)
    assert aniso.source.spacing_mm == pytest.approx((0.8, 0.8, 4.0))
    assert aniso.source.array.shape == (29, 34, 7)
    np.testing.assert_allclose(aniso.target.affine[:3, 3], five.target.affine[:3, 3])
    colin = build_dataset("q2", work_dir=tmp_path, source_dir=sources).test[0].target.array
    assert aniso.target.array.min() >= colin.min()
    assert aniso.target.array.max() <= colin.max()
    for case in dataset.test:
        assert case.mask.array.shape == case.target.array.shape
        assert case.mask.array.any()


def test_q2c_baselines_refine_the_slices_onto_each_cases_reference_grid(
    sources: Path, tmp_path: Path
) -> None:
    dataset = build_dataset("q2c", work_dir=tmp_path / "cache", source_dir=sources)
    for contender in baselines_for(dataset):
        assert "slice_factor: 5.0" in contender.description
        for case in dataset.test:
            restored = contender.predict(case)
            assert restored.shape == case.target.array.shape
            np.testing.assert_allclose(restored[:, :, ::5], case.source.array, atol=1e-3)


def test_q3_has_three_training_scanners_and_a_b_to_a_test(sources: Path, tmp_path: Path) -> None:
    dataset = build_dataset("q3", work_dir=tmp_path, source_dir=sources)
    assert [v.domain for v in dataset.train_domains] == ["A", "B", "C"]
    (case,) = dataset.test
    assert case.name == "colin27-B-to-A"
    # scanner B's units are about a third of A's
    inside = case.mask.array > 0
    ratio = np.median(case.source.array[inside]) / np.median(case.target.array[inside])
    assert 0.2 < ratio < 0.6


def test_missing_data_is_reported_with_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MEDI2I_DATA_DIR", raising=False)
    monkeypatch.setenv("MEDI2I_CACHE_DIR", str(tmp_path))  # no prepared data there
    with pytest.raises(InputError, match="MEDI2I_DATA_DIR is not set"):
        build_dataset("q1")
    with pytest.raises(OptionsError, match="q1, q2, q3, q1x, q3m"):
        build_dataset("q9", source_dir=".")  # type: ignore[arg-type]


def test_head_mask_matches_a_phantom_head() -> None:
    phantom = head_phantom(shape=(32, 32, 32), spacing_mm=(6.0, 6.5, 6.0), seed=3)
    mask, truth = head_mask(phantom.mr), phantom.head_mask
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice > 0.95


# -- baselines --------------------------------------------------------------------------


def test_bulk_water_is_zero_inside_and_air_outside() -> None:
    mask = np.zeros((4, 4, 4))
    mask[1:3, 1:3, 1:3] = 1
    water = bulk_water(mask)
    assert set(np.unique(water[mask > 0])) == {0.0}
    assert set(np.unique(water[mask == 0])) == {-1000.0}


def test_q2_baselines_are_the_registered_interpolation_exact_on_kept_slices(
    sources: Path, tmp_path: Path
) -> None:
    dataset = build_dataset("q2", work_dir=tmp_path / "cache", source_dir=sources)
    linear, cubic = baselines_for(dataset)
    assert [linear.name, cubic.name] == ["linear", "cubic-bspline"]
    assert linear.description.startswith("method interpolation 0.1.0 (order: linear, align:")
    assert "(order: bspline, align: centres)" in cubic.description
    for case in dataset.test:
        step = round(case.source.spacing_mm[2] / case.target.spacing_mm[2])
        for contender in (linear, cubic):
            restored = contender.predict(case)
            # on the thin-slice grid, and the kept slices come back as they are
            assert restored.shape == case.target.array.shape
            np.testing.assert_allclose(restored[:, :, ::step], case.source.array, atol=1e-3)


def test_q3_baselines_are_the_registered_harmonization_methods_fitted_on_a(
    sources: Path, tmp_path: Path
) -> None:
    dataset = build_dataset("q3", work_dir=tmp_path / "cache", source_dir=sources)
    registry = isolated_registry(medi2i_harmonization)
    identity, zscore, nyul = baselines_for(dataset, registry=registry)
    assert [identity.name, zscore.name, nyul.name] == ["no-harmonization", "z-score", "nyul"]
    (scanner_a,) = [v.image.array for v in dataset.train_domains if v.domain == "A"]
    method = registry.method("zscore")({"foreground": "otsu"})
    method.fit([scanner_a])
    mean, std = method.state_values().values()
    assert f"onto scanner A's training mean {mean:.1f} and std {std:.1f}" in zscore.description
    (case,) = dataset.test
    # exactly what the method, fitted on scanner A, does to the input
    harmonized = method.standardize(np.asarray(case.source.array, np.float64))
    np.testing.assert_allclose(zscore.predict(case), harmonized, rtol=1e-5, atol=1e-3)
    assert "method nyul" in nyul.description


def test_a_missing_baseline_plugin_says_what_to_install(sources: Path, tmp_path: Path) -> None:
    dataset = build_dataset("q3", work_dir=tmp_path / "cache", source_dir=sources)
    with pytest.raises(OptionsError, match="pip install -e plugins/medi2i-harmonization"):
        baselines_for(dataset, registry=isolated_registry(example_methods))


# -- harness ----------------------------------------------------------------------------


def test_run_benchmarks_writes_tables_and_small_montages(sources: Path, tmp_path: Path) -> None:
    output = tmp_path / "results"
    # Q1x has tests of its own (test_bench_q1x.py), with phantoms of its three CTs
    results = _run(sources, tmp_path, tasks=["q1", "q2", "q3"], output_dir=output)
    assert [r.task for r in results] == ["q1", "q2", "q3"]
    for task, names in {
        "q1": ["bulk-water", "monotone-mapping"],
        "q2": ["linear", "cubic-bspline"],
        "q3": ["no-harmonization", "z-score", "nyul"],
    }.items():
        record = json.loads((output / f"{task}_baselines.json").read_text())
        assert [r["name"] for r in record["results"]] == names
        table = (output / f"{task}_baselines.md").read_text()
        assert all(f"| {name} | baseline |" in table for name in names)
        pngs = sorted(output.glob(f"{task}_baselines_*.png"))
        assert pngs
        assert all(p.stat().st_size < MAX_PNG_BYTES for p in pngs)
    q1 = {r.task: r for r in results}["q1"].scores
    assert (
        q1["monotone-mapping"]["invesalius0051-test"]["synthrad_mae"]
        < q1["bulk-water"]["invesalius0051-test"]["synthrad_mae"]
    )
    # the registered synthrad preset: the air outside the body beside the SynthRAD metrics
    assert (
        "| SynthRAD MAE (HU) ↓ | SynthRAD PSNR (dB) ↑ | SynthRAD MS-SSIM ↑ | air MAE (HU) ↓ |"
        in (output / "q1_baselines.md").read_text()
    )
    assert list(q1["bulk-water"]["invesalius0051-test"]) == list(METRIC_PRESETS["synthrad"])
    # Q3's plain MAE is the registered "mae", not the SynthRAD one
    q3 = {r.task: r for r in results}["q3"]
    assert [name for name, _, _ in q3.metrics] == list(METRIC_PRESETS["mr"])


def _run(sources: Path, work: Path, **kwargs: Any) -> list[BenchResult]:
    """Run the harness with ``sources`` standing in for the shared data folder."""
    with mock.patch.dict(os.environ, {"MEDI2I_DATA_DIR": str(sources)}):
        return run_benchmarks(work_dir=work / "cache", **kwargs)


def test_methods_and_models_run_beside_the_baselines(sources: Path, tmp_path: Path) -> None:
    from medi2i.model_folder import save_model
    from medi2i.testing.example_methods import FittedStandardization

    registry = isolated_registry(medi2i.builtins, medi2i_harmonization, example_methods)
    fitted = FittedStandardization()
    fitted.fit([np.full((4, 4, 4), 800.0), np.full((4, 4, 4), 1000.0)])
    model = save_model(fitted, tmp_path / "standardizer")
    methods = ["example-self-rescaling", "example-fitted-standardization"]
    output = tmp_path / "results"
    (result,) = _run(
        sources,
        tmp_path,
        tasks=["q3"],
        methods=methods,
        models=[model],
        output_dir=output,
        registry=registry,
    )
    names = [c.name for c in result.contenders]
    assert names == ["no-harmonization", "z-score", "nyul", *methods, "standardizer"]
    assert (output / "q3_comparison.md").is_file()
    # the model's row says where it was trained, as its folder records
    assert "trained outside the benchmark" in result.contenders[-1].description
    # fitted on scanner A's training image: it lands in A's units, unlike the raw input
    scores = result.scores
    case = "colin27-B-to-A"
    assert (
        scores["example-fitted-standardization"][case]["mae"]
        < scores["no-harmonization"][case]["mae"]
    )


def test_the_monotone_baseline_is_the_registered_method_and_runs_as_one_too(
    sources: Path, tmp_path: Path
) -> None:
    (result,) = _run(
        sources, tmp_path, tasks=["q1"], methods=["monotone-mapping"], output_dir=tmp_path
    )
    baseline, method = result.contenders[1:]
    assert (baseline.name, baseline.kind) == ("monotone-mapping", "baseline")
    assert "method monotone-mapping" in baseline.description
    # the method as users run it: fitted on the training pair, named apart from the baseline
    assert (method.name, method.kind) == ("monotone-mapping-method", "method")
    case = "invesalius0051-test"
    scores = result.scores
    assert scores[method.name][case]["synthrad_mae"] < scores["bulk-water"][case]["synthrad_mae"]
    # the baseline is -1000 HU outside the body mask, the method air (-1000 HU) outside
    # the MR's body, which it finds itself
    mask = build_dataset("q1", work_dir=tmp_path / "cache", source_dir=sources).test[0].mask
    outside = mask.array == 0
    assert (result.predictions[(baseline.name, case)][outside] == -1000.0).all()
    assert (result.predictions[(method.name, case)] == -1000.0).any()


def test_methods_that_need_training_or_serve_another_task_are_refused(
    sources: Path, tmp_path: Path
) -> None:
    registry = isolated_registry(example_methods)
    with pytest.raises(OptionsError, match="--model"):
        _run(
            sources,
            tmp_path,
            tasks=["q2"],
            methods=["example-through-plane-upsampler"],
            output_dir=tmp_path,
            registry=registry,
        )
    with pytest.raises(OptionsError, match="none of the chosen benchmarks"):
        _run(
            sources,
            tmp_path,
            tasks=["q1"],
            methods=["example-self-rescaling"],
            output_dir=tmp_path,
            registry=registry,
        )


def test_bench_run_command(sources: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    arguments = [
        "run",
        "--task",
        "q2",
        "--output",
        str(tmp_path / "out"),
        "--work-dir",
        str(tmp_path / "cache"),
    ]
    result = runner.invoke(bench_group(), arguments, env={"MEDI2I_DATA_DIR": str(sources)})
    assert result.exit_code == 0, result.output
    assert "| cubic-bspline | baseline | colin27-x4 |" in result.output
    assert (tmp_path / "out" / "q2_baselines.json").is_file()


def test_bench_run_names_a_sliding_window_other_than_predicts_default(
    sources: Path, tmp_path: Path
) -> None:
    arguments = ["run", "--task", "q1", "--method", "monotone-mapping", "--overlap", "0.5"]
    arguments += ["--output", str(tmp_path / "out"), "--work-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(bench_group(), arguments, env={"MEDI2I_DATA_DIR": str(sources)})
    assert result.exit_code == 0, result.output
    legend = {
        line.split("`")[1]: line for line in result.output.splitlines() if line.startswith("- `")
    }
    assert legend["monotone-mapping-method"].endswith(
        "; sliding window overlap 0.5, gaussian blending"
    )
    assert "sliding window" not in legend["bulk-water"]
    refused = CliRunner().invoke(bench_group(), [*arguments[:6], "1.0"])
    assert refused.exit_code == 2


def test_bench_run_names_a_window_size_and_refuses_a_bad_one(sources: Path, tmp_path: Path) -> None:
    arguments = ["run", "--task", "q1", "--method", "monotone-mapping"]
    arguments += ["--output", str(tmp_path / "out"), "--work-dir", str(tmp_path / "cache")]
    env = {"MEDI2I_DATA_DIR": str(sources)}
    result = CliRunner().invoke(bench_group(), [*arguments, "--roi-size", "64,64,32"], env=env)
    assert result.exit_code == 0, result.output
    legend = {
        line.split("`")[1]: line for line in result.output.splitlines() if line.startswith("- `")
    }
    assert legend["monotone-mapping-method"].endswith("; window 64 × 64 × 32 voxels")
    assert "window" not in legend["bulk-water"]
    refused = CliRunner().invoke(bench_group(), [*arguments, "--roi-size", "64,0,32"], env=env)
    assert refused.exit_code != 0
    assert "--roi-size" in str(refused.exception)  # the CLI's handler prints it as one line


# -- the real benchmark -----------------------------------------------------------------


def _real_data() -> Path:
    folder = Path(os.environ.get("MEDI2I_DATA_DIR", ""))
    if not os.environ.get("MEDI2I_DATA_DIR") or not (folder / CT_FILE).is_file():
        pytest.skip("MEDI2I_DATA_DIR is unset or lacks the shared volumes")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("task", ["q1", "q2", "q3", "q3m", "q4", "q2c"])
def test_committed_baselines_are_reproduced(task: str, tmp_path: Path) -> None:
    _real_data()
    committed = json.loads((COMMITTED / f"{task}_baselines.json").read_text())
    # a fresh cache: the data is rebuilt from the shared files, as in a clean clone
    (result,) = run_benchmarks(tasks=[task], output_dir=tmp_path, work_dir=tmp_path / "cache")  # type: ignore[list-item]
    assert committed["dataset_fingerprint"] == result.dataset_fingerprint
    for entry in committed["results"]:
        for case, values in entry["cases"].items():
            for metric, value in values.items():
                assert result.scores[entry["name"]][case][metric] == pytest.approx(value, rel=1e-6)


MR_DOMAIN = DomainSpec(name="mr", modality="MR")
CT_DOMAIN = DomainSpec(name="ct", modality="CT")


class _Direction(BaseModel):
    direction: str = "a2b"


@pytest.mark.parametrize(
    ("task", "domains", "expected"),
    [
        ("q1x", [MR_DOMAIN, CT_DOMAIN], "a2b"),
        ("q1x", [CT_DOMAIN, MR_DOMAIN], "b2a"),
        ("q3", [DomainSpec(name="A"), DomainSpec(name="B")], "b2a"),
        ("q3", [DomainSpec(name="B"), DomainSpec(name="A")], "a2b"),
    ],
)
def test_a_two_way_model_is_scored_in_the_direction_of_the_benchmarks_target(
    task: str, domains: list[DomainSpec], expected: str
) -> None:
    from medi2i_bench.contenders import _target_condition

    method = SimpleNamespace(Condition=_Direction, domains=tuple(domains))
    dataset = SimpleNamespace(task=task)
    case = SimpleNamespace(name="case", source_domain="", target_domain="")
    condition = _target_condition(method, dataset, case)  # type: ignore[arg-type]
    assert condition == {"direction": expected}


class _Target(BaseModel):
    target_domain: str | None = None
    source_domain: str | None = None


def test_a_multi_domain_model_is_told_each_q3m_cases_scanners() -> None:
    from medi2i_bench.contenders import _target_condition

    method = SimpleNamespace(Condition=_Target, domains=())
    dataset = SimpleNamespace(task="q3m")
    case = SimpleNamespace(name="colin27-C-to-B", source_domain="C", target_domain="B")
    condition = _target_condition(method, dataset, case)  # type: ignore[arg-type]
    assert condition == {"target_domain": "B", "source_domain": "C"}
    scanners = (DomainSpec(name="A"), DomainSpec(name="B"))
    two_way = SimpleNamespace(id="cyclegan", Condition=_Direction, domains=scanners)
    with pytest.raises(OptionsError, match="scored on Q3"):
        _target_condition(two_way, dataset, case)  # type: ignore[arg-type]


def test_q3m_has_every_ordered_pair_and_q3s_case_among_them(sources: Path, tmp_path: Path) -> None:
    q3m = build_dataset("q3m", work_dir=tmp_path, source_dir=sources)
    q3 = build_dataset("q3", work_dir=tmp_path, source_dir=sources)
    pairs = [(c.source_domain, c.target_domain) for c in q3m.test]
    assert pairs == [("A", "B"), ("A", "C"), ("B", "A"), ("B", "C"), ("C", "A"), ("C", "B")]
    assert [c.name for c in q3m.test][2] == "colin27-B-to-A"
    (q3_case,) = q3.test
    same = q3m.test[2]
    np.testing.assert_array_equal(same.source.array, q3_case.source.array)
    np.testing.assert_array_equal(same.target.array, q3_case.target.array)
    for left, right in zip(q3m.train_domains, q3.train_domains, strict=True):
        np.testing.assert_array_equal(left.image.array, right.image.array)
    # one look of Colin27 per scanner, whichever pair it appears in
    by_source = {c.source_domain: c.source.array for c in q3m.test}
    for case in q3m.test:
        np.testing.assert_array_equal(case.target.array, by_source[case.target_domain])


def test_q3m_baselines_are_fitted_on_each_cases_target_scanner(
    sources: Path, tmp_path: Path
) -> None:
    output = tmp_path / "results"
    registry = isolated_registry(medi2i.builtins, medi2i_harmonization)
    (result,) = _run(sources, tmp_path, tasks=["q3m"], output_dir=output, registry=registry)
    dataset = build_dataset("q3m", work_dir=tmp_path / "cache", source_dir=sources)
    zscore = registry.method("zscore")
    for case in dataset.test:
        (images,) = [v.image.array for v in dataset.train_domains if v.domain == case.target_domain]
        method = zscore({"foreground": "otsu"})
        method.fit([images])
        expected = method.standardize(np.asarray(case.source.array, np.float64))
        inside = case.mask.array > 0
        mae = float(np.abs(expected - case.target.array)[inside].mean())
        assert result.scores["z-score"][case.name]["mae"] == pytest.approx(mae, rel=1e-4)
    table = (output / "q3m_baselines.md").read_text()
    assert "Mean over the 6 cases:" in table
    mean = np.mean([result.scores["nyul"][c.name]["mae"] for c in dataset.test])
    assert f"| nyul | {mean:.2f} |" in table
