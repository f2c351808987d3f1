from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest
import torch
from monai.data.meta_tensor import MetaTensor
from pydantic import ValidationError

from medi2i.engine import (
    Predictor,
    SlidingWindowEngine,
    mirror_combinations,
    resolve_device,
    window_batch,
    window_size,
)
from medi2i.errors import DeviceError, GeometryError, Medi2iError, OptionsError
from medi2i.method import PredictContext, Task, VolumeSpec
from medi2i.patch_network import PatchNetworkMethod
from medi2i.settings import InferenceSettings


def _engine(**overrides: object) -> SlidingWindowEngine:
    values: dict[str, object] = {"roi_size": (16, 16, 16), "device": "cpu", "progress": False}
    values.update(overrides)
    return SlidingWindowEngine(settings=InferenceSettings.model_validate(values))


def _pointwise_net(channels_in: int = 2, channels_out: int = 1) -> torch.nn.Module:
    """Kernel-1 convolutions: each output voxel sees only its own input voxel, so any
    window containing a voxel predicts it exactly as the whole-volume forward does."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv3d(channels_in, 4, kernel_size=1),
        torch.nn.GELU(),
        torch.nn.Conv3d(4, channels_out, kernel_size=1),
    )


def _whole(net: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        output: torch.Tensor = net(image[None])[0]
    return output


@pytest.fixture
def image() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 30, 27, 20)


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_pointwise_net_matches_whole_volume_forward(
    image: torch.Tensor, blend: str, overlap: float
) -> None:
    net = _pointwise_net()
    output = _engine(blend=blend, overlap=overlap).run(image, net, modules=[net])
    torch.testing.assert_close(output, _whole(net, image), atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [(2.0, 2.0, 2.0), (1.0, 1.0, 4.0)])
def test_upsampling_net_gives_scaled_output(
    image: torch.Tensor, scale: tuple[float, float, float]
) -> None:
    net = torch.nn.Sequential(
        torch.nn.Upsample(scale_factor=scale, mode="nearest"), _pointwise_net()
    )
    output = _engine().run(image, net, modules=[net], output_scale=scale)
    expected = tuple(round(n * s) for n, s in zip(image.shape[1:], scale, strict=True))
    assert tuple(output.shape) == (1, *expected)
    torch.testing.assert_close(output, _whole(net, image), atol=1e-5, rtol=0)


def test_output_not_matching_output_scale_is_an_error(image: torch.Tensor) -> None:
    with pytest.raises(Medi2iError, match="output_scale"):
        _engine().run(image, _pointwise_net(), output_scale=(2.0, 2.0, 2.0))


def test_fractional_output_that_does_not_fit_is_an_error() -> None:
    upsample = torch.nn.Upsample(scale_factor=1.5, mode="nearest")
    with pytest.raises(Medi2iError, match="whole numbers"):
        _engine().run(torch.rand(1, 31, 29, 21), upsample, output_scale=(1.5, 1.5, 1.5))


def test_roi_larger_than_volume_shrinks_the_window(image: torch.Tensor) -> None:
    net = _pointwise_net()
    seen: list[tuple[int, ...]] = []

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(windows.shape[2:]))
        output: torch.Tensor = net(windows)
        return output

    output = _engine(roi_size=(48, 64, 96)).run(image, predictor)
    assert set(seen) == {(32, 32, 32)}
    torch.testing.assert_close(output, _whole(net, image), atol=1e-5, rtol=0)


def test_windows_past_the_volume_are_padded_by_edge_replication_as_in_training() -> None:
    torch.manual_seed(0)
    image = torch.rand(1, 10, 12, 16)
    seen: list[torch.Tensor] = []

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        seen.append(windows.clone())
        return windows

    output = _engine(roi_size=(16, 16, 16)).run(image, predictor)
    (window,) = seen
    expected = torch.nn.functional.pad(image[None], (0, 0, 2, 2, 3, 3), mode="replicate")
    torch.testing.assert_close(window, expected)  # MONAI pads both ends
    torch.testing.assert_close(output, image)


def test_shrunk_window_keeps_divisibility_a_strided_net_needs() -> None:
    image = torch.rand(1, 10, 40, 3)
    # pooling by 8 then upsampling by 8 only keeps the shape of sizes divisible by 8
    net = torch.nn.Sequential(torch.nn.AvgPool3d(8), torch.nn.Upsample(scale_factor=8))
    output = _engine(roi_size=(24, 24, 24)).run(image, net)
    assert output.shape == image.shape


@pytest.mark.parametrize(
    ("image_size", "roi", "expected"),
    [
        ((20, 100, 1), (48, 96, 96), (32, 96, 32)),
        ((10, 10, 10), (17, 17, 12), (10, 10, 12)),
        ((70, 5, 130), (128, 128, 128), (96, 32, 128)),
    ],
)
def test_window_size(
    image_size: tuple[int, int, int], roi: tuple[int, int, int], expected: tuple[int, int, int]
) -> None:
    assert window_size(image_size, roi) == expected


def _out_of_memory_above(limit: int, net: torch.nn.Module, calls: list[int]) -> Predictor:
    def predictor(windows: torch.Tensor) -> torch.Tensor:
        calls.append(windows.shape[0])
        if windows.shape[0] > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        output: torch.Tensor = net(windows)
        return output

    return predictor


@pytest.mark.parametrize(("limit", "settled"), [(1, 1), (2, 2)])
def test_out_of_memory_halves_the_batch_and_retries(
    image: torch.Tensor, limit: int, settled: int, caplog: pytest.LogCaptureFixture
) -> None:
    net = _pointwise_net()
    calls: list[int] = []
    engine = _engine(sw_batch_size=4, overlap=0.5)
    with caplog.at_level(logging.WARNING, logger="medi2i.engine"):
        output = engine.run(image, _out_of_memory_above(limit, net, calls))
    torch.testing.assert_close(output, _whole(net, image), atol=1e-5, rtol=0)
    assert engine.sw_batch_size == settled
    assert max(calls) == 4
    assert "out of memory" in caplog.text


def test_out_of_memory_with_one_window_is_a_device_error(image: torch.Tensor) -> None:
    engine = _engine(sw_batch_size=4)
    calls: list[int] = []
    with pytest.raises(DeviceError, match="--roi-size"):
        engine.run(image, _out_of_memory_above(0, _pointwise_net(), calls))
    assert sorted(set(calls)) == [1, 2, 4]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_cuda_device_is_a_device_error() -> None:
    with pytest.raises(DeviceError, match="--device cpu"):
        resolve_device("cuda")
    with pytest.raises(DeviceError):
        SlidingWindowEngine(settings=InferenceSettings(device="cuda:1"))
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "meta"])
def test_unknown_device_is_a_device_error(name: str) -> None:
    with pytest.raises(DeviceError, match="'cpu'"):
        resolve_device(name)


def test_modules_end_in_eval_mode_and_output_is_a_plain_float32_cpu_tensor() -> None:
    torch.manual_seed(2)
    image = MetaTensor(torch.rand(2, 20, 20, 20, dtype=torch.float64), affine=torch.eye(4) * 2)
    before = image.as_tensor().clone()
    net = torch.nn.Sequential(_pointwise_net(), torch.nn.Dropout(p=0.5))
    net.train()
    engine = _engine(progress=True)
    output = engine.run(image, net, modules=[net])
    assert not net.training
    assert type(output) is torch.Tensor
    assert output.dtype == torch.float32
    assert output.device == torch.device("cpu")
    assert engine.device == torch.device("cpu")
    output.clamp_(0.0, 1.0)  # postprocessing may modify the output in place
    assert torch.equal(image.as_tensor(), before)


def test_image_that_is_not_channel_first_3d_is_a_geometry_error() -> None:
    with pytest.raises(GeometryError, match="channel-first"):
        _engine().run(torch.rand(20, 20, 20), _pointwise_net(1))


class _Pointwise(PatchNetworkMethod):
    """Pointwise test network."""

    id = "pointwise-test"
    tasks = (Task.TRANSLATION,)
    input_spec = output_spec = VolumeSpec(channels=2)
    default_roi_size = (16, 16, 16)

    def build_network(self) -> torch.nn.Module:
        return _pointwise_net()


def test_patch_network_method_predicts_through_the_engine(image: torch.Tensor) -> None:
    method = _Pointwise()
    engine = _engine(roi_size=None)
    context = PredictContext(
        engine=engine, condition=method.parse_condition(None), device=engine.device
    )
    output = method.predict(MetaTensor(image), context)
    torch.testing.assert_close(output, _whole(method.network, image), atol=1e-5, rtol=0)


class _DeclaredPointwise(_Pointwise):
    """The same network, declared pointwise: the core runs it on whole slices."""

    id = "declared-pointwise-test"
    pointwise = True


@pytest.mark.parametrize("slab_voxels", [1 << 24, 30 * 27 * 2 * 3])
def test_a_pointwise_method_runs_on_slabs_and_gives_the_whole_volume_forward(
    image: torch.Tensor, slab_voxels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medi2i.engine

    monkeypatch.setattr(medi2i.engine, "POINTWISE_SLAB_VOXELS", slab_voxels)  # 3 slices
    method = _DeclaredPointwise()
    engine = _engine(roi_size=None)
    calls: list[tuple[int, ...]] = []
    original = engine._sliding_window
    monkeypatch.setattr(engine, "_sliding_window", lambda *a: calls.append(()) or original(*a))
    context = PredictContext(
        engine=engine, condition=method.parse_condition(None), device=engine.device
    )
    output = method.predict(MetaTensor(image), context)

    assert not calls, "the sliding window ran for a pointwise method"
    assert output.dtype == torch.float32
    assert not method.network.training
    torch.testing.assert_close(output, _whole(method.network, image), atol=1e-5, rtol=0)


def test_a_pointwise_predictor_that_changes_the_size_is_an_error(image: torch.Tensor) -> None:
    with pytest.raises(Medi2iError, match="must not declare itself pointwise"):
        _engine().run_pointwise(image, lambda slab: slab[..., :-1])
    with pytest.raises(GeometryError, match="channel-first"):
        _engine().run_pointwise(torch.rand(20, 20, 20), lambda slab: slab)


@pytest.mark.parametrize(
    "bad",
    [
        {"overlap": 1.0},
        {"sw_batch_size": 0},
        {"roi_size": (16, 0, 16)},
        {"blend": "linear"},
        {"roi": (16, 16, 16)},
    ],
)
def test_invalid_settings_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        InferenceSettings.model_validate(bad)


def test_settings_module_does_not_import_torch() -> None:
    code = "import sys, medi2i.settings; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_mirror_combinations_are_every_non_empty_subset_of_the_axes() -> None:
    assert mirror_combinations(()) == []
    assert mirror_combinations((1,)) == [(3,)]
    assert mirror_combinations((0, 1, 2)) == [(2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]


def test_mirroring_leaves_a_mirror_symmetric_network_unchanged(image: torch.Tensor) -> None:
    net = _pointwise_net()  # kernel 1: mirroring the window mirrors its output exactly
    plain = _engine().run(image, net, modules=[net])
    mirrored = _engine(mirror_axes=(0, 1, 2)).run(image, net, modules=[net])
    torch.testing.assert_close(mirrored, plain, atol=1e-5, rtol=0)


def test_mirroring_averages_the_mirrored_predictions() -> None:
    """A predictor that adds each voxel's x position in its window: mirrored along x
    and back, that ramp runs the other way, so the average adds the window's mean
    position, (16 - 1) / 2, everywhere; mirroring along y alone changes nothing."""
    ramp = torch.arange(16.0).reshape(1, 1, 16, 1, 1)
    image = torch.zeros(1, 16, 16, 16)

    def along_x(windows: torch.Tensor) -> torch.Tensor:
        return windows + ramp

    only_y = _engine(mirror_axes=(1,)).run(image, along_x)
    torch.testing.assert_close(only_y, (image + ramp[0]).expand(1, 16, 16, 16))
    with_x = _engine(mirror_axes=(0, 1)).run(image, along_x)
    torch.testing.assert_close(with_x, torch.full((1, 16, 16, 16), 7.5))


def _slices_interpolated_on_their_centres(windows: torch.Tensor) -> torch.Tensor:
    """Twice the slices along z, sub-slice 1 of slice i at i + 1/2 (the last one kept)."""
    following = torch.cat([windows[..., 1:], windows[..., -1:]], dim=-1)
    return torch.stack([windows, (windows + following) / 2], dim=-1).flatten(-2)


def test_mirroring_puts_back_an_output_that_keeps_the_input_centres() -> None:
    """An output whose first voxel sits on the first input centre comes back from the
    mirrored window one slice off unless the engine knows its origin."""
    image = torch.rand(1, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    net = _slices_interpolated_on_their_centres
    scale, origin = (1.0, 1.0, 2.0), (0.0, 0.0, 0.0)
    plain = _engine().run(image, net, output_scale=scale, output_origin=origin)

    mirrored = _engine(mirror_axes=(2,)).run(image, net, output_scale=scale, output_origin=origin)

    torch.testing.assert_close(mirrored, plain, atol=1e-6, rtol=0)


@pytest.mark.parametrize("axes", [(3,), (0, 0), (-1,)])
def test_mirror_axes_must_be_distinct_array_axes(axes: tuple[int, ...]) -> None:
    with pytest.raises(OptionsError, match="invalid inference settings: mirror_axes"):
        InferenceSettings(mirror_axes=axes)


@pytest.mark.parametrize(
    ("shape", "advice"),
    [
        ((8, 8, 8), "add a channel axis with image[None]"),
        ((1, 8, 8), "2D image with a channel axis"),
        ((1, 1, 8, 8, 8), "drop the batch axis with image[0]"),
    ],
)
def test_a_volume_of_the_wrong_rank_gets_advice_that_fixes_it(
    shape: tuple[int, ...], advice: str
) -> None:
    # a 5D batch was told to add a channel axis, which only made it 6D
    from medi2i.engine import _channel_first

    with pytest.raises(GeometryError, match=re.escape(advice)):
        _channel_first(torch.zeros(shape))


@pytest.mark.parametrize(("size", "batch"), [(64, 4), (96, 4), (112, 2), (128, 1)])
def test_the_cpu_batches_windows_up_to_a_voxel_budget_unless_told(size: int, batch: int) -> None:
    image = torch.rand(1, size + 8, size, size)  # two windows along x
    seen: list[int] = []

    def recording(windows: torch.Tensor) -> torch.Tensor:
        seen.append(windows.shape[0])
        return windows

    engine = SlidingWindowEngine(
        settings=InferenceSettings(device="cpu", progress=False, overlap=0.0)
    )
    engine.run(image, recording, default_roi_size=(size, size, size))
    assert max(seen) == min(batch, 2)
    assert engine.sw_batch_size is None  # chosen per window, not fixed for the next volume
    assert window_batch(torch.device("cpu"), (size,) * 3) == batch
    told = _engine(sw_batch_size=3, overlap=0.0)
    seen.clear()
    told.run(torch.rand(1, 16, 16, 40), recording, default_roi_size=(16, 16, 8))
    assert max(seen) == 3
