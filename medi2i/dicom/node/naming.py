"""How a DICOM node names a source series in what it writes and prints.

Without de-identification a series is named by its Series Instance UID and messages
are written as they are. With it (``medi2i dicom serve --deidentify``) nothing the node
writes or prints may name the source, as in ``medi2i batch --deidentify``
(:mod:`medi2i.deidentified_messages`): every UID is replaced by its salted pseudonym
(:meth:`medi2i.dicom.writing.deidentify.Deidentifier.uid`, the one the derived series
carries, stable across runs with the same salt), so a Series, Study, SOP Instance or
Frame of Reference UID in a message, and a spool file name (``<SOP Instance UID>.dcm``),
become pseudonyms (not an IPv4 address such as a peer's); quoted Series Descriptions
become ``'<description>'``.

Pseudonyms this object made are left as they are, so a message may name a folder the
node made with a pseudonym (``.failed-<time>-<pseudonym>``) and still point to it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medi2i.dicom.writing.deidentify import Deidentifier

_UID = re.compile(r"(?<![\w.])\d+(?:\.\d+){3,}(?![\w]|\.\d)")
_IPV4 = re.compile(
    r"^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"
)
_MIN_BARE = 6  # a description shorter than this is replaced only where quoted
HIDDEN_DESCRIPTION = "<description>"


class SourceNames:
    """Names of source series for the node's manifest, folders and log lines.

    Args:
        deidentifier: The salted pseudonyms to use, or ``None`` to name the source.

    Example:
        >>> SourceNames(None).uid("1.2.3.4")
        '1.2.3.4'
    """

    def __init__(self, deidentifier: Deidentifier | None) -> None:
        self._deidentifier = deidentifier
        self._made: set[str] = set()
        self._lock = threading.Lock()

    @property
    def hiding(self) -> bool:
        """Whether the source is hidden (de-identifying)."""
        return self._deidentifier is not None

    def uid(self, uid: str) -> str:
        """``uid``, or its pseudonym when hiding the source."""
        if self._deidentifier is None or not uid:
            return uid
        pseudonym = self._deidentifier.uid(uid)
        with self._lock:
            self._made.add(pseudonym)
        return pseudonym

    def optional_uid(self, uid: str | None) -> str | None:
        """:meth:`uid` of a UID that may be missing."""
        return None if uid is None else self.uid(uid)

    def text(self, message: str, *, descriptions: Iterable[str] = ()) -> str:
        """``message`` naming no source when hiding it (see the module docstring)."""
        if self._deidentifier is None:
            return message
        for description in sorted({d for d in descriptions if d.strip()}, key=len, reverse=True):
            message = message.replace(f"'{description}'", f"'{HIDDEN_DESCRIPTION}'")
            if len(description.strip()) >= _MIN_BARE:
                message = message.replace(description, HIDDEN_DESCRIPTION)
        return _UID.sub(self._pseudonym_of_match, message)

    def _pseudonym_of_match(self, match: re.Match[str]) -> str:
        found = match.group(0)
        if _IPV4.match(found):  # a peer's address, no UID of the source
            return found
        with self._lock:
            if found in self._made:
                return found
        return self.uid(found)
