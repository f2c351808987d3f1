"""Discovery as a user's own data needs it: ``data.include`` leaves out a subject that
lacks a file, every incomplete case is named at once, ids match in Unicode NFC whatever
the file system wrote, and ``data.cards`` names cards that exist."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from medi2i.data.discovery import discover_cases, discover_splits
from medi2i.errors import InputError
from medi2i.workflow.loader import WorkflowError, load_workflow
from medi2i.workflow.schema import DataConfig

NFC = "sub-02 \u00e9"
NFD = unicodedata.normalize("NFD", NFC)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def config(
    layout: Mapping[str, object], include: Sequence[str] = (), **split: object
) -> DataConfig:
    return DataConfig.model_validate(
        {"kind": "paired", "layout": layout, "include": list(include), "split": split}
    )


def folders(
    tmp_path: Path, complete: Sequence[str], without_ct: Sequence[str]
) -> dict[str, object]:
    for stem in [*complete, *without_ct]:
        touch(tmp_path / "mr" / f"{stem}.nii")
    for stem in complete:
        touch(tmp_path / "ct" / f"{stem}.nii")
    return {
        "type": "folders",
        "folders": {"source": str(tmp_path / "mr"), "target": str(tmp_path / "ct")},
    }


def test_include_leaves_out_a_folder_subject_without_counterpart(tmp_path: Path) -> None:
    layout = folders(tmp_path, ["sub-01", "sub-02"], ["sub-06"])
    found = discover_cases(config(layout, ["sub-0[1-5]"]))
    assert [case.id for case in found.cases] == ["sub-01", "sub-02"]


def test_every_unpaired_folder_file_is_named_with_how_to_leave_it_out(tmp_path: Path) -> None:
    layout = folders(tmp_path, ["sub-01"], ["sub-06", "sub-07"])
    with pytest.raises(InputError) as caught:
        discover_cases(config(layout))
    lines = str(caught.value).splitlines()
    assert "sub-06.nii has no counterpart in the target folder" in lines[0]
    assert "sub-07.nii has no counterpart in the target folder" in lines[1]
    assert all("data.include" in line for line in lines[:2])
    assert lines[2] == "2 incomplete cases"


def write_csv(tmp_path: Path, rows: Sequence[str]) -> Path:
    manifest = tmp_path / "cases.csv"
    manifest.write_text("case,role,path\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return manifest


def test_include_leaves_out_a_csv_case_without_target_row_or_file(tmp_path: Path) -> None:
    for name in ("a mr.nii", "a ct.nii", "b mr.nii", "c mr.nii"):
        touch(tmp_path / name)
    rows = [
        "a,source,a mr.nii",
        "a,target,a ct.nii",
        "b,source,b mr.nii",  # no target row
        "c,source,c mr.nii",
        "c,target,c ct.nii",  # no such file
    ]
    layout = {"type": "csv", "manifest": str(write_csv(tmp_path, rows))}
    assert [case.id for case in discover_cases(config(layout, ["a"])).cases] == ["a"]
    with pytest.raises(InputError) as caught:
        discover_cases(config(layout, ["a", "b"]))
    assert "case 'b' has no target row" in str(caught.value)
    assert "data.include" in str(caught.value)
    with pytest.raises(InputError, match=r"line 6: volume .*c ct\.nii does not exist"):
        discover_cases(config(layout, ["a", "c"]))


def test_include_leaves_out_a_synthrad_case_folder_without_ct(tmp_path: Path) -> None:
    for case in ("1BA001", "1BA002"):
        touch(tmp_path / "root" / case / "mr.nii.gz")
    touch(tmp_path / "root" / "1BA001" / "ct.nii.gz")
    layout = {"type": "synthrad", "root": str(tmp_path / "root"), "mask": None}
    assert [case.id for case in discover_cases(config(layout, ["1BA001"])).cases] == ["1BA001"]
    with pytest.raises(InputError, match=r"1BA002 has no ct volume.*data\.include"):
        discover_cases(config(layout))


def test_include_matching_nothing_still_lists_the_subjects(tmp_path: Path) -> None:
    layout = folders(tmp_path, ["sub-01"], ["sub-06"])
    with pytest.raises(InputError, match=r"matches none of the 2 subjects .*sub-01, sub-06"):
        discover_cases(config(layout, ["nobody*"]))


def test_decomposed_file_names_match_composed_ids(tmp_path: Path) -> None:
    layout = folders(tmp_path, [NFD, "sub-01", "sub-03"], [])
    splits = discover_splits(config(layout, [NFC, "sub-0[13]"], validation=[NFC]))
    (case,) = splits.validation.cases
    assert case.id == NFC
    assert case.images["source"].name == f"{NFD}.nii"  # the file's own name is kept
    assert case.images["source"].exists()


def test_decomposed_csv_ids_match_composed_split_names(tmp_path: Path) -> None:
    touch(tmp_path / "mr.nii")
    touch(tmp_path / "ct.nii")
    touch(tmp_path / "mr1.nii")
    touch(tmp_path / "ct1.nii")
    rows = [f"{NFD},source,mr.nii", f"{NFD},target,ct.nii", "x,source,mr1.nii", "x,target,ct1.nii"]
    layout = {"type": "csv", "manifest": str(write_csv(tmp_path, rows))}
    splits = discover_splits(config(layout, test=[NFC]))
    assert [case.id for case in splits.test.cases] == [NFC]


# -- data cards --------------------------------------------------------------------------------

WORKFLOW = """\
data:
  kind: paired
  layout: {type: synthrad, root: cases}
  cards: [CARD]
method: {id: identity}
output: {root: runs}
"""


def test_a_data_card_that_does_not_exist_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    project = tmp_path / "project"
    path = project / "workflows" / "w.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(WORKFLOW.replace("CARD", "no_such_card"))
    assert load_workflow(path).data.cards == ["no_such_card"]  # no folder: not checked
    touch(project / "data_cards" / "other.yaml")
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path, overrides=["data.cards=[other, no_such_card]"])
    assert "data.cards.1: data card 'no_such_card' not found: no no_such_card.yaml in " in str(
        caught.value
    )
    assert str(project / "data_cards") in str(caught.value)
    touch(project / "data_cards" / "no_such_card.yaml")
    assert load_workflow(path).data.cards == ["no_such_card"]
