"""The check that no file serves two splits, made before training.

Splits are drawn over subjects, so one subject's volumes never straddle training and
test; a CSV manifest (or two layouts) can still name one file under two cases, e.g. the
MR of training case ``demo000`` as the source of test case ``demo004``. The model would
then be tested (or validated) on what it trained on. Files are compared by their
resolved paths (symbolic links and ``..`` followed), not by content. Within one split
a file may serve several cases (a common mask), and validation and test may share
files (a workflow that scores its validation data).

Such a workflow is not refused, but it is said (:func:`evaluation_on_validation`):
the step kept in ``best-model/`` is chosen on the validation data, so scoring the same
cases gives no held-out test. ``medi2i validate --check-data`` and ``medi2i run`` warn
in one line, and the report and the scored model's card say it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medi2i.workflow.loader import WorkflowError

if TYPE_CHECKING:
    from medi2i.data.cases import Case
    from medi2i.data.discovery import DataSplits
    from medi2i.workflow.schema import Workflow

Named = tuple[str, Sequence["Case"]]
"""A split's name (as the message shows it) and its cases."""


def check_split_files(workflow: Workflow, splits: DataSplits) -> None:
    """Refuse a file that a training case and a validation or test case both read
    (``data.validation_data`` counts as validation, ``evaluation.data`` as test).

    Validation and test may share files (a workflow may score its validation data).
    Unpaired and multi-domain training never sees which images pair up, so its
    ``data.validation_data`` and ``evaluation.data`` may pair its training images (the
    Q3 workflows validate MNI152 under scanner B against MNI152 under A that way).

    Raises:
        WorkflowError: Naming the file, both cases, their splits and what to do.
    """
    unpaired = workflow.data.kind in ("unpaired", "multi-domain")
    scored: list[Named] = [("test", splits.test.cases)]
    if not (unpaired and workflow.data.validation_data is not None):
        scored.append(("validation", splits.validation.cases))
    evaluation = workflow.evaluation
    if evaluation.enabled and evaluation.data is not None and not unpaired:
        from medi2i.data.discovery import discover_cases

        scored.append(("evaluation", discover_cases(evaluation.data).cases))
    trained: dict[str, tuple[str, str, str]] = {}
    for case in splits.train.cases:
        for role, path in case.images.items():
            trained.setdefault(os.path.realpath(path), ("training", case.id, role))
    for split, cases in scored:
        for case in cases:
            for role, path in case.images.items():
                first = trained.get(os.path.realpath(path))
                if first is not None:
                    raise WorkflowError(_message(path, first, (split, case.id, role)))


def _message(path: object, first: tuple[str, str, str], second: tuple[str, str, str]) -> str:
    shown = os.path.normpath(str(path))
    return (
        f"{shown} is the {first[2]} of {first[0]} case {first[1]!r} and the {second[2]} "
        f"of {second[0]} case {second[1]!r}: a model would be scored on a file it learnt "
        "from; give each case its own files (fix the layout or manifest), or put both "
        "cases in one split"
    )


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

    def counted(self) -> str:
        """``all 3 evaluation cases`` or ``2 of 5 evaluation cases (a, b)``."""
        if self.whole:
            noun = "case" if self.total == 1 else "cases"
            return f"{'the' if self.total == 1 else f'all {self.total}'} evaluation {noun}"
        shown = ", ".join(self.cases[:5]) + (", ..." if len(self.cases) > 5 else "")
        return f"{len(self.cases)} of {self.total} evaluation cases ({shown})"

    def warning(self) -> str:
        """The one line ``medi2i validate --check-data`` and ``medi2i run`` print."""
        return (
            f"warning: the evaluation data is the validation data ({self.counted()} read "
            "a validation case's source or target): training validates on it and keeps "
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
    evaluation = workflow.evaluation
    if not evaluation.enabled or not splits.validation.cases:
        return None
    if evaluation.data is not None:
        from medi2i.data.discovery import discover_cases

        cases: Sequence[Case] = discover_cases(evaluation.data).cases
    else:
        cases = splits.get(evaluation.split).cases
    validated = set().union(*(scored_files(case.images) for case in splits.validation.cases))
    return shared_cases(((case.id, case.images) for case in cases), validated)
