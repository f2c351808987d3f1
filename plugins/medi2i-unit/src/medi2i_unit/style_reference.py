"""A MUNIT style reference: a volume of the target domain, read as the input is read.

The reference goes through medi2i's readers (:func:`medi2i.read_volume`: every reader
the installed plugins register, so NIfTI, NRRD, MetaImage and DICOM series alike), onto
the method's working grid (its orientation, and the input's voxel spacing, so the style
encoder sees voxels of the size it was trained on), and through the target domain's
intensity preprocessing, as a whole volume. The style encoder then sees it whole: its
global average pooling takes any size.
"""

from __future__ import annotations

import hashlib
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
        InputError: The reference cannot be read, or is smaller than ``smallest``
            voxels along an axis once on the input's spacing.
    """
    from monai.transforms.spatial.array import Orientation, Spacing

    volume = medi2i.read_volume(Path(path).expanduser())
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


def file_digest(path: str) -> str | None:
    """SHA-256 of the file at ``path`` (``None`` for a folder, e.g. a DICOM series), for
    the provenance of an output styled by it."""
    target = Path(path).expanduser()
    if not target.is_file():
        return None
    stat = target.stat()
    return _digest(os.fspath(target.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    del mtime_ns, size  # part of the cache key: a rewritten file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
