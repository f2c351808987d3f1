"""Checks of the voxel values that go into a method and come out of it.

A single NaN, infinite or absurdly large voxel turns every normalised value NaN, and a
constant or empty volume gives a plausible-looking output of nothing; either would be
written as if it were fine. So the predict path checks every input before the method
sees it and every output before anything is written:

- Non-finite input voxels (NaN, +/-Inf) follow a policy (:data:`NonFinitePolicy`):
  ``"error"`` (the default) refuses the volume with their count and the first one's
  voxel index; ``"zero"`` sets them to 0; ``"nearest"`` gives each the value of the
  nearest finite voxel.
- Finite values beyond :data:`SAFE_MAGNITUDE` are refused: squares and sums of such
  values overflow float32 in any normalisation, and an integer type that large (a
  uint64 near 2**63) has already lost its differences in float32.
- A constant volume, or one where fewer than :data:`MIN_FOREGROUND_VOXELS` voxels
  differ from the background (the lowest value), is refused: there is nothing to
  translate.
- An output with any non-finite voxel, or with values beyond :data:`SAFE_MAGNITUDE`
  (no real unit holds them, and the next program to read the file would overflow), is
  never written (:func:`require_finite_output`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast, get_args

import numpy as np

from medi2i.errors import InputError, OutputError
from medi2i.settings import NonFinitePolicy

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

NONFINITE_POLICIES: tuple[str, ...] = get_args(NonFinitePolicy)

SAFE_MAGNITUDE = 1e12
"""Largest absolute voxel value accepted: far above any CT (HU) or MR intensity, far
below where float32 arithmetic on a whole volume overflows."""
MIN_FOREGROUND_VOXELS = 8
"""Fewest voxels that must differ from the background for a volume to hold anything."""


def checked_input(image: MetaTensor, policy: NonFinitePolicy = "error") -> MetaTensor:
    """Apply the input checks to ``image``; returns it, repaired when the policy says so.

    Args:
        image: A ``(1, X, Y, Z)`` volume as a reader returns it.
        policy: What to do with non-finite voxels.

    Returns:
        ``image`` itself when every voxel is finite; a repaired copy otherwise (the
        caller's volume is never changed).

    Raises:
        InputError: Non-finite voxels under ``"error"``, values beyond the safe range,
            a constant or empty volume (the message names the file and what to do).
    """
    if policy not in NONFINITE_POLICIES:
        raise InputError(f"unknown non-finite policy {policy!r}; use one of {NONFINITE_POLICIES}")
    where = _name(image)
    if str(image.dtype) == "torch.bool":  # a mask: its voxels are the numbers 0 and 1
        image = cast("MetaTensor", image.float())
    values = image.as_tensor().detach().cpu().numpy()
    finite = None if _all_finite(values) else np.isfinite(values)
    bad = "" if finite is None else _non_finite(values, finite)
    if bad:
        if policy == "error":
            raise InputError(
                f"{where}: {bad}; fix the file, or pass --nonfinite zero|nearest "
                "(InferenceSettings(nonfinite=...) in Python) to replace them"
            )
        assert finite is not None
        image = _repaired(image, values, finite, policy)
        values = image.as_tensor().numpy()
    _check_range(values, where)
    return image


def require_finite_training_volume(image: MetaTensor, case: str) -> None:
    """Refuse a training volume with NaN or infinite voxels (they would poison the loss),
    values beyond :data:`SAFE_MAGNITUDE`, or nothing in it (constant, or almost all
    background): a network trained towards a constant target learns to ignore its input.

    Raises:
        InputError: Naming the file, the case and what is wrong with it.
    """
    values = image.as_tensor().detach().cpu().numpy()
    bad = _non_finite(values)
    if bad:
        raise InputError(
            f"{_name(image)} (case {case!r}): {bad}; fix the file or leave the case out of "
            "the training data"
        )
    _check_range(values, f"{_name(image)} (case {case!r})")


def require_finite_values(values: np.ndarray, path: Path | str, *, hint: str) -> None:
    """Refuse a volume read from ``path`` when any voxel is NaN or infinite (what is
    computed from it, a metric, would be NaN too).

    Raises:
        InputError: Naming the file, the count and the first bad voxel, then ``hint``.
    """
    bad = _non_finite(values)
    if bad:
        raise InputError(f"{path}: {bad}; {hint}")


def require_finite_output(values: np.ndarray, path: Path | str, *, hint: str = "") -> None:
    """Refuse to write ``values`` to ``path`` when any voxel is NaN or infinite, or
    beyond :data:`SAFE_MAGNITUDE` (e.g. a z-score target mean of 1e30).

    Args:
        values: The voxel values.
        path: What would have been written, for the message.
        hint: What to do about it, appended to the message.

    Raises:
        OutputError: Naming the count and the first bad voxel; nothing was written.
    """
    bad = _non_finite(values)
    if not bad and values.size and values.dtype.kind == "f":
        largest = _extreme(float(values.min()), float(values.max()))
        if abs(largest) > SAFE_MAGNITUDE:
            first = _first(np.abs(values) > SAFE_MAGNITUDE)
            bad = (
                f"values reach {largest:.3g} (first at voxel {first}), beyond the safe range "
                f"of +/-{SAFE_MAGNITUDE:.0e} that no real unit needs (check the options given)"
            )
    if bad:
        raise OutputError(f"{path} was not written: {bad}{'; ' + hint if hint else ''}")


def require_declared_range(
    values: np.ndarray, value_range: tuple[float, float], path: Path | str, *, method_id: str
) -> None:
    """Refuse an output beyond the range its method declares (``output_spec.value_range``,
    e.g. CT's -1024 to 3071 HU) by more than a thousandth of the range: the method
    promised it, and a DICOM CT written from 46176 HU is no CT.

    Raises:
        OutputError: The values found, the range declared; nothing was written.
    """
    if not values.size:
        return
    low, high = value_range
    slack = 1e-3 * max(high - low, 1e-6)
    found_low, found_high = float(values.min()), float(values.max())
    if found_low >= low - slack and found_high <= high + slack:
        return
    raise OutputError(
        f"{path} was not written: its values span {found_low:g} to {found_high:g}, beyond "
        f"the range {low:g} to {high:g} that {method_id!r} declares for its output "
        "(output_spec.value_range); a bug in the method: clip its output in postprocess, "
        "or declare the range it produces"
    )


COLLAPSED_HINT = (
    "the method collapsed on this input (e.g. too few voxels differ from the background "
    "for its intensity statistics, or an untrained or dead network)"
)
"""What a refused constant output says of its likely cause."""


def require_varying_output(values: np.ndarray, path: Path | str, *, hint: str = "") -> None:
    """Refuse to write ``values`` when every voxel holds the same value: inputs that are
    constant are refused on reading, so a constant translation of a varying input is a
    collapsed method (a percentile window of zero width, a dead network), not a result.

    An output of fewer than two voxels (a grid that collapsed, e.g. resampled to a
    spacing larger than the volume) is constant too, and refused.

    Raises:
        OutputError: Naming the value (or the voxel count); nothing was written.
    """
    if values.size < 2:
        raise OutputError(
            f"{path} was not written: it has {values.size} voxel(s) (shape "
            f"{tuple(values.shape)}), not a volume{'; ' + hint if hint else ''}"
        )
    flat = values.ravel(order="K")
    first = flat[0]
    if np.all(flat == first):
        raise OutputError(
            f"{path} was not written: every voxel is {float(first):g}, a constant volume"
            f"{'; ' + hint if hint else ''}"
        )


def require_varying_stored_output(
    values: np.ndarray, stored: np.ndarray, path: Path | str, *, precision: str
) -> None:
    """Refuse to write ``stored``, ``values`` as a file format keeps them (e.g. rounded
    to whole HU in a DICOM CT series), when it is constant though ``values`` vary: the
    file would say "a constant volume" of an output that was not one, as a series of 0 HU
    where the method's output spanned -1e-06 to 1e-06 HU.

    Args:
        values: The output as the method gave it.
        stored: The values the file would hold (any shape of the same size).
        path: The destination, for the message.
        precision: What the format keeps, e.g. ``"whole HU"``.

    Raises:
        OutputError: Naming the range and the precision; nothing was written.
    """
    flat = stored.ravel(order="K")
    if flat.size < 2 or not np.all(flat == flat[0]):
        return
    low, high = float(values.min()), float(values.max())
    if low == high:
        return  # a constant output is require_varying_output's to refuse
    raise OutputError(
        f"{path} was not written: the output spans {low:g} to {high:g}, which all round to "
        f"one value at the precision the file keeps ({precision}), a constant volume; "
        "check that the input's values are in the units the method expects (e.g. its "
        "Rescale Slope), or write a NIfTI file (.nii.gz), which keeps float32 values"
    )


def non_finite_voxels(values: np.ndarray) -> str:
    """``"N voxel(s) are NaN or infinite (first at voxel (i, j, k))"``, or ``""`` when
    every value is finite (a metric's inputs are checked with it)."""
    return _non_finite(values)


def _non_finite(values: np.ndarray, finite: np.ndarray | None = None) -> str:
    """``"N voxel(s) are NaN or infinite (first at voxel (i, j, k))"``, or ``""``."""
    if finite is None and _all_finite(values):
        return ""
    finite = np.isfinite(values) if finite is None else finite
    if finite.all():
        return ""
    bad = int(values.size - np.count_nonzero(finite))
    return f"{bad} voxel(s) are NaN or infinite (first at voxel {_first(~finite)})"


def _extreme(low: float, high: float) -> float:
    """The one of ``low`` and ``high`` farthest from zero, with its sign."""
    return low if abs(low) > abs(high) else high


def _check_range(values: np.ndarray, where: str) -> None:
    if values.size == 0:
        raise InputError(f"{where}: the volume has no voxels")
    low, high = float(values.min()), float(values.max())
    extreme = _extreme(low, high)
    if abs(extreme) > SAFE_MAGNITUDE:
        first = _first(np.abs(values) > SAFE_MAGNITUDE)
        raise InputError(
            f"{where}: values reach {extreme:.3g} (first at voxel {first}), "
            f"beyond the safe range of +/-{SAFE_MAGNITUDE:.0e}; rescale the image to its "
            "real units (HU for CT) before translating it"
        )
    if low == high:
        raise InputError(
            f"{where}: every voxel is {low:g}, a constant volume holds nothing to translate; "
            "check that the right file or series was given"
        )
    foreground = _count_above(values, low, enough=MIN_FOREGROUND_VOXELS)
    if foreground < MIN_FOREGROUND_VOXELS:
        raise InputError(
            f"{where}: only {foreground} voxel(s) differ from the background value {low:g}; "
            "the volume is empty, check that the right file or series was given"
        )


def _all_finite(values: np.ndarray) -> bool:
    """Whether no voxel is NaN or infinite, from the extremes: NaN propagates through
    ``min`` and ``max`` and an infinity is one of them, so two passes without a mask
    settle it for a finite volume (the usual case)."""
    if values.size == 0:
        return True
    return bool(np.isfinite(values.min()) and np.isfinite(values.max()))


_COUNT_CHUNK = 1 << 22


def _count_above(values: np.ndarray, low: float, *, enough: int) -> int:
    """How many voxels exceed ``low``, counted in chunks and stopped at ``enough``
    (a volume with anything in it stops in its first chunk, without a full mask)."""
    flat = values.ravel(order="K")
    count = 0
    for start in range(0, flat.size, _COUNT_CHUNK):
        count += int(np.count_nonzero(flat[start : start + _COUNT_CHUNK] > low))
        if count >= enough:
            break
    return count


def _repaired(
    image: MetaTensor, values: np.ndarray, finite: np.ndarray, policy: NonFinitePolicy
) -> MetaTensor:
    import torch
    from monai.data.meta_tensor import MetaTensor

    if not finite.any():
        raise InputError(f"{_name(image)}: no voxel is finite; there is nothing to translate")
    fixed = values.copy()
    if policy == "zero":
        fixed[~finite] = 0.0
    else:
        from scipy.ndimage import distance_transform_edt

        # per channel: indices of the nearest finite voxel for every voxel
        for channel in range(fixed.shape[0]):
            nearest = distance_transform_edt(
                ~finite[channel], return_distances=False, return_indices=True
            )
            fixed[channel] = fixed[channel][tuple(nearest)]
    meta = {key: value for key, value in image.meta.items() if key != "affine"}
    return MetaTensor(torch.from_numpy(fixed), affine=image.affine.clone(), meta=meta)


def _first(mask: np.ndarray) -> tuple[int, ...]:
    index = np.unravel_index(int(np.argmax(mask)), mask.shape)
    spatial = index[1:] if mask.ndim == 4 else index
    return tuple(int(i) for i in spatial)


def _name(image: MetaTensor) -> str:
    return str(image.meta.get("filename_or_obj") or "the input volume")
