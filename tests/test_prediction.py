"""The predict path: grids, inversion to the input grid, conditions, model folders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medi2i.errors import OptionsError, OutputError, UnknownMethodError
from medi2i.grid import Grid
from medi2i.model_folder import load_model, save_model
from medi2i.prediction import predict, predict_tensor
from medi2i.provenance import sidecar_path
from medi2i.registry import Registry
from medi2i.settings import InferenceSettings
from medi2i.testing.example_methods import (
    DomainOffset,
    FittedStandardization,
    PointwiseNet,
    SelfRescaling,
    ThroughPlaneUpsampler,
)

QUIET = InferenceSettings(progress=False, device="cpu")


def volume(affine: np.ndarray, shape: tuple[int, int, int] = (20, 18, 12)) -> MetaTensor:
    rng = np.random.default_rng(1)
    data = rng.normal(100.0, 20.0, (1, *shape)).astype(np.float32)
    return MetaTensor(torch.from_numpy(data), affine=torch.from_numpy(affine))


def oblique_affine() -> np.ndarray:
    angle = np.deg2rad(20.0)
    rotation = np.array(
        [[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0], [-np.sin(angle), 0.0, np.cos(angle)]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 1.2, 2.5])
    affine[:3, 3] = (12.0, -30.0, 7.5)
    return affine


def test_patch_network_output_keeps_the_input_grid() -> None:
    image = volume(oblique_affine())
    method = PointwiseNet()
    result = predict_tensor(method, image, settings=QUIET)
    assert Grid.of(result).same_as(Grid.of(image), atol=0)
    with torch.no_grad():
        expected = method.network(image.as_tensor()[None])[0]
    torch.testing.assert_close(result.as_tensor(), expected, atol=1e-5, rtol=1e-5)


def test_super_resolution_output_is_on_the_finer_grid_covering_the_same_extent() -> None:
    image = volume(oblique_affine(), shape=(16, 16, 8))
    result = predict_tensor(ThroughPlaneUpsampler(), image, settings=QUIET)
    assert tuple(result.shape) == (1, 16, 16, 16)
    source, target = Grid.of(image), Grid.of(result)
    assert np.allclose(target.spacing, (0.8, 1.2, 1.25))

    def first_edge(grid: Grid) -> np.ndarray:
        return (grid.affine @ np.array([-0.5, -0.5, -0.5, 1.0]))[:3]

    assert np.allclose(first_edge(source), first_edge(target))
    # nearest ×2 along the third axis: each input slice appears twice
    torch.testing.assert_close(result.as_tensor()[..., 0::2], image.as_tensor())
    torch.testing.assert_close(result.as_tensor()[..., 1::2], image.as_tensor())


def test_reorientation_is_inverted_exactly_onto_a_non_ras_input_grid() -> None:
    lps_permuted = np.array(
        [[0.0, -1.5, 0.0, 40.0], [-0.9, 0.0, 0.0, 20.0], [0.0, 0.0, 2.0, -10.0], [0, 0, 0, 1]]
    )
    image = volume(lps_permuted)
    result = predict_tensor(SelfRescaling(), image, settings=QUIET)
    assert Grid.of(result).same_as(Grid.of(image), atol=0)
    low, high = np.percentile(image.numpy(), [1.0, 99.0])
    # the map is global, so undoing the reorientation must give it voxel by voxel
    expected = (image.numpy() - low) / (high - low)
    np.testing.assert_allclose(result.numpy(), expected, atol=1e-6)


class _Returning(SelfRescaling):
    """Returns what ``make`` makes of the prepared input, from predict or postprocess."""

    id = "example-returning"
    fits_at_predict = False

    def __init__(self, make: object, stage: str) -> None:
        super().__init__()
        self.make, self.stage = make, stage

    def predict(self, image: MetaTensor, context: object) -> torch.Tensor:
        return self.make(image) if self.stage == "predict" else image * 1.0  # type: ignore[operator]

    def postprocess(self, image: MetaTensor, source: MetaTensor, **kwargs: object) -> MetaTensor:
        return self.make(image) if self.stage == "postprocess" else image  # type: ignore[operator]


@pytest.mark.parametrize("stage", ["predict", "postprocess"])
@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda v: v[:, 2:-2, 2:-2, 2:-2] * 1.0, "with the affine it was given"),  # unpadded conv
        (lambda v: v[:, ::2], "with the affine it was given"),  # a stride
        (lambda v: v[0], "channel-first 3D volume"),  # the channel axis dropped
    ],
)
def test_an_output_the_core_cannot_place_is_refused_naming_the_method(
    stage: str, make: object, says: str
) -> None:
    # slicing a MetaTensor keeps its affine: delivering it would shift or squeeze the result
    with pytest.raises(OutputError, match=f"example-returning.*{stage}.*") as error:
        predict_tensor(_Returning(make, stage), volume(oblique_affine()), settings=QUIET)
    assert says in str(error.value)


def test_an_output_on_its_own_grid_is_resampled_not_refused() -> None:
    def cropped(v: MetaTensor) -> MetaTensor:
        grid = Grid.of(v)
        affine = grid.affine.copy()
        affine[:3, 3] = grid.affine[:3, :3] @ np.array([2.0, 2.0, 2.0]) + grid.affine[:3, 3]
        return MetaTensor(v.as_tensor()[:, 2:-2, 2:-2, 2:-2], affine=torch.from_numpy(affine))

    image = volume(np.diag([1.0, 1.0, 1.0, 1.0]))
    result = predict_tensor(_Returning(cropped, "predict"), image, settings=QUIET)
    # inside, the crop lands back where it came from; outside, the edge voxels are repeated
    inner = (slice(None), slice(2, -2), slice(2, -2), slice(2, -2))
    torch.testing.assert_close(result.as_tensor()[inner], image.as_tensor()[inner])


def test_condition_selects_the_target_domain_and_is_validated() -> None:
    image = volume(np.eye(4))
    b = predict_tensor(DomainOffset(), image, settings=QUIET, condition={"target_domain": "B"})
    torch.testing.assert_close(b.as_tensor(), image.as_tensor() + 100.0)
    with pytest.raises(OptionsError, match="target_domain"):
        predict_tensor(DomainOffset(), image, settings=QUIET, condition={"target_domain": "Z"})


def test_fitted_state_round_trips_through_a_model_folder(
    tmp_path: Path, registry: Registry
) -> None:
    method = FittedStandardization()
    method.fit([np.full((4, 4, 4), 3.0), np.full((4, 4, 4), 5.0)])
    folder = save_model(method, tmp_path / "model")
    loaded = load_model(folder, registry=registry)
    assert isinstance(loaded, FittedStandardization)
    assert (loaded.mean, loaded.std) == (4.0, 1.0)
    image = volume(oblique_affine())
    torch.testing.assert_close(
        predict_tensor(loaded, image, settings=QUIET), predict_tensor(method, image, settings=QUIET)
    )


def test_predict_writes_output_with_identical_geometry_and_provenance(
    tmp_path: Path, registry: Registry
) -> None:
    from medi2i.io import read_volume, write_volume

    method = PointwiseNet()
    folder = save_model(method, tmp_path / "model")
    source = write_volume(volume(oblique_affine()), tmp_path / "in.nii.gz")
    written = predict(
        source, tmp_path / "out" / "sct.nii.gz", model=folder, settings=QUIET, registry=registry
    )
    image, result = read_volume(source), read_volume(written)
    assert tuple(result.shape) == tuple(image.shape)
    np.testing.assert_array_equal(np.asarray(result.affine), np.asarray(image.affine))
    record = json.loads(sidecar_path(written).read_text())
    assert record["method"]["id"] == PointwiseNet.id
    assert record["plugin"]["name"] == "examples"
    # no --roi-size given: the window the method chose is recorded, not left null
    assert record["settings"]["roi_size"] is None
    assert record["window"] == list(method.roi_size())
    assert len(record["input"]["sha256"]) == 64
    assert (
        record["weights_sha256"]
        == json.loads((folder / "medi2i-model.json").read_text())["weights"]["sha256"]
    )


def test_a_trainable_method_without_a_model_is_refused(tmp_path: Path, registry: Registry) -> None:
    with pytest.raises(OptionsError, match="must be trained"):
        predict(
            tmp_path / "in.nii.gz",
            tmp_path / "out.nii.gz",
            method=PointwiseNet.id,
            registry=registry,
        )


def test_unknown_method_lists_the_known_ones(tmp_path: Path, registry: Registry) -> None:
    with pytest.raises(UnknownMethodError, match="example-domain-offset"):
        predict(tmp_path / "in.nii.gz", tmp_path / "out.nii.gz", method="nope", registry=registry)


def test_a_constant_output_of_a_varying_input_is_not_written(
    tmp_path: Path, registry: Registry
) -> None:
    from medi2i.io import write_volume

    # a sparse volume: intensity-inversion's 1st and 99th percentiles coincide, so its
    # window has zero width and every output voxel is the same
    values = np.zeros((20, 18, 12), np.float32)
    values[5:8, 5:8, 5:8] = 5.0
    source = write_volume(MetaTensor(torch.from_numpy(values)[None]), tmp_path / "in.nii.gz")
    with pytest.raises(OutputError, match=r"every voxel is 0, a constant volume.*collapsed"):
        predict(
            source,
            tmp_path / "out.nii.gz",
            method="intensity-inversion",
            settings=QUIET,
            registry=registry,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]
    # in memory too (the output is refused as a file is), unless the caller asks to see it
    collapsed = _Returning(lambda v: v * 0.0 + 3.0, "postprocess")
    with pytest.raises(OutputError, match="every voxel is 3, a constant volume"):
        predict_tensor(collapsed, volume(oblique_affine()), settings=QUIET)
    seen = predict_tensor(collapsed, volume(oblique_affine()), settings=QUIET, allow_constant=True)
    assert float(seen.max()) == 3.0


def test_an_output_of_one_voxel_is_refused_before_the_method_runs(
    tmp_path: Path, registry: Registry
) -> None:
    from medi2i.io import write_volume

    # a spacing wider than the volume collapses interpolation's grid to a single voxel:
    # refused up front, naming the file and its extent, not after the method ran with
    # "the method collapsed on this input"
    values = np.random.default_rng(0).normal(100.0, 20.0, (16, 14, 12)).astype(np.float32)
    source = write_volume(MetaTensor(torch.from_numpy(values)[None]), tmp_path / "in.nii.gz")
    expected = rf"^{re.escape(str(source))}: method 'interpolation' would deliver 1 voxel along "
    expected += r"array axis 0, where the input has 16 \(16 mm across.*at most 8 mm"
    with pytest.raises(OptionsError, match=expected):
        predict(
            source,
            tmp_path / "out.nii.gz",
            method="interpolation",
            options={"target_spacing": [1e9, 1e9, 1e9]},
            settings=QUIET,
            registry=registry,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]


def test_an_output_grid_the_machine_cannot_hold_is_refused_before_any_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import medi2i.io.base

    monkeypatch.setattr(medi2i.io.base, "physical_memory", lambda: 2**20)  # 1 MiB
    image = volume(np.eye(4), shape=(16, 16, 8))
    # the upsampler doubles z: 16 × 16 × 16 float32 is 16 KiB and fits; 64³ is 1 MiB
    assert tuple(predict_tensor(ThroughPlaneUpsampler(), image, settings=QUIET).shape[1:]) == (
        16,
        16,
        16,
    )
    big = volume(np.eye(4), shape=(64, 64, 32))
    with pytest.raises(OptionsError, match=r"64 × 64 × 64 grid.*more than the 0\.0 GiB"):
        predict_tensor(ThroughPlaneUpsampler(), big, settings=QUIET)


def test_a_method_s_complaint_about_the_input_names_the_file(
    tmp_path: Path, registry: Registry
) -> None:
    from medi2i.errors import InputError
    from medi2i.io import read_volume, write_volume

    def refuse(v: MetaTensor) -> MetaTensor:
        raise InputError("the foreground has no spread")

    image = read_volume(write_volume(volume(np.eye(4)), tmp_path / "flat.nii.gz"))
    with pytest.raises(InputError, match=r"flat\.nii\.gz: the foreground has no spread"):
        predict_tensor(_Returning(refuse, "predict"), image, settings=QUIET)


# -- reflection padding -----------------------------------------------------------------


def _lps(affine: np.ndarray) -> np.ndarray:
    flipped = affine.copy()
    flipped[:2] *= -1  # the first two world axes reversed: a non-RAS grid
    return flipped


def test_reflect_padding_runs_the_method_on_the_reflected_volume_and_crops_it() -> None:
    from medi2i.reflect_padding import reflected_volume

    image = volume(_lps(oblique_affine()))
    image.as_tensor()[0, :4] += 300.0  # a bright edge: the reflection moves the percentiles
    settings = InferenceSettings(progress=False, device="cpu", reflect_padding=(5, 3, 0))
    result = predict_tensor(SelfRescaling(), image, settings=settings)
    assert Grid.of(result).same_as(Grid.of(image), atol=1e-9)
    padded = predict_tensor(SelfRescaling(), reflected_volume(image, (5, 3, 0)), settings=QUIET)
    torch.testing.assert_close(result.as_tensor(), padded.as_tensor()[:, 5:-5, 3:-3, :])
    plain = predict_tensor(SelfRescaling(), image, settings=QUIET)
    assert not torch.allclose(result.as_tensor(), plain.as_tensor())  # the method saw more


def test_reflect_padding_reflects_without_repeating_the_edge_and_is_capped() -> None:
    from medi2i.reflect_padding import reflect_pad, reflected_volume, reflection_widths

    assert reflection_widths((5, 1, 9), (8, 8, 2)) == (4, 0, 2)
    values = torch.arange(5, dtype=torch.int16).reshape(1, 5, 1, 1)
    padded = reflect_pad(values, (4, 0, 0))
    assert padded.dtype == torch.int16
    assert padded.flatten().tolist() == [4, 3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 0]
    assert reflect_pad(values, (0, 0, 0)) is values
    image = volume(oblique_affine(), shape=(6, 5, 4))
    grown = reflected_volume(image, (2, 0, 1))
    assert tuple(grown.shape) == (1, 10, 5, 6)
    # voxel (2, 0, 1) of the padded grid is voxel (0, 0, 0) of the input, in the world too
    world = Grid.of(grown).affine @ np.array([2.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(world, Grid.of(image).affine[:, 3], atol=1e-9)
    settings = InferenceSettings(progress=False, device="cpu", reflect_padding=(50, 50, 50))
    facts: dict[str, object] = {}
    assert predict_tensor(SelfRescaling(), image, settings=settings, run_facts=facts).shape == (
        image.shape
    )
    assert facts == {"reflect_padding": [5, 4, 3]}  # the widths used, for the provenance
    facts.clear()
    predict_tensor(SelfRescaling(), image, settings=QUIET, run_facts=facts)
    assert facts == {}  # nothing capped, nothing said


def test_reflect_padding_with_a_method_that_changes_resolution() -> None:
    image = volume(oblique_affine(), shape=(16, 16, 8))
    settings = InferenceSettings(progress=False, device="cpu", reflect_padding=(2, 0, 3))
    result = predict_tensor(ThroughPlaneUpsampler(), image, settings=settings)
    plain = predict_tensor(ThroughPlaneUpsampler(), image, settings=QUIET)
    assert Grid.of(result).same_as(Grid.of(plain), atol=1e-9)
    torch.testing.assert_close(result.as_tensor(), plain.as_tensor())  # voxelwise: the same


def test_reflect_padding_refuses_widths_that_are_not_whole_output_voxels() -> None:
    from medi2i.reflect_padding import cropped_to_grid

    image = volume(np.eye(4), shape=(8, 8, 8))
    finer = Grid.of(image).scaled((1.0, 1.0, 1.5))
    grown = MetaTensor(torch.zeros(1, 8, 8, 13), affine=torch.from_numpy(finer.affine))
    shifted = Grid(finer.shape, finer.affine @ _translation((0.0, 0.0, 0.5)))
    with pytest.raises(OptionsError, match="reflect_padding does not fit method 'm'"):
        cropped_to_grid(grown, shifted, method_id="m")


def _translation(offset: tuple[float, float, float]) -> np.ndarray:
    moved = np.eye(4)
    moved[:3, 3] = offset
    return moved


def test_one_reflect_padding_width_is_that_width_on_every_axis() -> None:
    assert InferenceSettings(reflect_padding=3).reflect_padding == (3, 3, 3)
    with pytest.raises(OptionsError, match="reflect_padding"):
        InferenceSettings(reflect_padding=True)
