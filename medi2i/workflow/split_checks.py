"""The check that no file serves two splits, made before training.

Splits are drawn over subjects, so one subject's volumes never straddle training and
test; a CSV manifest (or two layouts) can still name one file under two cases, e.g. the
MR of training case ``demo000`` as the source of test case ``demo004``, and a subject
exported twice (a copied case folder) gives two cases the same volumes under other
names. The model would then be tested (or validated) on what it trained on. Files are
compared by their resolved paths (symbolic links and ``..`` followed) and, for the
images (not the masks: two subjects may have byte-identical masks), by content: their
bytes (:class:`SameContent`), then, for volumes saved again with other bytes
(re-compressed, converted to another format), their voxels (:class:`SameVoxels`).
Within one split a file may serve several cases (a common
mask), and validation and test may share files (a workflow that scores its validation
data).

Such a workflow is not refused, but it is said (:func:`evaluation_on_validation`):
the step kept in ``best-model/`` is chosen on the validation data, so scoring the same
cases gives no held-out test. Likewise an unpaired or multi-domain method evaluated on
the images it trained on (:func:`evaluation_on_training`): it never saw the pairing,
but it saw the images. ``medi2i validate --check-data`` and ``medi2i run`` warn in one
line each, and the report and the scored model's card say it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medi2i.workflow.loader import WorkflowError

if TYPE_CHECKING:
    from medi2i.data.cases import Case
    from medi2i.data.discovery import DataSplits
    from medi2i.grid import Grid
    from medi2i.workflow.schema import Workflow

Named = tuple[str, Sequence["Case"]]
"""A split's name (as the message shows it) and its cases."""
Use = tuple[str, str, str, str]
"""Where a file is read: the split, the case id, the role and the path as given."""
UNPAIRED_KINDS = ("unpaired", "multi-domain")
"""The data kinds whose training never sees which images pair up."""
_MASK = "mask"
"""The role compared by path only (two subjects may have byte-identical masks), as
:data:`medi2i.data.cases.MASK`."""


def check_split_files(workflow: Workflow, splits: DataSplits) -> None:
    """Refuse a file that a training case and a validation or test case both read
    (``data.validation_data`` counts as validation, ``evaluation.data`` as test), or an
    image of such a case with a training image's content (a subject exported twice):
    its bytes (:class:`SameContent`), or its voxels on its grid though the files differ
    (:class:`SameVoxels`: re-compressed, or saved again by another tool).

    Validation and test may share files (a workflow may score its validation data).
    Unpaired and multi-domain training never sees which images pair up, so its
    ``data.validation_data`` and ``evaluation.data`` may pair its training images (the
    Q3 workflows validate MNI152 under scanner B against MNI152 under A that way).

    Raises:
        WorkflowError: Naming the file (or both files), both cases, their splits and
            what to do.
    """
    trained: dict[str, Use] = {}
    for case in splits.train.cases:
        for role, path in case.images.items():
            trained.setdefault(os.path.realpath(path), ("training", case.id, role, str(path)))
    images = [real for real, use in trained.items() if use[2] != _MASK]
    same, voxels = SameContent(images), SameVoxels(images)
    for split, cases in _scored_splits(workflow, splits):
        for case in cases:
            for role, path in case.images.items():
                real = os.path.realpath(path)
                first = trained.get(real)
                if first is not None:
                    raise WorkflowError(_message(path, first, (split, case.id, role)))
                if role == _MASK:
                    continue
                second = (split, case.id, role, str(path))
                copied = same.match(real)
                if copied is not None:
                    raise WorkflowError(_copy_message(trained[copied], second))
                resaved = voxels.match(real)
                if resaved is not None:
                    raise WorkflowError(_copy_message(trained[resaved], second, voxels=True))


def _scored_splits(workflow: Workflow, splits: DataSplits) -> list[Named]:
    """The cases whose files must not be training files, by split (see
    :func:`check_split_files` for those of unpaired and multi-domain data)."""
    unpaired = workflow.data.kind in UNPAIRED_KINDS
    scored: list[Named] = [("test", splits.test.cases)]
    if not (unpaired and workflow.data.validation_data is not None):
        scored.append(("validation", splits.validation.cases))
    evaluation = workflow.evaluation
    if evaluation.enabled and evaluation.data is not None and not unpaired:
        from medi2i.data.discovery import discover_cases

        scored.append(("evaluation", discover_cases(evaluation.data).cases))
    return scored


