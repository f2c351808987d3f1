"""Training masks: the grid a case's mask must lie on, and the foreground it gives.

A training mask chooses where patches are centred, on the network input's grid. It
lies on that grid (the case's source, or its one image), or, for a super-resolution
pair whose target is a finer grid than its source, on the target's grid, where masks
of such data are drawn (evaluation masks lie there too). A mask on the target grid
marks a source voxel as foreground when any of the target voxels the trainer pairs
with it (``scale`` of them along each axis) lies inside the mask.

The one rule is applied by the trainer (:func:`medi2i.training.data.load_training_volume`,
on the working grids) and by ``medi2i validate --check-data`` and the run's checks
before training (:func:`medi2i.workflow.checks.check_training_masks`, on the files'
headers), with the same message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medi2i.data.cases import IMAGE, MASK, SOURCE, TARGET, Case

if TYPE_CHECKING:
    from medi2i.grid import Grid

MASK_GRID_RULE = (
    "a training mask lies on its case's source (or image) grid, or, for a "
    "super-resolution pair, on its finer target's grid"
)
"""The rule, for messages."""


def training_mask_grid(case: Case, mask: Grid, source: Grid, target: Grid | None) -> str:
    """The role whose grid ``case``'s mask lies on: :data:`SOURCE` (the network input's
    grid: the source, or the one image) or :data:`TARGET` (a finer target's grid).

    A mask holding the same voxels stored in another order (an axis flipped) passes:
    the trainer brings every volume onto one working grid
    (:func:`medi2i.grid.same_voxels`).

    Args:
        case: The training case (for its files, in the message).
        mask: The mask's grid.
        source: The grid of the network input (source or image).
        target: The paired target's grid, or ``None``.

    Raises:
        GeometryError: The mask lies on neither grid; the message names the case, both
            files, how the grids differ and the rule.
    """
    from medi2i.grid import require_same_grid, same_voxels

    if same_voxels(mask, source):
        return SOURCE
    finer = target is not None and target.shape != source.shape
    if target is not None and finer and same_voxels(mask, target):
        return TARGET
    images = case.images
    role = SOURCE if SOURCE in images else IMAGE
    reference, name = source, f"its {role} {images.get(role)}"
    if target is not None and finer and mask.shape == target.shape:
        reference, name = target, f"its target {images.get(TARGET)}"
    where = f"the {role}" + (" or onto the finer target" if finer else "")
    require_same_grid(
        mask,
        reference,
        what=f"training case {case.id!r}: the mask {images.get(MASK)}",
        reference_name=name,
        hint=f"resample the mask onto {where} ({MASK_GRID_RULE})",
    )
    return TARGET if reference is target else SOURCE  # (same_voxels passed it above)


def mask_on_source(
    mask: np.ndarray, shape: tuple[int, ...], scale: tuple[int, int, int]
) -> np.ndarray:
    """A boolean mask on a finer target's grid as a foreground of the source's ``shape``:
    a source voxel is foreground when any of the ``scale`` target voxels per axis that
    the trainer pairs with it lies inside the mask. Target voxels past ``shape`` times
    ``scale`` are left out; a target shorter than that (slice centres) leaves its last
    source voxels to the voxels it has.
    """
    full = tuple(n * s for n, s in zip(shape, scale, strict=True))
    fitted = np.zeros(full, dtype=bool)
    kept = tuple(slice(0, min(n, m)) for n, m in zip(full, mask.shape, strict=True))
    fitted[kept] = mask[kept]
    blocks = fitted.reshape(shape[0], scale[0], shape[1], scale[1], shape[2], scale[2])
    return np.asarray(blocks.any(axis=(1, 3, 5)))
