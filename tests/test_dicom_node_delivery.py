"""The DICOM node never translates a series short of an instance it refused, never
replaces an output with one made from fewer instances, and never loses what it
acknowledged: a full spool, a series sent in two parts or reused in two studies, an
unwritable output, a peer that is down, a node that stops. Loopback only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medi2i.dicom.node.dicom_node import DicomNode
from medi2i.dicom.node.send import Peer, send_files
from medi2i.dicom.node.spool import Spool
from medi2i.dicom.node.timestamps import unstamped
from medi2i.testing.dicom_series import write_series
from tests.dicom_node_support import (
    METHOD,
    final_statuses,
    free_port,
    make_node,
    needs_dcmtk,
    peer_of,
    records,
    source_series,
    wait_for,
)

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def started(node: DicomNode) -> DicomNode:
    node.start()
    return node


def derived_files(output: Path) -> list[Path]:
    return sorted(output.glob(f"*/{METHOD}/*.dcm"))


def set_aside(spool: Path, kind: str) -> list[Path]:
    return sorted(spool.glob(f".{kind}-*"))


# -- 1. an instance refused for any reason holds its series back -----------------------------


def test_an_instance_the_spool_could_not_write_keeps_its_series_from_translation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = source_series(tmp_path / "src")
    lost = str(pydicom.dcmread(files[2]).SOPInstanceUID)
    real_store = Spool.store
    full = [True]

    def store(self: Spool, series_uid: str, sop_uid: str, *args: object, **kw: object) -> Path:
        if sop_uid == lost and full[0]:
            raise OSError(28, "No space left on device")
        return real_store(self, series_uid, sop_uid, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Spool, "store", store)
    lines: list[str] = []
    node = started(make_node(tmp_path, output=tmp_path / "out", log=lines.append))
    manifest = tmp_path / "manifest.jsonl"
    try:
        report = send_files(files, peer_of(node), calling_ae_title="TEST")
        assert len(report.sent) == 5
        assert "0xA700" in report.failed[0][1]  # the sender is told
        wait_for(lambda: final_statuses(manifest) == ["discarded"])
        full[0] = False  # space again: the sender retries the whole series
        send_files(files, peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: final_statuses(manifest) == ["discarded", "done"])
    finally:
        node.stop(timeout=30)
    error = str(records(manifest)[0]["error"])
    assert f"SOP Instance {lost}: it could not be written to the spool" in error
    assert any(f"refused instance {lost}" in line for line in lines)
    assert len(derived_files(tmp_path / "out")) == 6


# -- 2. a later part never replaces the output of the whole ------------------------------------


def test_a_part_arriving_after_its_series_was_translated_keeps_the_earlier_output(
    tmp_path: Path,
) -> None:
    files = source_series(tmp_path / "src")
    out = tmp_path / "out"
    node = started(make_node(tmp_path, output=out))
    manifest = tmp_path / "manifest.jsonl"
    try:
        send_files(files[:4], peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: final_statuses(manifest) == ["done"])
        first = {path.name: path.read_bytes() for path in derived_files(out)}
        send_files(files[4:], peer_of(node), calling_ae_title="TEST")  # after the idle time
        wait_for(lambda: final_statuses(manifest) == ["done", "failed"])
        assert {path.name: path.read_bytes() for path in derived_files(out)} == first
        send_files(files, peer_of(node), calling_ae_title="TEST")  # a full resend replaces it
        wait_for(lambda: final_statuses(manifest) == ["done", "failed", "done"])
    finally:
        node.stop(timeout=30)
    failed = records(manifest)[3]
    assert failed["status"] == "failed"
    error = str(failed["error"])
    assert "2 instance(s) arrived after this series was translated" in error
    assert "(made from 4 instance(s) at " in error
    assert "lacks these 2 instance(s) and is INCOMPLETE" in error
    assert ".medi2i-translated" in error
    assert "send the WHOLE series again" in error
    assert "longer --idle-timeout" in error
    assert "send them to the node again" not in error  # alone: another partial series
    assert records(manifest)[1]["replaces"] is None
    assert str(records(manifest)[5]["replaces"]).startswith("the derived series made from 4")
    assert len(derived_files(out)) == 6


@needs_dcmtk
def test_a_forwarding_node_does_not_forward_a_later_part_alone(
    tmp_path: Path, storescp: tuple[Peer, Path]
) -> None:
    peer, received = storescp
    files = source_series(tmp_path / "src")
    node = started(make_node(tmp_path, output=None, forward=peer))
    manifest = tmp_path / "manifest.jsonl"
    try:
        send_files(files[:4], peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: final_statuses(manifest) == ["done"])
        send_files(files[4:], peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: final_statuses(manifest) == ["done", "failed"])
    finally:
        node.stop(timeout=30)
    assert len(list(received.iterdir())) == 4  # only the derived series of the first part


# -- 3. one Series Instance UID in two studies --------------------------------------------------


def test_a_series_uid_reused_in_two_studies_is_refused(tmp_path: Path) -> None:
    series_uid = generate_uid()
    volume = np.random.default_rng(2).integers(1, 1000, (12, 10, 6)).astype(np.float64)
    axial = write_series(tmp_path / "a", volume, modality="MR", series_uid=series_uid)
    sagittal = write_series(
        tmp_path / "b", volume, modality="MR", series_uid=series_uid, orientation=SAGITTAL
    )
    node = started(make_node(tmp_path, output=tmp_path / "out"))
    manifest = tmp_path / "manifest.jsonl"
    try:
        send_files(axial + sagittal, peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: final_statuses(manifest) == ["failed"])
    finally:
        node.stop(timeout=30)
    error = str(records(manifest)[-1]["error"])
    assert "its instances belong to 2 studies" in error
    assert not derived_files(tmp_path / "out")


# -- 4. de-identified: no source name in the log or the manifest --------------------------------


def _planted(folder: Path, description: str, **options: object) -> list[Path]:
    volume = np.random.default_rng(3).integers(1, 1000, (12, 10, 6)).astype(np.float64)
    return write_series(
        folder, volume, modality="MR", rescale=(1.0, 0.0), description=description, **options
    )  # type: ignore[arg-type]


def test_a_de_identified_node_names_no_source_in_its_log_or_manifest(tmp_path: Path) -> None:
    secret = "T1 MPRAGE SECRETDESC"
    gap = _planted(tmp_path / "gap", secret)
    mixed_uid, mixed_study = generate_uid(), generate_uid()
    mixed = _planted(tmp_path / "mix", secret, series_uid=mixed_uid, study_uid=mixed_study)
    mixed += _planted(
        tmp_path / "mix2",
        secret,
        series_uid=mixed_uid,
        study_uid=mixed_study,
        orientation=SAGITTAL,
        attributes={"FrameOfReferenceUID": generate_uid()},
    )
    damaged = _planted(tmp_path / "damaged", secret)
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(damaged[-1].read_bytes()[:-50])
    needles = {secret, "SECRETDESC", "TEST"}
    for path in [*gap, *mixed, *damaged]:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        needles |= {
            str(dataset.SOPInstanceUID),
            str(dataset.SeriesInstanceUID),
            str(dataset.StudyInstanceUID),
            str(dataset.FrameOfReferenceUID),
        }
    lines: list[str] = []
    node = started(make_node(tmp_path, output=tmp_path / "out", deidentify=True, log=lines.append))
    manifest = tmp_path / "manifest.jsonl"
    try:
        send_files(gap[:2] + gap[3:], peer_of(node), calling_ae_title="TEST")
        send_files(mixed, peer_of(node), calling_ae_title="TEST")
        send_files([*damaged[:-1], cut], peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: len(final_statuses(manifest)) == 3)
    finally:
        node.stop(timeout=30)
    text = "\n".join(lines) + manifest.read_text()
    assert "missing slice" in text
    assert "mixed orientations" in text
    assert "refused instance" in text
    leaks = sorted(needle for needle in needles if needle in text)
    assert leaks == [], text


# -- 5. an unwritable output: the series is told and its instances kept ------------------------


def test_an_unwritable_output_and_manifest_keep_the_received_instances(tmp_path: Path) -> None:
    files = source_series(tmp_path / "src")
    series_uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    out = tmp_path / "out"
    out.mkdir()
    (out / series_uid).write_text("a file where the series folder would go")
    manifest = tmp_path / "book" / "manifest.jsonl"
    manifest.mkdir(parents=True)  # a folder where the manifest would go: never writable
    lines: list[str] = []
    node = started(make_node(tmp_path, output=out, log=lines.append, manifest=manifest))
    try:
        send_files(files, peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: any("failed" in line for line in lines))
    finally:
        node.stop(timeout=30)
    (line,) = [line for line in lines if unstamped(line).startswith(f"series {series_uid}")]
    assert "received 6 instance(s) from TEST; failed: cannot write" in line
    assert f"the manifest {manifest} could not be written" in line
    (kept,) = set_aside(tmp_path / "spool", "failed")
    assert str(kept) in line
    assert len(list(kept.glob("*.dcm"))) == 6
    assert not any(unstamped(line).startswith("worker error") for line in lines)


# -- 6. forwarding failures keep the derived series and are counted -----------------------------


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_derived_series_a_down_peer_did_not_get_is_kept(tmp_path: Path) -> None:
    down = Peer("127.0.0.1", free_port(), "DOWN")
    node = started(make_node(tmp_path, output=None, forward=down))
    manifest = tmp_path / "manifest.jsonl"
    try:
        send_files(source_series(tmp_path / "src"), peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: final_statuses(manifest) == ["failed"])
    finally:
        node.stop(timeout=30)
    record = records(manifest)[-1]
    (kept,) = set_aside(tmp_path / "spool", "unforwarded")
    assert len(list(kept.glob(f"{METHOD}/*.dcm"))) == 6
    assert record["outputs"] == [str(kept / METHOD)]
    assert record["forwarded"] == {"sent": 0, "failed": 6}
    assert f"the derived series is kept in {kept / METHOD}" in str(record["error"])


@pytest.fixture
def half_refusing_peer() -> Iterator[Peer]:
    """A C-STORE SCP that refuses every second instance with 0xA700."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    count = [0]
    lock = threading.Lock()

    def on_store(event: object) -> int:
        with lock:
            count[0] += 1
            return 0xA700 if count[0] % 2 == 0 else 0x0000

    ae = AE(ae_title="HALF")
    ae.supported_contexts = AllStoragePresentationContexts
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        yield Peer("127.0.0.1", int(server.server_address[1]), "HALF")
    finally:
        server.shutdown()