def _message(path: object, first: Use, second: tuple[str, str, str]) -> str:
    shown = os.path.normpath(str(path))
    return (
        f"{shown} is the {first[2]} of {first[0]} case {first[1]!r} and the {second[2]} "
        f"of {second[0]} case {second[1]!r}: a model would be scored on a file it learnt "
        "from; give each case its own files (fix the layout or manifest), or put both "
        "cases in one split"
    )


def _copy_message(first: Use, second: Use, *, voxels: bool = False) -> str:
    same = "holds the same voxels on the same grid as" if voxels else "has the same content as"
    though = (
        " though the files differ (re-compressed, converted or saved again by another tool, "
        "or stored with its axes flipped or permuted)"
    )
    return (
        f"{os.path.normpath(second[3])} (the {second[2]} of {second[0]} case {second[1]!r}) "
        f"{same} {os.path.normpath(first[3])} (the {first[2]} of {first[0]} case "
        f"{first[1]!r}){though if voxels else ''}: one volume under two names, such as a "
        "subject exported twice, so a model would be scored on a volume it learnt from; "
        "remove the copy, or put both cases in one split"
    )


class SameContent:
    """Finds, among known files, one that holds the same bytes as another file.

    Sizes are compared first, and SHA-256 digests are computed only of files of equal
    size, each once, so that files of other sizes (most compressed volumes) are never
    read. A folder (a DICOM series) counts as its files: its size is theirs summed, its
    digest that of their relative names and contents. Files that cannot be read, and
    empty ones, match nothing (reading them fails on its own).

    Args:
        known: The resolved paths of the known files.
    """

    def __init__(self, known: Iterable[str]) -> None:
        self._by_size: dict[int, list[str]] = {}
        self._digests: dict[str, str | None] = {}
        for path in known:
            size = _size(path)
            if size:
                self._by_size.setdefault(size, []).append(path)

    def match(self, path: str) -> str | None:
        """A known file other than ``path`` (a resolved path) with its content, or
        ``None``."""
        size = _size(path)
        candidates = [known for known in self._by_size.get(size or 0, ()) if known != path]
        digest = self.digest(path) if candidates else None
        if digest is None:
            return None
        return next((known for known in candidates if self.digest(known) == digest), None)

    def digest(self, path: str) -> str | None:
        """The SHA-256 of a file's (or a folder's files') content, computed once."""
        if path not in self._digests:
            self._digests[path] = _digest(path)
        return self._digests[path]


def _size(path: str) -> int | None:
    try:
        if not os.path.isdir(path):
            return os.stat(path).st_size
        return sum(os.stat(file).st_size for file in _files_under(path))
    except OSError:
        return None


