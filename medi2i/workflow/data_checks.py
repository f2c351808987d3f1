"""Checks of a workflow's volumes that read them, made before training: voxels that are
not numbers in the cases validation and evaluation predict and score, and references
that do not lie on the grid the method delivers (super-resolution).

Training volumes are checked as the trainer reads them; these cases were otherwise read
only at the first validation, or after the whole training.

The problems of every case are collected (:class:`DataProblems`) and reported at once,
one line each, so that a user fixing a dataset sees them all in one ``medi2i validate
--check-data`` rather than one per try.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.data.cases import SOURCE, TARGET, case_condition
from medi2i.errors import InputError, Medi2iError, OptionsError
from medi2i.workflow.loader import WorkflowError

if TYPE_CHECKING:
    from medi2i.data.cases import Case
    from medi2i.grid import Grid
    from medi2i.io import VolumeReader
    from medi2i.method import Method
    from medi2i.workflow.schema import Workflow

NONFINITE_HINT = "set inference.nonfinite: zero|nearest in the workflow to replace them"
"""What a workflow does about NaN input voxels (``--nonfinite`` is predict's option)."""

LEAVE_OUT_HINT = "data.include patterns that do not match it"
"""How a workflow leaves a case out, for messages."""


class DataProblemsError(InputError):
    """Several problems in a workflow's cases: one line each, then their count.

    Attributes:
        errors: The problems, in the order they were found.
    """

    def __init__(self, errors: Sequence[Medi2iError]) -> None:
        self.errors = tuple(errors)
        lines = [str(error) for error in self.errors]
        super().__init__(
            "\n".join(lines) + f"\n{len(lines)} problems in the data: fix each file, or "
            f"leave its case out with {LEAVE_OUT_HINT}, and rerun"
        )


class DataProblems:
    """The problems found in a workflow's cases, collected so that every case is checked
    and all are reported at once (:meth:`raise_any`) instead of the first alone.

    Example:
        >>> problems = DataProblems()
        >>> for case in cases:  # doctest: +SKIP
        ...     with problems.collect():
        ...         check(case)
        >>> problems.raise_any()  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._errors: list[Medi2iError] = []

    @contextmanager
    def collect(self) -> Iterator[None]:
        """Record an ``InputError`` or ``WorkflowError`` raised in the block and go on."""
        try:
            yield
        except (InputError, OptionsError) as exc:
            self._errors.extend(exc.errors if isinstance(exc, DataProblemsError) else [exc])

    def raise_any(self) -> None:
        """Raise the one problem found as it was raised, several as a
        :class:`DataProblemsError` (each once); nothing when none was found."""
        unique = list({str(error): error for error in self._errors}.values())
        if len(unique) == 1:
            raise unique[0]
        if unique:
            raise DataProblemsError(unique)


def volume_grid(path: Path, readers: Sequence[VolumeReader] | None) -> Grid:
    """The grid of the volume at ``path``: from its header (:func:`medi2i.io.read_grid`),
    or from reading it in full where the reader cannot tell it otherwise (a DICOM
    series, a plugin format), so that no case goes unchecked.

    Raises:
        InputError: The file is missing or unreadable (from the full read).
    """
    from medi2i.grid import Grid
    from medi2i.io import read_grid, read_volume

    grid = read_grid(path, readers=readers)
    return grid if grid is not None else Grid.of(read_volume(path, readers=readers))


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
        DataProblemsError: Several files' problems, one line each.
    """
    from medi2i.io import read_volume
    from medi2i.voxel_checks import non_finite_voxels

    replaced = workflow.inference.nonfinite != "error"
    problems = DataProblems()
    for case in cases:
        for role in (SOURCE, TARGET):
            path = case.images.get(role)
            if path is None or (role == SOURCE and replaced):
                continue
            with problems.collect():
                bad = non_finite_voxels(read_volume(path, readers=readers).as_tensor().numpy())
                if bad:
                    raise InputError(_nonfinite_message(path, case, role, bad, what))
    problems.raise_any()


def _nonfinite_message(path: Path, case: Case, role: str, bad: str, what: str) -> str:
    if role == SOURCE:
        hint = f"fix the file, leave the case out with {LEAVE_OUT_HINT}, or {NONFINITE_HINT}"
    else:
        hint = f"fix the file or leave the case out with {LEAVE_OUT_HINT} (its scores would be NaN)"
    name = "source" if role == SOURCE else "reference"
    return f"{path} ({what} case {case.id!r}, its {name}): {bad}; {hint}"


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
    a thin voxel off, and the trainer's own check lets that pass. For a method that
    keeps the grid, a training or validation reference of its source's shape must hold
    the source's voxels (a CT shifted by 2 mm is refused now, not when training starts).

    The grids come from the files' headers; where a reader cannot tell a grid without
    the voxels (a DICOM series), validation and evaluation volumes are read in full
    (:func:`volume_grid`) and training volumes are left to the trainer.

    Raises:
        WorkflowError: Naming the case, both grids and what to do.
        DataProblemsError: Several cases' problems, one line each.
    """
    problems = DataProblems()
    for case in cases:
        if SOURCE in case.images and TARGET in case.images:
            with problems.collect():
                _check_output_grid(workflow, method, case, what, readers, placement_only)
    problems.raise_any()


def _check_output_grid(
    workflow: Workflow,
    method: Method,
    case: Case,
    what: str,
    readers: Sequence[VolumeReader] | None,
    placement_only: bool,
) -> None:
    from medi2i.grid import GRID_TOLERANCE_MM
    from medi2i.training.validation import output_grid_hint

    if placement_only:  # training cases: from the headers alone, not read in full here
        from medi2i.io import read_grid

        source, reference = (read_grid(case.images[r], readers=readers) for r in (SOURCE, TARGET))
        if source is None or reference is None:
            return  # a DICOM series: the trainer checks the pair as it reads it
    else:
        source = volume_grid(case.images[SOURCE], readers)
        reference = volume_grid(case.images[TARGET], readers)
    try:
        condition = method.parse_condition(
            case_condition(workflow.method.condition, case.condition)
        )
        delivered = method.output_grid(source, condition)
    except Medi2iError:
        return  # the condition is checked, and refused, on its own
    if delivered.shape == source.shape == reference.shape:
        if what != "evaluation":  # (evaluation compares the files as stored, on its own)
            _require_pair_grid(case, source, reference, what)
        return
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


def _require_pair_grid(case: Case, source: Grid, reference: Grid, what: str) -> None:
    """A reference of its source's shape, for a method that keeps the grid, must hold
    the source's voxels (in any storage order: training and validation reorder both
    onto the working grid), or the trainer refuses the case once the run has begun."""
    from medi2i.grid import require_same_grid, same_voxels

    if same_voxels(reference, source):
        return
    require_same_grid(
        reference,
        source,
        what=f"{what} case {case.id!r}: the reference {case.images[TARGET]}",
        reference_name=f"its source {case.images[SOURCE]}",
        hint="resample the reference onto the source (a pair's volumes must share one grid)",
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
