"""Read → spatial plan → preprocess: how every part of medi2i puts a volume in front of
a method, written once.

Prediction, training, fitting and adaptation all hand a method volumes on its working
grid (:meth:`medi2i.Method.spatial_plan`) and intensity-preprocessed as a whole
(:meth:`medi2i.Method.preprocess`, with the volume's domain and the condition), so that
what a method learns from and what it predicts on are alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import torch
    from monai.data.meta_tensor import MetaTensor
    from pydantic import BaseModel

    from medi2i.io.base import VolumeReader
    from medi2i.method import Method
    from medi2i.settings import NonFinitePolicy


def planned(image: MetaTensor, method: Method) -> MetaTensor:
    """``image`` on ``method``'s working grid (reoriented and resampled as it asks)."""
    from medi2i.resample import apply_spatial_plan

    return apply_spatial_plan(image, method.spatial_plan())


def prepared(
    image: MetaTensor,
    method: Method[Any, Any],
    *,
    domain: str | None = None,
    condition: BaseModel | None = None,
) -> MetaTensor:
    """``image`` on the working grid and preprocessed by ``method`` as a whole volume."""
    return method.preprocess(planned(image, method), domain=domain, condition=condition)


def read_planned(
    path: Path, method: Method, *, readers: Sequence[VolumeReader] | None = None
) -> MetaTensor:
    """Read the volume at ``path`` onto ``method``'s working grid."""
    from medi2i.io import read_volume

    volume = read_volume(path, readers=list(readers) if readers is not None else None)
    return planned(volume, method)


def planned_mask(mask: MetaTensor, method: Method) -> torch.Tensor:
    """A mask on ``method``'s working grid: ``mask > 0``, then resampled, then ``>= 0.5``.

    Binarizing first keeps label values from blurring into each other.
    """
    binary = cast("MetaTensor", (mask > 0).float())
    return planned(binary, method) >= 0.5


def read_prepared(
    path: Path,
    method: Method,
    *,
    domain: str | None = None,
    readers: Sequence[VolumeReader] | None = None,
    nonfinite: NonFinitePolicy = "error",
) -> MetaTensor:
    """Read the volume at ``path``, check it as prediction checks its input (NaN or
    infinite voxels under ``nonfinite``, values beyond the safe range, a constant
    volume), put it on the working grid and preprocess it."""
    from medi2i.io import read_volume
    from medi2i.voxel_checks import checked_input

    volume = read_volume(path, readers=list(readers) if readers is not None else None)
    return prepared(checked_input(volume, nonfinite), method, domain=domain)


def require_on_source_grid(
    volume: torch.Tensor, source: torch.Tensor, *, case_id: str, role: str
) -> None:
    """Refuse a case's ``role`` volume (its mask, or a target of the source's shape)
    that is not on its source's working grid: a mask or target shifted, flipped or
    resampled against its source would pair voxels of different places without a word.

    Both volumes are on the working grid already (:func:`planned`, :func:`planned_mask`),
    so two files that store one grid in different orientations pass.

    Raises:
        GeometryError: The shapes differ, or the affines differ by more than
            :data:`medi2i.grid.GRID_TOLERANCE_MM`; the message names both files.
    """
    from medi2i.grid import Grid, require_same_grid

    def name(image: torch.Tensor) -> str:
        meta = getattr(image, "meta", {})
        return str(meta.get("filename_or_obj") or "(in memory)")

    require_same_grid(
        Grid.of(volume),
        Grid.of(source),
        what=f"case {case_id!r}: the {role} {name(volume)}",
        reference_name=f"its source {name(source)}",
        hint=f"resample the {role} onto the source (a pair's volumes must share one grid)",
    )
