"""Self-supervised through-plane super-resolution, in the spirit of SMORE.

Zhao C, Dewey BE, Pham DL, Calabresi PA, Reich DS, Prince JL. "SMORE: a self-supervised
anti-aliasing and super-resolution algorithm for MRI using deep learning." IEEE
Transactions on Medical Imaging 40(3):805-817, 2021 (first shown at ISBI 2018).

A thick-slice scan is finely sampled within its slices and coarsely across them. The
in-plane slices show what the anatomy looks like at the fine resolution, so they can
teach a network to undo the through-plane degradation, with no other training data:

1. Training pairs from the input itself. Along each in-plane axis in turn, the volume is
   blurred with the slice profile (a Gaussian of FWHM ``slice_thickness_mm``, by default
   the slice spacing), sampled at the slice spacing, and interpolated back to the
   in-plane spacing with cubic B-splines, as the slice axis will be at prediction. Each
   in-plane slice then gives a pair: degraded along one image axis, and as acquired.
2. A small 2D residual network (convolutions and ReLUs, no normalization, a global skip
   so that it starts as the identity) learns, with the L1 loss and Adam at a constant
   learning rate, to turn the degraded slice into the acquired one (random square
   patches, random flips).
3. Prediction. The slice axis is interpolated (cubic B-spline) to the in-plane spacing;
   the network restores every slice of the two planes that contain the slice axis, the
   slice axis turned to the image axis it was degraded along in training, and the two
   results are averaged (the paper fuses them in the Fourier domain; the mean is the
   simpler choice here).

Differences from the paper, for a CPU: a smaller network (the paper uses EDSR), fewer
steps, no in-plane rotations of the training slices (flips only) and no anti-aliasing
stage. Everything random comes from the predict-time seed, so a run with the same seed,
steps and input gives the same output; ``time_budget_s`` can end the fitting early,
and then says at which step (rerun with that many ``steps`` to reproduce it).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from scipy import ndimage

from medi2i import DataKind, Grid, InputError, Method, Options, Task, VolumeSpec
from medi2i_super_resolution.grids import (
    Alignment,
    OutputGrid,
    clipped,
    condition_rule,
    finer_grid,
    slice_axis,
)
from medi2i_super_resolution.interpolation import resample_axis_aligned
from medi2i_super_resolution.srcnn import intensity_scale

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from monai.data.meta_tensor import MetaTensor

    from medi2i import PredictContext

MR = VolumeSpec(modality="MR", units="arbitrary", channels=1)
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
TAIL_INIT_STD = 1e-3
"""Standard deviation of the last convolution's initial weights: the untrained network
is close to the identity, so fitting starts from the cubic B-spline interpolation."""
SLICES_PER_CHUNK = 16
"""Slices restored per forward pass at prediction."""


class SmoreOptions(Options):
    """Options of :class:`Smore`.

    Attributes:
        slice_factor: Output voxels per input voxel along the slice axis; ``None``
            (default) makes the slice spacing the in-plane spacing (the mean of the two
            in-plane axes), the resolution the network learns to restore. Another
            factor is reached by restoring at the in-plane spacing and interpolating
            (cubic B-spline) onto the asked grid.
        align: ``"edges"`` keeps the outer voxel edges of the field of view,
            ``"centres"`` the first and last slice centres (see
            :mod:`medi2i_super_resolution.grids`).
        slice_thickness_mm: FWHM of the Gaussian slice profile used to degrade the
            in-plane slices, in mm; ``None`` takes the slice spacing (contiguous slices).
        features: Feature maps of every convolution.
        blocks: Residual blocks (convolution, ReLU, convolution, added to the input).
        steps: Adam steps of the fitting on the input's own slices.
        batch_size: Patches per step.
        patch_size: Side of the square training patches, in voxels.
        learning_rate: Adam's learning rate, constant, so that a fitting the time budget
            ended after ``k`` steps is the fitting of ``steps=k``.
        time_budget_s: Stop the fitting after this many seconds (the log, and the
            provenance sidecar's ``run.steps_run``, say at which step, and ``steps`` set
            to it gives the same output again); ``None`` runs every step.
        clip_margin: Clip the output to the input's range widened by this fraction of
            it; ``None`` keeps every value.
    """

    slice_factor: float | None = Field(default=None, gt=0.0)
    align: Alignment = "edges"
    slice_thickness_mm: float | None = Field(default=None, gt=0.0)
    features: int = Field(default=32, ge=1)
    blocks: int = Field(default=4, ge=0)
    steps: int = Field(default=1000, ge=0)
    batch_size: int = Field(default=16, ge=1)
    patch_size: int = Field(default=48, ge=8)
    learning_rate: float = Field(default=1e-3, gt=0.0)
    time_budget_s: float | None = Field(default=None, gt=0.0)
    clip_margin: float | None = Field(default=0.05, ge=0.0)


class _Block(torch.nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.first = torch.nn.Conv2d(features, features, 3, padding=1, padding_mode="replicate")
        self.second = torch.nn.Conv2d(features, features, 3, padding=1, padding_mode="replicate")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual: torch.Tensor = self.second(F.relu(self.first(x)))
        return x + residual


class RestorationNetwork(torch.nn.Module):
    """A 2D residual network with a global skip: ``x + tail(body(head(x)))``.

    Example:
        >>> net = RestorationNetwork(features=4, blocks=1)
        >>> net(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, *, features: int, blocks: int) -> None:
        super().__init__()
        self.head = torch.nn.Conv2d(1, features, 3, padding=1, padding_mode="replicate")
        self.body = torch.nn.Sequential(*(_Block(features) for _ in range(blocks)))
        self.tail = torch.nn.Conv2d(features, 1, 3, padding=1, padding_mode="replicate")
        with torch.no_grad():
            self.tail.weight.normal_(0.0, TAIL_INIT_STD)
            self.tail.bias.zero_()  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        detail: torch.Tensor = self.tail(F.relu(self.body(F.relu(self.head(x)))))
        return x + detail


