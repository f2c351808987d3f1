"""A link in the input tree to the folder that holds the output root: every run of the
batch counts the same studies."""

from __future__ import annotations

from pathlib import Path

from tests.dicom_tree_support import METHOD, command, last_records, mr


def test_a_link_to_the_folder_holding_the_output_root_counts_alike_on_every_run(
    tmp_path: Path,
) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    mr(root / "study1" / "s1")
    (root / "up").symlink_to("..")  # up holds in/ and, after the first run, out/
    first = command("batch", str(root), str(out), *METHOD)
    assert "1 studies: 1 done, 0 skipped, 0 failed" in first.output, first.output
    for _ in range(2):
        again = command("batch", str(root), str(out), *METHOD)
        assert "1 studies: 0 done, 1 already done, 0 skipped, 0 failed" in again.output, (
            again.output
        )
    assert set(last_records(out)) == {"study1/s1"}
