"""medi2i's C-STORE sender against pynetdicom storage SCPs that misbehave.

A file an association lost (aborted, or no response) is sent once more in a new
association; a file the peer refused with a status is not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from medi2i.dicom.node.send import Peer, SendReport, send_files
from tests.test_dicom_node import source_series


def send_to_scp(files: list[Path], on_store: Callable[[Any], int]) -> SendReport:
    """``send_files`` to a pynetdicom storage SCP whose C-STORE handler is ``on_store``."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import MRImageStorage  # type: ignore[attr-defined]

    ae = AE(ae_title="PACS")
    ae.add_supported_context(MRImageStorage, "1.2.840.10008.1.2.1")
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    assert server is not None
    try:
        port = int(server.server_address[1])
        return send_files(files, Peer("127.0.0.1", port, "PACS"), calling_ae_title="TEST")
    finally:
        server.shutdown()


def test_files_a_dropped_association_lost_are_sent_again_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medi2i.dicom.node.send as send_module

    monkeypatch.setattr(send_module, "NETWORK_TIMEOUT_S", 3.0)  # the lost file's wait
    stored: list[tuple[int, str]] = []  # (association, SOP Instance UID)
    associations: list[object] = []
    drops = {"left": 1}

    def on_store(event: Any) -> int:
        if event.assoc not in associations:
            associations.append(event.assoc)
        if drops["left"] and len([s for s in stored if s[0] == 0]) == 2:
            drops["left"] -= 1
            event.assoc.abort()  # the third file of the first association: no answer
            return 0xC000
        stored.append((associations.index(event.assoc), str(event.request.AffectedSOPInstanceUID)))
        return 0x0000

    report = send_to_scp(source_series(tmp_path / "src"), on_store)
    assert drops["left"] == 0  # the first association was dropped
    assert (len(report.sent), report.failed) == (6, [])
    assert len(report.retried) == 4  # the lost third file and the three after it
    assert "4 sent again" in report.summary()
    assert [a for a, _ in stored] == [0, 0, 1, 1, 1, 1]
    assert len({uid for _, uid in stored}) == 6


def test_a_refusal_is_not_sent_again(tmp_path: Path) -> None:
    calls: list[int] = []

    def on_store(event: Any) -> int:
        calls.append(1)
        return 0xA700  # out of resources: a refusal with a status, not a lost file

    report = send_to_scp(source_series(tmp_path / "src"), on_store)
    assert (len(calls), report.retried, len(report.failed)) == (6, [], 6)
    assert all("0xA700" in reason for _, reason in report.failed)
