"""Tests of AdaBN (medi2i.adabn): exact target statistics, refusals, window tiling."""

from __future__ import annotations

import pytest
import torch

from medi2i.adabn import adapt_statistics, statistics_layers, tile_windows
from medi2i.errors import OptionsError


def _features(network: torch.nn.Module, batches: list[torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([network[0](batch) for batch in batches])


def test_batch_norm_gets_the_mean_and_variance_of_every_target_voxel() -> None:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv3d(1, 3, 1), torch.nn.BatchNorm3d(3))
    batches = [torch.randn(2, 1, 4, 4, 4) * 3.0 + 5.0 for _ in range(4)]
    weights = {k: v.clone() for k, v in network.named_parameters()}

    count = adapt_statistics(network, batches)

    voxels = _features(network, batches).transpose(0, 1).flatten(1).double()
    layer = network[1]
    torch.testing.assert_close(layer.running_mean, voxels.mean(1).float())
    torch.testing.assert_close(layer.running_var, voxels.var(1).float())
    assert count == 4
    assert layer.momentum == 0.1  # the layer's own momentum is kept
    assert not network.training
    assert all(torch.equal(v, weights[k]) for k, v in network.named_parameters())


def test_tracked_instance_norm_gets_the_average_of_each_samples_statistics() -> None:
    torch.manual_seed(0)
    norm = torch.nn.InstanceNorm3d(2, track_running_stats=True)
    network = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), norm)
    batches = [torch.randn(1, 1, 4, 4, 4) * (k + 1) + k for k in range(3)]

    adapt_statistics(network, batches)

    samples = _features(network, batches).flatten(2).double()  # (N, C, voxels)
    torch.testing.assert_close(norm.running_mean, samples.mean(2).mean(0).float())
    torch.testing.assert_close(norm.running_var, samples.var(2).mean(0).float())


def test_the_adapted_network_normalizes_target_features_to_zero_mean() -> None:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.BatchNorm3d(2, affine=False))
    adapt_statistics(network, [torch.randn(2, 1, 4, 4, 4)])  # "training" statistics
    shifted = [torch.randn(2, 1, 4, 4, 4) * 4.0 + 10.0 for _ in range(3)]
    with torch.no_grad():
        before = torch.cat([network(b) for b in shifted]).mean().abs()

    adapt_statistics(network, shifted)

    with torch.no_grad():
        after = torch.cat([network(b) for b in shifted])
    assert before > 0.1
    assert after.mean().abs() < 1e-4
    # unit variance up to batch norm's eps (1e-5) against a small feature variance
    assert after.var(dim=(0, 2, 3, 4)).sub(1.0).abs().max() < 0.05


def test_a_network_without_running_statistics_is_refused() -> None:
    network = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.InstanceNorm3d(2))

    assert statistics_layers(network) == []
    with pytest.raises(OptionsError, match="nothing to adapt"):
        adapt_statistics(network, [torch.zeros(1, 1, 4, 4, 4)])


def test_no_target_data_is_refused() -> None:
    network = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.BatchNorm3d(2))
    with pytest.raises(OptionsError, match="no target data"):
        adapt_statistics(network, [])


def test_windows_cover_the_volume_once_and_pad_a_small_one() -> None:
    volume = torch.arange(10 * 6 * 3, dtype=torch.float32).reshape(1, 10, 6, 3)

    windows = list(tile_windows(volume, (4, 4, 4)))

    # x: starts 0, 4, 6; y: 0, 2; z: padded from 3 to 4, one start
    assert len(windows) == 6
    assert all(tuple(w.shape) == (1, 1, 4, 4, 4) for w in windows)
    covered = torch.zeros(10, 6, 3, dtype=torch.bool)
    for x in (0, 4, 6):
        for y in (0, 2):
            covered[x : x + 4, y : y + 4, :] = True
    assert covered.all()
    assert torch.equal(windows[0][0, 0, :, :, 3], windows[0][0, 0, :, :, 2])  # edge replicated
