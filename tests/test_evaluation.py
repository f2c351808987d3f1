"""MR image metrics, metric objects and presets, result tables, and ``medi2i evaluate``."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from scipy.ndimage import gaussian_filter

from medi2i.cli.main import build_cli
from medi2i.errors import GeometryError, InputError, OptionsError
from medi2i.evaluation import (
    aggregate,
    edge_sharpness,
    evaluate_case,
    evaluation_metrics,
    histogram_distance,
    masked_mae,
    masked_psnr,
    masked_ssim,
    per_case_markdown,
    select_metrics,
    synthrad,
    to_json,
    to_markdown,
    write_json,
)
from medi2i.hookspecs import hookimpl
from medi2i.metrics import Metric, PeakSignalToNoiseRatio
from medi2i.plugins import PluginSet, load_plugins
from medi2i.registry import Registry


def smooth_volume(shape: tuple[int, int, int] = (16, 14, 12), seed: int = 0) -> np.ndarray:
    """Smooth values of mean about 500 and standard deviation 100."""
    field = np.asarray(gaussian_filter(np.random.default_rng(seed).normal(size=shape), 2))
    return np.asarray((field - field.mean()) / field.std() * 100 + 500)


def noisy(image: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    return image + np.random.default_rng(seed).normal(0, sigma, image.shape)


# ---- MR image metrics


def test_masked_mae_and_psnr_of_a_known_offset() -> None:
    image = smooth_volume()
    mask = image > 500
    shifted = np.where(mask, image + 4.0, 0.0)
    assert masked_mae(image, shifted, mask) == pytest.approx(4.0)
    assert masked_psnr(image, shifted, mask, data_range=400.0) == pytest.approx(40.0)
    assert masked_psnr(image, image, mask) == math.inf


def test_masked_psnr_defaults_to_the_builtin_psnr_data_range() -> None:
    image, mask = smooth_volume(), smooth_volume(seed=2) > 500
    other = noisy(image, 20.0)
    builtin = PeakSignalToNoiseRatio()(image, other, mask.astype(float))
    assert masked_psnr(image, other, mask) == pytest.approx(builtin, rel=1e-12)


def test_masked_ssim_at_one_voxel_matches_the_ssim_formula() -> None:
    image = smooth_volume()
    other = noisy(image, 30.0)
    mask = np.zeros(image.shape, bool)
    mask[8, 7, 6] = True
    x, y = image[5:12, 4:11, 3:10].ravel(), other[5:12, 4:11, 3:10].ravel()
    c1, c2 = (0.01 * 100.0) ** 2, (0.03 * 100.0) ** 2
    cov = np.cov(x, y)  # sample covariance, as skimage uses by default
    expected = ((2 * x.mean() * y.mean() + c1) * (2 * cov[0, 1] + c2)) / (
        (x.mean() ** 2 + y.mean() ** 2 + c1) * (cov[0, 0] + cov[1, 1] + c2)
    )
    assert masked_ssim(image, other, mask, data_range=100.0) == pytest.approx(expected, rel=1e-9)


def test_masked_ssim_is_one_for_identical_images_and_falls_with_noise() -> None:
    image = smooth_volume()
    mask = image > 450
    assert masked_ssim(image, image, mask) == pytest.approx(1.0)
    scores = [masked_ssim(image, noisy(image, sigma), mask) for sigma in (5.0, 50.0)]
    assert 1.0 > scores[0] > scores[1]


def test_histogram_distance_of_a_shift_and_of_shuffled_voxels() -> None:
    image = smooth_volume()
    mask = np.ones(image.shape, bool)
    low, high = np.percentile(image, [1, 99])
    assert histogram_distance(image, image + 7.0, mask) == pytest.approx(7.0 / (high - low))
    shuffled = np.random.default_rng(3).permutation(image.ravel()).reshape(image.shape)
    assert histogram_distance(image, shuffled, mask) == pytest.approx(0.0, abs=1e-12)


def test_edge_sharpness_falls_with_blur_and_scales_with_contrast() -> None:
    image = np.zeros((24, 24, 24))
    image[6:18, 6:18, 6:18] = 100.0  # a cube: its faces are the edges
    image = gaussian_filter(image, 0.7)
    mask = np.ones(image.shape, bool)
    assert edge_sharpness(image, image, mask) == pytest.approx(1.0)
    assert edge_sharpness(image, 2.0 * image + 5.0, mask) == pytest.approx(2.0)
    blurred = [edge_sharpness(image, gaussian_filter(image, s), mask) for s in (1.0, 2.0)]
    assert 1.0 > blurred[0] > blurred[1] > 0.0
    # an edge where the reference has none earns nothing
    invented = image.copy()
    invented[2:4, 2:22, 2:22] += 100.0
    assert edge_sharpness(image, invented, mask) == pytest.approx(1.0, abs=0.05)
    with pytest.raises(OptionsError, match="no edge"):
        edge_sharpness(np.ones_like(image), image, mask)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda a, m: masked_psnr(a, a, m, data_range=0.0), OptionsError),
        (lambda a, m: edge_sharpness(a, a, m, quantile=1.0), OptionsError),
        (lambda a, m: histogram_distance(a, a, m, bins=0), OptionsError),
        (lambda a, m: masked_ssim(a[:, :, :5], a[:, :, :5], m[:, :, :5]), GeometryError),
        (lambda a, m: masked_mae(a, a, np.zeros_like(m)), GeometryError),
        (lambda a, m: masked_mae(a, a[:-1], m), GeometryError),
    ],
    ids=["data-range", "edge-quantile", "bins", "small-for-ssim", "empty-mask", "shapes"],
)
def test_invalid_arguments_raise_medi2i_errors(
    call: Callable[[np.ndarray, np.ndarray], float], error: type[Exception]
) -> None:
    image = smooth_volume()
    with pytest.raises(error):
        call(image, np.ones(image.shape))


@pytest.mark.parametrize(
    "metric",
    [masked_psnr, masked_ssim, histogram_distance],
    ids=["psnr", "ssim", "histogram_distance"],
)
def test_a_reference_constant_in_the_mask_has_no_range_to_score_against(
    metric: Callable[..., float],
) -> None:
    reference = np.full((10, 10, 10), 200.0)
    prediction = np.full((10, 10, 10), 10.0)
    with pytest.raises(InputError, match="constant inside the mask"):
        metric(reference, prediction, np.ones(reference.shape))


def test_evaluate_names_a_reference_constant_in_the_mask(tmp_path: Path) -> None:
    reference = write(tmp_path, "ct.nii.gz", np.full((10, 10, 10), 200.0))
    prediction = write(tmp_path, "pred.nii.gz", np.full((10, 10, 10), 10.0))
    result = run("-p", prediction, "-r", reference, "--metrics", "psnr")
    assert result.exit_code == 1
    assert f"{reference}: the reference is constant inside the mask" in result.output


@pytest.mark.parametrize("extra", [["--run-dir", "runs/x"], ["--set", "evaluation.split=train"]])
def test_evaluate_of_files_refuses_workflow_options(tmp_path: Path, extra: list[str]) -> None:
    reference = write(tmp_path, "ct.nii.gz", smooth_volume())
    result = run("-p", reference, "-r", reference, *extra)
    assert result.exit_code != 0
    assert f"{extra[0]} belongs to a WORKFLOW's evaluation" in result.output


def test_a_constant_reference_is_scored_with_a_range_given() -> None:
    reference, prediction = np.full((10, 10, 10), 200.0), np.full((10, 10, 10), 190.0)
    given = masked_psnr(reference, prediction, np.ones(reference.shape), data_range=1000.0)
    assert given == pytest.approx(20.0 * np.log10(1000.0 / 10.0))


# ---- metric objects and presets


@pytest.mark.parametrize("metric", evaluation_metrics(), ids=lambda m: m.name)
def test_every_evaluation_metric_scores_identical_images_as_perfect(metric: Metric) -> None:
    image = smooth_volume((32, 14, 12)) * 2 - 500
    image[20:] = -1000.0  # air beyond the body, 10 voxels from it from x = 29 on
    mask = (image > 0).astype(float)
    perfect = {
        "synthrad_psnr": math.inf,
        "ssim": 1.0,
        "synthrad_ms_ssim": 1.0,
        "edge_sharpness": 1.0,
    }
    value = metric(image, image, mask)
    assert value == pytest.approx(perfect.get(metric.name, 0.0), abs=1e-9)
    assert metric(image, noisy(image, 50.0), mask) != pytest.approx(value)


def test_ms_ssim_metric_object_matches_the_function_with_a_graded_mask() -> None:
    image = smooth_volume() * 3 - 1000
    other = noisy(image, 60.0)
    graded = np.where(image > 0, 2.5, -1.0)
    metric = next(m for m in evaluation_metrics() if m.name == "synthrad_ms_ssim")
    assert metric(image, other, graded) == synthrad.ms_ssim(image, other, graded)


def test_every_metric_takes_the_reference_first() -> None:
    # PSNR's peak is the reference's range: swapping the images changes the value
    image, mask = smooth_volume(), smooth_volume(seed=2) > 500
    other = noisy(image, 20.0) * 0.5
    builtin = PeakSignalToNoiseRatio()
    assert builtin(image, other, mask) == masked_psnr(image, other, mask)
    assert builtin(image, other, mask) != pytest.approx(builtin(other, image, mask))
    values = evaluate_case(image, other, mask, [builtin])
    assert values == {"psnr": masked_psnr(image, other, mask)}


def test_a_metric_written_prediction_first_is_adapted_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="reference first"):

        class PredictionMinusReference(Metric):
            name = "legacy"
            higher_is_better = False

            def compute(
                self, prediction: np.ndarray, reference: np.ndarray, inside: np.ndarray
            ) -> float:
                return float((prediction - reference)[inside].mean())

    reference = np.zeros((4, 4, 4))
    assert PredictionMinusReference()(reference, reference + 2.0) == 2.0


def test_select_metrics_expands_presets_keeps_order_and_drops_repeats() -> None:
    available = {m.name: m for m in evaluation_metrics()} | {"mae": PeakSignalToNoiseRatio()}
    chosen = select_metrics("ssim, synthrad,synthrad_mae", available)
    assert [m.name for m in chosen] == [
        "ssim",
        "synthrad_mae",
        "synthrad_psnr",
        "synthrad_ms_ssim",
        "air_mae",
    ]
    with pytest.raises(OptionsError, match=r"unknown metrics: nope; .*synthrad"):
        select_metrics("nope,ssim", available)
    with pytest.raises(OptionsError, match="no metric given"):
        select_metrics(" , ", available)


# ---- tables


def test_aggregate_statistics_skip_and_count_missing_values() -> None:
    per_case = {
        "a": {"mae": 1.0, "psnr": 30.0},
        "b": {"mae": 2.0, "psnr": math.nan},
        "c": {"mae": 3.0},
        "d": {"mae": 4.0, "psnr": 32.0},
    }
    summaries = aggregate(per_case)
    assert list(summaries) == ["mae", "psnr"]
    mae = summaries["mae"]
    assert (mae.mean, mae.median, mae.q1, mae.q3, mae.n, mae.missing) == (
        2.5,
        2.5,
        1.75,
        3.25,
        4,
        0,
    )
    assert mae.std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert (summaries["psnr"].mean, summaries["psnr"].n, summaries["psnr"].missing) == (31.0, 2, 2)


def test_aggregate_of_a_single_or_infinite_value_does_not_warn() -> None:
    summaries = aggregate({"a": {"psnr": math.inf, "mae": 1.0}, "b": {"psnr": 40.0}})
    assert summaries["psnr"].mean == math.inf
    assert math.isnan(summaries["mae"].std)


def test_markdown_tables_show_units_values_and_missing_cells() -> None:
    per_case = {"case1": {"mae": 1.5, "ssim": 0.9}, "case2": {"mae": 2.5}}
    summary = to_markdown(aggregate(per_case), units={"mae": "HU"}, decimals=2)
    assert summary.splitlines()[0] == "| metric | mean | std | median | q1 | q3 | n | missing |"
    assert "| mae (HU) | 2.00 | 0.71 | 2.00 | 1.75 | 2.25 | 2 | 0 |" in summary
    cases = per_case_markdown(per_case, decimals=1)
    assert cases.splitlines()[-1] == "| case2 | 2.5 | n/a |"


def test_markdown_summary_says_why_a_metric_is_missing() -> None:
    per_case = {"a": {"mae": 1.0, "air_mae": 5.0}, "b": {"mae": 2.0, "air_mae": math.nan}}
    summary = to_markdown(aggregate(per_case))
    assert "- `air_mae` has no value in 1 case(s): no reference air (below -900 HU)" in summary
    assert "`mae` has no value" not in summary
    assert "has no value" not in to_markdown(aggregate({"a": {"mae": 1.0}}))


def test_json_is_strict_and_round_trips(tmp_path: Path) -> None:
    per_case = {"a": {"psnr": math.inf, "ms_ssim": math.nan}, "b": {"psnr": 30.0}}

    def reject(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    document = json.loads(to_json(per_case), parse_constant=reject)
    assert document["cases"]["a"] == {"psnr": "inf", "ms_ssim": None}
    assert document["summary"]["psnr"]["n"] == 2
    assert document["summary"]["ms_ssim"]["missing"] == 2  # NaN in a, absent from b
    written = write_json(per_case, tmp_path / "out" / "metrics.json")
    assert json.loads(written.read_text()) == document


# ---- medi2i evaluate


class EvaluationMetricsPlugin:
    """Registers the evaluation metrics, unless the built-ins already do."""

    @hookimpl
    def register_metrics(self, register: Callable[[Metric], None]) -> None:
        for metric in evaluation_metrics():
            register(metric)


def plugins_with_evaluation_metrics() -> PluginSet:
    plugins = load_plugins()
    if "synthrad_mae" not in Registry(plugins).metrics:
        plugins.manager.register(EvaluationMetricsPlugin(), name="evaluation-metrics")
    return plugins


def run(*args: str) -> Result:
    plugins = plugins_with_evaluation_metrics()
    return CliRunner().invoke(build_cli(plugins), ["evaluate", *args])


def write(tmp_path: Path, name: str, values: np.ndarray, shift_mm: float = 0.0) -> str:
    """Write ``values`` on an oblique grid, moved by ``shift_mm`` along x."""
    from medi2i.io import write_volume
    from medi2i.io.base import volume_from_array
    from medi2i.testing import volume_affine

    affine = volume_affine(
        spacing=(1.0, 1.2, 2.0), origin=(-5.0 + shift_mm, 3.0, 20.0), rotation_deg=(5.0, 0, 0)
    )
    path = tmp_path / name
    return str(write_volume(volume_from_array(values.astype(np.float32), affine, path=path), path))


@pytest.fixture
def ct_case(tmp_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ct = np.round((smooth_volume() - 500) * 8)  # about -2400 to 2400 HU
    pred = np.round(noisy(ct, 80.0))
    mask = (ct > -500).astype(np.float64)
    write(tmp_path, "ct.nii.gz", ct)
    write(tmp_path, "sct.nii.gz", pred)
    write(tmp_path, "mask.nii.gz", mask)
    return ct, pred, mask


def test_evaluate_prints_the_synthrad_metrics_as_json(
    tmp_path: Path, ct_case: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    ct, pred, mask = ct_case
    result = run(
        "-p",
        str(tmp_path / "sct.nii.gz"),
        "-r",
        str(tmp_path / "ct.nii.gz"),
        "-m",
        str(tmp_path / "mask.nii.gz"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    expected = {
        "synthrad_mae": synthrad.mae(ct, pred, mask),
        "synthrad_psnr": synthrad.psnr(ct, pred, mask),
        "synthrad_ms_ssim": synthrad.ms_ssim(ct, pred, mask),
    }
    air_mae = document["metrics"].pop("air_mae")
    assert document["metrics"] == pytest.approx(expected, rel=1e-12)
    assert document["units"]["synthrad_mae"] == document["units"]["air_mae"] == "HU"
    # the case has no air 10 voxels from its mask: the value is undefined, written as null
    assert air_mae is None


def test_evaluate_table_says_n_a_for_a_metric_it_could_not_measure(
    tmp_path: Path, ct_case: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    files = ["-p", str(tmp_path / "sct.nii.gz"), "-r", str(tmp_path / "ct.nii.gz")]
    result = run(*files, "-m", str(tmp_path / "mask.nii.gz"))
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()}
    assert rows["air_mae"] == ["n/a", "HU"]  # no air 10 voxels from the mask
    assert float(rows["synthrad_mae"][0]) > 0
    assert "nan" not in result.output


def test_evaluate_table_with_the_mr_preset_and_no_mask(
    tmp_path: Path, ct_case: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    result = run(
        "-p", str(tmp_path / "sct.nii.gz"), "-r", str(tmp_path / "ct.nii.gz"), "--metrics", "mr"
    )
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.output.splitlines()]
    assert names == ["metric", "mae", "psnr", "ssim", "histogram_distance"]


@pytest.mark.parametrize(
    ("shift_mm", "shape", "message"),
    [
        (0.01, (16, 14, 12), "affines differ by up to 0.01 mm"),
        (0.0, (16, 14, 10), r"shape \(16, 14, 10\) differs from \(16, 14, 12\)"),
    ],
)
def test_evaluate_refuses_a_prediction_on_another_grid(
    tmp_path: Path, shift_mm: float, shape: tuple[int, int, int], message: str
) -> None:
    reference = write(tmp_path, "ct.nii.gz", smooth_volume())
    prediction = write(tmp_path, "sct.nii.gz", smooth_volume(shape), shift_mm=shift_mm)
    result = run("-p", prediction, "-r", reference)
    assert result.exit_code == 1
    assert "sct.nii.gz is not on the grid of" in result.output
    assert "ct.nii.gz" in result.output
    assert re.search(message, result.output)


def test_evaluate_refuses_a_tilt_that_moves_the_far_voxels(tmp_path: Path) -> None:
    """Each affine entry within 1e-3 of the reference's was accepted, so a 0.05° tilt of
    a 400-voxel axis (its far voxels 0.36 mm away) was scored as on the same grid."""
    from medi2i.io import write_volume
    from medi2i.io.base import volume_from_array

    values = smooth_volume((400, 8, 8)).astype(np.float32)
    tilted = np.eye(4)
    tilted[1, 0] = 9e-4
    paths = []
    for name, affine in (("ct.nii.gz", np.eye(4)), ("sct.nii.gz", tilted)):
        path = tmp_path / name
        paths.append(str(write_volume(volume_from_array(values, affine, path=path), path)))
    result = run("-p", paths[1], "-r", paths[0], "--metrics", "synthrad_mae")
    assert result.exit_code == 1
    assert "placing its voxels up to 0.3595 mm from the reference's" in result.output


def test_evaluate_accepts_affines_within_the_tolerance(tmp_path: Path) -> None:
    reference = write(tmp_path, "ct.nii.gz", smooth_volume())
    prediction = write(tmp_path, "sct.nii.gz", smooth_volume(), shift_mm=1e-4)
    # the values (about 500) have no air: not a CT in HU, so synthrad_mae needs the flag
    result = run("-p", prediction, "-r", reference, "--metrics", "synthrad_mae", "--force-modality")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--metrics", "nope"], "unknown metrics: nope"), (["-m", "missing.nii.gz"], "missing")],
)
def test_evaluate_user_errors_exit_non_zero(tmp_path: Path, extra: list[str], message: str) -> None:
    reference = write(tmp_path, "ct.nii.gz", smooth_volume())
    result = run("-p", reference, "-r", reference, *extra)
    assert result.exit_code == 1
    assert message in result.output


def test_evaluate_ssim_on_a_thin_volume_names_the_file_and_the_way_out(tmp_path: Path) -> None:
    tiny = write(tmp_path, "tiny.nii.gz", smooth_volume((8, 8, 3)))
    result = run("-p", tiny, "-r", tiny, "--metrics", "psnr,ssim")
    assert result.exit_code == 1
    assert f"{tiny}: SSIM needs at least 7 voxels along each axis" in result.output
    assert "8 × 8 × 3; leave ssim out with --metrics psnr" in result.output


def test_evaluate_case_checks_the_grid_as_its_metrics_do() -> None:
    # it converted its inputs to plain arrays first, so a prediction 30 mm away scored 0
    import torch
    from monai.data.meta_tensor import MetaTensor

    from medi2i.errors import GeometryError
    from medi2i.evaluation.metric_objects import evaluate_case, select_metrics

    values = torch.arange(8.0**3).reshape(1, 8, 8, 8)
    moved = torch.eye(4, dtype=torch.float64)
    moved[0, 3] = 30.0
    reference = MetaTensor(values, affine=torch.eye(4, dtype=torch.float64))
    from medi2i import Registry

    mae = select_metrics("mae", Registry().metrics)
    with pytest.raises(GeometryError, match="differ by up to 30 mm"):
        evaluate_case(reference, MetaTensor(values, affine=moved), None, mae)
    assert evaluate_case(reference, reference, None, mae) == {"mae": 0.0}
