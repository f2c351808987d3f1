"""A DICOM node: receive series over the network, translate them, store or forward the result.

:class:`DicomNode` is a C-STORE SCP and Verification SCP (a pynetdicom application
entity) that accepts every storage SOP Class in any transfer syntax. Received instances
go to the spool (:mod:`medi2i.dicom.node.spool`, which also holds the rule for when a
series is complete); a worker thread takes each complete series out and hands it to a
:class:`~medi2i.dicom.node.translation.SeriesTranslator` (translate, store under
``output``, forward to a peer, one manifest record and one log line per series). One
series is translated at a time, in the order they complete.

Starting, the node first sets aside what a killed node left in the spool
(:meth:`~medi2i.dicom.node.spool.Spool.recover`: never translated, one log line each).

Refused with a failure status, never crashing the node: a dataset that cannot be
decoded or is damaged (``0xC210``: cut short, its pixel data shorter than its image
needs; the series it belongs to is then discarded unless the instance is sent again
whole, so no series is translated without it), one without valid Study, Series and SOP
Instance UIDs or whose SOP Class is not the one negotiated (``0xA900``), and one that
cannot be written (``0xA700``, e.g. a full disk). Instances arriving while the node
stops are refused with ``0xA700`` too, so the sender knows they were not kept.

Stopping (:meth:`DicomNode.stop`, which the command line calls on SIGINT and SIGTERM):
the server stops listening and open associations are aborted, the worker finishes the
translation in progress (its output is written atomically, so an interrupt never leaves
a partial series at a final path) and starts no other. Series still in the spool stay
there and are reported.

Example:
    >>> node = DicomNode(config, translator=translator)  # doctest: +SKIP
    >>> node.start(); ...; node.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medi2i.dicom.node.send import disable_nagle
from medi2i.dicom.node.spool import Spool, is_uid
from medi2i.dicom.node.translation import SeriesTranslator, describe
from medi2i.dicom.reading.file_records import instance_damage

if TYPE_CHECKING:
    from pynetdicom.events import Event
    from pynetdicom.transport import ThreadedAssociationServer

STORE_SUCCESS = 0x0000
STORE_OUT_OF_RESOURCES = 0xA700
STORE_NOT_MATCHING = 0xA900
STORE_CANNOT_UNDERSTAND = 0xC210
NETWORK_TIMEOUT_S = 30.0
"""Seconds a silent peer may keep an association open before it is aborted."""


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
    """

    ae_title: str = "MEDI2I"
    host: str = "127.0.0.1"
    port: int = 11112
    idle_timeout: float = 10.0
    poll_interval: float = 0.1


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
        self.log = log
        self._stopping = threading.Event()
        self._server: ThreadedAssociationServer | None = None
        self._worker: threading.Thread | None = None
        self._ae: object | None = None

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
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        for leftover in self.spool.recover():
            self.log(leftover.describe())
        ae = AE(ae_title=self.config.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = NETWORK_TIMEOUT_S
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, disable_nagle),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_ended),
            (evt.EVT_CONN_CLOSE, self._on_ended),
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
        """Stop listening, finish the translation in progress, start no other."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
        if self._worker is not None:
            self._worker.join(timeout)
        waiting = self.spool.waiting()
        if waiting:
            count = sum(len(entry.instances) for entry in waiting)
            self.log(
                f"stopped; {len(waiting)} series ({count} instance(s)) not complete, left in "
                f"{self.spool.root}"
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
        taken = self.spool.take_due()
        for series in taken:
            if self._stopping.is_set():
                series.discard()
                self.log(
                    f"series {series.series_uid}: received {series.instances} instance(s); "
                    "not translated: the node stopped"
                )
                continue
            self.log(describe(self.translator.handle(series)))
        return len(taken)

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
            return STORE_OUT_OF_RESOURCES
        try:
            dataset = event.dataset
            negotiated = str(event.context.abstract_syntax)
            sop_class = str(dataset.get("SOPClassUID", ""))
            series_uid = str(dataset.get("SeriesInstanceUID", ""))
            sop_uid = str(dataset.get("SOPInstanceUID", ""))
            study_uid = str(dataset.get("StudyInstanceUID", ""))
        except Exception:  # anything a garbage dataset makes pydicom raise
            return STORE_CANNOT_UNDERSTAND
        if sop_class != negotiated or not all(map(is_uid, (series_uid, sop_uid, study_uid))):
            return STORE_NOT_MATCHING
        encoded = event.encoded_dataset(include_meta=True)
        damage = instance_damage(encoded)
        if damage is not None:
            self.spool.refuse(
                series_uid,
                sop_uid,
                damage,
                association=event.assoc,
                calling_ae_title=_calling_ae(event),
            )
            self.log(f"series {series_uid}: refused damaged instance {sop_uid}: {damage}")
            return STORE_CANNOT_UNDERSTAND
        try:
            self.spool.store(
                series_uid,
                sop_uid,
                encoded,
                association=event.assoc,
                calling_ae_title=_calling_ae(event),
            )
        except OSError:
            return STORE_OUT_OF_RESOURCES
        return STORE_SUCCESS

    def _on_released(self, event: Event) -> None:
        self.spool.end_association(event.assoc, released=True)

    def _on_ended(self, event: Event) -> None:
        # after a release nothing of this association is open any more: a no-op then
        self.spool.end_association(event.assoc, released=False)


def _calling_ae(event: Event) -> str:
    title = event.assoc.requestor.ae_title
    return str(title).strip()


def check_node_output(output: Path | None, *, spool: Path, manifest: Path) -> None:
    """Refuse an ``output`` folder a node may not write into (the batch rules).

    The folder must be new, empty or an earlier node's (it holds ``manifest``), and may
    not hold the spool or lie inside it (:func:`medi2i.io.destinations.check_batch_root`).

    Raises:
        OutputError: One line naming the folder and what to do.
    """
    from medi2i.io.destinations import check_batch_root

    if output is not None:
        check_batch_root(output, input_root=spool, overwrite=False, manifest=manifest)
