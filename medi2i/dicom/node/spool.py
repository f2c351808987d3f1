"""The spool of a DICOM node: received instances grouped by series until a series is complete.

DICOM's C-STORE has no "end of series" message, so a receiver has to decide when a
series is complete. The rule here (the one PACS routers use) is: a series is complete
when

1. every association that delivered instances of it has ended,
2. the last of them ended with a normal release (A-RELEASE), not an abort, and
3. nothing of the series arrived for ``idle_timeout`` seconds.

A series whose last association was aborted (the sender crashed, the network dropped,
the peer sent an A-ABORT) is kept waiting: a sender that retries sends the whole series
again in a new association, and once that one is released the series completes as
usual. When no retry comes within the idle timeout, the partial series is taken out
not complete: nothing is ever translated from it, and the node keeps its files in a
hidden ``.discarded-...`` folder (:mod:`medi2i.dicom.node.translation`).

Layout on disk: ``<root>/<Series Instance UID>/<SOP Instance UID>.dcm``. Each file is
written under a temporary name in its folder and renamed into place, so a file in the
spool is always complete. An instance sent twice replaces the first copy; when the two
copies differ (two images given one SOP Instance UID) the series notes the collision
(:attr:`TakenSeries.collisions`), so that a failure to read it can name the cause. A series is
taken out of the spool (:meth:`Spool.take_due`) by renaming its folder to a hidden
``.taken-...`` sibling under the lock: instances of the same series that arrive during
its translation start a new spool entry instead of changing the files being read.

An instance the node refuses (damaged, not decodable, not writable: a full disk) is
noted with its series (:meth:`Spool.refuse`): unless a whole copy of the same SOP
Instance arrives before the series completes, the series is discarded (its files kept
aside), never translated without it.

Stopping (:meth:`Spool.take_due` with ``stopping``): a series whose associations all
ended with a release is due at once, without waiting out the idle timeout (no more of it
can arrive); :meth:`Spool.take_rest` then takes the others, to be set aside
(:func:`set_aside`).

The spool marks its folder as its own with an empty :data:`MARKER` file, and refuses a
folder that holds files but no marker (a user's folder given as ``--work`` by mistake),
so that recovery never moves folders the node did not make; files a file browser leaves
(``.DS_Store``, ``Thumbs.db``: :data:`OS_LITTER`) do not count.

Recovery (:meth:`Spool.recover`, which the node calls when it starts): a node that was
killed leaves in a persistent spool the series it was receiving, the ``.taken-...``
series it was translating and ``.derived-...`` scratch output. Whether a left series is
complete cannot be known (the associations that sent it are gone, and a sender that
saw the node die may retry), so none is ever translated: each series folder is moved
to a hidden ``.abandoned-<UTC time>-<Series Instance UID>`` sibling, kept for a person
to inspect, send again (``medi2i dicom send``) or delete, and the scratch output of an
interrupted translation is removed. The node logs one line for each.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from medi2i.io.atomic import is_temporary, temporary_sibling

UID_PATTERN = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
"""A DICOM UID (PS3.5 9.1): components of digits joined by dots, none with a leading zero
(but ``0`` itself), at most 64 characters (checked with the length); matched whole."""
MARKER = ".medi2i-spool"
"""The empty file that marks a folder as a node's spool."""

Ending = Literal["open", "released", "aborted"]
Clock = Callable[[], float]


def is_uid(value: object) -> bool:
    """Whether ``value`` is a valid DICOM UID (so that it is safe as a file name too)."""
    return isinstance(value, str) and len(value) <= 64 and UID_PATTERN.fullmatch(value) is not None


