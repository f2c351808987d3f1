"""What the DICOM node accepts at association time, its socket hygiene when a forward
fails, and the time at the start of its log lines. Loopback only."""

from __future__ import annotations

import gc
import socket
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from pynetdicom import AE

from medi2i.dicom.node.messages import is_series_warning
from medi2i.dicom.node.negotiation import is_image_class, readable_transfer_syntaxes
from medi2i.dicom.node.send import Peer, send_files
from medi2i.dicom.node.timestamps import stamped, unstamped
from medi2i.testing.dicom_series import write_series
from tests.dicom_node_support import free_port, make_node, wait_for

MR = "1.2.840.10008.5.1.4.1.1.4"
PDF = "1.2.840.10008.5.1.4.1.1.104.1"
MPEG2 = "1.2.840.10008.1.2.4.100"
EXPLICIT = "1.2.840.10008.1.2.1"
RLE = "1.2.840.10008.1.2.5"


def _negotiate(
    tmp_path: Path, contexts: list[tuple[str, str]]
) -> tuple[set[tuple[str, str]], list[str]]:
    """Propose ``contexts`` to a node; the pairs it accepted, and its log once it stopped."""
    lines: list[str] = []
    node = make_node(tmp_path, output=tmp_path / "out", log=lines.append)
    node.start()
    try:
        ae = AE(ae_title="SENDER")
        for sop_class, syntax in contexts:
            ae.add_requested_context(sop_class, syntax)
        host, port = node.address
        assoc = ae.associate(host, port, ae_title="MEDI2I")  # aborted when nothing fits
        accepted = {
            (str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts
        }
        if assoc.is_established:
            assoc.release()
        else:
            wait_for(lambda: any("ended without sending" in line for line in lines), timeout=5)
    finally:
        node.stop(timeout=30)
    return accepted, lines


def test_an_image_context_in_a_syntax_the_reader_cannot_decode_is_rejected(tmp_path: Path) -> None:
    accepted, lines = _negotiate(tmp_path, [(MR, MPEG2)])
    assert accepted == set()
    (line,) = [line for line in lines if "ended without sending" in line]
    assert "from SENDER" in line
    assert "MR Image Storage in MPEG2 Main Profile / Main Level" in line


def test_readable_image_syntaxes_and_non_image_classes_are_accepted(tmp_path: Path) -> None:
    proposed = [(MR, EXPLICIT), (MR, RLE), (PDF, MPEG2)]
    accepted, lines = _negotiate(tmp_path, proposed)
    assert accepted == set(proposed)
    assert not any("ended without sending" in line for line in lines)


def test_readable_syntaxes_follow_the_installed_decoders() -> None:
    found = readable_transfer_syntaxes()
    assert EXPLICIT in found
    assert RLE in found
    assert MPEG2 not in found
    assert is_image_class(MR)
    assert not is_image_class(PDF)


def test_a_forward_to_a_peer_that_is_down_leaves_no_unclosed_socket(tmp_path: Path) -> None:
    files = write_series(tmp_path / "src", np.zeros((2, 4, 4)), modality="MR")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = send_files(files, Peer("127.0.0.1", free_port(), "PACS"), calling_ae_title="X")
        gc.collect()
    assert report.stopped is not None
    assert "connection refused" in report.stopped
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_socket_resource_warning_is_no_series_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with socket.socket() as sock:
            warnings.warn(f"unclosed {sock!r}", ResourceWarning, stacklevel=1)
        warnings.warn("odd value in a tag", UserWarning, stacklevel=1)
    assert [is_series_warning(w) for w in caught] == [False, True]


def test_log_lines_start_with_the_local_time_to_the_second() -> None:
    moment = datetime(2025, 1, 31, 13, 3, 12, 999, tzinfo=timezone(timedelta(hours=1)))
    line = stamped("stopped", moment)
    assert line.endswith(" stopped")
    assert unstamped(line) == "stopped"
    parsed = datetime.fromisoformat(line.split(" ")[0])
    assert parsed == moment.replace(microsecond=0)
    assert parsed.utcoffset() is not None
    assert unstamped("series 1.2.3: received") == "series 1.2.3: received"


def test_the_node_stamps_every_line(tmp_path: Path) -> None:
    lines: list[str] = []
    node = make_node(tmp_path, output=tmp_path / "out", log=lines.append)
    node.start()
    node.stop(timeout=30)
    assert [unstamped(line).split(" ")[0] for line in lines] == ["listening", "stopped"]
    assert all(unstamped(line) != line for line in lines)


def test_signs_of_an_incomplete_series_make_one_warning(tmp_path: Path) -> None:
    import pydicom

    from medi2i.dicom.node.completeness import incompleteness_warnings
    from medi2i.dicom.reading.series_scan import scan_folder

    volume = np.zeros((6, 4, 4))
    whole = write_series(tmp_path / "whole", volume, modality="MR")
    tail = write_series(tmp_path / "tail", volume, modality="MR")
    for path in tail[:2]:
        path.unlink()
    counted = write_series(tmp_path / "counted", volume, modality="MR")
    for path in counted:
        dataset = pydicom.dcmread(path)
        dataset.ImagesInAcquisition = 9
        dataset.save_as(path)

    def warned(folder: Path) -> tuple[str, ...]:
        (series,) = scan_folder(folder).series
        return incompleteness_warnings(series.images)

    assert warned(tmp_path / "whole") == ()
    (tail_warning,) = warned(tmp_path / "tail")
    assert tail_warning.startswith("Warning: Instance Numbers start at 3, not 1")
    (count_warning,) = warned(tmp_path / "counted")
    received = f"is 9 but {len(counted)} were received"
    assert f"Images in Acquisition (0020,1002) {received}" in count_warning
    assert len(whole) == len(counted)
