"""The DICOM node and ``dicom send`` against what an outside tester probed: a forward
loop, instances acknowledged then lost, forged log lines, series the node cannot
translate, reused SOP Instance UIDs, a user's folder as spool, odd UIDs, a sender
that cannot send and half-open connections."""

from __future__ import annotations

import socket
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from medi2i.dicom.node.dicom_node import NodeConfig, check_forward
from medi2i.dicom.node.send import Peer, send_files
from medi2i.dicom.node.spool import MARKER, Spool, TakenSeries, is_uid
from medi2i.errors import OptionsError
from medi2i.testing.dicom_series import write_series
from medi2i.text import one_line
from tests.dicom_node_support import (
    final_statuses,
    free_port,
    make_node,
    peer_of,
    records,
    source_series,
    wait_for,
)
from tests.test_cli import run


def derived_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*.dcm") if ".medi2i" not in str(path))


def statuses_are(manifest: Path, wanted: list[str]) -> bool:
    return final_statuses(manifest) == wanted


# -- 1. a forward loop --------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_forward_to_the_node_itself_is_refused(host: str) -> None:
    config = NodeConfig(port=11112)
    with pytest.raises(OptionsError, match="is this node itself"):
        check_forward(Peer(host, 11112, "ANY"), config)
    check_forward(Peer(host, 11113, "MEDI2I"), config)  # another port: another node
    strict = NodeConfig(port=11112, require_called_aet=True)
    check_forward(Peer(host, 11112, "OTHER"), strict)  # the node refuses that title