def _files_under(folder: str) -> list[str]:
    """The files under ``folder``, in a stable order."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(parent, name) for name in sorted(files)]
    return found


def _digest(path: str) -> str | None:
    import hashlib

    total = hashlib.sha256()
    try:
        if not os.path.isdir(path):
            return _file_digest(path)
        for file in _files_under(path):
            total.update(os.path.relpath(file, path).encode() + b"\0")
            total.update(_file_digest(file).encode())
    except OSError:
        return None
    return total.hexdigest()


def _file_digest(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class SameVoxels:
    """Finds, among known volumes, one that holds the same voxels as another volume
    saved with other bytes (re-compressed, or converted by another tool or format).

    Only NIfTI, NRRD and MetaImage files are compared (not DICOM series, nor plugin
    formats). Their grids are read from the headers first (shape, voxel size, origin and
    axes, within :data:`medi2i.grid.GRID_TOLERANCE_MM`, in any storage order: an axis
    flipped or axes permuted counts as the same grid); only volumes on a known volume's
    grid are read in full, one at a time, and hashed once each: SHA-256 of their float32
    values in the order of the nearest RAS axes, whatever their stored type. So a copy
    with a voxel changed, resampled, cropped or with rescaled values matches nothing,
    and memory holds one volume at a time. Unreadable files match nothing (reading them
    fails on its own).

    Args:
        known: The resolved paths of the known files.

    Example:
        >>> SameVoxels(["train/mr.nii.gz"]).match("test/mr.nrrd")  # doctest: +SKIP
        'train/mr.nii.gz'
    """

    def __init__(self, known: Iterable[str]) -> None:
        self._known = list(known)
        self._grids: dict[str, Grid | None] = {}
        self._digests: dict[str, str | None] = {}

    def match(self, path: str) -> str | None:
        """A known volume other than ``path`` (a resolved path) with its voxels on its
        grid, or ``None``."""
        from medi2i.grid import same_voxels

        grid = self.grid(path)
        if grid is None:
            return None
        candidates = [
            known
            for known in self._known
            if known != path
            and (other := self.grid(known)) is not None
            and same_voxels(other, grid)
        ]
        digest = self.digest(path) if candidates else None
        if digest is None:
            return None
        return next((known for known in candidates if self.digest(known) == digest), None)

    def grid(self, path: str) -> Grid | None:
        """The grid a volume's header states, read once; ``None`` for other files."""
        if path not in self._grids:
            self._grids[path] = _header_grid(path)
        return self._grids[path]

    def digest(self, path: str) -> str | None:
        """The SHA-256 of a volume's voxels (:func:`voxel_digest`), computed once."""
        if path not in self._digests:
            self._digests[path] = voxel_digest(path)
        return self._digests[path]


def _header_grid(path: str) -> Grid | None:
    from medi2i.io import builtin_readers, read_grid

    if os.path.isdir(path):
        return None
    from medi2i.errors import Medi2iError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the data checks warn about the file, once
            return read_grid(path, readers=builtin_readers())
    except (Medi2iError, OSError):
        return None


def voxel_digest(path: str) -> str | None:
    """The SHA-256 of a NIfTI, NRRD or MetaImage volume's float32 voxel values and
    shape, in the order of the nearest RAS axes (so a copy stored with an axis flipped
    or axes permuted has the same digest); ``None`` when it cannot be read."""
    import hashlib

    import numpy as np
    from nibabel.orientations import apply_orientation, io_orientation

    from medi2i.errors import Medi2iError
    from medi2i.io import builtin_readers, read_volume

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            volume = read_volume(path, readers=builtin_readers())
    except (Medi2iError, OSError, MemoryError):
        return None
    affine = np.asarray(volume.affine, dtype=np.float64)
    orientation = io_orientation(affine)  # type: ignore[no-untyped-call]
    values = apply_orientation(volume.numpy()[0], orientation)  # type: ignore[no-untyped-call]
    digest = hashlib.sha256(repr(values.shape).encode())
    for plane in values:  # a plane at a time: no second copy of the volume
        digest.update(np.ascontiguousarray(plane, dtype=np.float32).tobytes())
    return digest.hexdigest()


SCORED_ROLES = ("source", "target")
"""The roles that make a case the same data in two splits: its input and its reference
(a mask may be common to cases of every split)."""


@dataclass(frozen=True)
class ValidationOverlap:
    """Evaluation cases that read a validation case's source or target.

    Attributes:
        cases: Their ids, in evaluation order.
        total: How many cases the evaluation scores.
    """

    cases: tuple[str, ...]
    total: int

    @property
    def whole(self) -> bool:
        """Whether every evaluated case is validation data."""
        return len(self.cases) == self.total

    def named(self) -> str:
        """``the evaluation case a``, ``all 3 evaluation cases (a, b, c)`` or ``2 of 5
        evaluation cases (a, b)``: the first 5 ids, then ``and N more``."""
        from medi2i.workflow.scored_model import named_cases

        shown = named_cases(self.cases)
        if self.whole and self.total == 1:
            return f"the evaluation case {shown}"
        counted = f"all {self.total}" if self.whole else f"{len(self.cases)} of {self.total}"
        return f"{counted} evaluation cases ({shown})"

    def warning(self) -> str:
        """The one line ``medi2i validate --check-data`` and ``medi2i run`` print."""
        return (
            f"Warning: the evaluation data is the validation data: {self.named()} read a "
            "validation case's source or target; training validates on it and keeps "
            "best-model/ by it, so the evaluation's metrics are not a held-out test (to "
            "score cases the training never saw, evaluate a test split or evaluation.data "
            "of other cases)"
        )