@dataclass
class SpooledSeries:
    """What the spool knows about one series being received.

    Attributes:
        series_uid: Series Instance UID.
        folder: Its folder in the spool.
        instances: SOP Instance UIDs received (each stored once).
        open_associations: Associations that delivered to it and have not ended.
        ending: How the last association that delivered to it ended.
        ended_by: The association that ended last (so that a release reported after
            the closed connection of the same association still counts as a release).
        first_received: When its first instance arrived (clock seconds).
        last_received: When its latest instance arrived.
        calling_ae_titles: Who sent it.
        refused: Why each refused instance (by SOP Instance UID) was refused (damaged,
            not writable, ...), until a whole copy of it arrives.
        collisions: SOP Instance UIDs received twice with different contents (the later
            copy replaced the earlier).
    """

    series_uid: str
    folder: Path
    instances: set[str] = field(default_factory=set)
    refused: dict[str, str] = field(default_factory=dict)
    open_associations: set[Hashable] = field(default_factory=set)
    ending: Ending = "open"
    ended_by: Hashable | None = None
    first_received: float = 0.0
    last_received: float = 0.0
    calling_ae_titles: set[str] = field(default_factory=set)
    collisions: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class TakenSeries:
    """A series taken out of the spool, complete (``due``) or to be discarded.

    Attributes:
        series_uid: Series Instance UID.
        folder: The hidden folder holding its files now; the taker removes it.
        instances: How many instances were received.
        complete: True when it completed; False when its last association was
            aborted and no retry came (then it must be discarded, not translated).
        receive_seconds: From its first to its last instance.
        calling_ae_titles: Who sent it, sorted.
        refused: Why instances of it were refused and not sent again whole
            (``"<SOP Instance UID>: <reason>"``): it lacks them, so it must be
            discarded, not translated.
        instance_uids: The SOP Instance UIDs received (empty when not known: then the
            file names in ``folder`` tell, see :meth:`received_uids`).
        collisions: SOP Instance UIDs received twice with different contents, sorted:
            the later copy replaced the earlier, so one image of the series is lost.
    """

    series_uid: str
    folder: Path
    instances: int
    complete: bool
    receive_seconds: float
    calling_ae_titles: tuple[str, ...]
    refused: tuple[str, ...] = ()
    instance_uids: frozenset[str] = frozenset()
    collisions: tuple[str, ...] = ()

    def received_uids(self) -> frozenset[str]:
        """The SOP Instance UIDs received: :attr:`instance_uids`, else the spool's file
        names (``<SOP Instance UID>.dcm``)."""
        if self.instance_uids:
            return self.instance_uids
        if not self.folder.is_dir():
            return frozenset()
        return frozenset(
            path.stem for path in self.folder.glob("*.dcm") if not is_temporary(path.name)
        )

    def discard(self) -> None:
        """Remove the taken files."""
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass(frozen=True)
class Leftover:
    """Something an earlier node left in the spool, found by :meth:`Spool.recover`.

    Attributes:
        series_uid: The series it belongs to.
        instances: Complete instance files it holds.
        kind: ``"received"`` (being received), ``"taken"`` (being translated) or
            ``"scratch"`` (derived files of an interrupted forward, removed).
        moved_to: Where its files are now, or ``None`` when removed.
    """

    series_uid: str
    instances: int
    kind: Literal["received", "taken", "scratch"]
    moved_to: Path | None

    def describe(self) -> str:
        """The node's one log line about it."""
        head = f"series {self.series_uid}: {self.instances} instance(s) left by an earlier node"
        if self.moved_to is None:
            return f"{head} (scratch output of an interrupted translation); removed"
        why = "its translation was interrupted" if self.kind == "taken" else "it may be partial"
        return (
            f"{head}; not translated ({why}); moved to {self.moved_to}: send the series "
            "again to translate it"
        )


_TAKEN = re.compile(r"\.taken-(?P<uid>[0-9.]+)-[0-9a-f]+")
_SCRATCH = re.compile(r"\.derived-(?P<uid>[0-9.]+)-[0-9]+")