def test_the_node_never_translates_its_own_output_nor_another_nodes_of_its_method(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    node = make_node(tmp_path, output=out)
    node.start()
    same = make_node(tmp_path / "same", output=tmp_path / "same" / "out")
    same.start()
    other = make_node(
        tmp_path / "other", output=tmp_path / "other" / "out", method=_method("interpolation")
    )
    other.start()
    manifest = tmp_path / "manifest.jsonl"
    try:
        send_files(source_series(tmp_path / "src"), peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: statuses_are(manifest, ["done"]))
        derived = derived_files(out)
        send_files(derived, peer_of(node), calling_ae_title="MEDI2I")  # routed back
        wait_for(lambda: statuses_are(manifest, ["done", "skipped"]))
        # a second node of the same method (two nodes forwarding to each other)
        send_files(derived, peer_of(same), calling_ae_title="MEDI2I")
        wait_for(lambda: statuses_are(tmp_path / "same" / "manifest.jsonl", ["skipped"]))
        # a chain of another method goes on
        send_files(derived, peer_of(other), calling_ae_title="MEDI2I")
        wait_for(lambda: statuses_are(tmp_path / "other" / "manifest.jsonl", ["done"]))
    finally:
        node.stop(timeout=30)
        same.stop(timeout=30)
        other.stop(timeout=30)
    skipped = records(manifest)[-1]
    assert "a derived series this node wrote" in str(skipped["error"])
    assert len(derived_files(out)) == len(derived)  # nothing new written
    again = str(records(tmp_path / "same" / "manifest.jsonl")[-1]["error"])
    assert "medi2i derived with 'intensity-inversion', this node's method" in again
    assert not derived_files(tmp_path / "same" / "out")


def _method(name: str) -> Any:
    from medi2i.plugins import load_plugins
    from medi2i.prediction import load_method
    from medi2i.registry import Registry

    return load_method(method=name, model=None, options=None, registry=Registry(load_plugins()))


@pytest.mark.parametrize("host", ["0.0.0.0", "::ffff:127.0.0.1", "own"])
def test_a_forward_to_any_own_address_of_a_node_on_all_interfaces_is_refused(host: str) -> None:
    if host == "own":  # a non-loopback address of this machine, when it has one
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect(("192.0.2.1", 9))  # no packet is sent
            except OSError:
                pytest.skip("no route off this machine")
            host = probe.getsockname()[0]
    with pytest.raises(OptionsError, match="is this node itself"):
        check_forward(Peer(host, 11112, "ANY"), NodeConfig(host="0.0.0.0", port=11112))
    check_forward(Peer("192.0.2.77", 11112, "ANY"), NodeConfig(host="0.0.0.0", port=11112))


# -- 2. nothing acknowledged is deleted ---------------------------------------------------


def test_instances_arriving_after_the_translation_are_kept(tmp_path: Path) -> None:
    files = source_series(tmp_path / "src")
    node = make_node(tmp_path, output=tmp_path / "out")
    node.start()
    manifest = tmp_path / "manifest.jsonl"
    try:
        send_files(files[:4], peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: statuses_are(manifest, ["done"]))
        send_files(files[4:], peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: statuses_are(manifest, ["done", "failed"]))
    finally:
        node.stop(timeout=30)
    error = str(records(manifest)[-1]["error"])
    (kept,) = (tmp_path / "spool").glob(".failed-*")
    assert len(list(kept.glob("*.dcm"))) == 2
    assert str(kept) in error
    assert ".medi2i-translated" in error
    assert "delete" in error


def test_a_discarded_series_keeps_its_files(tmp_path: Path) -> None:
    node = make_node(tmp_path, output=tmp_path / "out")
    folder = tmp_path / "spool" / ".taken-1.2.3-00aa"
    folder.mkdir(parents=True)
    (folder / "1.2.3.1.dcm").write_bytes(b"x")
    taken = TakenSeries(
        "1.2.3", folder, 1, complete=False, receive_seconds=0.0, calling_ae_titles=()
    )
    record = node.translator.handle(taken)
    assert record.status == "discarded"
    (kept,) = (tmp_path / "spool").glob(".discarded-*-1.2.3")
    assert (kept / "1.2.3.1.dcm").exists()
    assert str(kept) in str(record.error)


# -- 3. the log ----------------------------------------------------------------------------


def test_control_characters_are_escaped_in_log_lines() -> None:
    assert one_line("evil\nseries 9.9.9: done\r\x1b[2J") == "evil\\nseries 9.9.9: done\\r\\x1b[2J"
    assert one_line("Kopf – Ü 頭部") == "Kopf – Ü 頭部"


def test_a_description_cannot_forge_a_log_line(tmp_path: Path) -> None:
    volume = np.random.default_rng(0).integers(0, 1000, (12, 10, 6)).astype(np.float64)
    files = write_series(
        tmp_path / "src",
        volume,
        modality="MR",
        rescale=(1.0, 0.0),
        description="evil\nseries 9.9.9: received 8 instance(s); translated",
    )
    lines: list[str] = []
    node = make_node(tmp_path, output=tmp_path / "out", log=lines.append)
    node.start()
    try:
        send_files(files[:2] + files[3:], peer_of(node), calling_ae_title="TEST")  # a gap
        wait_for(lambda: statuses_are(tmp_path / "manifest.jsonl", ["failed"]))
    finally:
        node.stop(timeout=30)
    assert all("\n" not in line for line in lines)
    assert any("evil\\nseries 9.9.9" in line for line in lines)


def test_warnings_go_to_the_series_record_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medi2i.dicom.reading.series_volume as reading

    real_read = reading.read_dicom_series

    def warning_read(*args: Any, **kwargs: Any) -> Any:
        warnings.warn("odd value\nin a tag", UserWarning, stacklevel=1)  # as pydicom does
        return real_read(*args, **kwargs)

    monkeypatch.setattr(reading, "read_dicom_series", warning_read)
    lines: list[str] = []
    node = make_node(tmp_path, output=tmp_path / "out", log=lines.append)
    node.start()
    try:
        send_files(source_series(tmp_path / "src"), peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: statuses_are(tmp_path / "manifest.jsonl", ["done"]))
    finally:
        node.stop(timeout=30)
    done = records(tmp_path / "manifest.jsonl")[-1]
    assert done["warnings"] == ["UserWarning: odd value in a tag"]
    assert any("warning: UserWarning: odd value in a tag" in line for line in lines)


# -- 4. series the node cannot translate ---------------------------------------------------


def test_a_localizer_and_an_rt_dose_are_skipped(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    series, study = generate_uid(), generate_uid()
    planes = [(1, 0, 0, 0, 1, 0), (1, 0, 0, 0, 0, -1), (0, 1, 0, 0, 0, -1)]
    scout = [
        write_series(
            tmp_path / "scout" / str(i),
            np.ones((8, 8, 1)),
            orientation=plane,
            modality="MR",
            rescale=(1.0, 0.0),
            series_uid=series,
            study_uid=study,
        )[0]
        for i, plane in enumerate(planes)
    ]
    node = make_node(tmp_path, output=tmp_path / "out")
    node.start()
    manifest = tmp_path / "manifest.jsonl"
    try:
        send_files(scout, peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: statuses_are(manifest, ["skipped"]))
        dose = Path(str(get_testdata_file("rtdose.dcm")))
        send_files([dose], peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: statuses_are(manifest, ["skipped", "skipped"]))
    finally:
        node.stop(timeout=30)
    localizer, rtdose = (r for r in records(manifest) if r["status"] == "skipped")
    assert "localizer (scout)" in str(localizer["error"])
    assert "RTDOSE" in str(rtdose["error"])
    assert "meta[" not in str(rtdose["error"])
    assert not list((tmp_path / "spool").glob(".failed-*"))


# -- 5. two images, one SOP Instance UID -----------------------------------------------------


def test_the_spool_notes_two_images_with_one_sop_instance_uid(tmp_path: Path) -> None:
    spool = Spool(tmp_path, idle_timeout=0.0)
    spool.store("1.2.3", "1.2.3.1", b"same", association="a")
    spool.store("1.2.3", "1.2.3.1", b"same", association="a")  # a retry: no collision
    spool.store("1.2.3", "1.2.3.2", b"one", association="a")
    spool.store("1.2.3", "1.2.3.2", b"another", association="a")
    spool.end_association("a", released=True)
    (taken,) = spool.take_due()
    assert taken.collisions == ("1.2.3.2",)


def test_a_failure_names_a_reused_sop_instance_uid(tmp_path: Path) -> None:
    files = sorted(source_series(tmp_path / "src"), key=lambda f: pydicom.dcmread(f).InstanceNumber)
    first = pydicom.dcmread(files[1])  # inner slices: either one lost leaves a gap
    other = pydicom.dcmread(files[3])
    other.SOPInstanceUID = first.SOPInstanceUID
    other.file_meta.MediaStorageSOPInstanceUID = first.SOPInstanceUID
    other.save_as(files[3])
    node = make_node(tmp_path, output=tmp_path / "out")
    node.start()
    try:
        send_files(files, peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: statuses_are(tmp_path / "manifest.jsonl", ["failed"]))
    finally:
        node.stop(timeout=30)
    error = str(records(tmp_path / "manifest.jsonl")[-1]["error"])
    assert f"received twice with different images (e.g. {first.SOPInstanceUID})" in error


# -- 6, 7. the spool folder ------------------------------------------------------------------


def test_a_folder_of_the_user_is_refused_as_spool(tmp_path: Path) -> None:
    (tmp_path / "mine" / "1.2.3").mkdir(parents=True)
    with pytest.raises(OptionsError, match="not a DICOM node's spool"):
        Spool(tmp_path / "mine", idle_timeout=1.0)
    assert (tmp_path / "mine" / "1.2.3").is_dir()
    Spool(tmp_path / "new", idle_timeout=1.0)
    assert (tmp_path / "new" / MARKER).exists()
    Spool(tmp_path / "new", idle_timeout=1.0)  # its own spool, again


def test_serve_refuses_a_work_folder_that_is_no_spool(tmp_path: Path) -> None:
    (tmp_path / "mine" / "1.2.3").mkdir(parents=True)
    result = run(
        "dicom",
        "serve",
        "--method",
        "intensity-inversion",
        "--port",
        "0",
        "--output",
        str(tmp_path / "out"),
        "--work",
        str(tmp_path / "mine"),
    )
    assert result.exit_code == 1
    assert "not a DICOM node's spool" in result.output
    assert (tmp_path / "mine" / "1.2.3").is_dir()


# -- 8. UIDs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("1.2.3", True),
        ("1.0.3", True),
        ("0", True),
        ("1.2.3\n", False),
        ("1.02.3", False),
        ("01.2", False),
        ("1..2", False),
        ("1.2.", False),
    ],
)
def test_a_uid_is_matched_whole_without_leading_zeros(value: str, valid: bool) -> None:
    assert is_uid(value) is valid


