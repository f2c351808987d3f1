"""Subjects, the unit that splits keep together, and what every layout shares about them.

A subject is named by an id compared in Unicode NFC (:func:`subject_id`), so that a
file name written decomposed (macOS) matches the same id written composed in a
workflow file or CSV manifest. The layout readers of :mod:`medi2i.data.discovery` and
:mod:`medi2i.data.csv_manifest` gather each subject's cases and report the incomplete
ones all at once (:func:`_raise_incomplete`), with the way to leave a case out.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from medi2i.data.cases import Case
from medi2i.errors import InputError

LEAVE_OUT = "to leave the case out, give data.include glob patterns that do not match it"
"""How a case is left out, for the messages about an incomplete one."""


def subject_id(text: str) -> str:
    """A subject or case id as ids are compared: Unicode NFC, so that ``é`` written
    decomposed in a macOS file name matches ``é`` in the workflow file.

    Example:
        >>> subject_id("sub-02 e\u0301") == "sub-02 \u00e9"
        True
    """
    return unicodedata.normalize("NFC", text)


@dataclass(frozen=True)
class Subject:
    """The cases of one subject, the unit that splits keep together."""

    id: str
    cases: tuple[Case, ...]


def _raise_incomplete(problems: Sequence[str], *, note: str = "") -> None:
    """Raise every incomplete case at once: one line each, then their count, then
    ``note`` (a way out that holds for all of them), if any."""
    end = f"\n{note}" if note else ""
    if len(problems) == 1:
        raise InputError(problems[0] + end)
    if problems:
        raise InputError("\n".join(problems) + f"\n{len(problems)} incomplete cases{end}")
