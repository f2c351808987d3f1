"""A MUNIT style reference: a volume of the target domain, read as the input is read.

The reference goes through medi2i's readers (:func:`medi2i.read_volume`: every reader
the installed plugins register, so NIfTI, NRRD, MetaImage and DICOM series alike), onto
the method's working grid (its orientation, and the input's voxel spacing, so the style
encoder sees voxels of the size it was trained on), and through the target domain's
intensity preprocessing, as a whole volume. The style encoder then sees it whole: its
global average pooling takes any size.

A reference is an input: it gets the input's voxel checks right after it is read (no
NaN or infinite voxel, not constant or empty), no output may replace it
(:meth:`medi2i_unit.options.MunitCondition.input_paths`), and the provenance identifies
it by a hash as it identifies the input (:func:`reference_digest`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

import medi2i
from medi2i import Grid, InputError, SpatialPlan

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
"""Axis labels of medi2i's world coordinates (RAS+), given to MONAI's reorientation."""


def read_style_reference(
    path: str,
    *,
    like: MetaTensor,
    plan: SpatialPlan,
    preprocess: Callable[[MetaTensor], MetaTensor],
    smallest: int,
) -> MetaTensor:
    """The reference volume at ``path`` on the grid of ``like`` (orientation and
    spacing), preprocessed.

    Args:
        path: A volume file or folder.
        like: The preprocessed input, on the method's working grid.
        plan: The method's spatial plan (its orientation is applied).
        preprocess: The target domain's whole-volume intensity preprocessing.
        smallest: The fewest voxels per side the style encoder takes.

    Raises:
        InputError: The reference cannot be read, fails the checks every input gets
            (:func:`read_reference`), or is smaller than ``smallest`` voxels along an
            axis once on the input's spacing.
    """
    from monai.transforms.spatial.array import Orientation, Spacing

    volume = read_reference(path)
    if plan.orientation is not None:
        reorient = Orientation(axcodes=plan.orientation, labels=RAS_LABELS)
        volume = cast("MetaTensor", reorient(volume))
    spacing = Grid.of(like).spacing
    if not np.allclose(Grid.of(volume).spacing, spacing, rtol=1e-3):
        resample = Spacing(pixdim=spacing, mode="bilinear", padding_mode="border")
        volume = cast("MetaTensor", resample(volume))
    shape = tuple(int(n) for n in volume.shape[1:])
    if min(shape) < smallest:
        raise InputError(
            f"style_reference {path}: {shape} voxels on the input's spacing; the style "
            f"encoder needs at least {smallest} per axis"
        )
    return preprocess(volume)


def read_reference(path: str) -> MetaTensor:
    """The volume at ``path`` as medi2i's readers read it, checked as every input is
    (:mod:`medi2i.voxel_checks`) before anything is computed from it: every voxel
    finite, values within the safe range, not constant or empty. A reference is never
    repaired (``--nonfinite`` applies to the input only).

    Raises:
        InputError: The reference cannot be read or fails a check; the message names
            the reference file, and counts and locates voxels on its own grid.
    """
    volume = medi2i.read_volume(Path(path).expanduser())
    volume.meta["filename_or_obj"] = str(path)  # what the checks' messages name
    try:
        return medi2i.checked_input(volume, "error")
    except InputError as error:
        raise InputError(f"style_reference {error}") from None


def reference_digest(path: str) -> tuple[str, str] | None:
    """What identifies the reference at ``path`` in the provenance of an output styled
    by it, as the input is identified (:func:`medi2i.provenance.provenance`):
    ``(sha256, "file")``, the SHA-256 of a file's bytes, or ``(sha256, "volume")``,
    :func:`medi2i.volume_sha256` of the volume read from a folder (a DICOM
    series), so the same pixel data gives the same hash whatever its file names.
    ``None`` when nothing is at ``path``.

    The reference is read and checked (:func:`read_reference`) here, when the method
    declares its outputs, so a bad reference is refused before any work, in its own
    words. Each content is read once: a rewritten file, or a folder whose files changed,
    is read again.

    Raises:
        InputError: The reference cannot be read as a volume, or fails the input checks.
    """
    target = Path(path).expanduser()
    if not target.exists():
        return None
    return _checked_digest(path, _signature(target))


def _signature(target: Path) -> tuple[object, ...]:
    """The resolved path and every file at or under it with its size and time of change."""
    if target.is_file():
        found = [target]
    else:
        found = [Path(parent, name) for parent, _, names in os.walk(target) for name in names]
    files = sorted((os.fspath(f), f.stat().st_mtime_ns, f.stat().st_size) for f in found)
    return (os.fspath(target.resolve()), *files)


@lru_cache(maxsize=16)
def _checked_digest(path: str, signature: tuple[object, ...]) -> tuple[str, str]:
    del signature  # the cache key: a reference whose files changed is read again
    volume = read_reference(path)
    target = Path(path).expanduser()
    if target.is_file():
        return medi2i.file_sha256(target), "file"
    return medi2i.volume_sha256(volume), "volume"