class Spool:
    """Received instances by series, and the completion rule of the module docstring.

    Thread-safe: the network threads store instances and end associations while a
    worker thread takes complete series out.

    Args:
        root: The spool folder (created).
        idle_timeout: Seconds without a new instance after which a released series is
            complete (and an aborted one is discarded).
        clock: Monotonic seconds (a parameter so tests can move time).

    Raises:
        OptionsError: ``root`` holds files but is no spool (it has no :data:`MARKER`).
    """

    def __init__(self, root: Path, *, idle_timeout: float, clock: Clock = time.monotonic) -> None:
        self.root = Path(root)
        claim_spool(self.root)
        self.idle_timeout = float(idle_timeout)
        self._clock = clock
        self._lock = threading.Lock()
        self._series: dict[str, SpooledSeries] = {}

    def store(
        self,
        series_uid: str,
        sop_instance_uid: str,
        encoded: bytes,
        *,
        association: Hashable,
        calling_ae_title: str = "",
    ) -> Path:
        """Write one instance (a complete DICOM file's bytes) into its series' folder.

        Raises:
            ValueError: A UID that is not a valid DICOM UID.
            OSError: The file could not be written (a full disk); nothing was kept.
        """
        if not (is_uid(series_uid) and is_uid(sop_instance_uid)):
            raise ValueError("Series or SOP Instance UID is not a valid DICOM UID")
        with self._lock:
            entry = self._entry(series_uid)
            entry.open_associations.add(association)
            folder = entry.folder
        path = folder / f"{sop_instance_uid}.dcm"
        temporary = temporary_sibling(path)
        collision = _differs(path, encoded)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(encoded)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        with self._lock:
            entry = self._entry(series_uid)
            entry.instances.add(sop_instance_uid)
            entry.refused.pop(sop_instance_uid, None)  # a retry sent it whole
            if collision:
                entry.collisions.add(sop_instance_uid)
            entry.last_received = self._clock()
            if calling_ae_title:
                entry.calling_ae_titles.add(calling_ae_title)
        return path

    def refuse(
        self,
        series_uid: str,
        sop_instance_uid: str,
        reason: str,
        *,
        association: Hashable,
        calling_ae_title: str = "",
    ) -> bool:
        """Note an instance of ``series_uid`` that was refused (damaged, not decodable, not
        writable; nothing of it is kept): unless a whole copy arrives before the series
        completes, the series is discarded rather than translated without it
        (:attr:`TakenSeries.refused`). ``reason`` says why (``"damaged: ..."``).

        Returns:
            Whether it is the first instance of the series refused (and not yet sent
            again whole), so that a full disk makes one log line per series, not one
            per instance.

        Raises:
            ValueError: A UID that is not a valid DICOM UID.
        """
        if not (is_uid(series_uid) and is_uid(sop_instance_uid)):
            raise ValueError("Series or SOP Instance UID is not a valid DICOM UID")
        with self._lock:
            entry = self._entry(series_uid)
            entry.open_associations.add(association)
            first = not entry.refused
            if sop_instance_uid not in entry.instances:  # a sound copy arrived before
                entry.refused[sop_instance_uid] = reason
            entry.last_received = self._clock()
            if calling_ae_title:
                entry.calling_ae_titles.add(calling_ae_title)
            return first and bool(entry.refused)

    def _entry(self, series_uid: str) -> SpooledSeries:
        entry = self._series.get(series_uid)
        if entry is None:
            now = self._clock()
            entry = SpooledSeries(
                series_uid, self.root / series_uid, first_received=now, last_received=now
            )
            self._series[series_uid] = entry  # its folder is made by the first store
        return entry

    def end_association(self, association: Hashable, *, released: bool) -> None:
        """Note that ``association`` ended, by a normal release or not.

        A release reported after the same association was noted as ended without one
        turns that ending into a release: pynetdicom reports a released association's
        closed connection (from its network thread) and its release (from the
        association's thread) in either order, the closed connection first under load.
        """
        with self._lock:
            for entry in self._series.values():
                if association in entry.open_associations:
                    entry.open_associations.discard(association)
                    entry.ending = "released" if released else "aborted"
                    entry.ended_by = association
                elif released and entry.ending == "aborted" and entry.ended_by == association:
                    entry.ending = "released"

    def take_due(self, *, stopping: bool = False) -> list[TakenSeries]:
        """Take out every series that completed, or that must be discarded.

        With ``stopping``, a series whose associations all ended with a release is due
        without waiting out the idle timeout (the node stops: nothing more of it comes),
        and only such a series: one whose association was aborted (by the stopping node
        itself, or by its peer and never sent again) is left for :meth:`take_rest`, which
        sets it aside rather than discarding it.
        """
        now = self._clock()
        taken = []
        with self._lock:
            for uid, entry in list(self._series.items()):
                idle = now - entry.last_received >= self.idle_timeout
                if entry.open_associations or entry.ending == "open":
                    continue
                if stopping and entry.ending != "released":
                    continue  # set aside by take_rest, not discarded
                if not idle and not stopping:
                    continue
                del self._series[uid]
                taken.append(self._take(entry))
        return taken

    def take_rest(self) -> list[TakenSeries]:
        """Take out every series still in the spool, none of them complete (for a node
        that stops: still being received, or aborted and waiting for a retry)."""
        with self._lock:
            entries = list(self._series.values())
            self._series.clear()
            return [replace(self._take(entry), complete=False) for entry in entries]

    def _take(self, entry: SpooledSeries) -> TakenSeries:
        hidden = entry.folder.with_name(f".taken-{entry.series_uid}-{secrets.token_hex(4)}")
        # every instance of it refused, nothing stored: ``hidden`` does not exist then
        with contextlib.suppress(FileNotFoundError):
            os.replace(entry.folder, hidden)
        return TakenSeries(
            series_uid=entry.series_uid,
            folder=hidden,
            instances=len(entry.instances),
            complete=entry.ending == "released",
            receive_seconds=round(entry.last_received - entry.first_received, 3),
            calling_ae_titles=tuple(sorted(entry.calling_ae_titles)),
            refused=tuple(f"{uid}: {entry.refused[uid]}" for uid in sorted(entry.refused)),
            instance_uids=frozenset(entry.instances),
            collisions=tuple(sorted(entry.collisions)),
        )

    def recover(self, alias: Callable[[str], str] = str) -> list[Leftover]:
        """Set aside what an earlier node left (see the module docstring); call before use.

        ``alias`` names a series in the set-aside folder's name (its pseudonym when the
        node de-identifies).
        """
        found = []
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir():
                continue
            leftover = self._recover(folder, alias)
            if leftover is not None:
                found.append(leftover)
        return found

    def _recover(self, folder: Path, alias: Callable[[str], str]) -> Leftover | None:
        name = folder.name
        taken, scratch = _TAKEN.fullmatch(name), _SCRATCH.fullmatch(name)
        if scratch is not None:
            count = sum(1 for path in folder.rglob("*.dcm") if not is_temporary(path.name))
            shutil.rmtree(folder, ignore_errors=True)
            return Leftover(scratch["uid"], count, "scratch", None)
        uid = taken["uid"] if taken is not None else name
        if not is_uid(uid):
            return None  # not the spool's: earlier abandoned series, anything else
        count = sum(1 for path in folder.glob("*.dcm") if not is_temporary(path.name))
        target = set_aside(folder, "abandoned", alias(uid))
        return Leftover(uid, count, "taken" if taken else "received", target)

    def waiting(self) -> list[SpooledSeries]:
        """The series still being received or waiting for their idle timeout."""
        with self._lock:
            return list(self._series.values())


