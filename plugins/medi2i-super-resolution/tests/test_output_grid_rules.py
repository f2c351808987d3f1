"""Super-resolution relative to the input's own grid: the slice axis, predict-time
grids, the trained range and clipping."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from medi2i_super_resolution.edsr import Edsr
from medi2i_super_resolution.grids import GridWarning, OutputGrid, finer_grid, slice_axis
from medi2i_super_resolution.interpolation import Interpolation
from medi2i_super_resolution.smore import Smore
from medi2i_super_resolution.srcnn import Srcnn
from medi2i_super_resolution.srgan import Srgan
from monai.data import MetaTensor

import medi2i
from medi2i import Grid, InferenceSettings, OptionsError, predict_tensor
from medi2i.io import read_volume, write_volume
from medi2i.testing import check_method_contract, make_volume

SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)
SMALL = {"filters": (8, 4), "kernel_sizes": (5, 1, 3), "roi_size": (16, 16, 16)}
CLINICAL = (0.78, 0.78, 6.5)
"""A thick-slice clinical MR's voxel size, in mm."""


def clinical_volume(spacing: tuple[float, float, float] = CLINICAL) -> MetaTensor:
    return make_volume((20, 20, 6), spacing=spacing, seed=4)


def test_the_slice_axis_is_found_from_the_geometry() -> None:
    assert slice_axis(Grid.of(clinical_volume())) == 2
    assert slice_axis(Grid.of(clinical_volume((6.5, 0.78, 0.78)))) == 0
    assert slice_axis(Grid.of(clinical_volume((0.9, 5.0, 0.9)))) == 1
    with pytest.raises(OptionsError, match="no thick-slice axis") as error:
        slice_axis(Grid.of(clinical_volume((1.0, 1.1, 1.0))))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("spacing", [CLINICAL, (6.5, 0.78, 0.78), (0.78, 6.5, 0.78)])
def test_a_slice_factor_refines_only_the_slice_axis(spacing: tuple[float, float, float]) -> None:
    grid = Grid.of(clinical_volume(spacing))

    fine = finer_grid(grid, slice_factor=2.0).grid

    expected = tuple(s / 2 if s == 6.5 else s for s in spacing)
    np.testing.assert_allclose(fine.spacing, expected, atol=1e-6)
    shape = tuple(n * 2 if s == 6.5 else n for n, s in zip(grid.shape, spacing, strict=True))
    assert fine.shape == shape


def test_the_condition_takes_one_rule_at_most() -> None:
    assert OutputGrid().slice_factor is None
    with pytest.raises(ValueError, match="exactly one"):
        OutputGrid(slice_factor=2.0, scale=(1.0, 1.0, 2.0))
    with pytest.raises(ValueError, match="positive"):
        OutputGrid(slice_factor=0.0)


@pytest.mark.parametrize(
    "condition",
    [
        {"slice_factor": "nan"},
        {"slice_factor": float("inf")},
        {"target_spacing": (1.0, 1.0, float("nan"))},
        {"scale": (1.0, 1.0, float("inf"))},
    ],
)
def test_a_non_finite_condition_is_refused_in_one_line(condition: dict[str, object]) -> None:
    with pytest.raises(OptionsError, match="finite number") as error:
        Interpolation().parse_condition(condition)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("condition", [{}, {"slice_factor": 2.5}])
def test_srcnn_keeps_the_contract_with_a_slice_factor(condition: dict[str, object]) -> None:
    check_method_contract(
        Srcnn, options={**SMALL, "slice_factor": 2.0, "align": "centres"}, condition=condition
    )


def test_interpolation_takes_its_grid_from_the_condition() -> None:
    image = clinical_volume()
    method = Interpolation({"order": "linear"})  # options: 1 mm, the 0.78 mm axes kept

    default = predict_tensor(method, image, settings=SETTINGS)
    relative = predict_tensor(method, image, settings=SETTINGS, condition={"slice_factor": 2})

    np.testing.assert_allclose(Grid.of(default).spacing, (0.78, 0.78, 1.0), atol=0.05)
    np.testing.assert_allclose(Grid.of(relative).spacing, (0.78, 0.78, 3.25), atol=1e-6)


def _model(folder: Path, **options: object) -> Path:
    torch.manual_seed(0)
    method = Srcnn({**SMALL, "slice_factor": 2.0, **options})
    return medi2i.save_model(method, folder)


