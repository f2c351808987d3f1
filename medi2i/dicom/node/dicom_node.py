"""A DICOM node: receive series over the network, translate them, store or forward the result.

:class:`DicomNode` is a C-STORE SCP and Verification SCP (a pynetdicom application
entity) that accepts every storage SOP Class, image ones only in the transfer syntaxes
its reader decodes (:mod:`medi2i.dicom.node.negotiation`; an association whose every
context was rejected gets one log line when it ends). Received instances
go to the spool (:mod:`medi2i.dicom.node.spool`, which also holds the rule for when a
series is complete); a worker thread takes each complete series out and hands it to a
:class:`~medi2i.dicom.node.translation.SeriesTranslator` (translate, store under
``output``, forward to a peer, one manifest record and one log line per series). One
series is translated at a time, in the order they complete.

Starting, the node refuses a ``--forward`` peer that is the node itself
(:func:`check_forward`: its own host and port), which would translate its own output
again and again; then it sets aside what a killed node left in the spool
(:meth:`~medi2i.dicom.node.spool.Spool.recover`: never translated, one log line and
one ``abandoned`` manifest record each).

Every line the node logs starts with the local time (ISO 8601 with its UTC offset,
:func:`medi2i.dicom.node.timestamps.stamped`) and has its control characters escaped
(:func:`medi2i.text.one_line`): a peer's Series Description or AE title holding a
newline must not forge a line of the log.

Refused with a failure status, never crashing the node: a dataset that cannot be
decoded or is damaged (``0xC210``: cut short, its pixel data shorter than its image
needs), one without valid Study, Series and SOP Instance UIDs or whose SOP Class is not
the one negotiated (``0xA900``), and one that cannot be written (``0xA700``, e.g. a full
disk). Instances arriving while the node stops are refused with ``0xA700`` too, so the
sender knows they were not kept. Whatever the reason, when the refused instance names
its series and SOP Instance, the series is then discarded unless that instance is sent
again whole, so no series is translated without it.

Associations: any calling and called AE title is accepted unless the config says
otherwise (``require_called_aet``: the called AE title must be the node's;
``allowed_calling``: the calling AE titles accepted). A refused association gets one
log line. Up to :data:`MAX_ASSOCIATIONS` associations are served at once, and a
connection has :data:`HANDSHAKE_TIMEOUT_S` to send its association request
(:mod:`medi2i.dicom.node.connections`), so a few connections that open and stall hold
no slot for long.

Stopping (:meth:`DicomNode.stop`, which the command line calls on SIGINT and SIGTERM):
the server stops listening and open associations are aborted (a connection that does
not end within a second is shut, even one whose peer stalls mid-message), the worker finishes the
translation in progress (its output is written atomically, so an interrupt never leaves
a partial series at a final path), then every series whose associations all ended with
a normal release is translated without waiting out the idle timeout. A series still
being received (or aborted and waiting for a retry) is set aside in a hidden
``.interrupted-<time>-<series>`` folder of the spool and recorded ``interrupted`` in the
manifest, with one log line saying where it is.

Example:
    >>> node = DicomNode(config, translator=translator)  # doctest: +SKIP
    >>> node.start(); ...; node.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medi2i.dicom.node.connections import (
    HANDSHAKE_TIMEOUT_S,
    close_associations,
    established_limit,
    stall_limit,
)
from medi2i.dicom.node.negotiation import nothing_accepted, storage_contexts
from medi2i.dicom.node.records import describe
from medi2i.dicom.node.send import disable_nagle
from medi2i.dicom.node.spool import Spool, TakenSeries, is_uid, set_aside
from medi2i.dicom.node.timestamps import stamped
from medi2i.dicom.node.translation import SeriesTranslator
from medi2i.dicom.reading.file_records import instance_damage
from medi2i.text import one_line

if TYPE_CHECKING:
    from pynetdicom.events import Event
    from pynetdicom.transport import ThreadedAssociationServer

    from medi2i.dicom.node.send import Peer

STORE_SUCCESS = 0x0000
STORE_OUT_OF_RESOURCES = 0xA700
STORE_NOT_MATCHING = 0xA900
STORE_CANNOT_UNDERSTAND = 0xC210
NETWORK_TIMEOUT_S = 30.0
"""Seconds a silent peer may keep an association open before it is aborted, and a peer
that stops in the middle of a PDU may keep its connection (:attr:`NodeConfig.network_timeout`)."""
VERIFICATION = "1.2.840.10008.1.1"
MAX_ASSOCIATIONS = 64
"""Associations served at once (pynetdicom's default is 10); more are refused."""


@dataclass(frozen=True)
class NodeConfig:
    """Where and how a node listens.

    Attributes:
        ae_title: The node's AE title (peers call it by this).
        host: Address to listen on; ``127.0.0.1`` keeps it on this machine.
        port: TCP port; 0 picks a free one (see :attr:`DicomNode.address`).
        idle_timeout: Seconds without a new instance after which a series whose
            associations were released is complete.
        poll_interval: Seconds between the worker's looks at the spool.
        require_called_aet: Refuse an association whose called AE title is not
            ``ae_title``.
        allowed_calling: The calling AE titles accepted; any when empty.
        network_timeout: Seconds a silent peer may keep an association open, and a
            peer that stops in the middle of a message (or of the association
            request) its connection, before it is dropped
            (:mod:`medi2i.dicom.node.connections`).
    """

    ae_title: str = "MEDI2I"
    host: str = "127.0.0.1"
    port: int = 11112
    idle_timeout: float = 10.0
    poll_interval: float = 0.1
    require_called_aet: bool = False
    allowed_calling: tuple[str, ...] = ()
    network_timeout: float = NETWORK_TIMEOUT_S


class DicomNode:
    """The node of the module docstring.

    Args:
        config: Where and how to listen.
        spool: The spool received instances go to.
        translator: What to do with each complete series.
        log: Called with one line per series and per start and stop.
    """

    def __init__(
        self,
        config: NodeConfig,
        *,
        spool: Spool,
        translator: SeriesTranslator,
        log: Callable[[str], None] = print,
    ) -> None:
        self.config = config
        self.spool = spool
        self.translator = translator
        self.log: Callable[[str], None] = lambda line: log(stamped(one_line(line)))
        self._stopping = threading.Event()
        self._server: ThreadedAssociationServer | None = None
        self._worker: threading.Thread | None = None
        self._ae: object | None = None
        self._unusable: dict[object, str] = {}  # associations that can send nothing
        self._unusable_lock = threading.Lock()

    @property
    def address(self) -> tuple[str, int]:
        """The host and port the node listens on (the real port when 0 was asked)."""
        if self._server is None:
            return self.config.host, self.config.port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Listen (in background threads) and start the worker; returns at once.

        Raises:
            OSError: The port cannot be bound (in use, or not allowed).
        """
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        if self.translator.forward is not None:
            check_forward(self.translator.forward, self.config)
        names = self.translator.names
        for leftover in self.spool.recover(alias=names.uid):
            if leftover.moved_to is None:
                self.log(names.text(leftover.describe()))
            else:
                self.log(describe(self.translator.record_abandoned(leftover)))
        ae = AE(ae_title=self.config.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.config.network_timeout
        ae.maximum_associations = MAX_ASSOCIATIONS
        handshake = min(HANDSHAKE_TIMEOUT_S, self.config.network_timeout)
        ae.require_called_aet = self.config.require_called_aet
        ae.require_calling_aet = list(self.config.allowed_calling)
        for sop_class, syntaxes in storage_contexts():
            ae.add_supported_context(sop_class, syntaxes)
        ae.add_supported_context(Verification)
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, disable_nagle),
            (evt.EVT_CONN_OPEN, stall_limit(handshake)),
            (evt.EVT_ESTABLISHED, established_limit(self.config.network_timeout)),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_ended),
            (evt.EVT_CONN_CLOSE, self._on_ended),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        self._server = ae.start_server(
            (self.config.host, self.config.port), block=False, evt_handlers=handlers
        )
        self._ae = ae
        self._worker = threading.Thread(target=self._work, name="medi2i-node-worker", daemon=True)
        self._worker.start()
        host, port = self.address
        self.log(f"listening as {self.config.ae_title} on {host}:{port}")

    def stop(self, timeout: float = 600.0) -> None:
        """Stop listening, finish the translation in progress, then the series received
        with a release; set the others aside (see the module docstring)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()  # stop accepting first: no new association after
            close_associations(list(self._server.active_associations))
        if self._worker is not None:
            self._worker.join(timeout)
        if self._worker is None or not self._worker.is_alive():  # one translation at a time
            self._translate(self.spool.take_due(stopping=True))
        rest = self.spool.take_rest()
        for series in rest:
            self._set_aside_interrupted(series)
        if rest:
            count = sum(series.instances for series in rest)
            self.log(
                f"stopped; {len(rest)} series ({count} instance(s)) not complete, set aside "
                f"in {self.spool.root}"
            )
        else:
            self.log("stopped")

    def serve(self, stop: threading.Event) -> None:
        """Start, wait until ``stop`` is set, then :meth:`stop`."""
        self.start()
        try:
            while not stop.wait(0.2):
                pass
        finally:
            self.stop()

    def translate_due(self) -> int:
        """Translate every series that is complete now; return how many were handled."""
        return self._translate(self.spool.take_due())

    def _translate(self, taken: list[TakenSeries]) -> int:
        for series in taken:
            try:
                self.log(describe(self.translator.handle(series)))
            except Exception as exc:  # the node must outlive any one series
                self._set_aside_failed(series, exc)
        return len(taken)

    def _set_aside_failed(self, series: TakenSeries, exc: Exception) -> None:
        """One line for a series whose handling broke; its files are kept, not removed."""
        names = self.translator.names
        try:
            kept = set_aside(series.folder, "failed", names.uid(series.series_uid))
        except OSError:
            kept = series.folder
        self.log(
            names.text(
                f"series {series.series_uid}: received {series.instances} instance(s); "
                f"failed: {type(exc).__name__}: {exc}; its instances are kept in {kept}"
            )
        )

    def _set_aside_interrupted(self, series: TakenSeries) -> None:
        """Keep a series the node stops with, record it ``interrupted``, log where it is."""
        try:
            kept: Path | None = set_aside(
                series.folder, "interrupted", self.translator.names.uid(series.series_uid)
            )
        except OSError:
            kept = None
        self.log(describe(self.translator.record_interrupted(series, kept)))

    def _work(self) -> None:
        while not self._stopping.wait(self.config.poll_interval):
            try:
                self.translate_due()
            except Exception as exc:  # the worker must outlive any one failure
                self.log(f"worker error: {type(exc).__name__}: {exc}")

    # -- network events (pynetdicom's threads) ------------------------------------------

    def _on_echo(self, event: Event) -> int:
        return STORE_SUCCESS

    def _on_store(self, event: Event) -> int:
        if self._stopping.is_set():
            series_uid, sop_uid = raw_uids(event)
            self._refuse(event, series_uid, sop_uid, "the node was stopping", log=False)
            return STORE_OUT_OF_RESOURCES
        try:
            dataset = event.dataset
            negotiated = str(event.context.abstract_syntax)
            sop_class = str(dataset.get("SOPClassUID", ""))
            series_uid = str(dataset.get("SeriesInstanceUID", ""))
            sop_uid = str(dataset.get("SOPInstanceUID", ""))
            study_uid = str(dataset.get("StudyInstanceUID", ""))
        except Exception:  # anything a garbage dataset makes pydicom raise
            series_uid, sop_uid = raw_uids(event)
            self._refuse(event, series_uid, sop_uid, "it cannot be decoded")
            return STORE_CANNOT_UNDERSTAND
        if sop_class != negotiated or not all(map(is_uid, (series_uid, sop_uid, study_uid))):
            why = "its SOP Class is not the one negotiated, or a UID is not valid"
            self._refuse(event, series_uid, sop_uid, why)
            return STORE_NOT_MATCHING
        encoded = event.encoded_dataset(include_meta=True)
        damage = instance_damage(encoded)
        if damage is not None:
            self._refuse(event, series_uid, sop_uid, f"damaged: {damage}")
            return STORE_CANNOT_UNDERSTAND
        try:
            self.spool.store(
                series_uid,
                sop_uid,
                encoded,
                association=event.assoc,
                calling_ae_title=_calling_ae(event),
            )
        except OSError as exc:
            why = f"it could not be written to the spool ({exc.strerror or exc})"
            self._refuse(event, series_uid, sop_uid, why)
            return STORE_OUT_OF_RESOURCES
        return STORE_SUCCESS

    def _refuse(
        self, event: Event, series_uid: str, sop_uid: str, reason: str, *, log: bool = True
    ) -> None:
        """Note a refused instance with its series (when it names both); log the first
        refused of a series."""
        if not (is_uid(series_uid) and is_uid(sop_uid)):
            return  # it names no series the node could hold back
        first = self.spool.refuse(
            series_uid,
            sop_uid,
            reason,
            association=event.assoc,
            calling_ae_title=_calling_ae(event),
        )
        if log and first:  # its line when the series completes counts the others
            names = self.translator.names
            self.log(
                f"series {names.uid(series_uid)}: refused instance {names.uid(sop_uid)}: "
                f"{names.text(reason)}; the series is not translated unless every refused "
                "instance is sent again"
            )

    def _on_rejected(self, event: Event) -> None:
        request = event.assoc.requestor.primitive
        calling = str(getattr(request, "calling_ae_title", "") or "").strip()
        called = str(getattr(request, "called_ae_title", "") or "").strip()
        title = ""
        if self.config.require_called_aet and called != self.config.ae_title:
            why, title = f"the called AE title is not {self.config.ae_title}", called
        elif self.config.allowed_calling and calling not in self.config.allowed_calling:
            why, title = "the calling AE title is not allowed (--allow-calling)", calling
        else:
            why = "too many associations, or its user identity failed"
        if title and not self.translator.names.hiding:  # an AE title may name a site
            why += f": {title!r}"
        self.log(f"refused an association from {event.assoc.requestor.address}: {why}")

    def _on_established(self, event: Event) -> None:
        """Note an association whose every storage context was rejected (its line is
        logged when it ends)."""
        assoc = event.assoc
        accepted = [cx for cx in assoc.accepted_contexts if cx.abstract_syntax != VERIFICATION]
        if accepted or not assoc.rejected_contexts:
            return
        calling = "" if self.translator.names.hiding else _calling_ae(event)
        line = nothing_accepted(calling, str(assoc.requestor.address), assoc.rejected_contexts)
        with self._unusable_lock:
            self._unusable[assoc] = line

    def _log_unusable(self, event: Event) -> None:
        with self._unusable_lock:
            line = self._unusable.pop(event.assoc, None)
        if line is not None:
            self.log(line)

    def _on_released(self, event: Event) -> None:
        self.spool.end_association(event.assoc, released=True)
        self._log_unusable(event)

    def _on_ended(self, event: Event) -> None:
        # after a release nothing of this association is open any more: a no-op then
        self.spool.end_association(event.assoc, released=False)
        self._log_unusable(event)


def check_forward(peer: Peer, config: NodeConfig) -> None:
    """Refuse a forward ``peer`` that is the node itself: its port on one of the node's
    addresses (a loopback address, or any of this machine's when listening on all),
    unless the node refuses the peer's called AE title (``require_called_aet``).

    Raises:
        OptionsError: One line naming the peer.
    """
    from medi2i.errors import OptionsError

    if peer.port != config.port or not _is_own_address(peer.host, config.host):
        return
    if config.require_called_aet and peer.ae_title != config.ae_title:
        return
    raise OptionsError(
        f"--forward {peer.host}:{peer.port}:{peer.ae_title} is this node itself (it listens "
        f"on {config.host}:{config.port}): it would translate its own output again and "
        "again; forward to another DICOM node (a PACS)"
    )


def _addresses(host: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses ``host`` resolves to, an IPv4-mapped IPv6 one (``::ffff:127.0.0.1``)
    as the IPv4 address it maps."""
    try:
        found = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return set()
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found}
    return {
        address.ipv4_mapped
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped
        else address
        for address in addresses
    }


def _is_own_address(host: str, listening: str) -> bool:
    """Whether ``host`` reaches a node listening on ``listening``.

    On all interfaces (``0.0.0.0``, ``::``) that is any loopback address, the
    unspecified address itself (a connection to ``0.0.0.0`` reaches this machine) and
    every address of this machine's interfaces: those of its host name, and any
    address a socket can be bound to here (which only a local address can).
    """
    wanted = _addresses(host)
    if not wanted:
        return False
    bound = _addresses(listening)
    if any(address.is_unspecified for address in bound):  # 0.0.0.0: every interface
        own = _addresses(socket.gethostname()) | _addresses("localhost")
        return any(
            address.is_loopback or address.is_unspecified or address in own or _local(address)
            for address in wanted
        )
    # a connection to 0.0.0.0 goes to the loopback interface
    to_any = any(address.is_unspecified for address in wanted)
    return bool(wanted & bound) or (to_any and any(address.is_loopback for address in bound))


def _local(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` belongs to one of this machine's interfaces: binding a
    socket to it succeeds (nothing is sent)."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


def raw_uids(event: Event) -> tuple[str, str]:
    """``(Series Instance UID, SOP Instance UID)`` of a C-STORE's dataset, found in its
    bytes without decoding it (for a dataset pydicom cannot decode); ``""`` when absent."""
    try:
        raw = getattr(event.request, "DataSet", None)
        data = raw.getvalue() if raw is not None else b""
    except Exception:
        return "", ""
    return _raw_uid(data, b"\x20\x00\x0e\x00"), _raw_uid(data, b"\x08\x00\x18\x00")


def _raw_uid(data: bytes, tag: bytes) -> str:
    """The UID value of little-endian ``tag`` (explicit or implicit VR) in ``data``."""
    at = data.find(tag)
    while at >= 0:
        if data[at + 4 : at + 6] == b"UI":
            length, start = int.from_bytes(data[at + 6 : at + 8], "little"), at + 8
        else:
            length, start = int.from_bytes(data[at + 4 : at + 8], "little"), at + 8
        value = data[start : start + length].rstrip(b"\x00 ").decode("ascii", "replace")
        if 0 < length <= 64 and is_uid(value):
            return value
        at = data.find(tag, at + 1)
    return ""


def _calling_ae(event: Event) -> str:
    title = event.assoc.requestor.ae_title
    return str(title).strip()


def check_node_output(output: Path | None, *, spool: Path, manifest: Path) -> None:
    """Refuse an ``output`` folder a node may not write into (the batch rules).

    The folder must be new, empty or an earlier node's (it holds ``manifest``), and may
    not hold the spool or lie inside it (:func:`medi2i.io.destinations.check_batch_root`).
    ``dicom serve`` has no ``--overwrite``, so the message does not offer one.

    Raises:
        OutputError: One line naming the folder and what to do.
    """
    from medi2i.errors import OutputError
    from medi2i.io.destinations import check_batch_root

    if output is None:
        return
    check_batch_root(output, input_root=spool, overwrite=True, manifest=manifest)
    foreign = output.is_dir() and any(output.iterdir()) and not Path(manifest).exists()
    if foreign or (output.exists() and not output.is_dir()):
        raise OutputError(
            f"--output {output} exists and holds no node manifest ({Path(manifest).name}); "
            "give a new or empty folder, or the --output folder of an earlier node to go on "
            "writing into it"
        )
