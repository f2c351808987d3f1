"""Bounding what a DICOM node's peers can hold: stalled connections and shutdown.

pynetdicom reads a PDU with blocking ``recv`` calls on the accepted socket, which has no
timeout of its own: a peer that sends the first bytes of a PDU (a 6-byte
A-ASSOCIATE-RQ header announcing 196 bytes) and then nothing holds the reading thread,
and the association slot, forever; the ACSE, DIMSE and network timeouts are checked
between PDUs, never inside one. :func:`stall_limit` gives every accepted socket a
timeout, so a read that gets no byte for that long fails and pynetdicom closes the
connection (``Evt17``). An idle association is not affected: pynetdicom reads only
once data is waiting, and its own network timeout aborts an idle one. Until the
association is established the limit is shorter (:data:`HANDSHAKE_TIMEOUT_S`: a real
peer sends its request at once), and :func:`established_limit` raises it to the
network timeout then, so that connections that stall in their request free their
association slot within seconds.

:func:`close_associations` is the node's shutdown: pynetdicom's blocking
``Association.abort()`` waits for a reader stuck in such a ``recv``, so the node asks
every association to abort without waiting, and shuts down the sockets of those that
have not ended within a grace period, which wakes a blocked read at once.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.events import Event

ABORT_GRACE_S = 1.0
"""Seconds an aborted association has to end by itself before its socket is shut."""
HANDSHAKE_TIMEOUT_S = 5.0
"""Seconds a new connection may stall in the middle of its association request."""


def _raw_socket(association: Association) -> Any:
    """The connected ``socket.socket`` of ``association``, or ``None``."""
    return getattr(getattr(association.dul, "socket", None), "socket", None)


def stall_limit(seconds: float) -> Callable[[Event], None]:
    """A pynetdicom ``EVT_CONN_OPEN`` handler giving the new connection's socket a
    timeout of ``seconds``: a peer that stops for that long in the middle of a PDU (or
    does not read what the node sends) is disconnected."""

    def limit(event: Event) -> None:
        connection = _raw_socket(event.assoc)
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.settimeout(seconds)

    return limit


def established_limit(seconds: float) -> Callable[[Event], None]:
    """A pynetdicom ``EVT_ESTABLISHED`` handler setting the socket timeout of an
    association that was just established to ``seconds`` (see :func:`stall_limit`)."""
    return stall_limit(seconds)


def close_associations(
    associations: Sequence[Association], *, grace: float = ABORT_GRACE_S
) -> None:
    """Abort ``associations`` and make sure their connections close within about
    ``grace`` seconds (plus a short wait for their threads), even when a peer stalls."""
    for association in associations:
        with contextlib.suppress(Exception):  # one broken association must not stop the rest
            association.abort(block=False)
    deadline = time.monotonic() + grace
    for association in associations:
        association.join(max(0.0, deadline - time.monotonic()))
    stuck = [association for association in associations if association.is_alive()]
    for association in stuck:
        connection = _raw_socket(association)
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
    deadline = time.monotonic() + grace
    for association in stuck:
        association.join(max(0.0, deadline - time.monotonic()))