def test_predict_with_a_x2_model_halves_only_the_slice_spacing(tmp_path: Path) -> None:
    """``medi2i predict --model`` on 0.78 × 0.78 × 6.5 mm MR returns 0.78 × 0.78 × 3.25 mm."""
    model = _model(tmp_path / "srcnn-x2")
    source = write_volume(clinical_volume(), tmp_path / "thick.nii.gz")
    output = tmp_path / "fine.nii.gz"

    command = [sys.executable, "-m", "medi2i", "predict", str(source), str(output)]
    command += ["--model", str(model), "--device", "cpu"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)

    assert run.returncode == 0, run.stderr
    result = read_volume(output)
    np.testing.assert_allclose(Grid.of(result).spacing, (0.78, 0.78, 3.25), atol=1e-5)
    assert tuple(result.shape[1:]) == (20, 20, 12)
    provenance = json.loads(output.with_name("fine.provenance.json").read_text())
    assert provenance["options"]["slice_factor"] == 2.0


def quietly(method: medi2i.Method, image: MetaTensor, condition: object = None) -> MetaTensor:
    """``predict_tensor`` with :class:`GridWarning` ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GridWarning)
        return predict_tensor(method, image, settings=SETTINGS, condition=condition)  # type: ignore[arg-type]


def test_a_grid_far_from_the_trained_factor_is_refused_before_inference(tmp_path: Path) -> None:
    model = medi2i.load_model(_model(tmp_path / "srcnn-x2"))
    image = clinical_volume()
    asked = [
        {"slice_factor": 6.5},  # 1 mm slices from a ×2 model
        {"target_spacing": (1.0, 1.0, 1.0)},  # in-plane kept at 0.78 mm, ×6.5 through-plane
        {"scale": (2.0, 2.0, 2.0)},  # in-plane super-resolution it never learned
    ]
    for condition in asked:
        with pytest.raises(OptionsError, match=r"trained to refine the slice axis ×2") as error:
            quietly(model, image, condition)  # 0.78 mm kept in-plane: a GridWarning says so
        assert "\n" not in str(error.value)
    accepted = predict_tensor(model, image, settings=SETTINGS, condition={"slice_factor": 2.5})
    assert tuple(accepted.shape[1:]) == (20, 20, 15)


def test_an_isotropic_input_to_a_slice_model_is_a_one_line_error() -> None:
    model = Srcnn({**SMALL, "slice_factor": 2.0})
    with pytest.raises(OptionsError, match="'srcnn' refines only a thick-slice axis"):
        predict_tensor(model, make_volume((16, 16, 16), spacing=(1.0, 1.0, 1.0)), settings=SETTINGS)


@pytest.mark.parametrize("method", ["edsr", "srgan", "smore", "srcnn"])
@pytest.mark.parametrize("condition", [{"scale": (1, 1, 2)}, {"target_spacing": (1, 1, 0.5)}])
def test_an_isotropic_input_names_the_file_and_advice_that_can_be_followed(
    tmp_path: Path, method: str, condition: dict[str, object]
) -> None:
    """The advice used to be "ask for target_spacing or scale", also to a user who did,
    for methods that refine only a thick-slice axis whatever grid is asked."""
    path = write_volume(make_volume((16, 16, 16), spacing=(1.0, 1.0, 1.0)), tmp_path / "iso.nii.gz")
    model = {
        "edsr": lambda: Edsr({"features": 4, "blocks": 1}),
        "srgan": lambda: Srgan({"features": 4, "blocks": 1}),
        "smore": Smore,
        "srcnn": lambda: Srcnn({**SMALL, "slice_factor": 2.0}),
    }[method]()

    with pytest.raises(OptionsError) as error:
        predict_tensor(model, read_volume(path), settings=SETTINGS, condition=condition)

    message = str(error.value)
    assert message.startswith(f"{path}: method {method!r} refines only a thick-slice axis")
    assert "use --method interpolation" in message
    assert "target_spacing=[X,Y,Z]' or" not in message


@pytest.mark.parametrize("spacing", [(100.0, 100.0, 100.0), (60.0, 1.0, 1.0)])
def test_a_spacing_beyond_the_extent_is_refused_before_the_method_runs(
    tmp_path: Path, spacing: tuple[float, float, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 48 mm axis at 100 mm (or 60 mm) would be 1 voxel: refused up front, naming the
    file and its extent, not after the method with "the method collapsed"."""
    image = make_volume((48, 20, 10), spacing=(1.0, 1.0, 2.0))
    path = write_volume(image, tmp_path / "small.nii.gz")

    def never(*args: object) -> None:
        raise AssertionError("the method ran")

    monkeypatch.setattr(Interpolation, "predict", never)
    method = Interpolation({"target_spacing": spacing, "coarsen": True})
    with pytest.raises(OptionsError) as error:
        quietly(method, read_volume(path))  # a GridWarning says 48 mm first, not the 100 asked

    message = str(error.value)
    assert message.startswith(
        f"{path}: method 'interpolation' would deliver 1 voxel along array axis 0"
    )
    assert "48 mm across" in message
    assert "spacing of at most 24 mm" in message
    assert "\n" not in message


