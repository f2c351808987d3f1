"""How the DICOM geometry benchmark (``dicom_geometry.py``) compares a reference reading
with medi2i's: corner voxel centres as unordered sets, then voxel values under the axis
mapping that brings the reference's grid onto medi2i's."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
from dicom_geometry_cases import Row
from dicom_geometry_readers import Reading

TOLERANCE_MM = 0.1
VALUE_TOLERANCE = 1e-3  # float32 rescale products against nibabel's float64 ones


def corners(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """RAS positions of the 8 corner voxel centres, ``(8, 3)``."""
    index = np.array(list(itertools.product(*[(0, n - 1) for n in shape[:3]])), dtype=np.float64)
    return index @ affine[:3, :3].T + affine[:3, 3]


def corner_set_error(ours: Reading, theirs: Reading) -> float:
    """Largest distance (mm) from a corner of one grid to the nearest corner of the other."""
    a = corners(ours.array.shape, ours.affine)  # type: ignore[union-attr]
    b = corners(theirs.array.shape, theirs.affine)  # type: ignore[union-attr]
    distances = np.linalg.norm(a[:, None] - b[None], axis=2)
    return float(max(distances.min(axis=1).max(), distances.min(axis=0).max()))


def _mappings(
    shape: tuple[int, ...], target: tuple[int, ...]
) -> Iterator[tuple[tuple[int, ...], tuple[bool, ...]]]:
    for order in itertools.permutations(range(3)):
        if tuple(shape[o] for o in order) != target:
            continue
        for flips in itertools.product((False, True), repeat=3):
            yield order, flips


def _mapped(
    reading: Reading, order: tuple[int, ...], flips: tuple[bool, ...]
) -> tuple[np.ndarray, np.ndarray]:
    assert reading.array is not None
    assert reading.affine is not None
    array = reading.array.transpose(order)
    shape = reading.array.shape
    step = np.zeros((4, 4))
    step[3, 3] = 1.0
    for axis, (old, flip) in enumerate(zip(order, flips, strict=True)):
        step[old, axis] = -1.0 if flip else 1.0
        step[old, 3] = shape[old] - 1 if flip else 0.0
    flipped = array[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    return flipped, reading.affine @ step


def compare(ours: Reading, theirs: Reading) -> Row:
    """Shape, corner error and voxel agreement of a reference reading with medi2i's."""
    if ours.refused or theirs.refused:
        return {}
    assert ours.array is not None
    assert theirs.array is not None
    spatial = theirs.array.shape[:3]
    extra = theirs.array.shape[3:]
    row: Row = {
        "shape": list(theirs.array.shape),
        "corner_error_mm": corner_set_error(ours, theirs),
    }
    if extra and int(np.prod(extra)) > 1:
        row["values"] = f"not compared: {int(np.prod(extra))} volumes"
        return row
    reference = Reading(theirs.array.reshape(spatial), theirs.affine)
    candidates = list(_mappings(spatial, ours.array.shape))
    if not candidates:
        row["values"] = "not compared: shapes differ"
        return row
    best = min(candidates, key=lambda m: _ordered_error(ours, *_mapped(reference, *m)))
    values, _ = _mapped(reference, *best)
    difference = float(np.abs(values - ours.array).max())
    row["mapping"] = _describe(best)
    row["max_abs_value_diff"] = difference
    row["values"] = "identical" if difference <= VALUE_TOLERANCE else "differ"
    if difference > VALUE_TOLERANCE:
        scale = float(np.vdot(values, ours.array) / max(np.vdot(ours.array, ours.array), 1e-30))
        if np.abs(values - scale * ours.array).max() <= 1e-6 * np.abs(values).max():
            row["values"] = f"proportional: reference = {scale:g} x medi2i"
        matching = [
            _describe(m)
            for m in candidates
            if float(np.abs(_mapped(reference, *m)[0] - ours.array).max()) <= VALUE_TOLERANCE
        ]
        row["values_match_under"] = matching
    return row


def _ordered_error(ours: Reading, array: np.ndarray, affine: np.ndarray) -> float:
    assert ours.affine is not None
    return float(
        np.linalg.norm(
            corners(array.shape, affine) - corners(array.shape, ours.affine), axis=1
        ).max()
    )


def _describe(mapping: tuple[tuple[int, ...], tuple[bool, ...]]) -> str:
    order, flips = mapping
    return " ".join(f"{'-' if f else '+'}{'ijk'[o]}" for o, f in zip(order, flips, strict=True))


def agrees(ours: Reading, theirs: Reading, result: Row) -> bool:
    """Both refuse, or both read the same grid (corners within tolerance) and values."""
    if ours.refused or theirs.refused:
        return bool(ours.refused and theirs.refused)
    return (
        result.get("corner_error_mm", np.inf) <= TOLERANCE_MM
        and result.get("values") == "identical"
    )
