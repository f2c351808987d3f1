"""DICOM trees that used to hang, loop or mislead a scan, ``dicom ls`` or ``batch``: a
FIFO, a broken link, a link to the batch's output root, two links to one study; and the
sign of an overflowing rescale, the node's spool beside a file browser's litter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medi2i.dicom.node.spool import claim_spool
from medi2i.dicom.reading.series_scan import scan_folder
from medi2i.dicom.reading.series_volume import read_dicom_series
from medi2i.errors import InputError
from medi2i.testing.dicom_series import write_series
from tests.dicom_tree_support import METHOD, VALUES, command, last_records, mr

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")


@needs_fifo
def test_a_fifo_reached_through_a_link_is_listed_not_opened(tmp_path: Path) -> None:
    mr(tmp_path / "in" / "s")
    (tmp_path / "elsewhere").mkdir()
    os.mkfifo(tmp_path / "elsewhere" / "pipe")
    (tmp_path / "in" / "linked").symlink_to(tmp_path / "elsewhere")
    result = scan_folder(tmp_path / "in")  # opening the FIFO would block forever
    (item,) = result.skipped
    assert "a FIFO (named pipe), not a regular file" in item.reason
    listing = command("dicom", "ls", str(tmp_path / "in"))
    assert "linked/pipe: a FIFO" in listing.output
    batch = command("batch", str(tmp_path / "in"), str(tmp_path / "out"), *METHOD)
    assert batch.exit_code == 0, batch.output


@needs_fifo
def test_dicom_send_skips_a_fifo(tmp_path: Path) -> None:
    from medi2i.dicom.node.send import Peer, dicom_files_under, send_files

    (tmp_path / "f").mkdir()
    os.mkfifo(tmp_path / "f" / "pipe")
    report = send_files(
        dicom_files_under(tmp_path / "f"), Peer("127.0.0.1", 9, "X"), calling_ae_title="T"
    )
    assert not report.failed
    assert "a FIFO" in report.skipped[0][1]


def test_a_link_to_the_output_root_is_never_scanned_and_recorded_skipped(tmp_path: Path) -> None:
    mr(tmp_path / "in" / "s")
    (tmp_path / "out").mkdir()
    (tmp_path / "in" / "results").symlink_to(tmp_path / "out")
    first = command("batch", str(tmp_path / "in"), str(tmp_path / "out"), *METHOD)
    assert first.exit_code == 0, first.output
    assert "2 studies: 1 done, 1 skipped" in first.output  # the empty root is noted too
    again = command("batch", str(tmp_path / "in"), str(tmp_path / "out"), *METHOD)
    assert again.exit_code == 0, again.output
    assert "2 studies: 0 done, 1 already done, 1 skipped" in again.output
    records = last_records(tmp_path / "out")
    assert set(records) == {"s", "results"}
    assert records["results"]["status"] == "skipped"
    assert str(records["results"]["reason"]) == (
        f"a link to the batch's output root {os.path.realpath(tmp_path / 'out')}, not "
        "searched: a batch never takes its own outputs for inputs"
    )


def test_a_rerun_counts_a_link_to_the_output_root_as_the_first_run_did(tmp_path: Path) -> None:
    """The outside check: the link was broken on the first run (no output root yet) and
    recorded skipped, and the rerun left it out without a word: "4 studies", then "3".
    The batch now makes its output root (for the manifest's lock) before it scans, so
    both runs name the link as one to the output root."""
    root, out = tmp_path / "in", tmp_path / "out"
    for name in ("a", "b", "c"):
        mr(root / name)
    (root / "results").symlink_to(out)
    first = command("batch", str(root), str(out), *METHOD)
    assert "4 studies: 3 done, 1 skipped, 0 failed" in first.output, first.output
    assert "a link to the batch's output root" in str(last_records(out)["results"]["reason"])
    again = command("batch", str(root), str(out), *METHOD)
    assert "4 studies: 0 done, 3 already done, 1 skipped, 0 failed" in again.output, again.output
    assert "a link to the batch's output root" in str(last_records(out)["results"]["reason"])
    # predict on a tree hands the batch a scan of its own, made without the exclusion
    tree = command("predict", str(root), str(out), *METHOD)
    assert "4 studies: 0 done, 3 already done, 1 skipped" in tree.output, tree.output


def test_a_link_into_the_output_root_is_never_scanned(tmp_path: Path) -> None:
    mr(tmp_path / "in" / "s")
    assert command("batch", str(tmp_path / "in"), str(tmp_path / "out"), *METHOD).exit_code == 0
    (tmp_path / "in" / "copy").symlink_to(tmp_path / "out" / "s")
    again = command("batch", str(tmp_path / "in"), str(tmp_path / "out"), *METHOD)
    assert again.exit_code == 0, again.output
    records = last_records(tmp_path / "out")
    assert set(records) == {"s", "copy"}
    assert str(records["copy"]["reason"]).startswith(
        f"a link to a folder in the batch's output root {os.path.realpath(tmp_path / 'out')},"
    )


def test_the_scan_notes_each_excluded_folder_it_reaches_once(tmp_path: Path) -> None:
    mr(tmp_path / "in" / "s")
    mr(tmp_path / "out" / "x")
    (tmp_path / "in" / "results").symlink_to(tmp_path / "out")
    (tmp_path / "out" / "back").symlink_to(tmp_path / "out")  # never walked
    result = scan_folder(tmp_path / "in", exclude=[tmp_path / "out"])
    (item,) = result.skipped
    assert item.excluded
    assert item.folder
    assert not item.hidden
    assert item.label == "results"
    assert len(result.studies) == 1
    assert not scan_folder(tmp_path / "in").skipped  # without the exclusion: searched


def test_a_broken_link_is_named_in_ls_and_recorded_by_the_batch(tmp_path: Path) -> None:
    mr(tmp_path / "in" / "real")
    (tmp_path / "in" / "offline_study").symlink_to(tmp_path / "unmounted")
    listing = command("dicom", "ls", str(tmp_path / "in"))
    assert "1 broken link(s) skipped" in listing.output
    assert "damaged" not in listing.output
    assert f"a broken link to {tmp_path / 'unmounted'}" in listing.output
    batch = command("batch", str(tmp_path / "in"), str(tmp_path / "out"), *METHOD)
    assert batch.exit_code == 0, batch.output
    record = last_records(tmp_path / "out")["offline_study"]
    assert record["status"] == "skipped"
    assert "a broken link to" in str(record["reason"])


def test_a_broken_link_beside_a_series_fails_its_study(tmp_path: Path) -> None:
    mr(tmp_path / "in" / "s")
    (tmp_path / "in" / "s" / "IM_lost.dcm").symlink_to(tmp_path / "gone.dcm")
    batch = command("batch", str(tmp_path / "in"), str(tmp_path / "out"), *METHOD)
    assert batch.exit_code == 1
    assert "a broken link to" in str(last_records(tmp_path / "out")["s"]["error"])


def test_a_study_reached_by_two_links_keeps_its_name_whichever_is_walked_first(
    tmp_path: Path,
) -> None:
    mr(tmp_path / "else" / "study")
    (tmp_path / "in" / "b").mkdir(parents=True)
    (tmp_path / "in" / "a_link").symlink_to(tmp_path / "else" / "study")
    (tmp_path / "in" / "b" / "link").symlink_to(tmp_path / "else" / "study")
    # real folders are walked before links: b/link is reached first
    assert command("batch", str(tmp_path / "in"), str(tmp_path / "o1"), *METHOD).exit_code == 0
    assert set(last_records(tmp_path / "o1")) == {"a_link"}
    # a real folder under the root names the study, wherever links to it lie
    mr(tmp_path / "in2" / "z" / "study")
    (tmp_path / "in2" / "a").mkdir()
    (tmp_path / "in2" / "a" / "link").symlink_to(tmp_path / "in2" / "z" / "study")
    assert command("batch", str(tmp_path / "in2"), str(tmp_path / "o2"), *METHOD).exit_code == 0
    assert set(last_records(tmp_path / "o2")) == {"z/study"}


def test_an_overflowing_negative_rescale_keeps_its_sign(tmp_path: Path) -> None:
    write_series(tmp_path / "s", VALUES, modality="MR", rescale=(1.0, 0.0))
    for path in (tmp_path / "s").iterdir():
        import pydicom

        dataset = pydicom.dcmread(path)
        dataset.RescaleSlope = "-1e300"
        dataset.save_as(path)
    (series,) = scan_folder(tmp_path / "s").series
    with pytest.raises(InputError, match=r"to -\d\.\d+e\+302"):
        read_dicom_series(series)


@pytest.mark.parametrize("litter", [".DS_Store", "Thumbs.db"])
def test_a_work_folder_holding_only_file_browser_litter_is_a_spool(
    tmp_path: Path, litter: str
) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / litter).touch()
    claim_spool(tmp_path / "w")
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / litter).touch()
    (tmp_path / "u" / "notes.txt").touch()
    with pytest.raises(Exception, match="not a DICOM node's spool"):
        claim_spool(tmp_path / "u")


def test_removing_the_link_that_names_a_study_keeps_its_outputs(tmp_path: Path) -> None:
    mr(tmp_path / "else" / "study")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "link1").symlink_to(tmp_path / "else" / "study")
    (tmp_path / "in" / "link2").symlink_to(tmp_path / "else" / "study")
    out = tmp_path / "out"
    assert command("batch", str(tmp_path / "in"), str(out), *METHOD).exit_code == 0
    (tmp_path / "in" / "link1").unlink()
    again = command("batch", str(tmp_path / "in"), str(out), *METHOD)
    assert "1 already done" in again.output, again.output
    assert sorted(path.name for path in out.iterdir()) == ["link1", "manifest.jsonl"]
