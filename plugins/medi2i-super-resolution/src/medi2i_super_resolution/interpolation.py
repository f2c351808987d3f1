"""Super-resolution by interpolation: linear or cubic B-spline, onto a finer grid.

The reference every learned super-resolution method must beat, and the first stage of
SRCNN. Cubic B-spline interpolation (Unser 1999) first solves for the spline
coefficients that make the spline pass through every input voxel (scipy's prefilter),
then evaluates the spline at the output voxel centres; it is exact on input voxel
centres and smoother than linear interpolation between them. Beyond the outermost
input voxel centres (the half voxel that ``align="edges"`` reaches into) the edge
voxel is replicated (``mode="nearest"``), so borders are neither darkened nor invented.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from scipy import ndimage

from medi2i import DataKind, Grid, Method, Task, VolumeSpec
from medi2i_super_resolution.grids import (
    FinerGrid,
    GridOptions,
    OutputGrid,
    clipped,
    output_grid_for,
    with_condition,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from monai.data.meta_tensor import MetaTensor

    from medi2i import PredictContext

InterpolationOrder = Literal["linear", "bspline"]
SPLINE_ORDERS: dict[str, int] = {"linear": 1, "bspline": 3}
ANY_SPEC = VolumeSpec(modality="any")


class InterpolationOptions(GridOptions):
    """Options of :class:`Interpolation`.

    Attributes:
        order: ``"bspline"``, cubic B-spline interpolation (with the interpolating
            prefilter); ``"linear"``, trilinear interpolation.
        target_spacing: Output voxel size in mm (see
            :class:`~medi2i_super_resolution.grids.GridOptions`).
        scale: Output voxels per input voxel, instead of ``target_spacing``.
        slice_factor: Output voxels per input voxel along the slice axis only.
        align: ``"edges"`` or ``"centres"``: which voxel positions the finer grid keeps.
        coarsen: Whether a ``target_spacing`` coarser than the input makes that axis
            coarser (blurred first). True by default here: these options are what the
            user asks at predict time, so a coarser ``target_spacing`` is asked for; a
            learned model's options, fixed at training, default to false
            (:class:`~medi2i_super_resolution.grids.GridOptions`).
        clip_margin: Clip to the input's range widened by this fraction (cubic
            B-splines overshoot at edges); ``None`` keeps every value.
    """

    order: InterpolationOrder = "bspline"
    coarsen: bool = True


class Interpolation(Method[InterpolationOptions, OutputGrid]):
    """Interpolate onto a finer grid (cubic B-spline or linear).

    The output covers the input's field of view at ``target_spacing`` mm or ``scale``
    times more voxels; each channel is interpolated separately, in the input's units.
    By default (``target_spacing`` not given) every axis coarser than 1 mm is refined
    to 1 mm and every finer one keeps its spacing: the output is never coarser than the
    input. A ``target_spacing`` given explicitly is met on every axis as nearly as whole
    voxels allow (a ``GridWarning`` when off by more than 0.1 %); an axis it makes coarser
    is blurred to the new spacing first (no aliasing), unless ``coarsen=False`` keeps it.
    ``scale`` and ``slice_factor`` below 1 are refused.

    Example:
        >>> from medi2i import Grid
        >>> from medi2i.testing import make_volume
        >>> method = Interpolation({"scale": (1, 1, 4)})
        >>> method.output_grid(Grid.of(make_volume((8, 8, 6)))).shape
        (8, 8, 24)
    """

    id = "interpolation"
    version = "0.1.0"
    tasks = (Task.SUPER_RESOLUTION,)
    data = DataKind.NONE
    input_spec = ANY_SPEC
    output_spec = ANY_SPEC
    Options = InterpolationOptions
    Condition = OutputGrid
    paper = (
        "Unser M. Splines: a perfect fit for signal and image processing. IEEE Signal "
        "Processing Magazine 16(6):22-38, 1999"
    )

    options: InterpolationOptions

    def output_grid(self, input_grid: Grid, condition: OutputGrid | None = None) -> Grid:
        return output_grid_for(input_grid, with_condition(self.options, condition)).grid

    def predict(self, image: MetaTensor, context: PredictContext[OutputGrid]) -> torch.Tensor:
        """Interpolate onto the grid of the options (or of the condition), clipped to
        the input's range widened by ``clip_margin``."""
        options = with_condition(self.options, context.condition)
        finer = interpolate_finer(image, options=options, order=self.options.order)
        low, high = float(image.min()), float(image.max())
        if finer.untyped_storage().data_ptr() == image.untyped_storage().data_ptr():
            # the output is the input itself (the grid is the input's): clip a copy
            result: torch.Tensor = clipped(finer, low, high, self.options.clip_margin)
            return result
        return clipped_in_place(finer, low, high, self.options.clip_margin)


def clipped_in_place(
    output: torch.Tensor, low: float, high: float, margin: float | None
) -> torch.Tensor:
    """``output`` clipped in place, as :func:`~medi2i_super_resolution.grids.clipped`
    clips a copy: the output is the largest array of a prediction, and a copy of it
    would be one more output volume in memory."""
    if margin is not None:
        pad = margin * (high - low)
        output.clamp_(low - pad, high + pad)
    return output


