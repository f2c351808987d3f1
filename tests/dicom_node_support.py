"""What the DICOM node's tests share: a node on a free loopback port, dcmtk's storescp
as a peer, a small MR series, and waiting for a node's manifest."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data.meta_tensor import MetaTensor

from medi2i.dicom.node.dicom_node import DicomNode, NodeConfig
from medi2i.dicom.node.send import Peer
from medi2i.dicom.node.spool import Spool
from medi2i.dicom.node.translation import SeriesTranslator
from medi2i.dicom.reading.series_selection import SeriesSelector
from medi2i.method import Method, PredictContext, Task, VolumeSpec
from medi2i.testing.dicom_series import write_series

METHOD = "intensity-inversion"
IDLE_S = 0.3
DCIODVFY = shutil.which("dciodvfy")
DCMTK = shutil.which("storescu") is not None and shutil.which("storescp") is not None
needs_dcmtk = pytest.mark.skipif(not DCMTK, reason="dcmtk (storescu, storescp) is not installed")


def source_series(folder: Path) -> list[Path]:
    volume = np.random.default_rng(0).integers(0, 1000, (12, 10, 6)).astype(np.float64)
    return write_series(folder, volume, modality="MR", rescale=(1.0, 0.0), spacing=(0.8, 0.9, 2.5))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    # generous: the wait ends as soon as the condition holds, and a loaded 2-core CI
    # machine can take more than 15 s to translate a series
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s")
        time.sleep(0.05)


def records(manifest: Path) -> list[dict[str, object]]:
    if not manifest.exists():
        return []
    return [json.loads(line) for line in manifest.read_text().splitlines() if line]


def final_statuses(manifest: Path) -> list[object]:
    return [r["status"] for r in records(manifest) if r["status"] != "received"]


class ConstantCT(Method):
    """A collapsed translation: the same value everywhere, whatever the input."""

    id = "test-constant"
    tasks = (Task.TRANSLATION,)
    input_spec = VolumeSpec(modality="MR")
    output_spec = VolumeSpec(modality="CT", units="HU")

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        return torch.zeros_like(image.as_tensor())


def make_node(
    tmp: Path,
    *,
    output: Path | None,
    forward: Peer | None = None,
    log: Callable[[str], None] = print,
    deidentify: bool = False,
    selector: SeriesSelector | None = None,
    method: Method | None = None,
    idle_timeout: float = IDLE_S,
    manifest: Path | None = None,
    **config: object,
) -> DicomNode:
    """A node on a free loopback port; ``config`` goes to :class:`NodeConfig`."""
    from medi2i.plugins import load_plugins
    from medi2i.prediction import load_method
    from medi2i.registry import Registry
    from medi2i.settings import InferenceSettings

    if method is None:
        method = load_method(
            method=METHOD, model=None, options=None, registry=Registry(load_plugins())
        )
    translator = SeriesTranslator(
        method=method,
        settings=InferenceSettings(progress=False, device="cpu"),
        manifest=manifest or tmp / "manifest.jsonl",
        work=tmp / "spool",
        output=output,
        forward=forward,
        deidentify=deidentify,
        selector=selector,
    )
    settings = NodeConfig(port=0, idle_timeout=idle_timeout, poll_interval=0.05, **config)  # type: ignore[arg-type]
    return DicomNode(
        settings,
        spool=Spool(tmp / "spool", idle_timeout=idle_timeout),
        translator=translator,
        log=log,
    )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[DicomNode]:
    running = make_node(tmp_path, output=tmp_path / "out")
    running.start()
    try:
        yield running
    finally:
        running.stop(timeout=30)


def peer_of(node: DicomNode) -> Peer:
    host, port = node.address
    return Peer(host, port, "MEDI2I")


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[tuple[Peer, Path]]:
    received = tmp_path / "storescp"
    received.mkdir()
    port = free_port()
    process = subprocess.Popen(
        ["storescp", "-aet", "PEER", "-od", str(received), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: listening(port), timeout=10)
        yield Peer("127.0.0.1", port, "PEER"), received
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0
