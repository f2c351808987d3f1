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
        clip_margin: Clip to the input's range widened by this fraction (cubic
            B-splines overshoot at edges); ``None`` keeps every value.
    """

    order: InterpolationOrder = "bspline"


class Interpolation(Method[InterpolationOptions, OutputGrid]):
    """Interpolate onto a finer grid (cubic B-spline or linear).

    The output covers the input's field of view at ``target_spacing`` mm (1 mm
    isotropic by default) or ``scale`` times more voxels; each channel is interpolated
    separately, in the input's units.

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
    finer = output_grid_for(source, options)
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
    """One ``(X, Y, Z)`` channel sampled at the finer grid's voxel centres (float32)."""
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
    input index ``steps * i + offsets`` (per axis), by B-splines of ``spline_order``
    with edge values repeated outside; float32."""
    resampled = ndimage.affine_transform(
        np.asarray(values, np.float64),
        np.asarray(steps, np.float64),  # a vector: the separable, axis-aligned case
        offset=np.asarray(offsets, np.float64),
        output_shape=tuple(int(n) for n in shape),
        order=spline_order,
        mode="nearest",
        prefilter=spline_order > 1,
    )
    return np.asarray(resampled, np.float32)
