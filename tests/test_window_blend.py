"""The engine's blending equals MONAI's sliding_window_inference bit for bit."""

from __future__ import annotations

import pytest
import torch
from monai.inferers.utils import sliding_window_inference

from medi2i import window_blend
from medi2i.window_blend import blend_windows


def _net(windows: torch.Tensor) -> torch.Tensor:
    """A network that looks at neighbours, so overlapping windows disagree."""
    smoothed = torch.nn.functional.avg_pool3d(windows, 3, stride=1, padding=1)
    return torch.cat([smoothed * 2.0 + 1.0, windows.square()], dim=1)


def _upsampling_net(windows: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.interpolate(windows.sin(), scale_factor=(1, 1, 2), mode="nearest")


CASES = [
    # shape, roi, overlap, mode, batch
    ((23, 19, 17), (8, 8, 8), 0.25, "gaussian", 4),
    ((23, 19, 17), (8, 8, 8), 0.5, "constant", 1),
    ((16, 9, 30), (8, 16, 8), 0.25, "gaussian", 3),  # a window longer than the volume: padded
    ((12, 12, 12), (12, 12, 12), 0.5, "gaussian", 2),  # one window
]


@pytest.mark.parametrize(("shape", "roi", "overlap", "mode", "batch"), CASES)
def test_blending_is_monais_bit_for_bit(
    shape: tuple[int, int, int], roi: tuple[int, int, int], overlap: float, mode: str, batch: int
) -> None:
    volume = torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(0))
    expected = sliding_window_inference(
        volume, roi, batch, _net, overlap=overlap, mode=mode, padding_mode="replicate"
    )
    got = blend_windows(
        volume,
        _net,
        roi,
        batch_size=batch,
        overlap=overlap,
        mode=mode,
        sigma_scale=0.125,
        device=torch.device("cpu"),
    )
    assert got.shape == expected.shape
    assert torch.equal(got, torch.as_tensor(expected))


def test_upsampling_windows_blend_as_monai_blends_them() -> None:
    volume = torch.randn(1, 1, 20, 18, 14, generator=torch.Generator().manual_seed(1))
    kwargs = {"overlap": 0.25, "mode": "gaussian"}
    expected = sliding_window_inference(volume, (8, 8, 8), 2, _upsampling_net, **kwargs)
    got = blend_windows(
        volume,
        _upsampling_net,
        (8, 8, 8),
        batch_size=2,
        sigma_scale=0.125,
        device=torch.device("cpu"),
        **kwargs,
    )
    assert got.shape == (1, 1, 20, 18, 28)
    assert torch.equal(got, torch.as_tensor(expected))


def test_the_weight_sum_is_rebuilt_in_slabs_without_changing_a_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    volume = torch.randn(1, 1, 21, 17, 26, generator=torch.Generator().manual_seed(2))
    args = {"batch_size": 4, "overlap": 0.5, "mode": "gaussian", "sigma_scale": 0.125}
    whole = blend_windows(volume, _net, (8, 8, 8), device=torch.device("cpu"), **args)
    monkeypatch.setattr(window_blend, "COUNT_SLAB_VOXELS", 21 * 17 * 3)  # slabs of 3 slices
    slabs = blend_windows(volume, _net, (8, 8, 8), device=torch.device("cpu"), **args)
    assert torch.equal(whole, slabs)


def test_the_input_is_not_modified() -> None:
    volume = torch.randn(1, 1, 10, 10, 10)
    kept = volume.clone()
    blend_windows(
        volume,
        _net,
        (16, 8, 8),
        batch_size=2,
        overlap=0.25,
        mode="gaussian",
        sigma_scale=0.125,
        device=torch.device("cpu"),
    )
    assert torch.equal(volume, kept)


@pytest.mark.parametrize(("shape", "roi", "overlap", "mode", "batch"), CASES)
def test_blending_in_device_memory_is_monais_bit_for_bit(
    shape: tuple[int, int, int], roi: tuple[int, int, int], overlap: float, mode: str, batch: int
) -> None:
    # the path a GPU with room takes (output and weight sum held where the windows run),
    # forced on the CPU: the same additions in the same order
    volume = torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(3))
    expected = sliding_window_inference(
        volume, roi, batch, _net, overlap=overlap, mode=mode, padding_mode="replicate"
    )
    args = {"batch_size": batch, "overlap": overlap, "mode": mode, "sigma_scale": 0.125}
    got = blend_windows(
        volume, _net, roi, device=torch.device("cpu"), accumulate_on_device=True, **args
    )
    assert got.shape == expected.shape
    assert torch.equal(got, torch.as_tensor(expected))
    upsampled = blend_windows(
        volume, _upsampling_net, roi, device=torch.device("cpu"), accumulate_on_device=True, **args
    )
    host = blend_windows(
        volume, _upsampling_net, roi, device=torch.device("cpu"), accumulate_on_device=False, **args
    )
    assert torch.equal(upsampled, host)
