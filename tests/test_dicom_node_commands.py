"""``medi2i dicom send`` and ``medi2i dicom serve`` from the command line, and what a
running node translates and writes (de-identified, selected series), over loopback only.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medi2i.dicom.node.dicom_node import DicomNode
from medi2i.dicom.node.send import Peer, send_files
from medi2i.dicom.reading.series_selection import SeriesSelector
from medi2i.testing.dicom_series import write_series
from tests.dicom_node_support import (
    METHOD,
    final_statuses,
    free_port,
    listening,
    make_node,
    needs_dcmtk,
    peer_of,
    records,
    source_series,
    wait_for,
)
from tests.test_cli import run

# -- medi2i dicom send ----------------------------------------------------------------------


def test_send_command_counts_what_was_sent(node: DicomNode, tmp_path: Path) -> None:
    source_series(tmp_path / "src")
    (tmp_path / "src" / "README.txt").write_text("not DICOM")
    host, port = node.address
    result = run("dicom", "send", str(tmp_path / "src"), f"{host}:{port}:MEDI2I")
    assert result.exit_code == 0, result.output
    assert "sent 6 file(s)" in result.output
    assert "0 failed" in result.output
    wait_for(lambda: final_statuses(tmp_path / "manifest.jsonl") == ["done"])


# pynetdicom 3.0 leaves the socket of a refused connection for the garbage collector
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_send_command_fails_when_nobody_listens(tmp_path: Path) -> None:
    source_series(tmp_path / "src")
    result = run("dicom", "send", str(tmp_path / "src"), f"127.0.0.1:{free_port()}:NOBODY")
    assert result.exit_code == 1
    assert "sent 0 file(s)" in result.output
    assert "6 failed" in result.output


@needs_dcmtk
def test_send_command_to_storescp(tmp_path: Path, storescp: tuple[Peer, Path]) -> None:
    peer, received = storescp
    source_series(tmp_path / "src")
    result = run("dicom", "send", str(tmp_path / "src"), f"{peer.host}:{peer.port}:PEER")
    assert result.exit_code == 0, result.output
    assert len(list(received.iterdir())) == 6


# -- medi2i dicom serve -----------------------------------------------------------------------


def test_serve_refuses_an_output_folder_holding_other_data(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = run(
        "dicom", "serve", "--method", METHOD, "--port", "0", "--output", str(tmp_path / "out")
    )
    assert result.exit_code == 1
    assert "holds no node manifest" in result.output
    assert "--overwrite" not in result.output  # dicom serve has none to offer
    result = run("dicom", "serve", "--method", METHOD, "--port", "0")
    assert result.exit_code == 1
    assert "--output, --forward or both" in result.output


def _serve(port: int, *options: str) -> subprocess.Popen[str]:
    """``medi2i dicom serve`` of the test method on ``port``, as a real process (CPU)."""
    command = [sys.executable, "-m", "medi2i", "dicom", "serve", "--method", METHOD]
    return subprocess.Popen(
        [*command, "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )


def test_serve_translates_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = _serve(port, "--output", str(tmp_path / "out"), "--idle-timeout", "0.3")
    try:
        wait_for(lambda: listening(port), timeout=60)
        files = source_series(tmp_path / "src")
        send_files(files, Peer("127.0.0.1", port, "MEDI2I"), calling_ae_title="TEST")
        wait_for(lambda: final_statuses(tmp_path / "out" / "manifest.jsonl") == ["done"])
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == 0, output
    assert "received 6 instance(s) from TEST; translated in" in output
    assert "stopped" in output


def test_a_de_identified_node_writes_nothing_that_names_the_source(tmp_path: Path) -> None:
    import pydicom

    files = source_series(tmp_path / "src")
    for path in files:  # distinctive identifiers, to be searched for afterwards
        dataset = pydicom.dcmread(path)
        dataset.PatientName = "Zyxwvut^Qponm"
        dataset.PatientID = "MRN-778899"
        dataset.save_as(path)
    source = pydicom.dcmread(files[0])
    identifiers = [
        "Zyxwvut",
        "MRN-778899",
        str(source.SeriesInstanceUID),
        str(source.StudyInstanceUID),
        str(source.SOPInstanceUID),
        "TEST",  # the calling AE title
    ]
    output = tmp_path / "out"
    seen: list[str] = []
    for _run in range(2):  # a second node on the same output keeps the pseudonyms
        running = make_node(tmp_path, output=output, deidentify=True)
        running.start()
        try:
            report = send_files(files, peer_of(running), calling_ae_title="TEST")
            assert len(report.sent) == 6
            wait_for(lambda: final_statuses(tmp_path / "manifest.jsonl").count("done") > len(seen))
        finally:
            running.stop(timeout=30)
        seen.append(records(tmp_path / "manifest.jsonl")[-1]["series_uid"])  # type: ignore[arg-type]
    assert seen[0] == seen[1] != str(source.SeriesInstanceUID)
    written = [path for path in output.rglob("*") if path.is_file()]
    written.append(tmp_path / "manifest.jsonl")
    assert any(path.suffix == ".dcm" for path in written)
    for path in written:
        text = path.read_bytes()
        for identifier in identifiers:
            assert identifier.encode() not in text, f"{identifier} in {path}"
            assert identifier not in str(path.relative_to(tmp_path)), path


def test_the_node_translates_what_the_selection_picks(tmp_path: Path) -> None:
    from pydicom.uid import generate_uid

    echoes = tmp_path / "echoes"
    series_uid, study_uid = generate_uid(), generate_uid()
    rng = np.random.default_rng(1)
    volumes = [rng.integers(1, 1000, (12, 10, 6)).astype(np.float64) for _ in range(2)]
    for number, volume in enumerate(volumes):
        write_series(
            echoes,
            volume,
            modality="MR",
            rescale=(1.0, 0.0),
            series_uid=series_uid,
            study_uid=study_uid,
            instance_numbers=[number * 6 + k + 1 for k in range(6)],
            attributes={"EchoTime": 10.0 + 20 * number},
        )
    ct = write_series(tmp_path / "ct", volumes[0], modality="CT")
    running = make_node(
        tmp_path, output=tmp_path / "out", selector=SeriesSelector(modality="MR", volume=2)
    )
    running.start()
    try:
        send_files(ct, peer_of(running), calling_ae_title="TEST")
        wait_for(lambda: len(final_statuses(tmp_path / "manifest.jsonl")) == 1)
        send_files(sorted(echoes.iterdir()), peer_of(running), calling_ae_title="TEST")
        wait_for(lambda: len(final_statuses(tmp_path / "manifest.jsonl")) == 2)
    finally:
        running.stop(timeout=30)
    skipped, done = [r for r in records(tmp_path / "manifest.jsonl") if r["status"] != "received"]
    assert skipped["status"] == "skipped"
    assert "modality=MR" in str(skipped["error"])
    assert done["status"] == "done", done
    (derived,) = (tmp_path / "out").glob(f"*/{METHOD}")
    assert len(list(derived.glob("*.dcm"))) == 6  # one echo of the two
    from medi2i.dicom.reading.series_scan import scan_folder
    from medi2i.dicom.reading.series_volume import read_dicom_series

    written = read_dicom_series(scan_folder(derived).series[0])[0].numpy()
    # the inversion is c - x: only echo 2 (TE 30 ms) sums with it to a constant
    assert float(np.std(written + volumes[1])) < 2
    assert float(np.std(written + volumes[0])) > 100


def test_serve_refuses_an_invalid_allowed_calling_title(tmp_path: Path) -> None:
    result = run(
        "dicom",
        "serve",
        "--method",
        METHOD,
        "--port",
        "0",
        "--output",
        str(tmp_path / "out"),
        "--allow-calling",
        "A\\B",
    )
    assert result.exit_code == 1
    assert "--allow-calling 'A\\\\B' is not valid" in result.output


def test_sigterm_translates_a_released_series_and_keeps_what_was_not_forwarded(
    tmp_path: Path,
) -> None:
    """A series waiting out a long --idle-timeout is translated at SIGTERM; the peer is
    down, so the derived series is kept, and so is the temporary spool holding it."""
    port = free_port()
    down = f"127.0.0.1:{free_port()}:DOWN"
    process = _serve(port, "--forward", down, "--idle-timeout", "600")
    try:
        wait_for(lambda: listening(port), timeout=60)
        report = send_files(
            source_series(tmp_path / "src"),
            Peer("127.0.0.1", port, "MEDI2I"),
            calling_ae_title="TEST",
        )
        assert len(report.sent) == 6
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == 0, output
    assert "failed: forwarded 0 of 6 derived file(s)" in output
    kept = [line for line in output.splitlines() if line.startswith("kept the temporary spool")]
    assert kept, output
    spool = Path(kept[0].split()[4].rstrip(":"))
    try:
        (unforwarded,) = spool.glob(".unforwarded-*")
        assert len(list(unforwarded.glob(f"{METHOD}/*.dcm"))) == 6
    finally:
        shutil.rmtree(spool, ignore_errors=True)
