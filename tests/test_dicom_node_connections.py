"""The DICOM node against peers that stall: a connection cut off in the middle of a PDU
is dropped after the network timeout, and stopping the node does not wait for it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medi2i.dicom.node.dicom_node import DicomNode
from medi2i.dicom.node.timestamps import unstamped
from tests.dicom_node_support import make_node, wait_for

ASSOCIATE_RQ_HEADER = b"\x01\x00\x00\x00\x00\xc4"
"""The first 6 bytes of an A-ASSOCIATE-RQ announcing 196 bytes that never come."""


@contextmanager
def stalled_peer(node: DicomNode) -> Iterator[socket.socket]:
    """A raw connection to ``node`` that sent a PDU header and then nothing."""
    peer = socket.create_connection(node.address, timeout=5)
    try:
        peer.sendall(ASSOCIATE_RQ_HEADER)
        yield peer
    finally:
        peer.close()


def closed_by_node(peer: socket.socket) -> bool:
    """Whether the node closed ``peer``'s connection (without waiting for it)."""
    peer.setblocking(False)
    try:
        return peer.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def active(node: DicomNode) -> int:
    assert node._server is not None
    return len(node._server.active_associations)


def test_a_peer_that_stalls_mid_pdu_is_dropped_after_the_network_timeout(
    tmp_path: Path,
) -> None:
    node = make_node(tmp_path, output=tmp_path / "out", network_timeout=1.0)
    node.start()
    try:
        with stalled_peer(node) as peer:
            wait_for(lambda: active(node) == 1, timeout=10)
            started = time.monotonic()
            wait_for(lambda: closed_by_node(peer), timeout=15)
            assert time.monotonic() - started < 10
            wait_for(lambda: active(node) == 0, timeout=10)  # its slot is free again
    finally:
        node.stop(timeout=30)


def test_stopping_closes_a_stalled_connection_at_once(tmp_path: Path) -> None:
    lines: list[str] = []
    node = make_node(tmp_path, output=tmp_path / "out", log=lines.append, network_timeout=60.0)
    node.start()
    with stalled_peer(node) as peer:
        wait_for(lambda: active(node) == 1, timeout=10)
        stopper = threading.Thread(target=node.stop, kwargs={"timeout": 30}, daemon=True)
        started = time.monotonic()
        stopper.start()
        stopper.join(15)  # the peer's own close (when this block ends) would end it too
        took = time.monotonic() - started
        assert not stopper.is_alive(), "stop() waited for the stalled peer"
        assert took < 10
        assert closed_by_node(peer)
    assert unstamped(lines[-1]) == "stopped"
