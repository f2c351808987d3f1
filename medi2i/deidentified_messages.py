"""Messages of a de-identified batch that name no source: neutral references instead.

A de-identified batch (``medi2i batch --deidentify``) writes nothing under its output
root that names the source, and the manifest's ``error`` and ``reason`` texts are
messages written for a user, which name files, folders and series. :func:`neutral_message`
rewrites such a message for the manifest:

- a file of the study becomes ``slice 19 of series 1`` (its place in the series' slice
  order, which is also how ``medi2i dicom ls`` on the source counts), a file the scan
  skipped ``skipped file 2``; a file name may hold the patient's name
  (``DOE_JOHN_0019.dcm``);
- the input folders and folder names on a path become ``<input>`` and ``<folder>``;
- a quoted Series Description (``'T1 DOE JOHN'``) becomes ``series 1``, its Series Number;
- UIDs become ``<uid>`` and the Patient ID and name ``<patient>``.

The way back to the source is the linkage file, written only when asked for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medi2i.study_discovery import StudyJob

_UID_PATTERN = re.compile(r"\b\d+(?:\.\d+){3,}\b")
_BEFORE = r"(?<![\w.\-])"  # a name starts a word or follows a path separator
_AFTER = r"(?![\w\-]|\.\w)"  # and ends a word (a full stop after it is no part of it)


def neutral_message(message: str, job: StudyJob, input_root: Path) -> str:
    """``message`` with the source's files, folders, series descriptions, UIDs and
    patient identifiers replaced by neutral references (see the module docstring)."""
    table = _references(job, input_root)
    if table:
        names = sorted(table, key=len, reverse=True)
        pattern = re.compile(_BEFORE + "(?:" + "|".join(map(re.escape, names)) + ")" + _AFTER)
        message = pattern.sub(lambda match: table[match.group(0)], message)
    message = _UID_PATTERN.sub("<uid>", message)
    patient = {job.patient_id, job.patient_name, job.patient_name.replace("^", " ")}
    for name in sorted((n for n in patient if n.strip()), key=len, reverse=True):
        message = message.replace(name, "<patient>")
    return message


def _references(job: StudyJob, input_root: Path) -> dict[str, str]:
    """What to replace, by the text a message may hold."""
    table: dict[str, str] = {}
    for index, series in enumerate(job.study_series, start=1):
        number = series.series_number if series.series_number is not None else f"#{index}"
        reference = f"series {number}"
        if series.description.strip():
            table[f"'{series.description}'"] = reference
        for k, image in enumerate(series.images, start=1):
            _add(
                table, _file_names(image.path, image.name, image.label), f"slice {k} of {reference}"
            )
        for path in series.files:
            _add(table, _file_names(path), f"a file of {reference}")
    for k, item in enumerate(job.skipped, start=1):
        _add(table, _file_names(item.path, item.name), f"skipped file {k}")
    folders = {str(job.input), str(input_root)}
    folders |= {str(series.folder) for series in job.study_series if series.files}
    folders |= {os.path.realpath(folder) for folder in folders}
    _add(table, folders, "<input>")
    for path in _study_files(job):
        for part in _folders_below(path, input_root):
            table.setdefault(f"{part}/", "<folder>/")
    return table


def _file_names(path: Path, *names: str) -> set[str]:
    found = {str(path), path.name, os.path.realpath(path), *names}
    # a name of digits (``0019``) names nobody and would replace numbers in the text
    return {name for name in found if name and not name.replace(".", "").isdigit()}


def _add(table: dict[str, str], names: Iterable[str], reference: str) -> None:
    for name in names:
        if name and name != ".":
            table.setdefault(name, reference)


def _study_files(job: StudyJob) -> list[Path]:
    paths = [path for series in job.study_series for path in series.files]
    paths += [image.path for series in job.study_series for image in series.images]
    return paths + [item.path for item in job.skipped]


def _folders_below(path: Path, root: Path) -> tuple[str, ...]:
    """The names of the folders between ``root`` and the file ``path``."""
    try:
        parts = path.parent.relative_to(root).parts
    except ValueError:
        parts = path.parent.parts
    return tuple(part for part in parts if part not in (os.sep, "..", "."))
