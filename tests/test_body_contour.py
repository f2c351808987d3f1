"""Tests of the body mask (medi2i.body_contour) and of air outside it in MR→CT outputs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data.meta_tensor import MetaTensor
from scipy import ndimage

import medi2i
from medi2i import (
    AIR_HU,
    GeometryError,
    InferenceSettings,
    MRNormalization,
    MRToCTIntensities,
    NoCondition,
    Options,
    PatchNetworkMethod,
    Task,
    VolumeSpec,
    body_mask,
    predict_tensor,
)
from medi2i.body_contour import CHUNK_VOXELS, PackedMask
from medi2i.intensity import BODY_MASK_META_KEY

SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)
CT_FILE = "ct_head_invesalius0051.nii.gz"


def box_body(shape: tuple[int, int, int] = (24, 24, 24)) -> np.ndarray:
    """Dark, noisy air around a bright box with a dark core (noise like MR's: Rayleigh
    in the air, Gaussian in tissue)."""
    rng = np.random.default_rng(0)
    volume = rng.rayleigh(5.0, shape)
    box = (slice(6, 18),) * 3
    volume[box] = rng.normal(100.0, 5.0, (12, 12, 12))
    core = (slice(10, 14),) * 3
    volume[core] = rng.normal(10.0, 3.0, (4, 4, 4))
    return volume.astype(np.float32)


# -- the mask ---------------------------------------------------------------------------


def test_the_body_is_filled_and_the_air_left_out() -> None:
    mask = body_mask(box_body(), margin_voxels=0)
    expected = np.zeros((24, 24, 24), bool)
    expected[6:18, 6:18, 6:18] = True
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("slices", [3, 4])
def test_a_volume_of_three_or_four_slices_is_not_read_as_colour(slices: int) -> None:
    # skimage's Otsu warns on (and reads as RGB) an array whose last axis is 3 or 4
    thin = box_body()[:, :, 8 : 8 + slices]
    mask = body_mask(thin, margin_voxels=0)
    np.testing.assert_array_equal(mask[6:18, 6:18], True)
    assert not mask[:6].any()


def test_a_cavity_open_at_the_cut_faces_is_filled_slice_by_slice() -> None:
    # a tube along z through the whole volume, as a neck cut at both ends: its dark core
    # reaches the volume's border in 3D but is enclosed in every axial slice
    volume = np.zeros((24, 24, 16), np.float32)
    volume[4:20, 4:20] = 100.0
    volume[8:16, 8:16] = 3.0
    mask = body_mask(volume, margin_voxels=0)
    assert mask[8:16, 8:16].all()
    assert mask.sum() == 16 * 16 * 16


def test_specks_go_and_large_parts_stay() -> None:
    volume = box_body((32, 24, 24))
    volume[1, 1, 1] = 100.0  # a speck of noise
    volume[24:30, 8:14, 8:14] = 90.0  # 216 voxels: 12.5 % of the box, kept
    mask = body_mask(volume, margin_voxels=0)
    assert not mask[1, 1, 1]
    assert mask[24:30, 8:14, 8:14].all()
    assert not body_mask(volume, margin_voxels=0, min_component_fraction=0.2)[24:30].any()


def test_the_margin_is_a_euclidean_distance_in_voxels() -> None:
    mask = body_mask(box_body(), margin_voxels=2)
    assert mask[4, 12, 12]  # 2 voxels from the box's face
    assert not mask[3, 12, 12]  # 3 voxels
    assert mask[5, 5, 12]  # sqrt(2) from the edge
    assert not mask[4, 4, 12]  # sqrt(8) > 2


def test_a_wide_margin_is_the_same_distance_at_the_memory_of_the_volume() -> None:
    """Beyond a few voxels the margin is grown by a distance transform: the same voxels
    as the ball, and a margin of 1000 voxels no longer asks for a (2001)³ ball."""
    from medi2i.body_contour import _ball, _dilate, _grown

    rng = np.random.default_rng(0)
    seeds = rng.random((40, 36, 30)) > 0.999
    for radius in (8.5, 11.0):
        assert np.array_equal(_grown(seeds, radius), _dilate(seeds, _ball(radius)))
    assert body_mask(box_body(), margin_voxels=1000).all()


def test_an_increasing_affine_change_of_intensities_gives_the_same_mask() -> None:
    volume = box_body()
    np.testing.assert_array_equal(body_mask(volume), body_mask(3.5 * volume - 40.0))


@pytest.mark.parametrize("spike", [400.0, 1e6, -1e6])
def test_one_extreme_voxel_does_not_move_the_threshold(spike: float) -> None:
    volume = np.random.default_rng(0).random((64, 64, 64)).astype(np.float32)
    volume[20:40, 20:40, 20:37] = 100.0  # a box of 6800 voxels on 0-1 noise
    clean = body_mask(volume, margin_voxels=0)
    volume[30, 30, 30] = spike  # inside the box: a dark spike is a hole, filled
    spiked = body_mask(volume, margin_voxels=0)
    # the histogram's range ends at a percentile, not at the noise's own extreme: a
    # few noise voxels at the threshold may change side, never a share of the noise
    assert int((spiked != clean).sum()) <= 5
    assert 6800 <= int(clean.sum()) < 6900


def test_channels_are_averaged_and_other_shapes_refused() -> None:
    volume = box_body()
    np.testing.assert_array_equal(body_mask(np.stack([volume, volume])), body_mask(volume))
    with pytest.raises(GeometryError, match="3D volume"):
        body_mask(volume[0])
    with pytest.raises(ValueError, match="margin_voxels"):
        body_mask(volume, margin_voxels=-1)


def test_a_volume_without_foreground_is_all_body() -> None:
    assert body_mask(np.full((8, 8, 8), 7.0)).all()


def cropped_head_ct(shape: tuple[int, int, int] = (24, 24, 24)) -> np.ndarray:
    """A head CT cropped inside the head, in HU: brain with a band of skull on one
    side and a small sinus of air, and no air around it."""
    rng = np.random.default_rng(0)
    volume = rng.normal(40.0, 10.0, shape)
    volume[:4] = rng.normal(1000.0, 100.0, (4, *shape[1:]))
    volume[4:7, 10:14, 10:14] = -1000.0
    return volume.astype(np.float32)


def test_a_volume_cropped_inside_the_body_is_all_body() -> None:
    """Without air, Otsu's threshold splits bone from brain: the mask was the skull
    alone, and an MR→CT body contour would have set the brain to air."""
    assert body_mask(cropped_head_ct()).all()
    with_air = np.pad(cropped_head_ct(), 8, constant_values=-1000.0)
    mask = body_mask(with_air, margin_voxels=0)
    np.testing.assert_array_equal(mask[8:-8, 8:-8, 8:-8], True)  # the sinus filled
    assert mask.sum() == 24**3  # and the air around it left out


def test_the_mask_does_not_depend_on_the_memory_order() -> None:
    # NIfTI and DICOM volumes arrive x-fastest (Fortran order); the labelling and the
    # margin run on their transpose, which must mark the same voxels
    volume = box_body((28, 24, 20))
    volume[2:5, 2:5, 2:5] = 100.0  # a small part, dropped at a high fraction
    for fraction in (0.01, 0.5):
        c_order = body_mask(np.ascontiguousarray(volume), min_component_fraction=fraction)
        f_order = body_mask(np.asfortranarray(volume), min_component_fraction=fraction)
        np.testing.assert_array_equal(f_order, c_order)
    cavity = np.zeros((24, 20, 16), np.float32, order="F")  # open at the cut faces
    cavity[4:20, 4:16] = 100.0
    cavity[8:16, 8:12] = 3.0
    np.testing.assert_array_equal(body_mask(cavity), body_mask(np.ascontiguousarray(cavity)))


def test_more_components_than_sixteen_bit_labels_hold() -> None:
    # 70,000 isolated specks beside the body: labels overflow 16 bits and the mask falls
    # back to 32-bit labels, with the specks still removed
    volume = np.zeros((150, 150, 40), np.float32)
    volume[1:141:2, 1:141:2, 1:29:2] = 100.0  # 70 * 70 * 14 = 68,600 specks
    volume[60:100, 60:100, 30:40] = 100.0
    assert ndimage.label(volume > 50)[1] > 65535
    expected = np.zeros(volume.shape, bool)
    expected[60:100, 60:100, 30:40] = True
    np.testing.assert_array_equal(body_mask(volume, margin_voxels=0), expected)


def test_the_mask_holds_about_one_float32_volume_of_temporaries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # labels in 16 bits, histogram and label sizes in chunks (scaled down to this small
    # volume), nothing copied to another memory order: the old code held 3.25 volumes of
    # temporaries on a CT-sized volume (32-bit labels, cast to 64 bits for counting)
    import tracemalloc

    from medi2i import body_contour

    monkeypatch.setattr(body_contour, "CHUNK_VOXELS", 1 << 14)
    volume = np.asfortranarray(np.tile(box_body((48, 48, 48)), (2, 2, 2)))
    tracemalloc.start()
    try:
        body_mask(volume)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 1.1 * volume.nbytes


@pytest.mark.parametrize("order", ["C", "F"])
def test_a_packed_mask_unpacks_and_fills_like_the_boolean_one(
    order: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medi2i import body_contour

    monkeypatch.setattr(body_contour, "CHUNK_VOXELS", 7 * 5 * 2)  # slabs of 2 z slices
    rng = np.random.default_rng(3)
    mask = np.asarray(rng.random((7, 5, 9)) < 0.5, order=order)  # type: ignore[call-overload]
    packed = PackedMask.pack(mask)
    assert len(packed.slabs) == 5
    assert sum(bits.nbytes for _, _, bits in packed.slabs) <= mask.size // 8 + 5
    np.testing.assert_array_equal(packed.unpack(), mask)
    volume = torch.from_numpy(rng.normal(size=(2, 7, 5, 9)).astype(np.float32))
    expected = volume.masked_fill(~torch.from_numpy(np.ascontiguousarray(mask)), -1000.0)
    assert packed.fill_outside_(volume, -1000.0) is volume
    assert torch.equal(volume, expected)
    with pytest.raises(GeometryError, match="shape"):
        packed.fill_outside_(torch.zeros(7, 5, 8), 0.0)
    assert CHUNK_VOXELS >= 1 << 20  # the default slab is large enough to be quick


def test_body_mask_is_public() -> None:
    assert "body_mask" in medi2i.__all__
    assert medi2i.body_mask is body_mask


# -- air outside the body in MR→CT outputs ----------------------------------------------


class ContourOptions(Options):
    mr_normalization: MRNormalization = "zscore"
    mr_percentiles: tuple[float, float] = (0.5, 99.5)
    body_contour: bool = True


class PlainOptions(Options):
    mr_normalization: MRNormalization = "zscore"
    mr_percentiles: tuple[float, float] = (0.5, 99.5)


class Zeros(torch.nn.Module):
    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(windows)


MIDDLE_HU = 1023.5
"""What a network output of 0 becomes in HU."""


class ConstantCT(MRToCTIntensities, PatchNetworkMethod[ContourOptions, NoCondition]):
    """MR to a CT of 1023.5 HU everywhere, for testing the intensity recipe."""

    id = "test-constant-ct"
    tasks = (Task.TRANSLATION,)
    input_spec = VolumeSpec(modality="MR")
    output_spec = VolumeSpec(modality="CT", units="HU")
    default_roi_size = (16, 16, 16)

    def build_network(self) -> torch.nn.Module:
        return Zeros()


class ConstantCTWithoutContour(MRToCTIntensities, PatchNetworkMethod[PlainOptions, NoCondition]):
    """The same with options that have no ``body_contour`` field."""

    id = "test-constant-ct-plain"
    tasks = (Task.TRANSLATION,)
    input_spec = VolumeSpec(modality="MR")
    output_spec = VolumeSpec(modality="CT", units="HU")
    default_roi_size = (16, 16, 16)

    def build_network(self) -> torch.nn.Module:
        return Zeros()


def metatensor(volume: np.ndarray) -> MetaTensor:
    return MetaTensor(torch.from_numpy(volume)[None], affine=torch.eye(4, dtype=torch.float64))


def test_outputs_are_air_outside_the_body_of_the_input() -> None:
    volume = box_body()
    output = predict_tensor(ConstantCT(), metatensor(volume), settings=SETTINGS)[0].numpy()
    inside = body_mask(volume)
    assert set(np.unique(output[~inside])) == {AIR_HU}
    assert set(np.unique(output[inside])) == {MIDDLE_HU}


def test_body_contour_off_or_absent_leaves_the_outside_alone() -> None:
    image = metatensor(box_body())
    for method in (ConstantCT({"body_contour": False}), ConstantCTWithoutContour()):
        output = predict_tensor(method, image, settings=SETTINGS, allow_constant=True)
        assert set(np.unique(output.numpy())) == {MIDDLE_HU}


def test_the_mask_of_the_raw_input_travels_from_preprocess_to_postprocess() -> None:
    volume = box_body()
    method = ConstantCT()
    # in training (no condition) nothing is computed
    assert BODY_MASK_META_KEY not in method.preprocess(metatensor(volume)).meta
    prepared = method.preprocess(metatensor(volume), condition=NoCondition())
    kept = prepared.meta[BODY_MASK_META_KEY]
    np.testing.assert_array_equal(kept.unpack(), body_mask(volume))
    # postprocess uses the kept mask, not one of the normalized volume
    replaced = np.zeros(kept.shape, bool)
    replaced[0:4] = True
    prepared.meta[BODY_MASK_META_KEY] = PackedMask.pack(replaced)
    output = method.postprocess(MetaTensor(torch.zeros_like(prepared)), prepared)
    assert set(np.unique(output[0, :4].numpy())) == {MIDDLE_HU}
    assert set(np.unique(output[0, 4:].numpy())) == {AIR_HU}


def test_an_output_on_another_grid_is_refused() -> None:
    prepared = ConstantCT().preprocess(metatensor(box_body()), condition=NoCondition())
    with pytest.raises(GeometryError, match="body_contour"):
        ConstantCT().postprocess(MetaTensor(torch.zeros(1, 12, 12, 12)), prepared)


# -- on a real head ---------------------------------------------------------------------


def real_head() -> tuple[np.ndarray, np.ndarray, MetaTensor]:
    """The real head CT at half the in-plane resolution, its Q1 body mask (CT > -500 HU,
    filled) and the Q1 pseudo-T1w MR simulated from it."""
    folder = Path(os.environ.get("MEDI2I_DATA_DIR", ""))
    if not os.environ.get("MEDI2I_DATA_DIR") or not (folder / CT_FILE).is_file():
        pytest.skip("MEDI2I_DATA_DIR is unset or lacks the shared volumes")
    from medi2i_bench.datasets import body_mask as ct_body_mask
    from medi2i_bench.mr_ct_data import Q1_SEED

    from medi2i.io import read_volume
    from medi2i.synth import ct_to_pseudo_t1

    image = read_volume(folder / CT_FILE)
    ct = image[0].numpy()[::2, ::2].astype(np.float32)
    affine = np.asarray(image.affine, np.float64) @ np.diag([2.0, 2.0, 1.0, 1.0])
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    mr = ct_to_pseudo_t1(ct, spacing_mm=spacing, seed=Q1_SEED)
    volume = MetaTensor(torch.from_numpy(mr)[None], affine=torch.from_numpy(affine))
    return ct, ct_body_mask(ct), volume


@pytest.mark.parametrize("normalization", ["zscore", "percentile"])
def test_on_a_real_head_the_mask_covers_the_head_and_the_air_is_air(
    normalization: MRNormalization,
) -> None:
    ct, body, mr = real_head()
    inside = body_mask(mr[0].numpy())
    # the head is covered (the CT's body mask also holds the head rest, which the MR
    # shows darker than the head and the mask may leave out) ...
    labels, _ = ndimage.label(body)
    head = labels == np.bincount(labels.ravel())[1:].argmax() + 1
    assert (head & inside).sum() / head.sum() > 0.999
    # ... and the air is not, except next to the skin (the CT's mask filled in every
    # axial slice too, so that the airways, open below the field of view, are inside)
    filled = np.stack([ndimage.binary_fill_holes(body[..., k]) for k in range(body.shape[2])], -1)
    air = (ct < -900) & (ndimage.distance_transform_edt(~filled) >= 4)
    assert air.sum() > 0.3 * air.size
    assert not (air & inside).any()
    # predictions are air outside the mask of the raw input, whatever the normalization
    method = ConstantCT({"mr_normalization": normalization})
    output = predict_tensor(method, mr, settings=SETTINGS)[0].numpy()
    np.testing.assert_array_equal(output == AIR_HU, ~inside)


# -- models trained before body_contour -------------------------------------------------

REPOSITORY = Path(__file__).resolve().parent.parent
MR_TO_CT_MODELS = sorted(
    p.parent.name
    for p in REPOSITORY.glob("benchmarks/quality/models/*/medi2i-model.json")
    if '"modality": "CT"' in p.read_text(encoding="utf-8")
)


@pytest.mark.parametrize("model", MR_TO_CT_MODELS)
def test_committed_mr_to_ct_models_load_with_body_contour_on(model: str) -> None:
    # models saved before the option existed have no such key and load with it on
    folder = REPOSITORY / "benchmarks" / "quality" / "models" / model
    stored = json.loads((folder / "medi2i-model.json").read_text(encoding="utf-8"))["options"]
    method = medi2i.load_model(folder)
    assert method.options.body_contour is stored.get("body_contour", True)


def test_there_are_committed_mr_to_ct_models() -> None:
    assert len(MR_TO_CT_MODELS) >= 2


# -- medi2i mask ------------------------------------------------------------------------


def test_mask_command_writes_the_body_mask_on_the_input_grid(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli
    from medi2i.io import read_volume, write_volume

    source = metatensor(box_body())
    source.affine = torch.diag(torch.tensor([1.5, 1.0, 2.0, 1.0], dtype=torch.float64))
    write_volume(source, tmp_path / "mr.nii.gz")
    output = tmp_path / "mask.nii.gz"
    arguments = ["mask", str(tmp_path / "mr.nii.gz"), str(output), "--margin", "0"]

    result = CliRunner().invoke(build_cli(), arguments)

    assert result.exit_code == 0, result.output
    assert "1728 voxels in the body" in result.output
    written = read_volume(output)
    np.testing.assert_array_equal(written[0].numpy() > 0, body_mask(box_body(), margin_voxels=0))
    torch.testing.assert_close(written.affine, source.affine)
    # an existing output needs --overwrite; a folder output is refused
    again = CliRunner().invoke(build_cli(), arguments)
    assert again.exit_code != 0
    assert "--overwrite" in again.output
    assert CliRunner().invoke(build_cli(), [*arguments, "--overwrite"]).exit_code == 0
    folder = CliRunner().invoke(build_cli(), ["mask", str(tmp_path / "mr.nii.gz"), "out"])
    assert "no file suffix" in folder.output


def test_mask_command_says_when_the_whole_volume_is_the_body(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli
    from medi2i.io import write_volume

    write_volume(metatensor(cropped_head_ct()), tmp_path / "ct.nii.gz")
    arguments = ["mask", str(tmp_path / "ct.nii.gz"), str(tmp_path / "mask.nii.gz")]
    result = CliRunner().invoke(build_cli(), arguments)
    assert result.exit_code == 0, result.output
    assert "100.0 %" in result.output
    warned = [line for line in result.output.splitlines() if line.startswith("Warning: ")]
    assert len(warned) == 1, result.output
    assert "shows no air around a body (cropped inside it?)" in warned[0]
    record = json.loads((tmp_path / "mask.provenance.json").read_text())
    assert record["body"]["air_found"] is False
    assert record["body"]["warning"] == warned[0].removeprefix("Warning: ")


def test_mask_command_writes_a_provenance_sidecar(tmp_path: Path) -> None:
    """As predict's outputs have one: the input's hash, the margin and the body's size."""
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli
    from medi2i.hashing import file_sha256
    from medi2i.io import write_volume
    from medi2i.provenance import is_provenance_record

    write_volume(metatensor(box_body()), tmp_path / "mr.nii.gz")
    arguments = ["mask", str(tmp_path / "mr.nii.gz"), str(tmp_path / "m.nii.gz"), "--margin", "0"]
    result = CliRunner().invoke(build_cli(), arguments)
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.output
    sidecar = tmp_path / "m.provenance.json"
    assert is_provenance_record(sidecar)
    record = json.loads(sidecar.read_text())
    assert record["input"]["sha256"] == file_sha256(tmp_path / "mr.nii.gz")
    assert record["options"] == {"margin_voxels": 0.0}
    assert record["body"] == {
        "voxels": 1728,
        "fraction": 1728 / box_body().size,
        "air_found": True,
        "warning": None,
    }
    # a file of the user's where the sidecar goes is not replaced without --overwrite
    (tmp_path / "n.provenance.json").write_text("mine")
    other = ["mask", str(tmp_path / "mr.nii.gz"), str(tmp_path / "n.nii.gz")]
    refused = CliRunner().invoke(build_cli(), other)
    assert refused.exit_code == 1
    assert "n.provenance.json" in refused.output
    assert not (tmp_path / "n.nii.gz").exists()


