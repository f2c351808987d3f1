"""Patch batches: foreground-aware sampling and augmentation, a pure function of the step.

Every random choice of a batch — which volumes, where the patches sit, which flips,
turns and intensity changes — is drawn from one NumPy generator seeded with
``(seed, rank, step, micro-batch)``. So the batch of step ``k`` is the same whether the
run got there without a break or resumed from a checkpoint, in the training process or
in a DataLoader worker, and no sampler state has to be saved. (MONAI's random
transforms each keep their own ``RandomState``, which would have to be checkpointed
and kept in step across workers; the augmentations here are the same operations —
flips, quarter turns, rotation and zoom, linear intensity change, Gaussian noise — on
plain tensors.)

Batches follow the contract of :meth:`medi2i.Method.training_step`: ``source`` and
``target`` for paired data, ``a`` and ``b`` for unpaired data, ``image`` and integer
``domain`` labels for multi-domain data, ``image`` for single-domain data; paired
batches add ``unlabelled`` input patches when the run has unlabelled target-domain data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medi2i.method import DataKind
from medi2i.training.config import AugmentationConfig
from medi2i.training.data import Batch, TrainingVolume, VolumeStore

Start = tuple[int, int, int]


class PatchSampler:
    """Makes the batch of any (step, micro-batch) of one process.

    Args:
        store: The training volumes.
        kind: The kind of data (decides the batch's keys).
        groups: Volume indices per domain label (one group for paired and
            single-domain data, two for unpaired data).
        patch_size: Patch size on the input grid, in voxels.
        batch_size: Patches per batch.
        patches_per_volume: Consecutive patches cut from one volume.
        foreground_ratio: Fraction of patches centred on a foreground voxel.
        augmentation: Augmentation settings.
        seed: The run's seed.
        rank: This process's rank (each process sees different batches).
        augmented_roles: The roles whose patches get intensity augmentation
            (``source``, ``target``, ``image``, or domain names; see
            :meth:`medi2i.Method.augments_intensity`); flips and turns apply to all.
        domain_names: Names of the domain labels, in label order (unpaired and
            multi-domain data).
        unlabelled: Paired data only: unlabelled target-domain input volumes; every
            batch then also holds ``unlabelled``, as many patches as ``source``, drawn
            after the paired patches (so the paired patches are those of a run
            without them) and augmented as sources are.

    Example:
        >>> batch = sampler(step=0, micro=0)  # doctest: +SKIP
        >>> batch["source"].shape  # doctest: +SKIP
        torch.Size([2, 1, 16, 16, 16])
    """

    def __init__(
        self,
        store: VolumeStore,
        *,
        kind: DataKind,
        groups: Sequence[Sequence[int]],
        patch_size: tuple[int, int, int],
        batch_size: int,
        patches_per_volume: int,
        foreground_ratio: float,
        augmentation: AugmentationConfig,
        seed: int,
        rank: int,
        augmented_roles: frozenset[str] = frozenset({"source", "image"}),
        domain_names: Sequence[str] = (),
        unlabelled: VolumeStore | None = None,
    ) -> None:
        self.store = store
        self.unlabelled = unlabelled
        self.augmented_roles = augmented_roles
        self.domain_names = tuple(domain_names)
        self.kind = kind
        self.groups = [list(group) for group in groups]
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.patches_per_volume = patches_per_volume
        self.foreground_ratio = foreground_ratio
        self.augmentation = augmentation
        self.seed = seed
        self.rank = rank

    def __call__(self, *, step: int, micro: int) -> Batch:
        """The batch of micro-batch ``micro`` of step ``step`` (0-based)."""
        rng = np.random.default_rng([self.seed, self.rank, step, micro])
        if self.kind is DataKind.PAIRED:
            batch = self._paired(rng)
            if self.unlabelled is not None:
                everything = [range(len(self.unlabelled))]
                batch["unlabelled"] = self._images(rng, everything, self.unlabelled, "source")[0]
            return batch
        if self.kind is DataKind.UNPAIRED:
            return {
                "a": self._images(rng, self.groups[:1])[0],
                "b": self._images(rng, self.groups[1:2])[0],
            }
        images, labels = self._images(rng, self.groups)
        if self.kind is DataKind.MULTI_DOMAIN:
            return {"image": images, "domain": labels}
        return {"image": images}

    def _paired(self, rng: np.random.Generator) -> Batch:
        sources, targets = [], []
        for volume in self._volumes(rng, self.groups):
            assert volume.target is not None  # paired volumes always have one
            start = self._start(rng, volume)
            affine = self._affine(rng)
            source = _cut(volume.input, start, self.patch_size, (1, 1, 1), affine)
            target = _cut(volume.target, start, self.patch_size, volume.target_scale, affine)
            source, target = self._spatial(rng, [source, target])
            sources.append(self._intensity(rng, source, volume.spread, "source"))
            if "target" in self.augmented_roles:  # in the target's own intensity unit
                target = self._intensity(rng, target, float(volume.target.std()) or 1.0, "target")
            targets.append(target)
        return {"source": torch.stack(sources), "target": torch.stack(targets)}

    def _images(
        self,
        rng: np.random.Generator,
        groups: Sequence[Sequence[int]],
        store: VolumeStore | None = None,
        role: str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches of ``store`` (the training volumes by default), augmented as
        ``role`` (by default the volume's domain name, or ``image``)."""
        patches, labels = [], []
        for volume in self._volumes(rng, groups, store):
            start = self._start(rng, volume)
            patch = _cut(volume.input, start, self.patch_size, (1, 1, 1), self._affine(rng))
            (patch,) = self._spatial(rng, [patch])
            named = self.domain_names[volume.domain] if self.domain_names else "image"
            patches.append(self._intensity(rng, patch, volume.spread, role or named))
            labels.append(volume.domain)
        return torch.stack(patches), torch.tensor(labels, dtype=torch.int64)

    def _volumes(
        self,
        rng: np.random.Generator,
        groups: Sequence[Sequence[int]],
        store: VolumeStore | None = None,
    ) -> list[TrainingVolume]:
        """The volume of each patch: a group (domain) uniformly, then a volume in it, so
        that rare domains are seen as often as common ones."""
        volumes = self.store if store is None else store
        chosen: list[TrainingVolume] = []
        while len(chosen) < self.batch_size:
            group = groups[int(rng.integers(len(groups)))]
            volume = volumes[group[int(rng.integers(len(group)))]]
            chosen.extend([volume] * self.patches_per_volume)
        return chosen[: self.batch_size]

    def _start(self, rng: np.random.Generator, volume: TrainingVolume) -> Start:
        shape = tuple(int(n) for n in volume.input.shape[1:])
        size = self.patch_size
        if volume.foreground.size and rng.random() < self.foreground_ratio:
            flat = int(volume.foreground[int(rng.integers(volume.foreground.size))])
            centre = np.unravel_index(flat, shape)
            starts = [
                min(max(int(c) - p // 2, 0), n - p)
                for c, p, n in zip(centre, size, shape, strict=True)
            ]
        else:
            starts = [int(rng.integers(0, n - p + 1)) for p, n in zip(size, shape, strict=True)]
        return (starts[0], starts[1], starts[2])

    def _affine(self, rng: np.random.Generator) -> np.ndarray | None:
        """A random rotation and zoom (a 3 × 3 matrix from output to input voxel
        offsets), or ``None``. Draws nothing while switched off, so the batches of
        runs without it stay those they always were."""
        settings = self.augmentation
        if not settings.enabled or settings.affine_probability <= 0.0:
            return None
        if rng.random() >= settings.affine_probability:
            return None
        angles = np.radians([rng.uniform(-d, d) for d in settings.rotation_degrees])
        zoom = float(rng.uniform(*settings.zoom_range))
        matrix = np.eye(3)
        for axis, angle in enumerate(angles):
            first, second = (a for a in range(3) if a != axis)
            turn = np.eye(3)
            turn[first, first] = turn[second, second] = np.cos(angle)
            turn[first, second], turn[second, first] = -np.sin(angle), np.sin(angle)
            matrix = matrix @ turn
        return matrix / zoom

    def _spatial(self, rng: np.random.Generator, patches: list[torch.Tensor]) -> list[torch.Tensor]:
        """The same random flips and quarter turn of every patch of one location."""
        settings = self.augmentation
        if not settings.enabled:
            return patches
        for axis in settings.flip_axes:
            if rng.random() < settings.flip_probability:
                patches = [torch.flip(p, dims=(axis + 1,)) for p in patches]
        first, second = (axis + 1 for axis in settings.rotate90_axes)
        square = all(p.shape[first] == p.shape[second] for p in patches)
        if rng.random() < settings.rotate90_probability and square:
            turns = int(rng.integers(1, 4))
            patches = [torch.rot90(p, turns, dims=(first, second)) for p in patches]
        return patches

    def _intensity(
        self, rng: np.random.Generator, patch: torch.Tensor, spread: float, role: str
    ) -> torch.Tensor:
        settings = self.augmentation
        if not settings.enabled or role not in self.augmented_roles:
            return patch  # no draws either: other roles' batches stay as they were
        if rng.random() < settings.intensity_probability:
            scale = float(rng.uniform(*settings.intensity_scale))
            shift = float(rng.uniform(*settings.intensity_shift)) * spread
            patch = patch * scale + shift
        if rng.random() < settings.noise_probability and settings.noise_std > 0:
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            noise = torch.randn(patch.shape, generator=generator, dtype=patch.dtype)
            patch = patch + noise * (settings.noise_std * spread)
        return patch


def _cut(
    volume: torch.Tensor,
    start: Start,
    size: tuple[int, int, int],
    scale: tuple[int, int, int],
    affine: np.ndarray | None = None,
) -> torch.Tensor:
    """The patch at ``start`` (input voxels) of a volume on a grid ``scale`` times
    finer than the input, optionally rotated and zoomed about the patch's centre."""
    if affine is not None:
        return _resampled(volume, start, size, scale, affine)
    x, y, z = (s * f for s, f in zip(start, scale, strict=True))
    dx, dy, dz = (p * f for p, f in zip(size, scale, strict=True))
    return volume[:, x : x + dx, y : y + dy, z : z + dz]


def _resampled(
    volume: torch.Tensor,
    start: Start,
    size: tuple[int, int, int],
    scale: tuple[int, int, int],
    affine: np.ndarray,
) -> torch.Tensor:
    """The patch at ``start`` sampled through ``affine`` about its centre (trilinear,
    edge values beyond the volume's border)."""
    shape = volume.shape[1:]
    axes = []
    for p, f in zip(size, scale, strict=True):
        # each output voxel's centre, in input voxels from the patch's centre
        fine = (np.arange(p * f) + 0.5) / f - 0.5
        axes.append(fine - (p - 1) / 2)
    offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1) @ affine.T
    centre = np.asarray(start, dtype=float) + (np.asarray(size) - 1) / 2
    fine = (centre + offsets + 0.5) * np.asarray(scale) - 0.5  # on the volume's own grid
    extent = np.maximum(np.asarray(shape, dtype=float) - 1, 1.0)
    normalized = 2.0 * fine / extent - 1.0  # align_corners: -1 and 1 are the end voxels
    grid = torch.from_numpy(normalized[..., ::-1].copy()).to(volume.dtype)[None]
    sampled = torch.nn.functional.grid_sample(
        volume[None], grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return sampled[0]