# -- 9. dicom send ------------------------------------------------------------------------------


def test_send_reports_a_rejected_association_once_with_its_reason(tmp_path: Path) -> None:
    source_series(tmp_path / "src")
    node = make_node(tmp_path, output=tmp_path / "out", require_called_aet=True)
    node.start()
    try:
        host, port = node.address
        result = run("dicom", "send", str(tmp_path / "src"), f"{host}:{port}:WRONG")
    finally:
        node.stop(timeout=30)
    assert result.exit_code == 1
    failed = [line for line in result.output.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1
    assert "rejected the association (Called AE title not recognised)" in failed[0]


# pynetdicom 3.0 leaves the socket of a refused connection for the garbage collector
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_send_says_when_nothing_listens(tmp_path: Path) -> None:
    source_series(tmp_path / "src")
    port = free_port()
    result = run("dicom", "send", str(tmp_path / "src"), f"127.0.0.1:{port}:NOBODY")
    assert result.exit_code == 1
    assert f"no DICOM node listening at 127.0.0.1:{port} (connection refused)" in result.output
    assert result.output.count("failed:") == 1


def test_send_refuses_a_folder_without_dicom_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run("dicom", "send", str(tmp_path / "empty"), "127.0.0.1:11112:PACS")
    assert result.exit_code == 1
    assert f"no DICOM files under {tmp_path / 'empty'}" in result.output


def test_send_counts_an_unreadable_file_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = source_series(tmp_path / "src")
    (tmp_path / "src" / "notes.txt").write_text("not DICOM")
    locked = files[0]
    real_open = Path.open

    def guarded(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == locked:  # as a file without read permission (the tests run as root)
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", guarded)
    node = make_node(tmp_path, output=tmp_path / "out")
    node.start()
    try:
        host, port = node.address
        result = run("dicom", "send", str(tmp_path / "src"), f"{host}:{port}:MEDI2I")
    finally:
        node.stop(timeout=30)
    assert result.exit_code == 1
    assert "cannot read this file (Permission denied): 1 file(s)" in result.output
    assert "skipped: not a DICOM file with file meta information: 1 file(s)" in result.output
    assert "sent 5 file(s)" in result.output


# -- 10. half-open connections -------------------------------------------------------------------


def test_half_open_connections_do_not_block_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medi2i.dicom.node.dicom_node as node_module

    monkeypatch.setattr(node_module, "HANDSHAKE_TIMEOUT_S", 0.5)
    node = make_node(tmp_path, output=tmp_path / "out")
    node.start()
    stalled = []
    try:
        for _ in range(12):
            connection = socket.create_connection(node.address)
            connection.sendall(b"\x01\x00\x00\x00\x01")  # 5 bytes of a request, then nothing
            stalled.append(connection)
        started = time.monotonic()
        report = send_files(source_series(tmp_path / "src"), peer_of(node), calling_ae_title="T")
        assert (len(report.sent), time.monotonic() - started < 10) == (6, True)
        stalled[0].settimeout(5)
        assert stalled[0].recv(10) == b""  # closed after the handshake timeout
    finally:
        for connection in stalled:
            connection.close()
        node.stop(timeout=30)
