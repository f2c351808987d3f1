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
(:func:`partial_resend_message`: the earlier derived series lacks them and is
incomplete; the remedy is to delete the series' file here and send the whole series
again), the earlier output is kept, and so are the instances (set aside by the
translator).

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


@dataclass(frozen=True)
class EarlierSeries:
    """What the node remembers of a derived series it made.

    Attributes:
        instances: The SOP Instance UIDs it was made from.
        time: When it was made (UTC, ISO 8601), or ``""`` when not known.
        sent_to: The ``--forward`` peer that stored it in full, or ``""``.
    """

    instances: frozenset[str]
    time: str = ""
    sent_to: str = ""

    def describe(self) -> str:
        """``'made from 19 instance(s) at 2025-...; sent to PACS@host:104'``."""
        text = f"made from {len(self.instances)} instance(s)"
        text += f" at {self.time}" if self.time else ""
        return text + (f", sent to {self.sent_to}" if self.sent_to else "")


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
        """The instances the derived series of ``name`` was made from, or ``None``."""
        found = self.earlier_series(name)
        return None if found is None else found.instances

    def earlier_series(self, name: str) -> EarlierSeries | None:
        """What the node remembers of the derived series of ``name``, or ``None``.

        A file that cannot be read counts as none (the node never refused a series
        because its own note was damaged).
        """
        try:
            found = json.loads(self._path(name).read_text(encoding="utf-8"))
            instances = frozenset(str(uid) for uid in found["instances"])
            return EarlierSeries(
                instances, str(found.get("time", "")), str(found.get("sent_to", ""))
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def note_sent(self, name: str, peer: str) -> None:
        """Add to the note of ``name`` that ``peer`` stored its derived series in full
        (best effort: a note that cannot be rewritten stays as it is)."""
        from medi2i.io.atomic import atomic_path

        path = self._path(name)
        try:
            note = json.loads(path.read_text(encoding="utf-8"))
            note["sent_to"] = peer
            with atomic_path(path) as temporary:
                temporary.write_text(json.dumps(note) + "\n", encoding="utf-8")
        except (OSError, ValueError, TypeError):
            return

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


def partial_resend_message(
    earlier: EarlierSeries, received: frozenset[str], note: Path, stored_in: str | None
) -> str:
    """Why instances that arrived after their series was translated are not translated,
    and what to do: ``note`` is the series' file under :data:`FOLDER_NAME`,
    ``stored_in`` where the earlier derived series is (``None`` when only forwarded).

    The earlier derived series was made from part of the series (the sender paused
    longer than ``--idle-timeout`` between associations) and lacks these instances:
    translating them alone would make another partial series, so the remedy is to
    send the whole series again.
    """
    where = f", stored in {stored_in}" if stored_in else ""
    return (
        f"{len(received)} instance(s) arrived after this series was translated; the "
        f"derived series already made from it ({earlier.describe()}{where}) lacks these "
        f"{len(received)} instance(s) and is INCOMPLETE. Nothing was translated from them "
        f"and the earlier output is kept. To fix it, delete {note} and send the WHOLE "
        "series again (every instance): it replaces the incomplete derived series. Do "
        "not send only these instances: translated alone they make another partial "
        "series. A sender that pauses between associations longer than the node's "
        "--idle-timeout splits a series this way: give the node a longer --idle-timeout"
    )