def test_a_partial_forward_records_the_output_and_the_counts(
    tmp_path: Path, half_refusing_peer: Peer
) -> None:
    out = tmp_path / "out"
    node = started(make_node(tmp_path, output=out, forward=half_refusing_peer))
    manifest = tmp_path / "manifest.jsonl"
    try:
        send_files(source_series(tmp_path / "src"), peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: final_statuses(manifest) == ["failed"])
    finally:
        node.stop(timeout=30)
    record = records(manifest)[-1]
    (folder,) = out.glob(f"*/{METHOD}")
    assert record["outputs"] == [str(folder)]
    assert record["forwarded_to"] == str(half_refusing_peer)
    assert record["forwarded"] == {"sent": 3, "failed": 3}
    assert "forwarded 3 of 6 derived file(s)" in str(record["error"])


# -- 7. stopping: released series are translated, the others kept --------------------------------


def test_stopping_translates_a_released_series_and_keeps_an_unfinished_one(
    tmp_path: Path,
) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import MRImageStorage  # type: ignore[attr-defined]

    released = source_series(tmp_path / "src")
    unfinished = _planted(tmp_path / "open", "open")
    lines: list[str] = []
    node = started(make_node(tmp_path, output=tmp_path / "out", idle_timeout=600, log=lines.append))
    ae = AE(ae_title="TEST")
    ae.add_requested_context(MRImageStorage, "1.2.840.10008.1.2.1")
    try:
        send_files(released, peer_of(node), calling_ae_title="TEST")
        host, port = node.address
        association = ae.associate(host, port, ae_title="MEDI2I")
        for path in unfinished[:3]:
            assert association.send_c_store(path).Status == 0
    finally:
        node.stop(timeout=30)
        ae.shutdown()
    statuses = sorted(final_statuses(tmp_path / "manifest.jsonl"))
    assert statuses == ["done", "interrupted"]
    assert len(derived_files(tmp_path / "out")) == 6
    (kept,) = set_aside(tmp_path / "spool", "interrupted")
    assert len(list(kept.glob("*.dcm"))) == 3
    interrupted = [r for r in records(tmp_path / "manifest.jsonl") if r["status"] == "interrupted"]
    assert str(kept) in str(interrupted[0]["error"])
    assert any("interrupted" in line and str(kept) in line for line in lines)