def _edge(spacing_z: float = 4.0) -> MetaTensor:
    """A bright block next to a dark one along the slice axis: cubic B-splines ring."""
    values = np.full((8, 8, 8), 100.0, np.float32)
    values[:, :, 4:] = 1000.0
    values[:, :, 5] = 0.0  # a thin dark slice makes the overshoot large
    affine = torch.diag(torch.tensor([1.0, 1.0, spacing_z, 1.0], dtype=torch.float64))
    return MetaTensor(torch.from_numpy(values)[None], affine=affine)


def test_interpolation_is_clipped_to_the_input_range_with_a_margin() -> None:
    image = _edge()
    unclipped = Interpolation({"slice_factor": 4, "clip_margin": None})
    clipped = Interpolation({"slice_factor": 4})  # 5 % margin by default

    free = predict_tensor(unclipped, image, settings=SETTINGS)
    kept = predict_tensor(clipped, image, settings=SETTINGS)

    assert float(free.min()) < -50.0 or float(free.max()) > 1050.0  # it does ring
    assert float(kept.min()) >= -50.0 - 1e-3
    assert float(kept.max()) <= 1050.0 + 1e-3


def test_srcnn_outputs_are_clipped_to_the_input_range() -> None:
    image = _edge()
    method = Srcnn({**SMALL, "slice_factor": 4, "align": "centres"})
    with torch.no_grad():  # a reconstruction layer that adds a large detail everywhere
        method.network.reconstruction.bias.fill_(-5.0)

    # every voxel clipped to -50 is a constant volume: looked at, not delivered
    output = predict_tensor(method, image, settings=SETTINGS, allow_constant=True)

    assert float(output.min()) >= -50.0 - 1e-3


def test_a_1_mm_model_never_coarsens_a_finer_in_plane_axis() -> None:
    """The committed srcnn (target_spacing [1, 1, 1]) turned 0.8 × 0.8 × 4 mm into
    1.008 × 1.008 × 1 mm: super-resolution that shrank the image in-plane, unsaid."""
    model = Srcnn({**SMALL, "target_spacing": (1.0, 1.0, 1.0), "align": "centres"})
    grid = Grid((51, 51, 33), np.diag([0.8, 0.8, 4.0, 1.0]))
    with pytest.warns(GridWarning, match=r"0\.8 × 0\.8 × 1 mm, not the 1 × 1 × 1 mm.*coarsen=true"):
        kept = model.output_grid(grid)
    assert kept.shape == (51, 51, 129)
    np.testing.assert_allclose(kept.spacing, (0.8, 0.8, 1.0))
    asked = Srcnn({**SMALL, "target_spacing": (1.0, 1.0, 1.0), "coarsen": True})
    with pytest.warns(GridWarning, match="nearest that fits"):  # 41 voxels of 0.995 mm
        assert asked.output_grid(grid).shape[:2] == (41, 41)  # coarser only when asked
    at_predict = model.output_grid(grid, OutputGrid(coarsen=True))  # or by the condition
    assert at_predict.shape[:2] == (41, 41)  # centres: 40 intervals of exactly 1 mm


def test_a_target_spacing_that_does_not_fit_is_said() -> None:
    """target_spacing [1, 1, 1.2] on 43 slices of 3 mm gave 1.19444 mm without a word,
    while the README said it is met on every axis."""
    grid = Grid((16, 16, 43), np.diag([1.0, 1.0, 3.0, 1.0]))
    method = Interpolation({"target_spacing": (1.0, 1.0, 1.2)})
    with pytest.warns(GridWarning, match=r"1 × 1 × 1\.19444 mm, not the 1 × 1 × 1\.2 mm asked"):
        assert method.output_grid(grid).shape == (16, 16, 108)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GridWarning)
        Interpolation({"target_spacing": (1.0, 1.0, 1.5)}).output_grid(grid)  # 86 fit


