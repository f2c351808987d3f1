"""Nodes forwarding to each other: a series that comes back is never translated again.

Found by an outside check: node A (intensity-inversion) forwarding to node B
(interpolation) forwarding back to A translated for ever, filling the disk, because A
only looked at the last derivation's method. These tests hand each node's translator
the series the other would send it (no network): what matters is what a node decides
about a series, not how it arrived.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from medi2i.dicom.node.lineage import MAX_DERIVATIONS, Lineage, loop_reason, read_lineage
from medi2i.dicom.node.spool import TakenSeries
from medi2i.dicom.node.translation import SeriesTranslator
from medi2i.dicom.writing.derived_header import medi2i_derivations
from medi2i.method import Method
from tests.dicom_node_support import records, source_series


def _method(name: str) -> Any:
    from medi2i.plugins import load_plugins
    from medi2i.prediction import load_method
    from medi2i.registry import Registry

    return load_method(method=name, model=None, options=None, registry=Registry(load_plugins()))


def _node(folder: Path, method: Method, *, deidentify: bool = False) -> SeriesTranslator:
    """A node's translator, as ``dicom serve --force-modality --output OUT`` makes it."""
    from medi2i.settings import InferenceSettings

    return SeriesTranslator(
        method=method,
        settings=InferenceSettings(progress=False, device="cpu", force_modality=True),
        manifest=folder / "out" / "manifest.jsonl",
        work=folder / "spool",
        output=folder / "out",
        deidentify=deidentify,
    )


def _receive(node: SeriesTranslator, files: list[Path]) -> tuple[str, str]:
    """Hand ``node`` a complete series of ``files`` as its spool would; its status and
    error."""
    series = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    folder = node.work / f".taken-{series}-00aa"
    folder.mkdir(parents=True)
    for path in files:
        sop = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        shutil.copyfile(path, folder / f"{sop}.dcm")
    taken = TakenSeries(
        series, folder, len(files), complete=True, receive_seconds=0.0, calling_ae_titles=()
    )
    record = node.handle(taken)
    assert not folder.exists()  # translated and removed, or set aside
    return record.status, str(record.error)


def _outputs(node: SeriesTranslator) -> list[list[Path]]:
    """The derived series ``node`` stored, each as its files."""
    assert node.output is not None
    folders = sorted({path.parent for path in node.output.rglob("*.dcm")})
    return [sorted(folder.glob("*.dcm")) for folder in folders if ".medi2i" not in str(folder)]


def _kept(node: SeriesTranslator) -> list[Path]:
    return sorted(node.work.glob(".looped-*"))


@pytest.mark.parametrize("a_deidentifies", [False, True])
def test_two_nodes_of_different_methods_forwarding_to_each_other_stop_after_one_round(
    tmp_path: Path, a_deidentifies: bool
) -> None:
    a = _node(tmp_path / "a", _method("intensity-inversion"), deidentify=a_deidentifies)
    b = _node(tmp_path / "b", _method("interpolation"))
    assert _receive(a, source_series(tmp_path / "src"))[0] == "done"
    (from_a,) = _outputs(a)
    assert _receive(b, from_a)[0] == "done"  # a chain of another method is translated
    (from_b,) = _outputs(b)
    assert medi2i_derivations(pydicom.dcmread(from_b[0])) == (
        "interpolation",
        "intensity-inversion",
    )

    status, error = _receive(a, from_b)  # B forwards its output back to A
    assert status == "skipped"
    assert "derived with 'interpolation' from a derived series this node wrote" in error
    assert "does a node this one forwards to forward back to it?" in error
    assert len(_outputs(a)) == 1  # nothing new written, nothing forwarded on
    (kept,) = _kept(a)  # acknowledged instances are never deleted
    assert len(list(kept.glob("*.dcm"))) == len(from_b)
    assert str(kept) in error
    line = records(a.manifest)[-1]
    assert line["status"] == "skipped"
    assert line["error"] == error

    status, error = _receive(b, from_b)  # its own output, routed back
    assert status == "skipped"
    assert "a derived series this node wrote" in error
    assert len(_kept(b)) == 1


def test_a_loop_is_found_when_the_other_node_de_identifies(tmp_path: Path) -> None:
    # B's de-identification replaces the UID by which A knows its own output: the
    # chain of methods in the Contributing Equipment Sequence still tells
    a = _node(tmp_path / "a", _method("intensity-inversion"))
    b = _node(tmp_path / "b", _method("interpolation"), deidentify=True)
    _receive(a, source_series(tmp_path / "src"))
    (from_a,) = _outputs(a)
    assert _receive(b, from_a)[0] == "done"
    (from_b,) = _outputs(b)
    header = pydicom.dcmread(from_b[0])
    assert header.PatientIdentityRemoved == "YES"
    assert (
        header.RelatedSeriesSequence[0].SeriesInstanceUID
        != pydicom.dcmread(from_a[0]).SeriesInstanceUID
    )
    status, error = _receive(a, from_b)
    assert status == "skipped"
    assert (
        "derived with 'intensity-inversion', then 'interpolation', which went through this "
        "node's method 'intensity-inversion' already"
    ) in error
    assert len(_outputs(a)) == 1


