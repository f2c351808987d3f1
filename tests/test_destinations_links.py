"""Output paths whose folders go through a broken link are refused, creating nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from medi2i.errors import OutputError
from medi2i.io.destinations import check_batch_root, check_destination, settled_path
from medi2i.testing.volumes import write_volume_file
from tests.dicom_tree_support import METHOD, command


@pytest.fixture
def dangling(tmp_path: Path) -> Path:
    """``tmp_path/r/dangl``, a link to the missing folder ``tmp_path/nowhere/deeper``."""
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "dangl").symlink_to(tmp_path / "nowhere" / "deeper")
    return tmp_path / "r" / "dangl"


@pytest.mark.parametrize("tail", ["../y.mha", "y.mha", "sub/y.mha", "sub/../../y.mha"])
def test_a_folder_that_is_a_broken_link_is_refused_naming_it(dangling: Path, tail: str) -> None:
    with pytest.raises(OutputError) as info:
        settled_path(dangling / tail)
    message = str(info.value)
    assert "\n" not in message
    assert f"{dangling} is a link to {dangling.parent.parent / 'nowhere' / 'deeper'}" in message
    assert "which does not exist; make the folder it points to" in message


def test_a_broken_link_after_a_missing_folder_and_dotdot_is_refused(
    dangling: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(dangling.parent.parent)
    with pytest.raises(OutputError, match=r"missing/\.\./r/dangl is a link to"):
        settled_path(Path("missing/../r/dangl/../y.mha"))


def test_a_loop_of_links_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(OutputError, match="a loop of links"):
        settled_path(tmp_path / "a" / ".." / "y.mha")


def test_a_chain_of_links_names_the_link_its_first_points_to(tmp_path: Path) -> None:
    (tmp_path / "dangl").symlink_to(tmp_path / "missing" / "deep")
    (tmp_path / "chain").symlink_to(tmp_path / "dangl")
    with pytest.raises(OutputError) as refused:
        settled_path(tmp_path / "chain" / "y.mha")
    assert (
        f"chain is a link to {tmp_path / 'dangl'}, which leads to "
        f"{tmp_path / 'missing' / 'deep'}: it does not exist"
    ) in str(refused.value)


def test_links_that_lead_somewhere_still_resolve(tmp_path: Path) -> None:
    (tmp_path / "real" / "deep").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "deep")
    assert settled_path(tmp_path / "link" / ".." / "y.mha") == tmp_path / "real" / "y.mha"
    assert settled_path(tmp_path / "link" / "y.mha") == tmp_path / "link" / "y.mha"
    assert settled_path(tmp_path / "missing" / ".." / "y.mha") == tmp_path / "y.mha"


def test_check_destination_refuses_a_broken_link_folder(dangling: Path) -> None:
    with pytest.raises(OutputError, match="which does not exist"):
        check_destination(dangling / ".." / "y.nii.gz", inputs=[], overwrite=True)


def test_a_batch_root_through_or_at_a_broken_link_is_refused(dangling: Path) -> None:
    inputs = dangling.parent / "in"
    inputs.mkdir()
    for root in (dangling / ".." / "out", dangling):
        with pytest.raises(OutputError, match="make the folder it points to"):
            check_batch_root(root, input_root=inputs, overwrite=False, manifest=root / "m.jsonl")
    assert not (dangling.parent.parent / "nowhere").exists()


@pytest.mark.parametrize("verb", ["predict", "mask"])
def test_predict_and_mask_create_nothing_through_a_broken_link(dangling: Path, verb: str) -> None:
    source = write_volume_file(dangling.parent, shape=(8, 8, 8))
    args = METHOD if verb == "predict" else []
    result = command(verb, *args, str(source), str(dangling / ".." / "y.nii.gz"))
    assert result.exit_code != 0, result.output
    assert "which does not exist" in result.output
    assert not (dangling.parent.parent / "nowhere").exists()


def test_an_output_that_is_a_chain_of_links_says_where_it_leads(tmp_path: Path) -> None:
    (tmp_path / "dangl").symlink_to(tmp_path / "missing" / "deep")
    (tmp_path / "chain").symlink_to("dangl")
    (tmp_path / "chain2").symlink_to("chain")
    with pytest.raises(OutputError) as refused:
        check_destination(tmp_path / "chain2", inputs=[], overwrite=False)
    message = str(refused.value)
    assert (
        f"chain2 is a link to chain, which leads to {tmp_path / 'missing' / 'deep'}: "
        "it does not exist; choose a new output path"
    ) in message
    assert "(which does not exist)" not in message


def test_an_output_that_is_a_loop_of_links_says_so(tmp_path: Path) -> None:
    (tmp_path / "loopA").symlink_to("loopB")
    (tmp_path / "loopB").symlink_to(tmp_path / "loopA")
    with pytest.raises(OutputError) as refused:
        check_destination(tmp_path / "loopA", inputs=[], overwrite=False)
    assert f"{tmp_path / 'loopA'} is a loop of links that leads to nothing;" in str(refused.value)


def test_an_output_that_is_a_link_to_nothing_names_its_target(tmp_path: Path) -> None:
    (tmp_path / "gone.nii.gz").symlink_to("nowhere/x.nii.gz")
    with pytest.raises(OutputError, match=r"is a link to nowhere/x\.nii\.gz \(which does not"):
        check_destination(tmp_path / "gone.nii.gz", inputs=[], overwrite=False)