class Smore(Method[SmoreOptions, OutputGrid]):
    """Self-supervised through-plane super-resolution fitted on the input (SMORE-like).

    Needs a thick-slice input (one axis's spacing clearly the largest); learns from the
    input's own in-plane slices at predict time, so it has no model to train.

    Example:
        >>> import numpy as np
        >>> method = Smore()
        >>> method.output_grid(Grid((8, 8, 5), np.diag([1.0, 1.0, 4.0, 1.0]))).shape
        (8, 8, 20)
    """

    id = "smore"
    version = "0.1.0"
    tasks = (Task.SUPER_RESOLUTION,)
    data = DataKind.NONE
    input_spec = MR
    output_spec = MR
    Options = SmoreOptions
    Condition = OutputGrid
    paper = (
        "Zhao C, Dewey BE, Pham DL, Calabresi PA, Reich DS, Prince JL. SMORE: a "
        "self-supervised anti-aliasing and super-resolution algorithm for MRI using deep "
        "learning. IEEE Trans Med Imaging 40(3):805-817, 2021"
    )
    fits_at_predict = True

    options: SmoreOptions

    # -- grids -------------------------------------------------------------------------

    def restored_grid(self, input_grid: Grid) -> Grid:
        """The grid the network restores: the slice axis at the in-plane spacing."""
        axis = slice_axis(input_grid, method_id=self.id)
        in_plane = [s for i, s in enumerate(input_grid.spacing) if i != axis]
        factor = input_grid.spacing[axis] / float(np.mean(in_plane))
        return finer_grid(input_grid, slice_factor=factor, align=self.options.align).grid

    def output_grid(self, input_grid: Grid, condition: OutputGrid | None = None) -> Grid:
        """The condition's grid if it gives a rule, else the options' ``slice_factor``,
        else :meth:`restored_grid`."""
        slice_axis(input_grid, method_id=self.id)  # whatever the rule: it refines slices
        rule = condition_rule(condition)
        if not rule and self.options.slice_factor is not None:
            rule = {"slice_factor": self.options.slice_factor}
        if rule:
            return finer_grid(input_grid, align=self.options.align, **rule).grid
        return self.restored_grid(input_grid)

    # -- prediction --------------------------------------------------------------------

    def predict(self, image: MetaTensor, context: PredictContext[OutputGrid]) -> torch.Tensor:
        """Fit the network on the input's in-plane slices, restore the slice axis, and
        deliver it on :meth:`output_grid`, clipped to the input's range."""
        from monai.data.meta_tensor import MetaTensor

        if image.shape[0] != 1:
            raise InputError(
                f"method {self.id!r} takes single-channel volumes, got {image.shape[0]}"
            )
        grid = Grid.of(image)
        axis = slice_axis(grid, method_id=self.id)
        volume = image[0].detach().cpu().numpy().astype(np.float32)
        if not np.isfinite(volume).all():
            raise InputError(f"method {self.id!r}: the input holds NaN or infinite values")
        scale = intensity_scale(torch.from_numpy(volume))
        normalised = volume / np.float32(scale)
        thickness = self.options.slice_thickness_mm or grid.spacing[axis]

        generator = torch.Generator().manual_seed(int(context.seed))
        torch.manual_seed(int(context.seed))  # the network's initial weights
        network = RestorationNetwork(features=self.options.features, blocks=self.options.blocks)
        restored_grid = self.restored_grid(grid)
        pairs = training_pairs(
            normalised,
            grid,
            axis=axis,
            thickness_mm=thickness,
            phase=sample_phase(grid, restored_grid, axis),
        )
        self._fit(network, pairs, generator, context)

        upsampled = along_axis(normalised, grid, restored_grid, axis=axis)
        restored = restore_volume(
            network, upsampled, axis=axis, device=context.device, progress=context.progress
        )
        wanted = self.output_grid(grid, context.condition)
        if not wanted.same_as(restored_grid):
            restored = along_axis(restored, restored_grid, wanted, axis=axis)
        output = torch.from_numpy(np.ascontiguousarray(restored * np.float32(scale)))
        output = clipped(output, float(volume.min()), float(volume.max()), self.options.clip_margin)
        return MetaTensor(output[None], affine=torch.from_numpy(wanted.affine))

    def _fit(
        self,
        network: RestorationNetwork,
        pairs: tuple[torch.Tensor, torch.Tensor],
        generator: torch.Generator,
        context: PredictContext[OutputGrid],
    ) -> None:
        options = self.options
        context.facts["steps_run"] = 0
        if options.steps == 0:
            return
        optimizer = torch.optim.Adam(network.parameters(), lr=options.learning_rate)
        network.train()
        started = time.monotonic()
        losses: list[float] = []
        for step in context.progress(
            range(options.steps), description="smore: fitting on the input", total=options.steps
        ):
            degraded, acquired = sample_patches(
                pairs, options.batch_size, options.patch_size, generator
            )
            loss = F.l1_loss(network(degraded), acquired)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            losses.append(float(loss.detach()))
            if (
                options.time_budget_s is not None
                and time.monotonic() - started > options.time_budget_s
            ):
                context.log.warning(
                    "smore: the time budget (%g s) ended the fitting after %d of %d steps; "
                    "set steps=%d to reproduce this output",
                    options.time_budget_s,
                    step + 1,
                    options.steps,
                    step + 1,
                )
                break
        context.facts["steps_run"] = len(losses)  # fewer than steps when the budget ended it
        network.eval()
        tail = losses[-50:]
        context.log.info(
            "smore: %d steps, L1 %.4f (first step) to %.4f (mean of the last %d)",
            len(losses),
            losses[0],
            float(np.mean(tail)),
            len(tail),
        )


