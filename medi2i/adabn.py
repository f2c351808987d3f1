"""Adaptive batch normalization (AdaBN; Li, Wang, Shi, Liu and Hou, "Revisiting batch
normalization for practical domain adaptation", arXiv:1603.04779, 2016).

A network trained on one scanner normalizes its features with the means and variances
it saw in training (the running statistics of its batch-normalization layers). On
another scanner's images those statistics are off, and everything after the first
layer shifts. AdaBN replaces every running statistic by the one of the target data,
leaving every learned weight as it is.

Only layers that keep running statistics can be adapted: batch normalization, and
instance normalization with ``track_running_stats``. Instance normalization that takes
its statistics from each window (CycleGAN's, StarGAN's, MUNIT's, nnU-Net's default) has
nothing to adapt; :func:`adapt_statistics` refuses such a network.

:func:`adapt_statistics` measures each feature's mean and variance over every voxel of
the target batches it is given (not the exponential moving average of training), with
every other layer in evaluation mode (dropout off). :func:`tile_windows` cuts a volume
into the windows the statistics are taken from.

Example:
    >>> network = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.BatchNorm3d(2))
    >>> adapt_statistics(network, [torch.randn(2, 1, 4, 4, 4) + 5.0])
    1
    >>> bool(network[1].running_mean.abs().max() > 0.0), network.training
    (True, False)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.instancenorm import _InstanceNorm

from medi2i.errors import OptionsError


def statistics_layers(network: torch.nn.Module) -> list[_NormBase]:
    """The normalization layers of ``network`` that keep running statistics."""
    return [
        layer
        for layer in network.modules()
        if isinstance(layer, _NormBase)
        and layer.track_running_stats
        and layer.running_mean is not None
    ]


def adapt_statistics(network: torch.nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace the running statistics of every normalization layer of ``network`` by the
    mean and variance of its input over all of ``batches`` (AdaBN), and leave the
    network in evaluation mode.

    The paper's statistics are those of each feature over the whole target domain: for
    batch normalization every voxel of every batch counts once (accumulated in float64
    as the batches pass, each layer normalizing by its batch's statistics meanwhile, as
    in training), with the unbiased variance PyTorch keeps; for instance normalization
    with tracked statistics, which tracks each sample's own mean and variance, the
    average of those over the samples. Learned weights and the layers'
    momenta are unchanged; every other layer runs in evaluation mode (dropout off).

    Args:
        network: A trained network; its device decides where the batches go.
        batches: Inputs ``(N, C, ...)`` of the target domain, preprocessed as the
            network's training inputs were.

    Returns:
        The number of batches the statistics were taken over.

    Raises:
        OptionsError: The network keeps no running statistics, or there was no batch.
    """
    layers = statistics_layers(network)
    if not layers:
        raise OptionsError(
            "the network keeps no running normalization statistics (batch norm, or instance "
            "norm with tracked statistics), so AdaBN has nothing to adapt"
        )
    moments: dict[int, list[torch.Tensor]] = {}

    def accumulate(layer: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        found = moments.setdefault(id(layer), [torch.zeros(()), torch.zeros(()), torch.zeros(())])
        if isinstance(layer, _InstanceNorm):
            # what instance norm tracks: each sample's own mean and variance, averaged
            per_sample = inputs[0].detach().double().flatten(2)  # (N, C, voxels)
            found[0] = found[0] + per_sample.mean(dim=2).sum(dim=0)
            found[1] = found[1] + per_sample.var(dim=2).sum(dim=0)
            found[2] = found[2] + per_sample.shape[0]
            return
        features = inputs[0].detach().double().transpose(0, 1).flatten(1)  # (C, voxels)
        found[0] = found[0] + features.sum(dim=1)
        found[1] = found[1] + (features * features).sum(dim=1)
        found[2] = found[2] + features.shape[1]

    parameter = next(network.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    network.eval()
    hooks = [layer.register_forward_pre_hook(accumulate) for layer in layers]
    count = 0
    try:
        for layer in layers:
            layer.train()  # normalize by the batch's own statistics while they are measured
        with torch.no_grad():
            for batch in batches:
                network(batch.to(device))
                count += 1
    finally:
        for hook in hooks:
            hook.remove()
        network.eval()
    if count == 0:
        raise OptionsError("AdaBN was given no target data; give at least one volume")
    for layer in layers:
        total, squares, count_seen = moments[id(layer)]
        mean = total / count_seen
        if isinstance(layer, _InstanceNorm):
            variance = squares / count_seen  # the samples' variances, averaged
        else:
            variance = (squares - count_seen * mean * mean) / torch.clamp(count_seen - 1.0, min=1.0)
        running_mean, running_var = cast("torch.Tensor", layer.running_mean), layer.running_var
        running_mean.copy_(mean.to(running_mean))
        cast("torch.Tensor", running_var).copy_(variance.clamp(min=0.0).to(running_mean))
        if layer.num_batches_tracked is not None:
            layer.num_batches_tracked.fill_(count)
    return count


def tile_windows(volume: torch.Tensor, window: Sequence[int]) -> Iterator[torch.Tensor]:
    """Cut ``volume`` ``(C, X, Y, Z)`` into non-overlapping windows ``(1, C, *window)``
    that cover it, the last along each axis shifted back inside the volume; a volume
    smaller than the window is padded by edge replication first.

    Example:
        >>> [tuple(w.shape) for w in tile_windows(torch.zeros(1, 5, 4, 4), (4, 4, 4))]
        [(1, 1, 4, 4, 4), (1, 1, 4, 4, 4)]
    """
    size = [int(n) for n in window]
    missing = [max(0, k - int(n)) for k, n in zip(size, volume.shape[1:], strict=True)]
    if any(missing):
        widths = [w for axis in reversed(missing) for w in (0, axis)]
        volume = F.pad(volume[None], widths, mode="replicate")[0]
    starts = [
        sorted({*range(0, int(n) - k + 1, k), int(n) - k})
        for n, k in zip(volume.shape[1:], size, strict=True)
    ]
    for x in starts[0]:
        for y in starts[1]:
            for z in starts[2]:
                yield volume[None, :, x : x + size[0], y : y + size[1], z : z + size[2]]
