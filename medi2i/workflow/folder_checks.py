"""Checks on the folders a workflow reads and writes, made when it is loaded.

Two roles or domains of a folders layout read from one folder (the MR volumes serving
as the CT domain too) train a method on nonsense without any error, and an output root
inside a synthrad root puts run folders among the case folders a later discovery reads.
Both are refused with the key to change.
"""

from __future__ import annotations

import os
from pathlib import Path

from medi2i.workflow.schema import CsvLayout, FoldersLayout, SynthradLayout, Workflow

Key = str | int
KeyPath = tuple[Key, ...]
Problem = tuple[KeyPath, str]
Layout = SynthradLayout | FoldersLayout | CsvLayout


def folder_problems(workflow: Workflow) -> list[Problem]:
    """Layouts reading one folder (or file stem) for two roles or domains, and an
    ``output.root`` inside a data folder the workflow reads."""
    problems = [
        problem
        for where, layout in _layouts(workflow)
        if (problem := _shared_source(where, layout)) is not None
    ]
    problem = _output_inside_data(workflow)
    return problems if problem is None else [*problems, problem]


def _layouts(workflow: Workflow) -> list[tuple[KeyPath, Layout]]:
    """Every layout the workflow reads, with its key path."""
    data = workflow.data
    found: list[tuple[KeyPath, Layout | None]] = [
        (("data", "layout"), data.layout),
        (("data", "validation_data"), data.validation_data),
        (("data", "unlabelled_data"), data.unlabelled_data),
    ]
    evaluation = workflow.evaluation.data
    if evaluation is not None:
        found += [
            (("evaluation", "data", "layout"), evaluation.layout),
            (("evaluation", "data", "validation_data"), evaluation.validation_data),
        ]
    if workflow.adaptation is not None:
        found.append((("adaptation", "data"), workflow.adaptation.data))
    return [(where, layout) for where, layout in found if layout is not None]


def _shared_source(where: KeyPath, layout: Layout) -> Problem | None:
    # a synthrad layout whose source and target share a stem is left alone: a method that
    # learns nothing is evaluated that way against its own input (the plugin template's
    # predict-only example)
    if isinstance(layout, FoldersLayout):
        seen: dict[str, str] = {}
        for key, folder in layout.folders.items():
            real = _real(folder)
            if real in seen:
                message = (
                    f"{seen[real]!r} and {key!r} both read the folder {folder}: the volumes "
                    "of one would serve as the other's too; give each its own folder"
                )
                return ((*where, "folders", key), message)
            seen[real] = key
    return None


def _output_inside_data(workflow: Workflow) -> Problem | None:
    root = _real(workflow.output.root)
    for where, layout in _layouts(workflow):
        for key, folder in _read_folders(layout):
            real = _real(folder)
            if root == real or root.startswith(real.rstrip(os.sep) + os.sep):
                message = (
                    f"{workflow.output.root} is inside the data folder {folder} "
                    f"({'.'.join(map(str, (*where, *key)))}): run folders would be written "
                    "among the cases; choose an output.root outside it"
                )
                return (("output", "root"), message)
    return None


def _read_folders(layout: Layout) -> list[tuple[KeyPath, Path]]:
    """The folders whose subfolders are a layout's cases: a synthrad root, where a run
    folder would sit among the case folders. (A folders layout reads the files of its
    folders, not their subfolders, and a CSV's cases may lie anywhere: none.)"""
    if isinstance(layout, SynthradLayout):
        return [(("root",), layout.root)]
    return []


def _real(path: Path) -> str:
    """The path with symbolic links and ``..`` resolved (it need not exist)."""
    return os.path.realpath(path.expanduser())