def test_mask_command_records_its_file_and_keeps_another_outputs_record(
    tmp_path: Path,
) -> None:
    """x.nii (predict's) and x.nii.gz (the mask) share x.provenance.json: the mask does
    not replace predict's record without --overwrite, nor predict the mask's."""
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli
    from medi2i.io import write_volume

    write_volume(metatensor(box_body()), tmp_path / "mr.nii.gz")
    source = str(tmp_path / "mr.nii.gz")
    predict = ["predict", source, str(tmp_path / "x.nii"), "--method", "intensity-inversion"]
    assert CliRunner().invoke(build_cli(), [*predict, "--device", "cpu"]).exit_code == 0
    sidecar = tmp_path / "x.provenance.json"
    before = sidecar.read_text()

    refused = CliRunner().invoke(build_cli(), ["mask", source, str(tmp_path / "x.nii.gz")])

    assert refused.exit_code == 1
    assert "is the provenance of the existing output" in refused.output
    assert "x.nii" in refused.output
    assert "--overwrite" in refused.output
    assert sidecar.read_text() == before
    assert not (tmp_path / "x.nii.gz").exists()
    # the reverse: predict refuses to replace the mask's record, which names its file
    mask = ["mask", source, str(tmp_path / "y.nii.gz")]
    assert CliRunner().invoke(build_cli(), mask).exit_code == 0
    record = json.loads((tmp_path / "y.provenance.json").read_text())
    assert record["output"]["file"] == "y.nii.gz"
    predict_y = ["predict", source, str(tmp_path / "y.nii"), "--method", "intensity-inversion"]
    again = CliRunner().invoke(build_cli(), [*predict_y, "--device", "cpu"])
    assert again.exit_code == 1
    assert "is the provenance of the existing output" in again.output
    # the mask's own earlier record is replaced with the mask (--overwrite)
    replaced = CliRunner().invoke(build_cli(), [*mask, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output


def test_the_mask_keeps_the_input_files_nifti_codes(tmp_path: Path) -> None:
    """As predict's outputs do: a sform-only input gave a mask with both codes 1."""
    import nibabel as nib
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli

    affine = np.diag([1.2, 0.9, 2.5, 1.0])
    image = nib.Nifti1Image(box_body(), affine)
    image.set_qform(None, code=0)
    image.set_sform(affine, code=2)
    nib.save(image, tmp_path / "mr.nii.gz")
    output = tmp_path / "mask.nii.gz"
    result = CliRunner().invoke(build_cli(), ["mask", str(tmp_path / "mr.nii.gz"), str(output)])
    assert result.exit_code == 0, result.output
    header = nib.load(output).header
    assert (int(header["qform_code"]), int(header["sform_code"])) == (0, 2)
    np.testing.assert_allclose(nib.load(output).affine, affine)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda v: v.__setitem__((3, 4, 5), np.nan), "NaN or infinite"),
        (lambda v: v.fill(7.0), "a constant volume"),
        (
            lambda v: v.__setitem__(
                slice(None), 1000.0 + 1e-4 * (np.arange(v.shape[0]) % 2)[:, None, None]
            ),
            "cannot find a body",
        ),
    ],
)
def test_mask_command_refuses_what_predict_refuses(
    tmp_path: Path, change: Callable[[np.ndarray], None], says: str
) -> None:
    import nibabel as nib
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli

    values = box_body().astype(np.float64)
    change(values)
    nib.save(nib.Nifti1Image(values, np.eye(4)), tmp_path / "mr.nii.gz")

    result = CliRunner().invoke(
        build_cli(), ["mask", str(tmp_path / "mr.nii.gz"), str(tmp_path / "m.nii.gz")]
    )

    assert result.exit_code != 0
    assert says in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.nii.gz").exists()


@pytest.mark.parametrize("margin", ["nan", "inf", "1e9", "-1"])
def test_mask_command_refuses_a_margin_that_is_no_distance(tmp_path: Path, margin: str) -> None:
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli
    from medi2i.io import write_volume

    write_volume(metatensor(box_body()), tmp_path / "mr.nii.gz")
    arguments = [
        "mask",
        str(tmp_path / "mr.nii.gz"),
        str(tmp_path / "m.nii.gz"),
        "--margin",
        margin,
    ]
    result = CliRunner().invoke(build_cli(), arguments)
    assert result.exit_code == 2
    assert "--margin" in result.output