def interpolate_finer(
    image: torch.Tensor, *, options: GridOptions, order: InterpolationOrder
) -> MetaTensor:
    """Interpolate a channel-first volume onto the finer grid of ``options``.

    Args:
        image: ``(C, X, Y, Z)`` volume; a ``MetaTensor``'s affine places it (mm).
        options: Where the output goes (target spacing or scale, alignment).
        order: ``"linear"`` or ``"bspline"`` (cubic).

    Returns:
        A float32 ``MetaTensor`` on the finer grid, carrying its affine. The input itself
        (as float32) when the finer grid is the input grid.
    """
    from monai.data.meta_tensor import MetaTensor

    source = Grid.of(image)
    finer = output_grid_for(source, options, notice=False)  # output_grid said it
    values = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if finer.is_identity(source.shape):
        resampled = np.asarray(values, np.float32)
    else:  # each channel written into its place: no stacked copy of the output
        resampled = np.empty((len(values), *finer.grid.shape), np.float32)
        for channel, out in zip(values, resampled, strict=True):
            resample_channel(channel, finer, order=order, output=out)
    affine = torch.as_tensor(finer.grid.affine, dtype=torch.float64)
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(resampled)), affine=affine)


def resample_channel(
    values: np.ndarray,
    finer: FinerGrid,
    *,
    order: InterpolationOrder,
    output: np.ndarray | None = None,
) -> np.ndarray:
    """One ``(X, Y, Z)`` channel sampled at the finer grid's voxel centres (float32),
    written into ``output`` when it is given (a float32 array of the grid's shape).

    An axis the grid makes coarser than the input (a step above 1, only from an explicit
    ``target_spacing``) is first blurred by a Gaussian of standard deviation
    ``sqrt(step² - 1) / 2`` input voxels (half a new voxel, less what an input voxel
    already spans, in quadrature): sampled without it, detail finer than the new grid
    comes back as a false pattern of lower frequency (aliasing); with it, a pattern just
    past the new grid's Nyquist frequency keeps under half its amplitude.
    """
    for axis, step in enumerate(finer.steps):
        if step > 1.0 + _OUTSIDE:
            sigma = 0.5 * math.sqrt(step * step - 1.0)
            values = ndimage.gaussian_filter1d(
                values, sigma, axis=axis, output=np.float64, mode="nearest"
            )
    return resample_axis_aligned(
        values,
        finer.steps,
        finer.offsets,
        finer.grid.shape,
        spline_order=SPLINE_ORDERS[order],
        output=output,
    )


def resample_axis_aligned(
    values: np.ndarray,
    steps: Sequence[float],
    offsets: Sequence[float],
    shape: Sequence[int],
    *,
    spline_order: int,
    output: np.ndarray | None = None,
) -> np.ndarray:
    """``values`` sampled at voxel ``i`` of an axis-aligned grid of ``shape`` from the
    input index ``steps * i + offsets`` (per axis), by B-splines of ``spline_order``;
    positions past the outermost input voxel centres take the value at that centre
    (the edge voxel replicated, not the spline continued: a cubic spline carried past
    the last centre overshoots); float32. Nothing is blurred: an axis sampled coarser
    aliases unless ``values`` were blurred first (see :func:`resample_channel`).

    The spline coefficients are float64 (their precision is the output's accuracy);
    the spline is evaluated in float64 and written straight into a float32 ``output``
    (given, of ``shape``, or made here), so that no float64 array of the output's size
    exists: peak memory is the coefficients (2 input volumes of float32) and the output.
    """
    out_shape = tuple(int(n) for n in shape)
    sampled = output if output is not None else np.empty(out_shape, np.float32)
    if sampled.shape != out_shape or sampled.dtype != np.float32:
        raise ValueError(f"output must be a float32 array of shape {out_shape}")
    if spline_order > 1:  # the coefficients once, for every evaluation below
        # float64 output straight from the input: no float64 copy of the input first
        data = ndimage.spline_filter(values, order=spline_order, output=np.float64, mode="nearest")
    else:
        data = np.asarray(values)
    _spline_at(
        data,
        tuple(float(s) for s in steps),
        tuple(float(o) for o in offsets),
        sampled,
        spline_order,
    )
    return sampled


_OUTSIDE = 1e-9
"""How far (input voxels) past an outermost centre a position must lie to be outside."""


def _spline_at(
    coefficients: np.ndarray,
    steps: tuple[float, ...],
    offsets: tuple[float, ...],
    sampled: np.ndarray,
    order: int,
) -> None:
    """Write into ``sampled`` the spline of ``coefficients`` at the grid's positions,
    each clamped to the outermost input centres along every axis (the clamped planes
    evaluated on their own: a B-spline is separable, so clamping one coordinate is
    evaluating there). scipy evaluates in float64 and rounds once into ``sampled``'s
    type, as casting a float64 output would."""
    shape = sampled.shape
    ndimage.affine_transform(
        coefficients,
        np.asarray(steps),  # a vector: the separable, axis-aligned case
        offset=np.asarray(offsets),
        output_shape=shape,
        output=sampled,
        order=order,
        mode="nearest",
        prefilter=False,
    )
    for axis, count in enumerate(coefficients.shape):
        positions = offsets[axis] + steps[axis] * np.arange(shape[axis])
        for edge, outside in (
            (0.0, positions < -_OUTSIDE),
            (count - 1.0, positions > count - 1 + _OUTSIDE),
        ):
            if not outside.any():
                continue
            plane = np.empty(
                tuple(1 if a == axis else n for a, n in enumerate(shape)), sampled.dtype
            )
            _spline_at(
                coefficients,
                steps,
                tuple(edge if a == axis else o for a, o in enumerate(offsets)),
                plane,
                order,
            )
            index: list[slice | np.ndarray] = [slice(None)] * len(shape)
            index[axis] = np.flatnonzero(outside)
            sampled[tuple(index)] = plane