# -- 9. objects that are no images --------------------------------------------------------------


def test_a_structured_report_is_skipped_as_no_image_series(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    report = Dataset()
    report.file_meta = FileMetaDataset()
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    report.SOPInstanceUID = report.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    report.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    report.StudyInstanceUID, report.SeriesInstanceUID = generate_uid(), generate_uid()
    report.Modality, report.ValueType = "SR", "CONTAINER"
    path = tmp_path / "sr.dcm"
    report.save_as(path, enforce_file_format=True)
    node = started(make_node(tmp_path, output=tmp_path / "out"))
    try:
        send_files([path], peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: final_statuses(tmp_path / "manifest.jsonl") == ["skipped"])
    finally:
        node.stop(timeout=30)
    assert str(records(tmp_path / "manifest.jsonl")[-1]["error"]).startswith(
        "not an image series (SR)"
    )


# -- 10. who may associate ----------------------------------------------------------------------


def test_required_called_aet_and_allowed_calling_titles_refuse_other_peers(
    tmp_path: Path,
) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    lines: list[str] = []
    node = started(
        make_node(
            tmp_path,
            output=tmp_path / "out",
            log=lines.append,
            require_called_aet=True,
            allowed_calling=("SCANNER",),
        )
    )
    host, port = node.address
    outcomes = {}
    try:
        for calling, called in [("SCANNER", "MEDI2I"), ("SCANNER", "ANY"), ("OTHER", "MEDI2I")]:
            ae = AE(ae_title=calling)
            ae.add_requested_context(Verification)
            association = ae.associate(host, port, ae_title=called)
            outcomes[calling, called] = association.is_established
            if association.is_established:
                association.release()
            ae.shutdown()
    finally:
        node.stop(timeout=30)
    assert outcomes == {
        ("SCANNER", "MEDI2I"): True,
        ("SCANNER", "ANY"): False,
        ("OTHER", "MEDI2I"): False,
    }
    refusals = [line for line in lines if unstamped(line).startswith("refused an association")]
    assert len(refusals) == 2
    assert "called AE title is not MEDI2I: 'ANY'" in refusals[0]
    assert "calling AE title is not allowed (--allow-calling): 'OTHER'" in refusals[1]


# -- 6. a series that cannot be read: kept, and told in the sender's terms ---------------------


def test_a_series_short_of_a_slice_is_kept_and_its_gap_named_by_instance_number(
    tmp_path: Path,
) -> None:
    files = source_series(tmp_path / "src")
    numbers = {int(pydicom.dcmread(path).InstanceNumber): path for path in files}
    sent = [path for number, path in sorted(numbers.items()) if number != 3]
    lines: list[str] = []
    node = started(make_node(tmp_path, output=tmp_path / "out", log=lines.append))
    manifest = tmp_path / "manifest.jsonl"
    try:
        send_files(sent, peer_of(node), calling_ae_title="TEST")
        wait_for(lambda: final_statuses(manifest) == ["failed"])
    finally:
        node.stop(timeout=30)
    error = str(records(manifest)[-1]["error"])
    assert "missing slices" in error
    assert "between instance 2 and instance 4" in error
    assert ".taken-" not in error  # a folder that is gone once the series is recorded
    assert "have the sender send the whole series again" in error
    (kept,) = set_aside(tmp_path / "spool", "failed")
    assert f"kept in {kept}" in error
    assert len(list(kept.glob("*.dcm"))) == len(sent)
    assert any(error in line for line in lines)
    assert not derived_files(tmp_path / "out")
