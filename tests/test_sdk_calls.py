"""The Python API called carelessly: each mistake raises one medi2i error naming what to
fix, and nothing is written.

What a developer using medi2i as a library meets first: the names ``import medi2i``
shows, the metric objects of the registry, ``predict``/``predict_tensor`` given the
wrong kind of argument, and ``write_volume`` given something that is no volume.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

import medi2i
import medi2i.errors
from medi2i import InferenceSettings, Registry

QUIET = InferenceSettings(progress=False, device="cpu")


def test_dir_lists_the_public_api_and_every_error_class_is_exported() -> None:
    listed = dir(medi2i)
    assert set(medi2i.__all__) <= set(listed)  # lazy names too, before their first use
    errors = [
        name
        for name, value in vars(medi2i.errors).items()
        if isinstance(value, type) and issubclass(value, medi2i.Medi2iError)
    ]
    assert {"OutputError", "TrainingError"} <= set(errors)
    for name in errors:
        assert name in medi2i.__all__
        assert getattr(medi2i, name) is getattr(medi2i.errors, name)


@pytest.mark.parametrize("name", ["mae", "psnr", "ssim", "synthrad_ms_ssim"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_metrics_refuse_non_finite_voxels_instead_of_returning_nan(name: str, bad: float) -> None:
    metric = Registry().metrics[name]
    reference = np.random.default_rng(0).normal(0.0, 100.0, (12, 12, 12))
    prediction = reference + 5.0
    prediction[3, 4, 5] = bad
    with pytest.raises(medi2i.InputError, match=r"prediction, 1 voxel\(s\) .* \(3, 4, 5\)"):
        metric(reference, prediction)
    with pytest.raises(medi2i.InputError, match="in the reference"):
        metric(prediction, reference)


@pytest.mark.parametrize(
    "values",
    [np.zeros((8, 8, 8), np.complex64), np.full((8, 8, 8), "a"), np.full((8, 8, 8), None)],
    ids=["complex", "text", "object"],
)
def test_metrics_refuse_values_that_are_not_real_numbers(values: np.ndarray) -> None:
    reference = np.random.default_rng(0).normal(0.0, 1.0, (8, 8, 8))
    with pytest.raises(medi2i.InputError, match="give real numbers"):
        Registry().metrics["mae"](reference, values)


def test_metric_values_match_their_numpy_definitions() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(0.0, 100.0, (10, 11, 12))
    prediction = reference + rng.normal(5.0, 20.0, reference.shape)
    mask = np.zeros(reference.shape)
    mask[2:8, 3:9, 1:10] = 1
    inside = mask > 0
    metrics = Registry().metrics
    difference = (reference - prediction)[inside]
    assert metrics["mae"](reference, prediction, mask) == pytest.approx(np.abs(difference).mean())
    peak = np.ptp(reference[inside])  # the reference's range inside the mask
    psnr = 10 * np.log10(peak**2 / np.mean(difference**2))
    assert metrics["psnr"](reference, prediction, mask) == pytest.approx(psnr)


def test_predict_tensor_names_the_fix_for_a_plain_array_a_method_class_or_an_id(
    medi2i_volume: MetaTensor,
) -> None:
    method_class = Registry().method("intensity-inversion")
    method = method_class()
    plain = [medi2i_volume.as_tensor(), medi2i_volume.numpy()]
    for image in plain:
        with pytest.raises(medi2i.InputError, match="MetaTensor"):
            medi2i.predict_tensor(method, image, settings=QUIET)  # type: ignore[arg-type]
    complex_volume = MetaTensor(medi2i_volume.as_tensor().to(torch.complex64))
    with pytest.raises(medi2i.InputError, match="complex64"):
        medi2i.predict_tensor(method, complex_volume, settings=QUIET)
    for not_ready in (method_class, "intensity-inversion"):
        with pytest.raises(medi2i.OptionsError, match="load_model"):
            medi2i.predict_tensor(not_ready, medi2i_volume, settings=QUIET)  # type: ignore[arg-type]


def test_predict_takes_settings_as_a_mapping_and_refuses_a_bad_one(
    medi2i_volume_file: Path, tmp_path: Path
) -> None:
    before = sorted(tmp_path.iterdir())
    for bad in ({"overlap": 1.5}, {"overlapp": 0.5}, [("overlap", 0.5)]):
        with pytest.raises(medi2i.OptionsError, match=r"overlap|settings must be"):
            medi2i.predict(
                medi2i_volume_file,
                tmp_path / "out.nii.gz",
                method="intensity-inversion",
                settings=bad,  # type: ignore[arg-type]
            )
    with pytest.raises(medi2i.OptionsError, match="must be a mapping"):
        medi2i.predict(
            medi2i_volume_file,
            tmp_path / "out.nii.gz",
            method="intensity-inversion",
            options=[1, 2],  # type: ignore[arg-type]
            settings=QUIET,
        )
    assert sorted(tmp_path.iterdir()) == before
    written = medi2i.predict(
        medi2i_volume_file,
        tmp_path / "out.nii.gz",
        method="intensity-inversion",
        settings={"progress": False, "device": "cpu", "overlap": 0.5},  # type: ignore[arg-type]
    )
    assert written.is_file()


def test_write_volume_refuses_complex_values_and_arrays_without_an_affine(
    medi2i_volume: MetaTensor, tmp_path: Path
) -> None:
    complex_volume = MetaTensor(
        medi2i_volume.as_tensor().to(torch.complex64), affine=medi2i_volume.affine
    )
    with pytest.raises(medi2i.OutputError, match="complex64"):
        medi2i.write_volume(complex_volume, tmp_path / "complex.nii.gz")
    for plain in (medi2i_volume.as_tensor(), medi2i_volume.numpy()):
        with pytest.raises(medi2i.GeometryError, match="no affine"):
            medi2i.write_volume(plain, tmp_path / "plain.nrrd")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_write_volume_writes_a_prediction_as_a_dicom_series_as_read_volume_reads_one(
    medi2i_volume: MetaTensor, tmp_path: Path
) -> None:
    zscore = Registry().method("zscore")()
    result = medi2i.predict_tensor(zscore, medi2i_volume, settings=QUIET)
    series = medi2i.write_volume(result, tmp_path / "series")  # no suffix: a DICOM series
    assert len(list(series.glob("*.dcm"))) == medi2i_volume.shape[-1]
    back = medi2i.read_volume(series)
    assert np.allclose(np.asarray(back.affine), np.asarray(medi2i_volume.affine), atol=1e-4)
    with pytest.raises(medi2i.OutputError, match="ends in '/'"):
        medi2i.write_volume(result, f"{tmp_path}/out.nii.gz/")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


@pytest.mark.parametrize(
    "spacing", [(1.0, 1.0), (1.0, 1.0, 1.0, 1.0), (float("nan"), 1.0, 1.0), (np.inf, 1.0, 1.0)]
)
def test_check_spacing_refuses_a_spacing_that_is_not_three_positive_numbers(
    spacing: tuple[float, ...],
) -> None:
    with pytest.raises(ValueError, match="three positive, finite numbers"):
        medi2i.check_spacing(spacing)  # type: ignore[arg-type]
    assert medi2i.check_spacing((np.float32(0.5), 1, 2.5)) == (0.5, 1, 2.5)


@pytest.mark.parametrize("betas", [(0.5,), (0.5, 0.9, 0.9), (float("nan"), 0.9)])
def test_check_betas_refuses_anything_but_two_rates(betas: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="two numbers"):
        medi2i.check_betas(betas)  # type: ignore[arg-type]


def test_body_mask_refuses_non_finite_or_complex_intensities_and_a_nan_margin() -> None:
    volume = np.zeros((16, 16, 16), np.float32)
    volume[4:12, 4:12, 4:12] = 100.0
    spoiled = volume.copy()
    spoiled[5, 6, 7] = np.nan  # was an all-true mask, as for a constant volume
    with pytest.raises(medi2i.InputError, match=r"1 voxel\(s\) are NaN .* \(5, 6, 7\)"):
        medi2i.body_mask(spoiled)
    with pytest.raises(medi2i.InputError, match="complex64"):
        medi2i.body_mask(volume.astype(np.complex64))
    with pytest.raises(ValueError, match="margin_voxels"):
        medi2i.body_mask(volume, margin_voxels=float("nan"))  # was no margin at all
    assert medi2i.body_mask(volume, margin_voxels=0).sum() == 8**3


def test_predict_tensor_refuses_an_unusable_affine_or_the_wrong_channels_before_the_network(
    medi2i_volume: MetaTensor,
) -> None:
    method = Registry().method("intensity-inversion")()  # a network of one input channel
    values = medi2i_volume.as_tensor()
    for affine in (torch.zeros(4, 4), torch.eye(3), torch.full((4, 4), float("nan"))):
        with pytest.raises(medi2i.GeometryError, match="invertible 4x4"):
            medi2i.predict_tensor(method, MetaTensor(values, affine=affine), settings=QUIET)
    two = MetaTensor(torch.cat([values, values]), affine=medi2i_volume.affine)
    with pytest.raises(medi2i.GeometryError, match=r"takes 1 channel\(s\), .* has 2"):
        medi2i.predict_tensor(method, two, settings=QUIET)


def test_every_condition_the_readme_passes_is_one_a_first_party_method_takes() -> None:
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    keys = set(re.findall(r"-c (\w+)=", readme)) - {"key"}  # `-c key=value`: the syntax
    taken = {field for cls in Registry().methods.values() for field in cls.Condition.model_fields}
    assert keys
    assert keys <= taken, f"conditions no first-party method takes: {keys - taken}"


def test_metrics_take_the_one_channel_volumes_medi2i_returns(medi2i_volume: MetaTensor) -> None:
    method = Registry().method("intensity-inversion")()
    prediction = medi2i.predict_tensor(method, medi2i_volume, settings=QUIET)
    expected = np.abs(medi2i_volume.numpy()[0] - prediction.numpy()[0]).astype(np.float64)
    mae = Registry().metrics["mae"]
    assert mae(medi2i_volume, prediction) == pytest.approx(expected.mean())
    mask = np.zeros(medi2i_volume.shape[1:])
    mask[2:6, 3:7, 4:8] = 1
    assert mae(medi2i_volume, prediction, mask) == pytest.approx(expected[mask > 0].mean())
    with pytest.raises(medi2i.GeometryError, match=r"takes 3D volumes .* \(2, "):
        mae(np.zeros((2, 8, 8, 8)), np.zeros((2, 8, 8, 8)))


def test_inference_settings_refuse_a_bad_value_with_a_medi2i_error() -> None:
    with pytest.raises(medi2i.OptionsError, match=r"^invalid inference settings: overlap: "):
        InferenceSettings(overlap=1.5)
    with pytest.raises(medi2i.OptionsError, match=r"overlaps: Extra inputs"):
        InferenceSettings(overlaps=0.5)  # type: ignore[call-arg]
    assert InferenceSettings(overlap=0.5).overlap == 0.5


def test_metrics_refuse_a_mask_or_prediction_on_another_grid(medi2i_volume: MetaTensor) -> None:
    mae = Registry().metrics["mae"]
    mask = MetaTensor(torch.ones_like(medi2i_volume.as_tensor()), affine=medi2i_volume.affine)
    assert mae(medi2i_volume, medi2i_volume, mask) == 0.0
    moved = medi2i_volume.affine.clone()
    moved[0, 3] += 30.0  # the same shape, 30 mm away
    shifted_mask = MetaTensor(mask.as_tensor(), affine=moved)
    with pytest.raises(medi2i.GeometryError, match=r"the mask is not on the grid .* 30 mm"):
        mae(medi2i_volume, medi2i_volume, shifted_mask)
    shifted_prediction = MetaTensor(medi2i_volume.as_tensor(), affine=moved)
    with pytest.raises(medi2i.GeometryError, match=r"the prediction is not on the grid"):
        mae(medi2i_volume, shifted_prediction)
    # plain arrays carry no affine: compared by shape alone, as documented
    assert mae(medi2i_volume.numpy(), shifted_prediction.numpy()) == 0.0


def test_refusals_a_python_caller_meets_name_the_python_argument_too(
    medi2i_volume: MetaTensor, medi2i_volume_file: Path, tmp_path: Path
) -> None:
    existing = tmp_path / "taken.nii.gz"
    existing.write_bytes(b"mine")
    with pytest.raises(medi2i.OutputError, match=r"overwrite=True"):
        medi2i.predict(medi2i_volume_file, existing, method="intensity-inversion", settings=QUIET)
    assert existing.read_bytes() == b"mine"
    values = medi2i_volume.as_tensor().clone()
    values[0, 1, 2, 3] = float("nan")
    spoiled = MetaTensor(values, affine=medi2i_volume.affine)
    method = Registry().method("intensity-inversion")()
    with pytest.raises(medi2i.InputError, match=r"InferenceSettings\(nonfinite="):
        medi2i.predict_tensor(method, spoiled, settings=QUIET)
    repaired = InferenceSettings(progress=False, device="cpu", nonfinite="zero")
    assert torch.isfinite(medi2i.predict_tensor(method, spoiled, settings=repaired)).all()


def test_a_file_where_a_parent_folder_would_be_is_an_output_error(
    medi2i_volume: MetaTensor, tmp_path: Path
) -> None:
    blocking = tmp_path / "taken"
    blocking.write_bytes(b"mine")
    for destination in (blocking / "v.nii.gz", blocking / "deeper" / "v.mhd"):
        with pytest.raises(medi2i.OutputError, match="taken is a file, not a folder"):
            medi2i.write_volume(medi2i_volume, destination)
    with pytest.raises(medi2i.OutputError, match="taken is a file, not a folder"):
        medi2i.save_model(Registry().method("zscore")(), blocking / "model")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    assert blocking.read_bytes() == b"mine"


def test_every_condition_predict_help_shows_is_one_a_first_party_method_takes() -> None:
    import re

    from click.testing import CliRunner

    from medi2i.cli.main import build_cli

    text = CliRunner().invoke(build_cli(), ["predict", "--help"]).output
    keys = set(re.findall(r"-c (\w+)=", text))
    taken = {field for cls in Registry().methods.values() for field in cls.Condition.model_fields}
    assert keys
    assert keys <= taken, f"conditions no first-party method takes: {keys - taken}"


def test_write_volume_refuses_the_file_the_volume_was_read_from(
    medi2i_volume: MetaTensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = medi2i.write_volume(medi2i_volume, tmp_path / "mr.nii.gz")
    before = source.read_bytes()
    read = medi2i.read_volume(source)
    method = Registry().method("intensity-inversion")({})
    result = medi2i.predict_tensor(method, read, settings=InferenceSettings(progress=False))

    monkeypatch.chdir(tmp_path)  # the same file by another spelling, and through a link
    (tmp_path / "link.nii.gz").symlink_to(source)
    for path in (source, Path("mr.nii.gz"), tmp_path / "link.nii.gz"):
        for volume in (result, read * 2):
            with pytest.raises(medi2i.OutputError, match="read from"):
                medi2i.write_volume(volume, path)
    assert source.read_bytes() == before

    assert medi2i.write_volume(result, tmp_path / "sct.nii.gz").is_file()
    medi2i.write_volume(read * 2, source, overwrite_source=True)  # on purpose
    assert source.read_bytes() != before


def test_write_volume_refuses_an_existing_output_without_overwrite(
    medi2i_volume: MetaTensor, tmp_path: Path
) -> None:
    source = medi2i.write_volume(medi2i_volume, tmp_path / "mr.nii.gz")
    other = medi2i.write_volume(medi2i_volume * 3, tmp_path / "other.nii.gz")
    before = other.read_bytes()
    read = medi2i.read_volume(source)
    for flags in ({}, {"overwrite_source": True}):  # consent for the source is not for others
        with pytest.raises(medi2i.OutputError, match="existing file"):
            medi2i.write_volume(read * 2, other, **flags)
    assert other.read_bytes() == before
    medi2i.write_volume(read * 2, other, overwrite=True)
    assert other.read_bytes() != before
