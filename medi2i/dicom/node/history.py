"""Which instances each series a DICOM node translated was made from.

A sender may deliver one series in several associations, hours apart, and a series
completes after ``--idle-timeout`` (see :mod:`medi2i.dicom.node.spool`): the part that
arrives later would then be translated alone and replace the derived series made from
the first part. So the node remembers, per series and method, the SOP Instance UIDs a
derived series was made from (pseudonyms when de-identifying), in one small JSON file
per series under ``<folder>/.medi2i-translated/`` (``folder`` is the node's ``--output``,
else its spool)::

    {"series": "1.2.3", "method": "pix2pix", "instances": ["1.2.3.1", "1.2.3.2"],
     "time": "2025-01-31T..."}

A later delivery of the series replaces that derived series only when it holds every
one of those instances (a full resend); otherwise it is refused
(:func:`partial_resend_message`), the earlier output is kept, and so are the instances
(set aside by the translator): deleting the series' file here lets them be translated
on their own when they are sent again.

It also remembers the Series Instance UID of every derived series the node wrote, one
empty file each under ``<folder>/.medi2i-translated/derived/``, so that the node knows
its own output when it comes back (a ``--forward`` peer that routes it back to the
node) and never translates it again (:meth:`SeriesHistory.produced`), nor a series
derived from it by another node (:mod:`medi2i.dicom.node.lineage`). A derived series of
another node (another medi2i included) made from other series is translated like any
series.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

FOLDER_NAME = ".medi2i-translated"
DERIVED_FOLDER = "derived"


@dataclass(frozen=True)
class SeriesHistory:
    """The instances translated series were made from, kept under ``root``.

    Attributes:
        root: The node's output folder, or its spool when it only forwards.
        method_id: The node's method (a series is remembered per method).
    """

    root: Path
    method_id: str

    def path(self, name: str) -> Path:
        """The file that remembers the instances of ``name``'s derived series."""
        return self._path(name)

    def _path(self, name: str) -> Path:
        safe = "".join(c if c.isalnum() or c in ".-_" else "_" for c in name)
        method = "".join(c if c.isalnum() or c in ".-_" else "_" for c in self.method_id)
        return self.root / FOLDER_NAME / f"{safe}--{method}.json"

    def earlier(self, name: str) -> frozenset[str] | None:
        """The instances the derived series of ``name`` was made from, or ``None``.

        A file that cannot be read counts as none (the node never refused a series
        because its own note was damaged).
        """
        try:
            found = json.loads(self._path(name).read_text(encoding="utf-8"))
            return frozenset(str(uid) for uid in found["instances"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remember(self, name: str, instances: Iterable[str]) -> None:
        """Note that the derived series of ``name`` was made from ``instances`` (atomic).

        Raises:
            OSError: The note cannot be written.
        """
        from medi2i.io.atomic import atomic_path

        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        note = {
            "series": name,
            "method": self.method_id,
            "instances": sorted(instances),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(note) + "\n", encoding="utf-8")

    def remember_output(self, series_uid: str) -> None:
        """Note that the node wrote a derived series with this Series Instance UID.

        Raises:
            OSError: The note cannot be written.
        """
        folder = self.root / FOLDER_NAME / DERIVED_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        (folder / _safe(series_uid)).touch()

    def produced(self, series_uid: str) -> bool:
        """Whether ``series_uid`` is a derived series this node wrote (any method)."""
        folder = self.root / FOLDER_NAME / DERIVED_FOLDER
        return bool(series_uid) and (folder / _safe(series_uid)).exists()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in ".-_" else "_" for c in name)


def partial_resend_message(earlier: frozenset[str], received: frozenset[str], note: Path) -> str:
    """Why instances that arrived after their series was translated are not translated,
    and what to do: ``note`` is the series' file under :data:`FOLDER_NAME`."""
    missing = len(earlier - received)
    return (
        f"{len(received)} instance(s) arrived after the series was translated from "
        f"{len(earlier)} instance(s), and {missing} of those are not among them: they are "
        "not a full resend, so nothing was translated and the earlier output is kept; send "
        "the whole series again to replace it, or, to translate these instances on their "
        f"own, delete {note} and send them again"
    )