def scored_files(images: Mapping[str, object]) -> set[str]:
    """The resolved paths of a case's source and target (see :data:`SCORED_ROLES`)."""
    return {os.path.realpath(str(images[role])) for role in SCORED_ROLES if role in images}


def shared_cases(
    evaluated: Iterable[tuple[str, Mapping[str, object]]], validated: set[str]
) -> ValidationOverlap | None:
    """The evaluated cases (id and files by role) whose source or target is among the
    ``validated`` files (resolved paths), or ``None`` when none is."""
    total, shared = 0, []
    for case_id, images in evaluated:
        total += 1
        if scored_files(images) & validated:
            shared.append(case_id)
    return ValidationOverlap(tuple(shared), total) if shared else None


def evaluation_on_validation(workflow: Workflow, splits: DataSplits) -> ValidationOverlap | None:
    """The evaluation cases (``evaluation.data``, else ``evaluation.split``) that are
    validation cases (``data.validation_data``, else the validation split): one reads a
    validation case's source or target, compared by resolved path. ``None`` when none
    does, when there is no validation data, or when the evaluation is off.
    """
    if not workflow.evaluation.enabled or not splits.validation.cases:
        return None
    cases = _evaluated_cases(workflow, splits)
    validated = set().union(*(scored_files(case.images) for case in splits.validation.cases))
    return shared_cases(((case.id, case.images) for case in cases), validated)


def _evaluated_cases(workflow: Workflow, splits: DataSplits) -> Sequence[Case]:
    """The cases the evaluate stage scores: ``evaluation.data``'s, else its split's."""
    evaluation = workflow.evaluation
    if evaluation.data is not None:
        from medi2i.data.discovery import discover_cases

        return discover_cases(evaluation.data).cases
    return splits.get(evaluation.split).cases


@dataclass(frozen=True)
class TrainingOverlap(ValidationOverlap):
    """Evaluation cases whose source or target is a training image of an unpaired or
    multi-domain method (by path or content): it never saw how they pair, but it saw
    them."""

    def warning(self) -> str:
        """The one line ``medi2i validate --check-data`` and ``medi2i run`` print."""
        return (
            "Warning: the evaluated images were training images of an unpaired/multi-domain "
            f"method: {self.named()} read a training volume as source or target; the "
            "pairing was never seen, but the images were; not a held-out test (to score "
            "images the training never saw, evaluate other subjects)"
        )


def training_images(cases: Iterable[Case]) -> list[str]:
    """The resolved paths of the training cases' images (every role but the mask)."""
    return [
        os.path.realpath(path)
        for case in cases
        for role, path in case.images.items()
        if role != _MASK
    ]


def cases_on_training(
    evaluated: Iterable[tuple[str, Mapping[str, object]]], trained: Iterable[str]
) -> TrainingOverlap | None:
    """The evaluated cases (id and files by role) whose source or target is one of the
    ``trained`` images (resolved paths), by path or content; ``None`` when none is."""
    known = set(trained)
    same, voxels = SameContent(known), SameVoxels(known)
    total, shared = 0, []
    for case_id, images in evaluated:
        total += 1
        files = scored_files(images)
        if files & known or any(
            same.match(path) is not None or voxels.match(path) is not None for path in files
        ):
            shared.append(case_id)
    return TrainingOverlap(tuple(shared), total) if shared else None


def evaluation_on_training(workflow: Workflow, splits: DataSplits) -> TrainingOverlap | None:
    """The evaluation cases of an unpaired or multi-domain workflow whose source or
    target is a training image (:func:`cases_on_training`); ``None`` when none is, for
    paired data (refused instead: :func:`check_split_files`), or when the evaluation
    is off."""
    if workflow.data.kind not in UNPAIRED_KINDS or not workflow.evaluation.enabled:
        return None
    cases = _evaluated_cases(workflow, splits)
    trained = training_images(splits.train.cases)
    return cases_on_training(((case.id, case.images) for case in cases), trained)