def test_a_ring_of_three_nodes_stops_when_the_series_comes_round(tmp_path: Path) -> None:
    a = _node(tmp_path / "a", _method("intensity-inversion"))
    b = _node(tmp_path / "b", _method("interpolation"))
    c = _node(tmp_path / "c", _method("zscore"))
    _receive(a, source_series(tmp_path / "src"))
    (from_a,) = _outputs(a)
    _receive(b, from_a)
    (from_b,) = _outputs(b)
    assert _receive(c, from_b)[0] == "done"
    (from_c,) = _outputs(c)
    assert medi2i_derivations(pydicom.dcmread(from_c[0])) == (
        "zscore",
        "interpolation",
        "intensity-inversion",
    )
    status, error = _receive(a, from_c)  # C's source is B's output, not A's
    assert status == "skipped"
    assert "which went through this node's method 'intensity-inversion'" in error
    assert _receive(b, from_c)[0] == "skipped"  # had C forwarded to B instead
    assert len(_outputs(a)) == len(_outputs(b)) == 1


def test_a_derivation_of_another_medi2i_is_translated_once(tmp_path: Path) -> None:
    # the output of another medi2i (not this node's) of another method: translated
    elsewhere = _node(tmp_path / "elsewhere", _method("interpolation"))
    node = _node(tmp_path / "node", _method("intensity-inversion"))
    _receive(elsewhere, source_series(tmp_path / "src"))
    (derived,) = _outputs(elsewhere)
    assert _receive(node, derived)[0] == "done"
    assert not _kept(node)


@pytest.mark.parametrize(
    ("methods", "skipped"),
    [
        ((), False),
        (("b", "c"), False),
        (("a",), True),
        (("c", "b", "a"), True),
        (tuple(f"m{i}" for i in range(MAX_DERIVATIONS)), False),
        (tuple(f"m{i}" for i in range(MAX_DERIVATIONS + 1)), True),
    ],
)
def test_which_chains_a_node_refuses(methods: tuple[str, ...], skipped: bool) -> None:
    reason = loop_reason(Lineage(methods=methods), "a", lambda uid: False)
    assert (reason is not None) == skipped


def test_a_series_derived_from_the_nodes_output_is_refused_whatever_its_maker() -> None:
    # another program translated this node's output: its Related Series Sequence says so
    reason = loop_reason(Lineage(sources=("1.2.3",)), "a", lambda uid: uid == "1.2.3")
    assert reason is not None
    assert "from a derived series this node wrote" in reason
    assert loop_reason(Lineage(sources=("1.2.4",)), "a", lambda uid: uid == "1.2.3") is None


def test_an_unreadable_file_has_no_lineage(tmp_path: Path) -> None:
    bad = tmp_path / "x.dcm"
    bad.write_bytes(b"not dicom")
    assert read_lineage(bad) == Lineage()
    assert read_lineage(source_series(tmp_path / "src")[0]) == Lineage()


def test_only_medi2i_equipment_is_carried_forward(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset

    from medi2i.dicom.writing.derived_header import _earlier_derivations

    header = Dataset()
    header.Manufacturer = "medi2i"
    header.ManufacturerModelName = "b"
    scanner, earlier = Dataset(), Dataset()
    scanner.Manufacturer = "ACME"
    earlier.Manufacturer, earlier.ManufacturerModelName = "medi2i", "a"
    header.ContributingEquipmentSequence = [scanner, earlier]
    items = _earlier_derivations(header)
    assert [item.ManufacturerModelName for item in items] == ["a", "b"]
    assert items[-1].PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
    assert medi2i_derivations(header) == ("b", "a")
    assert np.all([item.Manufacturer == "medi2i" for item in items])


def test_a_temporary_spool_holding_a_looped_series_is_kept(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from medi2i.cli.dicom_commands import _spool_folder
    from medi2i.dicom.node.spool import set_aside

    with _spool_folder(None) as spool:
        (spool / "1.2.3").mkdir()
        set_aside(spool / "1.2.3", "looped", "1.2.3")
    try:
        assert spool.is_dir()
        assert f"kept the temporary spool {spool}" in capsys.readouterr().out
    finally:
        shutil.rmtree(spool, ignore_errors=True)
