"""Peak memory of the harmonization methods on a large volume, and the exactness of the
memory-saving paths (float32 C-order arrays, slabs, partitioned percentiles).

Peak memory is measured with ``tracemalloc``, which sees numpy's allocations. The
volume is float32 and Fortran-ordered, as NIfTI data is read: a method that copies it
to float64 (2 volumes), sorts a copy of it, and casts a float64 output (2 more) peaks at
8 to 9 volumes; :data:`PEAK_VOLUMES` is the bound.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from medi2i_harmonization import samples
from medi2i_harmonization.domain_map import DomainIntensityMap
from medi2i_harmonization.nyul import NyulStandardization, dequantized
from medi2i_harmonization.samples import (
    foreground_mask,
    mapped_in_slabs,
    percentiles,
    robust_range,
    volume_array,
)
from medi2i_harmonization.whitestripe import WhiteStripe
from medi2i_harmonization.zscore import ZScore
from monai.data.meta_tensor import MetaTensor

from medi2i import InferenceSettings, Method, predict_tensor

SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)
Phantom = Callable[..., np.ndarray]

PEAK_VOLUMES = 4.0
"""Most bytes a prediction may allocate at once, in float32 input volumes: a C-order
copy of the input (1), the output (1), masks and the foreground (float64, a part of the
volume). The measured peaks are 2.5 to 3."""

SHAPE = (96, 96, 64)


@contextmanager
def traced_peak() -> Iterator[list[int]]:
    """The peak bytes allocated (numpy included) inside the block, in a one-item list."""
    peak: list[int] = []
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def fortran_image(phantom: Phantom, *, seed: int = 0) -> MetaTensor:
    """A float32 head phantom of :data:`SHAPE`, Fortran-ordered (as NIfTI data is read)."""
    volume = np.asfortranarray(phantom(shape=SHAPE, seed=seed).astype(np.float32))
    return MetaTensor(torch.from_numpy(volume)[None])


def fitted(name: str, phantom: Phantom) -> tuple[Method, dict[str, str] | None]:
    """A method fitted on small phantoms, and the condition it predicts with."""
    if name == "zscore":
        return ZScore(), None
    if name == "whitestripe":
        return WhiteStripe({"foreground": "otsu"}), None
    if name == "nyul":
        nyul = NyulStandardization()
        nyul.fit([phantom(shape=(32, 32, 32), seed=1)])
        return nyul, None
    domain_map = DomainIntensityMap({"quantiles": 101})
    volumes = {"A": [phantom(shape=(32, 32, 32), seed=1)], "B": [phantom(shape=(32, 32, 32)) / 2]}
    domain_map.fit_domains(volumes)  # type: ignore[arg-type]
    return domain_map, {"source_domain": "B", "target_domain": "A"}


@pytest.mark.parametrize("name", ["zscore", "nyul", "whitestripe", "domain-intensity-map"])
def test_a_prediction_peaks_under_four_input_volumes(name: str, phantom: Phantom) -> None:
    image = fortran_image(phantom)
    method, condition = fitted(name, phantom)

    with traced_peak() as peak:
        predict_tensor(method, image, settings=SETTINGS, condition=condition)

    assert peak[0] <= PEAK_VOLUMES * image.numpy().nbytes, peak[0] / image.numpy().nbytes


@pytest.mark.parametrize("name", ["zscore", "nyul", "whitestripe", "domain-intensity-map"])
def test_a_prediction_is_the_float64_map_rounded_once(name: str, phantom: Phantom) -> None:
    image = fortran_image(phantom, seed=3)
    method, condition = fitted(name, phantom)
    as_float64 = np.asarray(image[0].numpy(), np.float64)
    if isinstance(method, DomainIntensityMap):
        expected = method.map_values(as_float64, source="B", target="A")
    else:
        expected = method.standardize(as_float64)  # type: ignore[attr-defined]

    output = predict_tensor(method, image, settings=SETTINGS, condition=condition)

    np.testing.assert_array_equal(output[0].numpy(), expected.astype(np.float32))


def test_volume_array_is_one_c_order_copy_of_its_own_precision() -> None:
    fortran = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    values = volume_array(fortran)
    assert values.dtype == np.float32
    assert values.flags.c_contiguous
    np.testing.assert_array_equal(values, fortran)
    assert volume_array(fortran.astype(np.int16)).dtype == np.float32
    assert volume_array(fortran.astype(np.int32)).dtype == np.float64
    contiguous = np.zeros((2, 3, 4))
    assert volume_array(contiguous) is contiguous


@pytest.mark.parametrize("size", [1, 2, 7, 1000, 4097])
def test_percentiles_are_numpys_of_the_float64_values(size: int) -> None:
    values = np.random.default_rng(size).gamma(2.0, 300.0, size).astype(np.float32)
    q = (0.0, 0.1, 1.0, 25.0, 50.0, 99.0, 99.9, 100.0)

    expected = np.percentile(values.astype(np.float64), q)

    np.testing.assert_array_equal(percentiles(values, q), expected)
    np.testing.assert_array_equal(percentiles(np.sort(values), q, presorted=True), expected)


@pytest.mark.parametrize("rule", ["otsu", "above-mean", "head"])
def test_float32_volumes_get_the_foreground_of_their_float64_values(
    rule: str, phantom: Phantom
) -> None:
    values = phantom(shape=(24, 24, 24), seed=5).astype(np.float32)
    values[0, 0, 0] = 1e7  # an extreme voxel: the robust range is not the min and max
    wide = values.astype(np.float64)

    assert robust_range(values) == robust_range(wide)
    np.testing.assert_array_equal(
        foreground_mask(values, rule=rule),  # type: ignore[arg-type]
        foreground_mask(wide, rule=rule),  # type: ignore[arg-type]
    )


def test_otsu_counts_the_clipped_histogram_without_clipping_a_copy(phantom: Phantom) -> None:
    from skimage.filters import threshold_otsu

    values = phantom(shape=(24, 24, 24), seed=6).astype(np.float32)
    values[1, 2, 3], values[3, 2, 1] = 1e7, -1e6
    low, high = robust_range(values)
    clipped = np.clip(values.astype(np.float64), low, high)

    threshold = samples._otsu_threshold(values)

    assert threshold == float(threshold_otsu(clipped))  # type: ignore[no-untyped-call]


def test_slabs_map_every_voxel_as_one_float64_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(samples, "SLAB_VOXELS", 7)
    values = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)

    mapped = mapped_in_slabs(values, lambda x: np.sqrt(np.abs(x)) * 3.1, dtype=np.float32)

    expected = (np.sqrt(np.abs(values.astype(np.float64))) * 3.1).astype(np.float32)
    np.testing.assert_array_equal(mapped, expected)


def test_dequantizing_in_slabs_draws_what_one_draw_would(monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from medi2i_harmonization import nyul

    levels = np.random.default_rng(1).integers(0, 255, (6, 5, 4)).astype(np.float64)
    digest = hashlib.sha256(levels.tobytes()).digest()
    noise = np.random.default_rng(int.from_bytes(digest[:8], "little")).random(levels.shape)
    expected = np.clip(levels + (noise - 0.5), levels.min(), levels.max())
    monkeypatch.setattr(nyul, "SLAB_VOXELS", 11)

    np.testing.assert_array_equal(dequantized(levels), expected)
    fortran = np.asfortranarray(levels.astype(np.float32))
    np.testing.assert_array_equal(dequantized(fortran), expected)
