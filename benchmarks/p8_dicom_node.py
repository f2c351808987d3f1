"""P8 DICOM node: receive → translate → send for a 200-slice MR series, per stage.

A 256×256×200 MR series (int16, one file per slice, seeded noise over a smooth ramp)
is sent with C-STORE (medi2i's SCU, one association) to a ``medi2i dicom serve``
node (:class:`medi2i.dicom.node.dicom_node.DicomNode`, in process, loopback) that translates it
with ``intensity-inversion`` on the CPU, stores the derived series and forwards it to
dcmtk's ``storescp`` (a pynetdicom-free peer; the script needs dcmtk), run with
``TCP_NODELAY=1`` in its environment as a tuned PACS would be: dcmtk leaves Nagle's
algorithm on by default, and ``storescp`` writes each C-STORE response as two packets,
so against a default ``storescp`` every file waits ~40 ms for a delayed ACK whoever
sends it (dcmtk's own ``storescu`` too). Stages:

receive
    the sender's wall time for the whole series (association, 200 C-STOREs, release);
read
    the spooled series into a volume (medi2i's DICOM reader);
infer
    ``predict_tensor`` with the method;
write
    the derived MR series (200 files, atomically);
send
    the derived series to ``storescp`` with C-STORE.

The idle timeout (0.5 s here) that decides a series is complete is not counted.
Median of the runs; a shared 2-core machine is noisy.

Usage: python benchmarks/p8_dicom_node.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
SHAPE = (256, 256, 200)
STAGES = ("receive", "read", "infer", "write", "send")
METHOD = "intensity-inversion"
IDLE_S = 0.5
Report = dict[str, Any]
BEFORE_NODELAY = {"receive": 2.36, "read": 0.05, "infer": 3.74, "write": 1.70, "send": 11.24}
"""Medians before medi2i turned Nagle's algorithm off: not measured by this script's run
but copied from an earlier one (:data:`EARLIER_RUNS`)."""
SEND_BY_PEER = (  # 200 files, seconds, one run each, same machine and day
    ("`storescp` as installed (Nagle on)", 11.07, 9.69),
    ("`storescp` with `TCP_NODELAY=1`", 4.87, 1.21),
)
"""``medi2i dicom send`` of the 200 source files by peer, before and after
``TCP_NODELAY``: measured by hand once, not by this script (:data:`EARLIER_RUNS`)."""
EARLIER_RUNS = {
    "before_nodelay": {
        "what": "median seconds by stage with the default storescp, before medi2i set TCP_NODELAY",
        "date": "2026-12-02T05:25:19+00:00",
        "commit": "aa5b170",
        "median_s": BEFORE_NODELAY,
    },
    "send_by_peer": {
        "what": "seconds to send the 200 source files with medi2i dicom send, one run each, "
        "before and after TCP_NODELAY in medi2i",
        "date": "2026-12-02",
        "commit": "9c61a05 (before: its parent, aa5b170)",
        "rows": [
            {"peer": peer, "before_s": before, "after_s": after}
            for peer, before, after in SEND_BY_PEER
        ],
    },
}
"""Figures of earlier runs that every result repeats beside its own, with where they
come from: they are not measured again."""


def write_source(folder: Path) -> list[Path]:
    import numpy as np

    from medi2i.testing.dicom_series import write_series

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 800, SHAPE[0])[:, None, None] * np.ones(SHAPE)
    volume = np.round(ramp + rng.normal(0, 30, SHAPE)).clip(0, 4000)
    return write_series(folder, volume, modality="MR", rescale=(1.0, 0.0), spacing=(1, 1, 1.5))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def one_run(files: list[Path], work: Path) -> Report:
    from medi2i.dicom.node.dicom_node import DicomNode, NodeConfig
    from medi2i.dicom.node.send import Peer, send_files
    from medi2i.dicom.node.spool import Spool
    from medi2i.dicom.node.translation import SeriesTranslator
    from medi2i.plugins import load_plugins
    from medi2i.prediction import load_method
    from medi2i.registry import Registry
    from medi2i.settings import InferenceSettings

    received = work / "storescp"
    received.mkdir(parents=True)
    peer_port = free_port()
    storescp = subprocess.Popen(
        ["storescp", "-aet", "PEER", "-od", str(received), str(peer_port)],
        env={**os.environ, "TCP_NODELAY": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    method = load_method(method=METHOD, model=None, options=None, registry=Registry(load_plugins()))
    translator = SeriesTranslator(
        method=method,
        settings=InferenceSettings(progress=False, device="cpu"),
        manifest=work / "out" / "manifest.jsonl",
        work=work / "spool",
        output=work / "out",
        forward=Peer("127.0.0.1", peer_port, "PEER"),
    )
    node = DicomNode(
        NodeConfig(port=0, idle_timeout=IDLE_S, poll_interval=0.05),
        spool=Spool(work / "spool", idle_timeout=IDLE_S),
        translator=translator,
        log=lambda line: None,
    )
    node.start()
    try:
        time.sleep(0.5)  # storescp up
        host, port = node.address
        start = time.perf_counter()
        report = send_files(files, Peer(host, port, "MEDI2I"), calling_ae_title="BENCH")
        receive = time.perf_counter() - start
        assert not report.failed, report.failed[:1]
        # the sender sends again, in a new association, what a dropped one lost, and
        # then counts it as sent: the node has discarded the dropped association's part
        # by then if the retry came after its idle timeout
        assert not report.retried, (
            f"the node dropped the association: {len(report.retried)} file(s) were sent "
            f"again ({report.summary()})"
        )
        manifest = work / "out" / "manifest.jsonl"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            lines = manifest.read_text().splitlines() if manifest.exists() else []
            if lines and json.loads(lines[-1])["status"] != "received":
                break
            time.sleep(0.05)
        record = json.loads(lines[-1])
        assert record["status"] == "done", record
        assert len(list(received.iterdir())) == SHAPE[2]
    finally:
        node.stop(timeout=60)
        storescp.terminate()
        storescp.wait(timeout=10)
    seconds = {stage: float(record["timings"].get(stage, 0.0)) for stage in STAGES}
    seconds["receive"] = round(receive, 3)
    return {"seconds": seconds}


def summary(runs: list[Report]) -> Report:
    import monai
    import pydicom
    import pynetdicom
    import torch

    import medi2i

    median = {s: statistics.median(r["seconds"][s] for r in runs) for s in STAGES}
    total = sum(median.values())
    return {
        "benchmark": "P8 DICOM node",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": "cpu",
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "monai": monai.__version__,
            "pydicom": pydicom.__version__,
            "pynetdicom": pynetdicom.__version__,
            "dcmtk": _dcmtk_version(),
            "medi2i": medi2i.__version__,
        },
        "setup": {
            "shape": list(SHAPE),
            "source": "int16 MR Image Storage, one file per slice, Explicit VR Little Endian",
            "method": METHOD,
            "sender": "medi2i.dicom.node.send (pynetdicom SCU), one association",
            "peer": "dcmtk storescp (TCP_NODELAY=1)",
            "idle_timeout_s": IDLE_S,
            "repeats": len(runs),
        },
        "runs": runs,
        "median_s": median,
        "median_total_s": total,
        "share_of_total": {s: median[s] / total for s in STAGES},
        "slices_per_second_received": SHAPE[2] / median["receive"],
        "slices_per_second_sent": SHAPE[2] / median["send"],
        "earlier_runs": EARLIER_RUNS,
    }


def _dcmtk_version() -> str:
    done = subprocess.run(["storescp", "--version"], capture_output=True, text=True, timeout=10)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].strip() if first else "?"


def markdown(report: Report) -> str:
    setup, machine, versions = report["setup"], report["machine"], report["versions"]
    rows = [
        f"| {s} | {report['median_s'][s]:.2f} | {100 * report['share_of_total'][s]:.0f} % |"
        for s in STAGES
    ]
    return "\n".join(
        [
            "# P8 DICOM node",
            "",
            f"An MR series ({'×'.join(map(str, setup['shape']))}, {setup['source']}) sent by "
            f"{setup['sender']} to `medi2i dicom serve` (in process, loopback), translated "
            f"with `{setup['method']}` on the CPU, stored, and forwarded to "
            f"{setup['peer']}; median of {setup['repeats']} runs. The idle timeout "
            f"({setup['idle_timeout_s']} s) that completes a series is not counted.",
            "",
            "| stage | median (s) | share |",
            "|---|---|---|",
            *rows,
            f"| **total** | **{report['median_total_s']:.2f}** | 100 % |",
            "",
            f"Received {report['slices_per_second_received']:.0f} slices/s, forwarded "
            f"{report['slices_per_second_sent']:.0f} slices/s.",
            "",
            *_before_after(report),
            f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs "
            f"({machine['torch_threads']} torch threads), device {machine['device']}; "
            f"Python {versions['python']}, torch {versions['torch']}, MONAI {versions['monai']}, "
            f"pydicom {versions['pydicom']}, pynetdicom {versions['pynetdicom']}, "
            f"{versions['dcmtk']}, medi2i {versions['medi2i']}; {report['date']}.",
            "",
        ]
    )


def _before_after(report: Report) -> list[str]:
    earlier = report.get("earlier_runs", EARLIER_RUNS)
    before_run, by_peer = earlier["before_nodelay"], earlier["send_by_peer"]
    rows = [
        f"| {s} | {before_run['median_s'][s]:.2f} | {report['median_s'][s]:.2f} |" for s in STAGES
    ]
    peers = [
        f"| {row['peer']} | {row['before_s']:.2f} ({200 / row['before_s']:.0f}/s) | "
        f"{row['after_s']:.2f} ({200 / row['after_s']:.0f}/s) |"
        for row in by_peer["rows"]
    ]
    return [
        "## Before and after `TCP_NODELAY`",
        "",
        "Sending was slow (18 slices/s, 55 ms a file) because of Nagle's algorithm: "
        "pynetdicom writes each PDU of a C-STORE on its own, so the last, short fragment "
        "of every dataset waited for the acknowledgement the peer delays by ~40 ms. "
        "medi2i now sets `TCP_NODELAY` on every association it opens or accepts. "
        "dcmtk leaves Nagle on too and writes each C-STORE response as two packets, so a "
        "default `storescp` stalls every file for ~40 ms whoever sends it (dcmtk's "
        "`storescu`: 46 ms a file); dcmtk's `TCP_NODELAY=1` environment variable turns it "
        "off, and this benchmark now runs `storescp` so. The *before* column below is not "
        f"measured by this run: it is the earlier run of {before_run['date']} (commit "
        f"{before_run['commit']}), with the default `storescp`; *this run* is this "
        "result's medians.",
        "",
        "| stage | before (earlier run) (s) | this run (s) |",
        "|---|---|---|",
        *rows,
        "",
        "Read, infer and write changed by nothing but the load on the shared machine.",
        "",
        "Sending the 200 source files with `medi2i dicom send` (before: without "
        "`TCP_NODELAY`), seconds: figures of an earlier run, not of this one (measured by "
        f"hand once each, {by_peer['date']}, commit {by_peer['commit']}):",
        "",
        "| peer | before | after |",
        "|---|---|---|",
        *peers,
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("storescp") is None:
        raise SystemExit("this benchmark needs dcmtk's storescp (apt-get install dcmtk)")
    with tempfile.TemporaryDirectory(prefix="p8-") as folder:
        files = write_source(Path(folder) / "source")
        runs = []
        for repeat in range(args.repeats):
            runs.append(one_run(files, Path(folder) / f"run{repeat}"))
            print(f"run {repeat + 1}: {json.dumps(runs[-1]['seconds'])}", flush=True)
    report = summary(runs)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "p8_dicom_node.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "p8_dicom_node.md").write_text(markdown(report))
    print(json.dumps({"median_s": report["median_s"], "total_s": report["median_total_s"]}))


if __name__ == "__main__":
    main()
