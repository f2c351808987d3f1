"""The DICOM node's manifest records and its one log line per series.

The manifest is JSON Lines like batch's, one record appended per event::

    {"series_uid": "1.2.3", "study_uid": "1.2", "instances": 200, "calling_ae": ["SCANNER"],
     "status": "done", "outputs": [".../1.2.3/pix2pix"], "forwarded_to": "PACS@host:104",
     "forwarded": {"sent": 200, "failed": 0}, "error": null,
     "timings": {"receive": 3.1, "read": 0.2, "infer": 5.0, "write": 0.7, "send": 1.2},
     "time": "2025-01-31T..."}

``status`` is ``received`` (written before translating), ``done``, ``failed`` (with
``error``), ``skipped`` (not an image series, not what the selection rules ask for, or
a series that came back through forwarding, whose ``error`` says where its instances
are kept: :mod:`medi2i.dicom.node.lineage`),
``discarded`` (its association was aborted, or an instance of it was refused, and no
retry came: nothing was translated; ``error`` says where its instances are kept),
``interrupted`` (the node stopped while the series was being received; ``error`` says
where its instances are kept) or ``abandoned`` (a killed node left it in the spool; the
next node set it aside untranslated, and ``error`` says where). ``warnings`` lists the
warnings raised while the series was handled (pydicom's about odd values, say). ``outputs`` lists
what was written even when a later step failed (a forward), and ``forwarded`` counts
the derived files the peer stored and refused. ``replaces`` names the earlier derived
series a resent series replaced (how many instances it was made from, when, and where
it was sent, as far as known), ``null`` for a first translation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

SeriesStatus = Literal[
    "received", "done", "failed", "skipped", "discarded", "interrupted", "abandoned"
]


@dataclass(frozen=True)
class SeriesRecord:
    """One manifest line: the state of one received series after an event.

    ``note`` is not written to the manifest: it is what the log line adds (the manifest
    could not be written, say).
    """

    series_uid: str
    instances: int
    calling_ae: tuple[str, ...] = ()
    study_uid: str | None = None
    status: SeriesStatus = "received"
    outputs: tuple[str, ...] = ()
    forwarded_to: str | None = None
    forwarded: Mapping[str, int] | None = None
    error: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    replaces: str | None = None
    time: str = ""
    note: str | None = None

    def to_json(self) -> str:
        """The record as one JSON line (no newline)."""
        raw = asdict(self)
        raw.pop("note")
        forwarded = dict(self.forwarded) if self.forwarded is not None else None
        return json.dumps(
            {
                **raw,
                "calling_ae": list(self.calling_ae),
                "outputs": list(self.outputs),
                "forwarded": forwarded,
                "warnings": list(self.warnings),
            }
        )


def append_record(manifest: Path, record: SeriesRecord) -> SeriesRecord:
    """Stamp ``record`` with the time and append it to ``manifest`` as one flushed line.

    Raises:
        OSError: The manifest cannot be written (a read-only or full disk).
    """
    stamped = replace(record, time=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with manifest.open("a", encoding="utf-8") as stream:
        stream.write(stamped.to_json() + "\n")
        stream.flush()
        os.fsync(stream.fileno())
    return stamped


def describe(record: SeriesRecord) -> str:
    """The node's one log line for a series."""
    head = f"series {record.series_uid}: received {record.instances} instance(s)"
    if record.calling_ae:
        head += f" from {', '.join(record.calling_ae)}"
    if record.status == "done":
        seconds = sum(record.timings.get(stage, 0.0) for stage in ("read", "infer", "write"))
        parts = [f"translated in {seconds:.1f} s"]
        if record.outputs:
            parts.append(f"stored to {record.outputs[0]}")
        if record.forwarded_to:
            parts.append(f"sent to {record.forwarded_to}")
        if record.replaces:
            parts.append(f"replaces {record.replaces}")
        line = f"{head}; {'; '.join(parts)}"
    else:
        line = f"{head}; {record.status}: {record.error}"
    if record.warnings:
        more = f" (and {len(record.warnings) - 1} more)" if len(record.warnings) > 1 else ""
        line += f"; warning: {record.warnings[0]}{more}"
    return f"{line}; {record.note}" if record.note else line
