"""The check that no file serves two splits, made before training.

Splits are drawn over subjects, so one subject's volumes never straddle training and
test; a CSV manifest (or two layouts) can still name one file under two cases, e.g. the
MR of training case ``demo000`` as the source of test case ``demo004``. The model would
then be tested (or validated) on what it trained on. Files are compared by their
resolved paths (symbolic links and ``..`` followed), not by content. Within one split
a file may serve several cases (a common mask), and validation and test may share
files (a workflow that scores its validation data).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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
