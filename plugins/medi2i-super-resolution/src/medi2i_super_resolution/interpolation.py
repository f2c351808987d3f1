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
        result: torch.Tensor = clipped(finer, low, high, self.options.clip_margin)
        return result


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
    else:
        resampled = np.stack([resample_channel(c, finer, order=order) for c in values])
    affine = torch.as_tensor(finer.grid.affine, dtype=torch.float64)
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(resampled)), affine=affine)


def resample_channel(
    values: np.ndarray, finer: FinerGrid, *, order: InterpolationOrder
) -> np.ndarray:
    """One ``(X, Y, Z)`` channel sampled at the finer grid's voxel centres (float32).

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
                np.asarray(values, np.float64), sigma, axis=axis, mode="nearest"
            )
    return resample_axis_aligned(
        values,
        finer.steps,
        finer.offsets,
        finer.grid.shape,
        spline_order=SPLINE_ORDERS[order],
    )


def resample_axis_aligned(
    values: np.ndarray,
    steps: Sequence[float],
    offsets: Sequence[float],
    shape: Sequence[int],
    *,
    spline_order: int,
) -> np.ndarray:
    """``values`` sampled at voxel ``i`` of an axis-aligned grid of ``shape`` from the
    input index ``steps * i + offsets`` (per axis), by B-splines of ``spline_order``;
    positions past the outermost input voxel centres take the value at that centre
    (the edge voxel replicated, not the spline continued: a cubic spline carried past
    the last centre overshoots); float32. Nothing is blurred: an axis sampled coarser
    aliases unless ``values`` were blurred first (see :func:`resample_channel`)."""
    data = np.asarray(values, np.float64)
    if spline_order > 1:  # the coefficients once, for every evaluation below
        data = ndimage.spline_filter(data, order=spline_order, mode="nearest")
    sampled = _spline_at(
        data,
        tuple(float(s) for s in steps),
        tuple(float(o) for o in offsets),
        tuple(int(n) for n in shape),
        spline_order,
    )
    return np.asarray(sampled, np.float32)


_OUTSIDE = 1e-9
"""How far (input voxels) past an outermost centre a position must lie to be outside."""


def _spline_at(
    coefficients: np.ndarray,
    steps: tuple[float, ...],
    offsets: tuple[float, ...],
    shape: tuple[int, ...],
    order: int,
) -> np.ndarray:
    """The spline of ``coefficients`` at the grid's positions, each clamped to the
    outermost input centres along every axis (the clamped planes evaluated on their own:
    a B-spline is separable, so clamping one coordinate is evaluating there)."""
    sampled = np.asarray(
        ndimage.affine_transform(
            coefficients,
            np.asarray(steps),  # a vector: the separable, axis-aligned case
            offset=np.asarray(offsets),
            output_shape=shape,
            order=order,
            mode="nearest",
            prefilter=False,
        )
    )
    for axis, count in enumerate(coefficients.shape):
        positions = offsets[axis] + steps[axis] * np.arange(shape[axis])
        for edge, outside in (
            (0.0, positions < -_OUTSIDE),
            (count - 1.0, positions > count - 1 + _OUTSIDE),
        ):
            if not outside.any():
                continue
            plane = _spline_at(
                coefficients,
                steps,
                tuple(edge if a == axis else o for a, o in enumerate(offsets)),
                tuple(1 if a == axis else n for a, n in enumerate(shape)),
                order,
            )
            index: list[slice | np.ndarray] = [slice(None)] * len(shape)
            index[axis] = np.flatnonzero(outside)
            sampled[tuple(index)] = plane
    return sampled
