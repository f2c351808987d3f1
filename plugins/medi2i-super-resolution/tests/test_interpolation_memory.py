"""Peak memory of interpolation onto a finer grid, and that saving it changes no value.

Peak memory is measured with ``tracemalloc``, which sees numpy's allocations. A float64
output of the finer grid cast to float32, and a stacked copy of it, peak at 8 input
volumes for a doubled slice count; :data:`PEAK_VOLUMES` is the bound.
"""

from __future__ import annotations

import tracemalloc
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import numpy as np
import pytest
import torch
from medi2i_super_resolution.interpolation import Interpolation, resample_axis_aligned
from monai.data.meta_tensor import MetaTensor
from scipy import ndimage

from medi2i import InferenceSettings, predict_tensor

if TYPE_CHECKING:
    from medi2i_super_resolution.grids import OutputGrid

    from medi2i import PredictContext

SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)

PEAK_VOLUMES = 5.0
"""Most bytes a doubled-slice interpolation may allocate at once, in float32 input
volumes: the float64 spline coefficients (2) and the float32 output (2). Measured: 4."""


def fortran_volume(shape: tuple[int, int, int] = (96, 96, 64)) -> np.ndarray:
    """Smooth float32 intensities with noise, Fortran-ordered (as NIfTI data is read)."""
    rng = np.random.default_rng(0)
    grid = np.meshgrid(*(np.linspace(0.0, 3.0, n) for n in shape), indexing="ij")
    values = 500.0 + 200.0 * np.sin(grid[0]) * np.cos(grid[1]) + 50.0 * grid[2]
    return np.asfortranarray((values + rng.normal(0.0, 10.0, shape)).astype(np.float32))


def test_doubling_the_slices_peaks_under_five_input_volumes() -> None:
    volume = fortran_volume()
    image = MetaTensor(torch.from_numpy(volume)[None])

    tracemalloc.start()
    output = predict_tensor(Interpolation({"scale": (1, 1, 2)}), image, settings=SETTINGS)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert output.shape[-1] == 2 * volume.shape[-1]
    assert peak <= PEAK_VOLUMES * volume.nbytes, peak / volume.nbytes


@pytest.mark.parametrize("order", [1, 3])
def test_the_float32_output_is_the_float64_one_rounded_once(order: int) -> None:
    volume = fortran_volume((12, 10, 8))
    steps, offsets, shape = (1.0, 0.5, 0.25), (0.0, -0.25, -0.375), (12, 20, 32)
    data = np.asarray(volume, np.float64)
    if order > 1:
        data = ndimage.spline_filter(data, order=order, mode="nearest")
    inside = ndimage.affine_transform(
        data, np.asarray(steps), offset=np.asarray(offsets), output_shape=shape,
        order=order, mode="nearest", prefilter=False,
    )  # fmt: skip

    sampled = resample_axis_aligned(volume, steps, offsets, shape, spline_order=order)

    assert sampled.dtype == np.float32
    # away from the edge planes (replicated there), scipy's own float64 evaluation
    np.testing.assert_array_equal(sampled[:, 1:-1, 2:-2], inside[:, 1:-1, 2:-2].astype(np.float32))


def test_the_input_is_not_clipped_in_place_when_it_is_the_output() -> None:
    volume = np.ascontiguousarray(fortran_volume((8, 8, 8)))
    image = MetaTensor(torch.from_numpy(volume.copy())[None])
    context = cast("PredictContext[OutputGrid]", SimpleNamespace(condition=None))

    Interpolation({"scale": (1, 1, 1), "clip_margin": 0.0}).predict(image, context)

    np.testing.assert_array_equal(image.numpy()[0], volume)