OS_LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", "._.DS_Store", ".directory"})
"""Files an operating system's file browser leaves in folders it shows (macOS Finder,
Windows Explorer, KDE Dolphin): a folder holding nothing else counts as empty."""


def claim_spool(root: Path) -> None:
    """Make ``root`` a spool (create it and its :data:`MARKER`), unless it holds files
    and is none: recovery must never move a user's folders. A folder holding only
    :data:`OS_LITTER` (``.DS_Store``, ``Thumbs.db``) counts as empty.

    Raises:
        OptionsError: ``root`` is a file, or holds files and no marker.
    """
    from medi2i.errors import OptionsError

    marker = root / MARKER
    if root.exists() and not marker.exists():
        if not root.is_dir():
            raise OptionsError(f"--work {root} is a file; give a new or empty folder")
        if any(path.name not in OS_LITTER for path in root.iterdir()):
            raise OptionsError(
                f"--work {root} holds files and is not a DICOM node's spool (no {MARKER} "
                "file); give a new or empty folder (or, for the spool of a node of an "
                f"earlier medi2i version, create an empty {MARKER} file in it)"
            )
    root.mkdir(parents=True, exist_ok=True)
    marker.touch()


def _differs(path: Path, encoded: bytes) -> bool:
    """Whether ``path`` holds another instance than ``encoded``: their datasets differ
    (the file meta information is left out: it names the sender, which may change)."""
    try:
        if not path.exists():
            return False
        return _dataset_part(path.read_bytes()) != _dataset_part(encoded)
    except OSError:  # unreadable: nothing to compare
        return False


def _dataset_part(data: bytes) -> bytes:
    """The dataset of a DICOM file's bytes, after its preamble and file meta group
    (whose first element, File Meta Information Group Length, gives its length)."""
    if data[128:132] != b"DICM" or data[132:136] != b"\x02\x00\x00\x00":
        return data
    return data[144 + int.from_bytes(data[140:144], "little") :]


SET_ASIDE_KINDS = ("failed", "discarded", "unforwarded", "interrupted", "looped", "abandoned")
"""The kinds of folder :func:`set_aside` makes (``.<kind>-<UTC time>-<name>``): what the
node keeps for a person, never deletes, and keeps a temporary spool for."""


def set_aside(folder: Path, kind: str, name: str) -> Path:
    """Move ``folder`` to a hidden ``.<kind>-<UTC time>-<name>`` sibling; return it.

    The spool's recovery leaves such folders alone: they are kept for a person to
    inspect, send again (``medi2i dicom send``) or delete. A missing ``folder`` (nothing
    of the series was stored) becomes an empty one.

    Raises:
        OSError: It cannot be moved (nor, when missing, made).
    """
    assert kind in SET_ASIDE_KINDS, kind
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = folder.with_name(f".{kind}-{stamp}-{name}")
    while target.exists():
        target = folder.with_name(f".{kind}-{stamp}-{name}-{secrets.token_hex(2)}")
    if folder.exists():
        os.replace(folder, target)
    else:
        target.mkdir(parents=True)
    return target