THICK4 = Grid((48, 48, 12), np.diag([1.0, 1.0, 4.0, 1.0]))
"""48 × 48 slices of 1 mm, 12 slices 4 mm thick."""


@pytest.mark.parametrize(
    ("rule", "shown"),
    [
        ({"target_spacing": (1.0, 1.0, 1e-4)}, r"target_spacing 1 × 1 × 0\.0001 mm"),
        ({"slice_factor": 1e6}, "slice_factor 1e\\+06"),
        ({"scale": (1.0, 1.0, 1e300)}, r"scale 1 × 1 × 1e\+300.*more voxels than can be"),
    ],
)
@pytest.mark.parametrize("kind", [Interpolation, Srcnn, Edsr, Srgan, Smore])
def test_a_grid_too_large_to_allocate_is_refused_by_every_method(
    kind: type[medi2i.Method], rule: dict[str, object], shown: str
) -> None:
    """interpolation with target_spacing [1, 1, 1e-4] mm on 4 mm slices tried to
    allocate 48 × 48 × 480,000 voxels (8 GiB in float64): a MemoryError traceback, or
    hours of resampling, instead of a one-line refusal."""
    method = kind(SMALL) if kind is Srcnn else kind()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GridWarning)
        with pytest.raises(OptionsError, match=shown) as refused:
            method.output_grid(THICK4, OutputGrid(**rule))  # type: ignore[arg-type]

    message = str(refused.value)
    assert "\n" not in message
    assert "48 × 48 × 12 = 27648 voxels" in message
    assert "1.68e+07 voxels" in message  # the limit for this input
    if "target_spacing" in rule:  # 480,000 slices, or 440,001 between centres (edsr)
        assert re.search(r"48 × 48 × 4[48]000[01] = 1\.\d+e\+09 voxels", message)


def test_the_voxel_limit_is_relative_to_the_input_with_a_floor_and_a_ceiling() -> None:
    from medi2i_super_resolution.grids import voxel_limit

    assert voxel_limit(48 * 48 * 12) == 2**24  # a small input may still reach 64 MiB
    assert voxel_limit(128 * 128 * 40) == 512 * 128 * 128 * 40
    assert voxel_limit(512 * 512 * 400) == 2**30
    # a large but sensible refinement is not refused: 4 mm slices to 0.25 mm
    assert Interpolation({"target_spacing": (1.0, 1.0, 0.25)}).output_grid(THICK4).shape == (
        48,
        48,
        192,
    )


def test_the_options_own_grid_too_large_is_refused_too() -> None:
    with pytest.raises(OptionsError, match=r"at most 1\.68e\+07 voxels"):
        Interpolation({"scale": (10.0, 10.0, 10.0)}).output_grid(THICK4)


def test_interpolation_and_a_model_round_the_same_way_for_the_same_alignment() -> None:
    """For target_spacing [1, 1, 1.3] on 12 slices of 4 mm, interpolation wrote 1.2973 mm
    and a srcnn model 1.29412 mm: the model was trained with align: centres (44 mm
    between the first and last centres: 34 voxels), interpolation's default is edges
    (48 mm of field of view: 37 voxels). The warning names the alignment."""
    asked = OutputGrid(target_spacing=(1.0, 1.0, 1.3))
    model = Srcnn({**SMALL, "target_spacing": (1.0, 1.0, 1.0), "align": "centres"})

    with pytest.warns(GridWarning, match=r"1\.29412 mm.*between the first and last voxel centres"):
        from_model = model.output_grid(THICK4, asked)
    with pytest.warns(GridWarning, match=r"1\.2973 mm.*fits the field of view.*align: edges"):
        edges = Interpolation().output_grid(THICK4, asked)
    with pytest.warns(GridWarning, match=r"1\.29412 mm.*align: centres"):
        centres = Interpolation({"align": "centres"}).output_grid(THICK4, asked)

    assert centres.same_as(from_model)
    assert edges.shape == (48, 48, 37)
    assert from_model.shape == (48, 48, 35)
