"""Sending DICOM files to a peer with C-STORE (the SCU side of a DICOM node).

:func:`send_files` opens one association (more when the files need over 128
presentation contexts), proposes for each SOP Class the transfer syntax its files are
stored in, and sends every file as it is on disk (pynetdicom reads it without decoding
the pixel data). Each file's outcome is counted; a peer that refuses the association
(or a port where nothing listens) makes its files failures, never an exception, and
stops the send: :attr:`SendReport.stopped` gives the peer's reason once. A file that
cannot be read (no permission) is a failure too, not a skipped file: it may well be
DICOM. Files an association lost (the peer
aborted it, or a response never came within :data:`NETWORK_TIMEOUT_S`) are sent once
more in a new association (:data:`RETRIES`), as PACS senders do: a receiver keeps
what the aborted association stored and completes the series when the retry is
released (medi2i's node does; see ``spool``). Files the peer refused with a status
are not sent again.

Every connection has Nagle's algorithm off (:func:`disable_nagle`, ``TCP_NODELAY``).
pynetdicom writes each PDU of a C-STORE with its own ``send``; with Nagle on, the last,
short fragment of a dataset waits for the peer to acknowledge the previous one, and
peers delay that acknowledgement by up to 40 ms: one stall per file, which held a
200-slice series to ~18 files/s against dcmtk's ``storescp``.

``medi2i dicom send`` and the node's ``--forward`` both use it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medi2i.errors import OptionsError

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.events import Event

NETWORK_TIMEOUT_S = 30.0
"""Seconds to wait for a peer (connection, association, each response)."""
RETRIES = 1
"""New associations tried for the files an aborted or silent association did not store."""
_MAX_CONTEXTS = 128  # DICOM PS3.8: presentation context ids are odd numbers 1..255
_NOT_STORABLE = ("1.2.840.10008.1.3.10",)  # Media Storage Directory (DICOMDIR)


@dataclass(frozen=True)
class Peer:
    """A DICOM application entity to connect to.

    Attributes:
        host: Host name or address.
        port: TCP port.
        ae_title: Its Application Entity title (1-16 characters).
    """

    host: str
    port: int
    ae_title: str

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def check_ae_title(title: str, what: str = "AE title") -> str:
    """Return ``title`` if it is a valid AE title (1-16 printable characters, no backslash).

    Raises:
        OptionsError: It is not.
    """
    stripped = title.strip()
    if not 1 <= len(stripped) <= 16 or not stripped.isprintable() or "\\" in stripped:
        raise OptionsError(
            f"{what} {title!r} is not valid: use 1 to 16 printable characters without a "
            "backslash, e.g. MEDI2I"
        )
    return stripped


def parse_peer(text: str) -> Peer:
    """Parse ``HOST:PORT:AET`` (e.g. ``127.0.0.1:11112:PACS``).

    Raises:
        OptionsError: Not of that form, or a port outside 1-65535.
    """
    host, _, rest = text.rpartition(":")
    host, _, port_text = host.rpartition(":")
    ae_title = rest
    if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise OptionsError(
            f"peer {text!r}: give HOST:PORT:AET with a port from 1 to 65535, "
            "e.g. 127.0.0.1:11112:PACS"
        )
    return Peer(host, int(port_text), check_ae_title(ae_title, f"peer {text!r}: AE title"))


@dataclass
class SendReport:
    """What :func:`send_files` did.

    Attributes:
        peer: Where the files went.
        sent: Files the peer stored (status Success or Warning).
        failed: ``(file, reason)`` for each file that was not stored.
        skipped: ``(file, reason)`` for files that are not DICOM instances to store.
        retried: Files sent again in a new association because an earlier one lost them.
        stopped: Why nothing more was sent (the peer rejected the association, nothing
            listens at its port), or ``None``.
    """

    peer: Peer
    sent: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    retried: list[Path] = field(default_factory=list)
    stopped: str | None = None

    def summary(self) -> str:
        """One line such as ``sent 12 file(s) to PACS@host:104, 0 failed``."""
        line = f"sent {len(self.sent)} file(s) to {self.peer}, {len(self.failed)} failed"
        if self.retried:
            line += f", {len(self.retried)} sent again after a dropped association"
        return line + (f", {len(self.skipped)} skipped (not DICOM)" if self.skipped else "")


def grouped(outcomes: Sequence[tuple[Path, str]], shown: int = 3) -> list[str]:
    """One line per reason: ``"<reason>: <count> file(s) (a.dcm, b.dcm, ...)"``, the
    most frequent first, naming the first ``shown`` files of each."""
    by_reason: dict[str, list[Path]] = {}
    for path, reason in outcomes:
        by_reason.setdefault(reason, []).append(path)
    lines = []
    for reason, paths in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        names = ", ".join(str(path) for path in paths[:shown])
        more = ", ..." if len(paths) > shown else ""
        lines.append(f"{reason}: {len(paths)} file(s) ({names}{more})")
    return lines


def dicom_files_under(folder: Path) -> list[Path]:
    """Every file under ``folder`` (recursively, following links to folders, sorted),
    hidden files left out. A folder that cannot be listed (no permission) is listed
    itself, so that :func:`send_files` reports it as unreadable rather than leaving its
    files out unsaid."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise OptionsError(f"{folder} does not exist; give a folder of DICOM files")
    found: list[Path] = []
    seen: set[str] = set()

    def unreadable(error: OSError) -> None:
        if error.filename:
            found.append(Path(error.filename))

    for root, folders, names in os.walk(folder, onerror=unreadable, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back to a folder already walked
            folders.clear()
            continue
        seen.add(real)
        found.extend(Path(root) / name for name in names if not name.startswith("."))
    return sorted(found)


def send_files(paths: Iterable[Path], peer: Peer, *, calling_ae_title: str) -> SendReport:
    """Send ``paths`` to ``peer`` with C-STORE; see the module docstring."""
    report = SendReport(peer)
    contexts: dict[tuple[str, str], list[Path]] = {}
    for path in paths:
        found = _storage_context(Path(path))
        if isinstance(found, _Unreadable):
            report.failed.append((Path(path), found.reason))
        elif isinstance(found, str):
            report.skipped.append((Path(path), found))
        else:
            contexts.setdefault(found, []).append(Path(path))
    for attempt in range(1 + RETRIES):
        lost: list[Path] = []  # failed because the association dropped them
        keys = list(contexts)
        for start in range(0, len(keys), _MAX_CONTEXTS):
            chunk = {key: contexts[key] for key in keys[start : start + _MAX_CONTEXTS]}
            if report.stopped is not None:  # the peer would refuse this one as well
                files = [path for paths in chunk.values() for path in paths]
                report.failed.extend((path, report.stopped) for path in files)
                continue
            _send_chunk(chunk, report, calling_ae_title, lost)
        if not lost or attempt == RETRIES or report.stopped is not None:
            break
        # again, in a new association: only what the dropped one lost
        report.retried.extend(lost)
        dropped = set(lost)
        report.failed = [(path, why) for path, why in report.failed if path not in dropped]
        contexts = {key: [p for p in paths if p in dropped] for key, paths in contexts.items()}
        contexts = {key: paths for key, paths in contexts.items() if paths}
    return report


@dataclass(frozen=True)
class _Unreadable:
    """A file (or folder) that could not be read: a failure, since it may be DICOM."""

    reason: str


def _storage_context(path: Path) -> tuple[str, str] | str | _Unreadable:
    """``(SOP Class UID, Transfer Syntax UID)`` of a DICOM file, why it is skipped, or
    why it cannot be read."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    from medi2i.dicom.reading.file_kinds import broken_link, not_regular

    broken = broken_link(path)
    if broken is not None:
        return _Unreadable(broken)
    special = not_regular(path)
    if special is not None:  # opening a FIFO would block the send forever
        return special
    try:
        with path.open("rb") as stream:
            stream.read(1)
    except OSError as exc:
        kind = "folder" if path.is_dir() else "file"
        return _Unreadable(f"cannot read this {kind} ({exc.strerror or exc})")
    try:
        meta = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"]).file_meta
        sop_class, syntax = str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)
    except (InvalidDicomError, AttributeError, OSError, ValueError, KeyError):
        return "not a DICOM file with file meta information"
    if sop_class in _NOT_STORABLE or not sop_class:
        return f"SOP Class {sop_class or '(none)'} is not a storable instance"
    return sop_class, syntax


def disable_nagle(event: Event) -> None:
    """Set ``TCP_NODELAY`` on the connection of ``event`` (a pynetdicom ``EVT_CONN_OPEN``).

    A DIMSE message goes out as several PDUs, each its own write, and the peer answers
    only after the last; with Nagle's algorithm on, that last write waits for the
    acknowledgement the peer delays (up to 40 ms on Linux) before it leaves. Best
    effort: a socket that refuses the option is left as it is.
    """
    import contextlib
    import socket

    connection: Any = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if connection is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _closing_ae(ae_title: str) -> Any:
    """A pynetdicom ``AE`` whose association sockets are always closed.

    pynetdicom 3.0 shuts a socket down before closing it, and when the connection was
    never made (the peer is down: connection refused) the shutdown fails and the close
    is skipped; the socket is left to the garbage collector, which warns
    (``ResourceWarning: unclosed <socket.socket ...>``) in whatever code runs then.
    """
    from pynetdicom import AE
    from pynetdicom.transport import AssociationSocket

    class ClosingSocket(AssociationSocket):
        def _shutdown_socket(self) -> None:
            connection = self.socket
            try:
                super()._shutdown_socket()
            finally:
                if connection is not None:
                    connection.close()  # closing twice is harmless

    class ClosingAE(AE):
        def _create_socket(self, assoc: Any, address: Any, tls_args: Any) -> Any:
            sock = ClosingSocket(assoc, address=address)
            sock.tls_args = tls_args
            return sock

    return ClosingAE(ae_title=ae_title)


def _send_chunk(
    contexts: dict[tuple[str, str], list[Path]],
    report: SendReport,
    calling_ae_title: str,
    lost: list[Path],
) -> None:
    from pynetdicom import evt

    ae = _closing_ae(calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = NETWORK_TIMEOUT_S
    ae.connection_timeout = NETWORK_TIMEOUT_S
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    files = [path for paths in contexts.values() for path in paths]
    peer = report.peer
    try:
        association = ae.associate(
            peer.host,
            peer.port,
            ae_title=peer.ae_title,
            evt_handlers=[(evt.EVT_CONN_OPEN, disable_nagle)],
        )
    except (OSError, ValueError) as exc:
        report.stopped = f"cannot connect to {peer}: {exc}"
        report.failed.extend((path, report.stopped) for path in files)
        return
    try:
        if not association.is_established:
            report.stopped = _not_established(association, peer)
            report.failed.extend((path, report.stopped) for path in files)
            return
        _store_each(association, files, report, lost)
    finally:
        if association.is_established:
            association.release()
        ae.shutdown()


def _not_established(association: Association, peer: Peer) -> str:
    """Why an association with ``peer`` was not established, in one phrase."""
    if association.is_rejected:
        primitive = getattr(association.acceptor, "primitive", None)
        try:
            why = str(primitive.reason_str) if primitive is not None else ""
        except (AttributeError, KeyError, TypeError, ValueError):
            why = ""
        return f"{peer} rejected the association" + (f" ({why})" if why else "")
    try:
        with socket.create_connection((peer.host, peer.port), timeout=5):
            pass
    except ConnectionRefusedError:
        return f"no DICOM node listening at {peer.host}:{peer.port} (connection refused)"
    except OSError as exc:
        return f"cannot connect to {peer.host}:{peer.port} ({exc.strerror or exc})"
    if association.is_aborted:
        return f"{peer} aborted the association request"
    return f"{peer} did not answer the association request within {NETWORK_TIMEOUT_S:.0f} s"


def _store_each(
    association: Association, files: Sequence[Path], report: SendReport, lost: list[Path]
) -> None:
    """Store each file; ``lost`` gets those the association dropped (also in ``failed``)."""
    for path in files:
        if not association.is_established:
            report.failed.append((path, f"{report.peer} ended the association"))
            lost.append(path)
            continue
        try:
            status = association.send_c_store(path)
        except (OSError, ValueError, AttributeError, RuntimeError) as exc:
            report.failed.append((path, f"not sent: {exc}"))
            continue
        code = int(getattr(status, "Status", -1)) if status else -1
        if code == 0 or 0xB000 <= code <= 0xBFFF:
            report.sent.append(path)
        elif code == -1:
            report.failed.append((path, f"no response from {report.peer}"))
            lost.append(path)
        else:
            report.failed.append((path, f"{report.peer} refused it (status 0x{code:04X})"))