def sample_phase(source: Grid, restored: Grid, axis: int) -> float:
    """Where the input's slices fall on the restored grid along ``axis``: the first
    input slice's position in restored voxels, modulo the restored voxels per slice
    (0 for the ``"centres"`` grid). Training samples its degraded slices at that phase."""
    mapping = np.linalg.inv(source.affine) @ restored.affine
    step, offset = float(mapping[axis, axis]), float(mapping[axis, 3])
    return float((-offset / step) % (1.0 / step))


def training_pairs(
    volume: np.ndarray, grid: Grid, *, axis: int, thickness_mm: float, phase: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The in-plane slices, degraded along each in-plane axis in turn, and as acquired.

    ``phase`` is the voxel (possibly fractional) of the first thick-slice sample
    (:func:`sample_phase`), so that training sees the samples where prediction will.

    Returns:
        ``(degraded, acquired)``, each ``(N, 1, H, W)`` float32: the slices perpendicular
        to ``axis``, degraded along image axis 0 (each in-plane axis once, so ``N`` is
        twice the number of slices; the two in-plane axes are cropped to a square of
        the smaller side so that both orientations stack).
    """
    in_plane = [a for a in range(3) if a != axis]
    degraded_slices, acquired_slices = [], []
    slice_spacing = grid.spacing[axis]
    for along in in_plane:
        spacing = grid.spacing[along]
        degraded = degrade_axis(
            volume,
            along=along,
            spacing_mm=spacing,
            slice_spacing_mm=slice_spacing,
            thickness_mm=thickness_mm,
            phase=phase,
        )
        other = next(a for a in in_plane if a != along)
        # (slices, along, other): image axis 0 is the degraded one
        order = (axis, along, other)
        degraded_slices.append(np.transpose(degraded, order))
        acquired_slices.append(np.transpose(volume, order))
    side = min(min(s.shape[1], s.shape[2]) for s in acquired_slices)
    degraded_all = np.concatenate([s[:, :side, :side] for s in degraded_slices])
    acquired_all = np.concatenate([s[:, :side, :side] for s in acquired_slices])
    return (
        torch.from_numpy(np.ascontiguousarray(degraded_all[:, None])),
        torch.from_numpy(np.ascontiguousarray(acquired_all[:, None])),
    )


def degrade_axis(
    volume: np.ndarray,
    *,
    along: int,
    spacing_mm: float,
    slice_spacing_mm: float,
    thickness_mm: float,
    phase: float = 0.0,
) -> np.ndarray:
    """``volume`` as a thick-slice acquisition along ``along`` would see it, back on its
    grid: a Gaussian slice profile of FWHM ``thickness_mm``, samples every
    ``slice_spacing_mm`` from voxel ``phase`` on, then cubic B-spline interpolation back
    (edge samples replicated beyond the outer ones)."""
    sigma = thickness_mm / FWHM_PER_SIGMA / spacing_mm
    blurred = ndimage.gaussian_filter1d(
        volume.astype(np.float64), sigma, axis=along, mode="nearest"
    )
    step = slice_spacing_mm / spacing_mm
    count = volume.shape[along]
    samples = math.floor((count - 1 - phase) / step) + 1
    sampled = _affine_along(blurred, along, step=step, offset=phase, count=samples)
    restored = _affine_along(sampled, along, step=1.0 / step, offset=-phase / step, count=count)
    return restored.astype(np.float32)


def along_axis(volume: np.ndarray, source: Grid, target: Grid, *, axis: int) -> np.ndarray:
    """``volume`` on ``source`` resampled with cubic B-splines onto ``target``, a grid
    that differs from ``source`` along ``axis`` only (same in-plane voxels)."""
    mapping = np.linalg.inv(source.affine) @ target.affine
    step, offset = float(mapping[axis, axis]), float(mapping[axis, 3])
    result = _affine_along(volume, axis, step=step, offset=offset, count=target.shape[axis])
    return result.astype(np.float32)


def _affine_along(
    values: np.ndarray, axis: int, *, step: float, offset: float, count: int
) -> np.ndarray:
    """Cubic B-spline resampling along one axis (index ``step * i + offset``)."""
    steps = [1.0] * values.ndim
    steps[axis] = step
    offsets = [0.0] * values.ndim
    offsets[axis] = offset
    shape = list(values.shape)
    shape[axis] = count
    return resample_axis_aligned(values, steps, offsets, shape, spline_order=3)


def sample_patches(
    pairs: tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
    patch_size: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random square patches (same place in both), flipped at random along
    image axis 1; patches mostly of background are drawn again (up to four times)."""
    degraded, acquired = pairs
    count, _, height, width = acquired.shape
    size_h, size_w = min(patch_size, height), min(patch_size, width)
    level = float(acquired.abs().mean())
    chosen_degraded, chosen_acquired = [], []
    for _ in range(batch_size):
        for _attempt in range(5):
            index = int(torch.randint(count, (1,), generator=generator))
            top = int(torch.randint(height - size_h + 1, (1,), generator=generator))
            left = int(torch.randint(width - size_w + 1, (1,), generator=generator))
            target = acquired[index, :, top : top + size_h, left : left + size_w]
            if float(target.abs().mean()) > 0.25 * level:
                break
        source = degraded[index, :, top : top + size_h, left : left + size_w]
        if bool(torch.randint(2, (1,), generator=generator)):
            source, target = source.flip(-1), target.flip(-1)
        chosen_degraded.append(source)
        chosen_acquired.append(target)
    return torch.stack(chosen_degraded), torch.stack(chosen_acquired)


def restore_volume(
    network: RestorationNetwork,
    volume: np.ndarray,
    *,
    axis: int,
    device: torch.device,
    progress: Callable[..., Iterable[Any]] | None = None,
) -> np.ndarray:
    """Restore ``volume`` (slice axis already interpolated) through the two planes that
    contain ``axis``, slice axis as image axis 0 as in training, and average them
    (``progress`` wraps each plane's loop over chunks of slices)."""
    network = network.to(device)
    in_plane = [a for a in range(3) if a != axis]
    results = []
    for across in in_plane:  # the planes perpendicular to one in-plane axis
        other = next(a for a in in_plane if a != across)
        order = (across, axis, other)
        slices = torch.from_numpy(np.ascontiguousarray(np.transpose(volume, order)))
        restored = torch.empty_like(slices)
        with torch.no_grad():
            chunks = range(0, slices.shape[0], SLICES_PER_CHUNK)
            starts: Iterable[Any] = chunks
            if progress is not None:
                description = f"smore: restoring across axis {across}"
                starts = progress(chunks, description=description, total=len(chunks))
            for start in starts:
                chunk = slices[start : start + SLICES_PER_CHUNK, None].to(device)
                restored[start : start + SLICES_PER_CHUNK] = network(chunk)[:, 0].cpu()
        results.append(np.transpose(restored.numpy(), np.argsort(order)))
    return np.asarray((results[0] + results[1]) / 2.0, np.float32)
