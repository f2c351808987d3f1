"""Checks of a workflow's volumes that read them, made before training: voxels that are
not numbers in the cases validation and evaluation predict and score, and references
that do not lie on the grid the method delivers (super-resolution).

Training volumes are checked as the trainer reads them; these cases were otherwise read
only at the first validation, or after the whole training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from medi2i.data.cases import SOURCE, TARGET, case_condition
from medi2i.errors import InputError, Medi2iError
from medi2i.workflow.loader import WorkflowError

if TYPE_CHECKING:
    from medi2i.data.cases import Case
    from medi2i.grid import Grid
    from medi2i.io import VolumeReader
    from medi2i.method import Method
    from medi2i.workflow.schema import Workflow

NONFINITE_HINT = "set inference.nonfinite: zero|nearest in the workflow to replace them"
"""What a workflow does about NaN input voxels (``--nonfinite`` is predict's option)."""


def check_finite_cases(
    workflow: Workflow,
    cases: Sequence[Case],
    *,
    what: str,
    readers: Sequence[VolumeReader] | None,
) -> None:
    """Refuse NaN or infinite voxels in the ``what`` cases' sources (unless
    ``inference.nonfinite`` replaces them) and references (metrics would be NaN).

    Raises:
        InputError: Naming the file, the case and what to do.
    """
    from medi2i.io import read_volume
    from medi2i.voxel_checks import non_finite_voxels

    replaced = workflow.inference.nonfinite != "error"
    for case in cases:
        for role in (SOURCE, TARGET):
            path = case.images.get(role)
            if path is None or (role == SOURCE and replaced):
                continue
            bad = non_finite_voxels(read_volume(path, readers=readers).as_tensor().numpy())
            if not bad:
                continue
            if role == SOURCE:
                hint = f"fix the file, leave the case out, or {NONFINITE_HINT}"
            else:
                hint = "fix the file or leave the case out (its scores would be NaN)"
            name = "source" if role == SOURCE else "reference"
            raise InputError(f"{path} ({what} case {case.id!r}, its {name}): {bad}; {hint}")


def in_workflow_words(error: InputError) -> InputError:
    """``error`` with predict's ``--nonfinite`` hint put as the workflow key to set."""
    text = str(error)
    if "--nonfinite" not in text:
        return error
    start = text.find("fix the file, or pass --nonfinite")
    if start < 0:
        return error
    return InputError(text[:start] + f"fix the file, or {NONFINITE_HINT}")


def check_output_grids(
    workflow: Workflow,
    method: Method,
    cases: Sequence[Case],
    *,
    what: str,
    readers: Sequence[VolumeReader] | None,
    placement_only: bool = False,
) -> None:
    """Refuse a pair whose reference is not the grid the method delivers for its source
    (:meth:`~medi2i.Method.output_grid`) where either has another shape than the source
    (super-resolution: a finer grid; a reference on the source's own grid for a method
    that refines it): evaluation, or training, would refuse it later.

    With ``placement_only`` (training pairs) the reference may have more voxels than
    the delivered grid (EDSR trains on the sub-slices past the last kept slice that
    predict drops) but must start where it starts, on the same voxel axes: a finer grid
    of the source's extent (``edges``) given to a method writing slice centres is half
    a thin voxel off, and the trainer's own check lets that pass.

    Raises:
        WorkflowError: Naming the case, both grids and what to do.
    """
    from medi2i.grid import GRID_TOLERANCE_MM
    from medi2i.io import read_grid
    from medi2i.training.validation import output_grid_hint

    for case in cases:
        if SOURCE not in case.images or TARGET not in case.images:
            continue
        source = read_grid(case.images[SOURCE], readers=readers)
        reference = read_grid(case.images[TARGET], readers=readers)
        if source is None or reference is None:
            continue
        try:
            condition = method.parse_condition(
                case_condition(workflow.method.condition, case.condition)
            )
            delivered = method.output_grid(source, condition)
        except Medi2iError:
            continue  # the condition is checked, and refused, on its own
        if delivered.shape == source.shape == reference.shape:
            continue  # a method that keeps the grid: the paired grid checks hold it
        if placement_only:
            matches = delivered.affine_gap(reference) <= GRID_TOLERANCE_MM
        else:
            matches = delivered.same_as(reference)
        if not matches:
            raise WorkflowError(
                f"{what} case {case.id!r}: the reference {case.images[TARGET]} "
                f"({_shape(reference)} voxels) is not the grid method {method.id!r} delivers "
                f"for its source {case.images[SOURCE]} ({_shape(delivered)} voxels"
                f"{_offset(delivered, reference)}); {output_grid_hint(method)}"
            )


def _shape(grid: Grid) -> str:
    return "x".join(str(size) for size in grid.shape)


def _offset(delivered: Grid, reference: Grid) -> str:
    """Where the reference's first voxel lies from the delivered grid's, when apart."""
    import numpy as np

    moved = reference.affine[:3, 3] - delivered.affine[:3, 3]
    if float(np.abs(moved).max()) <= 1e-3:
        return ""
    return f"; the reference's first voxel is {np.round(moved, 2).tolist()} mm from its"
