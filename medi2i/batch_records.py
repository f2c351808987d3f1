"""The records a batch appends to: its manifest and its linkage file.

:class:`Manifest` reads and appends the JSON Lines manifest of
:func:`medi2i.batch.run_batch` (one :class:`StudyRecord` per event; the module
docstring of :mod:`medi2i.batch` describes the format), and
:func:`check_same_batch` refuses to resume from a manifest of another batch or another
configuration (:func:`batch_configuration`). Both files are only ever
appended to, so each refuses, before any work, an existing file that is not one of its
kind: appending would change a file of the user's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from medi2i.errors import OptionsError, OutputError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from medi2i.method import Method
    from medi2i.settings import InferenceSettings

Status = Literal["started", "done", "partial", "failed", "skipped"]

ALREADY_DONE = "finished by an earlier run"
"""The ``reason`` of a study a rerun skips because an earlier run finished it; the
summary counts these apart (``already done``) from studies with nothing to translate."""


@dataclass(frozen=True)
class StudyRecord:
    """One manifest line: the state of one study after an event.

    Attributes:
        study: The study's output folder, relative to the output root.
        input: The folder of the selected source series (the study's, if none);
            ``None`` when de-identifying.
        series_uid: Series Instance UID of the selected series (its pseudonym when
            de-identifying).
        outputs: Paths written (series folders and files).
        status: ``started``, ``done``, ``partial``, ``failed`` or ``skipped``.
        error: What went wrong, for ``failed`` and ``partial``.
        timings: Seconds per stage: ``read``, ``predict``, ``write``.
        time: When the record was written (UTC, ISO 8601).
        reason: Why the study was skipped.
        configuration: What decided the outputs besides the input
            (:func:`batch_configuration`); a batch root holds one configuration.
        contents: ``[files, bytes]`` of each output as written (a series folder's
            files, counted and summed), by path: a resume redoes a study whose outputs
            no longer match. ``None`` in records of earlier versions.
    """

    study: str
    input: str | None
    series_uid: str | None
    outputs: tuple[str, ...] = ()
    status: Status = "started"
    error: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    time: str = ""
    reason: str | None = None
    configuration: Mapping[str, object] | None = None
    contents: Mapping[str, list[int]] | None = None

    def to_json(self) -> str:
        """The record as one JSON line (no newline)."""
        configuration = dict(self.configuration) if self.configuration is not None else None
        contents = dict(self.contents) if self.contents is not None else None
        return json.dumps(
            {
                **asdict(self),
                "outputs": list(self.outputs),
                "configuration": configuration,
                "contents": contents,
            }
        )

    @classmethod
    def from_json(cls, line: str) -> StudyRecord:
        """Parse a line written by :meth:`to_json`."""
        raw = json.loads(line)
        return cls(**{**raw, "outputs": tuple(raw.get("outputs") or ())})


def output_contents(path: Path) -> list[int]:
    """``[files, bytes]`` of an output: one file, or every file in a series folder (a
    cheap check that nothing was removed or cut short since it was written)."""
    path = Path(path)
    try:
        files = [item for item in path.rglob("*") if item.is_file()] if path.is_dir() else [path]
        return [len(files), sum(item.stat().st_size for item in files)]
    except OSError:
        return [0, 0]


@dataclass(frozen=True)
class BatchReport:
    """The final record of every study a batch run handled, in processing order."""

    manifest: Path
    records: tuple[StudyRecord, ...]

    def with_status(self, status: Status) -> list[StudyRecord]:
        """The records whose final status is ``status``."""
        return [record for record in self.records if record.status == status]

    @property
    def failed(self) -> list[StudyRecord]:
        """Studies that failed in this run, in full or in part (``partial``)."""
        return [r for r in self.records if r.status in ("failed", "partial")]

    @property
    def already_done(self) -> list[StudyRecord]:
        """Studies this run skipped because an earlier run finished them."""
        return [r for r in self.with_status("skipped") if r.reason == ALREADY_DONE]

    def summary(self) -> str:
        """One line such as ``3 studies: 1 done, 1 skipped, 1 failed``, with ``already
        done`` (finished by an earlier run) and ``partial`` when some study has them;
        ``skipped`` counts the studies with nothing to translate."""
        earlier = len(self.already_done)
        counts = {
            "done": len(self.with_status("done")),
            "already done": earlier,
            "skipped": len(self.with_status("skipped")) - earlier,
            "partial": len(self.with_status("partial")),
            "failed": len(self.with_status("failed")),
        }
        shown = [
            f"{count} {name}"
            for name, count in counts.items()
            if count or name not in ("already done", "partial")
        ]
        return f"{len(self.records)} studies: {', '.join(shown)}"


class Manifest:
    """The append-only JSON Lines manifest and the last record of each study in it."""

    def __init__(self, path: Path) -> None:
        """Read the records of ``path`` when it exists.

        Raises:
            OutputError: ``path`` is not a manifest (it is a folder, not UTF-8 text, or
                holds no record): appending to it would change a file of the user's.
        """
        self.path = Path(path)
        self.latest: dict[str, StudyRecord] = {}
        if not (self.path.exists() or self.path.is_symlink()):
            return
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise self._not_a_manifest(why) from exc
        for line in lines:
            record = _parse(line)
            if record is not None:
                self.latest[record.study] = record
        if not self.latest and any(line.strip() for line in lines):
            raise self._not_a_manifest("it holds no study record")

    def _not_a_manifest(self, why: str) -> OutputError:
        return OutputError(
            f"{self.path} is not a medi2i batch manifest ({why}); the batch appends to its "
            "manifest, so give --manifest a new file or the manifest of an earlier batch"
        )

    def append(self, record: StudyRecord) -> StudyRecord:
        """Stamp ``record`` with the time, append it as one line and flush it to disk."""
        stamped = replace(record, time=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as stream:
                stream.write(stamped.to_json() + "\n")
                stream.flush()
                os.fsync(stream.fileno())
        except OSError as exc:  # a read-only or full output root: one line, no traceback
            raise OutputError(
                f"cannot write the batch manifest {self.path}: {exc.strerror or exc}; the "
                "batch records every study there, so give an output folder (or --manifest) "
                "you can write to, with free space"
            ) from exc
        self.latest[stamped.study] = stamped
        return stamped


OUTPUT_SETTINGS = (
    "roi_size",
    "overlap",
    "blend",
    "sigma_scale",
    "mirror_axes",
    "reflect_padding",
    "nonfinite",
)
"""Inference settings that change a batch's outputs besides the seed; the device,
``amp``, ``sw_batch_size`` and progress do not enter its configuration."""


def batch_configuration(
    method: Method,
    *,
    model: Path | None,
    condition: BaseModel | None,
    settings: InferenceSettings,
    deidentify: bool,
) -> dict[str, object]:
    """What decides a batch's outputs besides its inputs, as each manifest record keeps
    it: the method and its version, the model (the SHA-256 of its ``medi2i-model.json``,
    which holds the weights' hash and fitted values, or of its ONNX file), the seed,
    de-identification, and digests of the options, condition and :data:`OUTPUT_SETTINGS`.
    Digests, not values, so that a de-identified manifest names no path an option or a
    condition holds."""
    from medi2i.hashing import file_sha256
    from medi2i.model_folder import MANIFEST
    from medi2i.onnx_model import is_onnx_model

    identity = None
    if model is not None:
        identity = file_sha256(model if is_onnx_model(model) else Path(model) / MANIFEST)
    chosen = settings.model_dump(mode="json", include=set(OUTPUT_SETTINGS))
    if not any(settings.reflect_padding):
        del chosen["reflect_padding"]  # off: the digest of batches begun before the setting
    return {
        "method": f"{method.id} {method.version}",
        "model": identity[:16] if identity else None,
        "options": _digest(method.options.model_dump(mode="json")),
        "condition": _digest(condition.model_dump(mode="json") if condition else None),
        "seed": settings.seed,
        "settings": _digest(chosen),
        "deidentify": deidentify,
    }


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_same_batch(book: Manifest, configuration: Mapping[str, object], root: Path) -> None:
    """Refuse to resume from ``book`` a batch whose results are not this one's: outputs
    recorded outside the output ``root`` (the manifest of another batch), or made
    under another configuration (:func:`batch_configuration`). Records without
    outputs (failed, interrupted) are redone whatever made them.

    Raises:
        OutputError: One line naming the manifest, what differs, and what to do.
    """
    where = Path(os.path.realpath(root))
    for record in book.latest.values():
        foreign = next(
            (o for o in record.outputs if not Path(os.path.realpath(o)).is_relative_to(where)),
            None,
        )
        if foreign is not None:
            raise OutputError(
                f"the manifest {book.path} records outputs outside the output root {root} "
                f"({foreign}): it is another batch's; give the output root it belongs to, "
                "or leave --manifest out (or give a new file) to start this batch afresh"
            )
    for record in book.latest.values():
        if record.outputs and record.configuration != configuration:
            raise OutputError(
                f"{root} holds results of another configuration ("
                f"{_difference(record.configuration, configuration)}; manifest {book.path}): "
                "a batch root holds one configuration, so give this run another output root, "
                "or rerun with the method, model, options, condition and settings of that "
                "batch to resume it"
            )


_OTHER = {
    "model": "another model",
    "options": "other options",
    "condition": "another condition",
    "settings": "other window settings",
}


def _difference(earlier: Mapping[str, object] | None, now: Mapping[str, object]) -> str:
    """What differs between two configurations, for the refusal's one line."""
    if earlier is None:
        return "recorded without its configuration by an earlier medi2i"
    # another method has other options and conditions anyway: name the method alone
    keys = ["method"] if earlier.get("method") != now.get("method") else list(now)
    shown = []
    for key in (k for k in keys if earlier.get(k) != now[k]):
        if key == "deidentify":
            shown.append("de-identified there" if earlier.get(key) else "de-identified now")
        else:
            shown.append(_OTHER.get(key) or f"{key} {earlier.get(key)} there, {now[key]} now")
    return ", ".join(shown) or "another medi2i's record"


def _parse(line: str) -> StudyRecord | None:
    # only a line cut short by a crash fails to parse, and it said "started" at most
    try:
        return StudyRecord.from_json(line) if line.strip() else None
    except (ValueError, TypeError):
        return None


def check_linkage(
    linkage: Path | None, output_root: Path, input_root: Path, *, deidentify: bool
) -> None:
    if linkage is None:
        return
    if not deidentify:
        raise OptionsError(
            "--linkage-file links de-identified outputs to their sources; pass --deidentify "
            "with it, or leave it out"
        )
    where = Path(os.path.realpath(linkage))
    for folder, what in ((output_root, "output"), (input_root, "input")):
        if where.is_relative_to(os.path.realpath(folder)):
            raise OutputError(
                f"--linkage-file {linkage} lies inside the {what} root {folder}: "
                + (
                    "it would put the way back to the patients next to the de-identified outputs"
                    if what == "output"
                    else "inputs are never written"
                )
                + "; give a path outside both, e.g. in a folder only you can read"
            )
    _require_linkage_file(linkage)


def _require_linkage_file(linkage: Path) -> None:
    """Refuse an existing file that is not a linkage file: it is appended to, so a file
    of the user's under that name (an input, notes) would be changed. A line cut short
    by a crash is not held against an earlier linkage file."""
    if not (linkage.exists() or linkage.is_symlink()):
        return
    try:
        lines = [line for line in linkage.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):  # a folder, not UTF-8
        lines = ["not text"]
    links = [_json_or_none(line) for line in lines]
    if lines and not any(
        isinstance(link, dict) and "study_uid_pseudonym" in link for link in links
    ):
        raise OutputError(
            f"--linkage-file {linkage} exists and is not the linkage file of an earlier "
            "de-identified batch; the batch appends to it, so give a new file or an earlier "
            "linkage file"
        )


def _json_or_none(line: str) -> object:
    try:
        return json.loads(line)
    except ValueError:
        return None
