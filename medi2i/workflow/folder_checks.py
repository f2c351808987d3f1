"""Checks on the folders a workflow reads and writes, made when it is loaded.

Two roles or domains of a folders layout read from one folder (the MR volumes serving
as the CT domain too) train a method on nonsense without any error, and an output root
(or a ``--run-dir``) inside a folder the workflow reads puts run folders among the
user's volumes (or into an input model folder), where a later discovery may read them.
Both are refused with the key to change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
    for read in read_folders(workflow):
        if _among(root, read):
            where = "is" if root == _real(read.folder) else "is inside"
            message = (
                f"{workflow.output.root} {where} the {read.what} {read.folder} "
                f"({read.key}): run folders would be written {read.among}; choose an "
                "output.root outside it"
            )
            return (("output", "root"), message)
    return None


def run_dir_problem(workflow: Workflow, run_dir: Path) -> str | None:
    """Why ``--run-dir`` may not be ``run_dir``: it is, or lies inside, a folder the
    workflow reads (the rule of ``output.root``, :func:`read_folders`); else ``None``."""
    real = _real(run_dir)
    for read in read_folders(workflow):
        if real == _real(read.folder) or _among(os.path.dirname(real), read):
            where = "is" if real == _real(read.folder) else "is inside"
            return (
                f"--run-dir {run_dir} {where} the {read.what} {read.folder} ({read.key}): "
                f"the run would write {read.among}; nothing was written: choose a --run-dir "
                "outside it"
            )
    return None


@dataclass(frozen=True)
class ReadFolder:
    """A folder a workflow reads, that no run folder may lie in.

    Attributes:
        key: The workflow key that names it (e.g. ``data.layout.folders.source``).
        folder: The folder.
        what: What it is, for messages (``data folder``, ``model folder``).
        among: Where a run folder there would write, for messages.
        nested_ok: Only a run folder directly in it is refused, not one in a subfolder
            (the folder of a CSV manifest that lists files beside itself: a CSV reads
            only the files it names, and ``runs/`` next to it is where a project keeps
            its runs).
    """

    key: str
    folder: Path
    what: str = "data folder"
    among: str = "among the cases"
    nested_ok: bool = False


def read_folders(workflow: Workflow) -> list[ReadFolder]:
    """The folders the workflow reads, for every layout it names, and its input model
    folders (``method.model``, ``method.init_from``): a synthrad root, each folder of a
    ``folders`` layout, the folders of the files a CSV lists."""
    found = [
        read
        for where, layout in _layouts(workflow)
        for read in _layout_folders(".".join(map(str, where)), layout)
    ]
    method = workflow.method
    for key, model in (("method.model", method.model), ("method.init_from", method.init_from)):
        if model is not None:
            found.append(ReadFolder(key, model, "model folder", "into the input model"))
    return found


def _layout_folders(key: str, layout: Layout) -> list[ReadFolder]:
    if isinstance(layout, SynthradLayout):
        return [ReadFolder(f"{key}.root", layout.root)]
    if isinstance(layout, FoldersLayout):
        return [ReadFolder(f"{key}.folders.{role}", path) for role, path in layout.folders.items()]
    manifest = layout.manifest
    beside = _real(manifest.parent)
    return [
        ReadFolder(
            f"{key}.manifest",
            folder,
            "folder of listed volumes",
            "among the listed volumes",
            nested_ok=_real(folder) == beside,
        )
        for folder in _manifest_folders(manifest)
    ]


def _manifest_folders(manifest: Path) -> list[Path]:
    """The folders of the files a CSV manifest lists (none when it cannot be read: data
    discovery reports that)."""
    from medi2i.data.csv_manifest import listed_paths

    folders: dict[str, Path] = {}
    for path in listed_paths(manifest):
        folder = Path(os.path.normpath(path.parent))
        folders.setdefault(_real(folder), folder)
    return list(folders.values())


def _among(root: str, read: ReadFolder) -> bool:
    """Whether run folders made in ``root`` would lie in ``read``'s folder."""
    folder = _real(read.folder)
    if root == folder:
        return True
    return not read.nested_ok and root.startswith(folder.rstrip(os.sep) + os.sep)


def _real(path: Path | str) -> str:
    """The path with symbolic links and ``..`` resolved (it need not exist)."""
    return os.path.realpath(Path(path).expanduser())
