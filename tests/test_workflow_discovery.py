"""Finding cases in SynthRAD, folder and CSV layouts, and splitting them by subject."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from medi2i.data.discovery import discover_cases, discover_splits, volume_stem
from medi2i.errors import InputError
from medi2i.method import DataKind
from medi2i.workflow.schema import DataConfig


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def synthrad_root(tmp_path: Path, cases: list[str], suffix: str = ".nii.gz") -> Path:
    root = tmp_path / "Task1" / "brain"
    for case in cases:
        for stem in ("mr", "ct", "mask"):
            touch(root / case / f"{stem}{suffix}")
    (root / "overview").mkdir(parents=True)
    touch(root / "overview" / "1BA001_train.png")
    return root


def config(kind: str, layout: Mapping[str, object], **split: object) -> DataConfig:
    return DataConfig.model_validate({"kind": kind, "layout": layout, "split": split})


def test_volume_stem() -> None:
    assert volume_stem(Path("ct.nii.gz")) == "ct"
    assert volume_stem(Path("mr.mha")) == "mr"
    assert volume_stem(Path("notes.txt")) is None
    assert volume_stem(Path(".nii.gz")) is None


def test_synthrad_paired_cases_skip_other_folders(tmp_path: Path) -> None:
    root = synthrad_root(tmp_path, ["1BA001", "1BA002"], suffix=".mha")
    found = discover_cases(config("paired", {"type": "synthrad", "root": str(root)}))
    assert found.kind is DataKind.PAIRED
    assert [case.id for case in found.cases] == ["1BA001", "1BA002"]
    assert found.cases[0].images == {
        "source": root / "1BA001" / "mr.mha",
        "target": root / "1BA001" / "ct.mha",
        "mask": root / "1BA001" / "mask.mha",
    }


def test_synthrad_missing_volume_is_named(tmp_path: Path) -> None:
    root = synthrad_root(tmp_path, ["1BA001", "1BA002"])
    (root / "1BA002" / "ct.nii.gz").unlink()
    with pytest.raises(InputError, match=r"1BA002 has no ct volume \(expected ct\.nii\.gz or"):
        discover_cases(config("paired", {"type": "synthrad", "root": str(root)}))
    with pytest.raises(InputError, match=r"SynthRAD root .* does not exist.* mr, ct and mask "):
        discover_cases(config("paired", {"type": "synthrad", "root": str(tmp_path / "no")}))
    # single-domain cases need no ct: the message names only what they hold
    single = {"type": "synthrad", "root": str(tmp_path / "no"), "source": "image", "mask": None}
    with pytest.raises(InputError, match=r"does not exist; .* with image volumes$"):
        discover_cases(config("single-domain", single))


def test_synthrad_unpaired_keeps_each_subject_in_one_split(tmp_path: Path) -> None:
    root = synthrad_root(tmp_path, [f"1BA00{i}" for i in range(1, 7)])
    data = config("unpaired", {"type": "synthrad", "root": str(root)}, test=0.34, seed=3)
    splits = discover_splits(data)
    assert splits.train.domains == ("ct", "mr")  # sorted: the layout does not decide labels
    subjects = {
        name: {case.id.split("/")[0] for case in splits.get(name).cases}
        for name in ("train", "test")
    }
    assert len(subjects["test"]) == 2
    assert not subjects["train"] & subjects["test"]
    assert {case.domain for case in splits.test.cases} == {"mr", "ct"}


def test_folders_paired_match_by_name(tmp_path: Path) -> None:
    for name in ("a", "b"):
        touch(tmp_path / "mr" / f"{name}.nii.gz")
        touch(tmp_path / "ct" / f"{name}.nii.gz")
    layout = {
        "type": "folders",
        "folders": {"source": str(tmp_path / "mr"), "target": str(tmp_path / "ct")},
    }
    found = discover_cases(config("paired", layout))
    assert [case.images["target"].name for case in found.cases] == ["a.nii.gz", "b.nii.gz"]
    (tmp_path / "ct" / "b.nii.gz").unlink()
    with pytest.raises(InputError, match=r"b\.nii\.gz has no counterpart in the target folder"):
        discover_cases(config("paired", layout))
    touch(tmp_path / "ct" / "c.nii.gz")
    touch(tmp_path / "ct" / "b.nii.gz")
    with pytest.raises(InputError, match=r"no source counterpart in .*: c \(files are matched"):
        discover_cases(config("paired", layout))


def test_folders_multi_domain_stratified_split(tmp_path: Path) -> None:
    folders = {}
    for domain in ("siemens", "ge", "philips"):
        folders[domain] = str(tmp_path / domain)
        for index in range(4):
            touch(tmp_path / domain / f"{domain}{index}.nii.gz")
    data = config("multi-domain", {"type": "folders", "folders": folders}, validation=0.25)
    splits = discover_splits(data)
    assert splits.train.domains == ("ge", "philips", "siemens")  # sorted, not folder order
    assert sorted(str(case.domain) for case in splits.validation.cases) == [
        "ge",
        "philips",
        "siemens",
    ]
    assert len(splits.train.cases) == 9
    assert splits.train.cases[0].id.count("/") == 1  # "<domain>/<file stem>"


def test_folder_missing_is_named(tmp_path: Path) -> None:
    layout = {"type": "folders", "folders": {"a": str(tmp_path / "a"), "b": str(tmp_path / "b")}}
    with pytest.raises(InputError, match=r"data folder .*a does not exist"):
        discover_cases(config("unpaired", layout))


def test_csv_paired_manifest_resolves_relative_paths(tmp_path: Path) -> None:
    for case in ("p1", "p2"):
        touch(tmp_path / "vol" / f"{case}_mr.nii.gz")
        touch(tmp_path / "vol" / f"{case}_ct.nii.gz")
    manifest = tmp_path / "lists" / "cases.csv"
    rows = ["case,role,path"]
    for case in ("p1", "p2"):
        rows += [f"{case},source,../vol/{case}_mr.nii.gz", f"{case},target,../vol/{case}_ct.nii.gz"]
    touch(manifest).write_text("\n".join(rows) + "\n")
    found = discover_cases(config("paired", {"type": "csv", "manifest": str(manifest)}))
    assert [case.id for case in found.cases] == ["p1", "p2"]
    assert found.cases[1].images["source"] == manifest.parent / "../vol/p2_mr.nii.gz"


def test_csv_problems_name_the_line(tmp_path: Path) -> None:
    manifest = tmp_path / "cases.csv"
    layout = {"type": "csv", "manifest": str(manifest)}
    manifest.write_text("case,role,path\np1,source,missing.nii.gz\n")
    with pytest.raises(InputError, match=r"cases\.csv line 2: volume .*missing\.nii\.gz does not"):
        discover_cases(config("paired", layout))
    touch(tmp_path / "a.nii.gz")
    manifest.write_text("case,role,path\np1,source,a.nii.gz\n")
    with pytest.raises(InputError, match=r"case 'p1' has no target row \(roles for paired"):
        discover_cases(config("paired", layout))
    manifest.write_text("case,role,path\np1,source,a.nii.gz\np1,taget,a.nii.gz\n")
    with pytest.raises(InputError, match=r"has no target row and has rows of unknown roles taget"):
        discover_cases(config("paired", layout))
    manifest.write_text("case,path\np1,a.nii.gz\n")
    with pytest.raises(InputError, match="needs the columns case, path, domain"):
        discover_cases(config("unpaired", layout))


def test_csv_paired_cases_carry_their_own_condition(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        touch(tmp_path / f"{name}.nii.gz")
    manifest = tmp_path / "pairs.csv"
    layout = {"type": "csv", "manifest": str(manifest)}
    manifest.write_text(
        "case,role,path,condition\n"
        "b-to-a,source,b.nii.gz,target_domain=A source_domain=B\n"
        "b-to-a,target,a.nii.gz,\n"
        "a-to-c,source,a.nii.gz,target_domain=C;source_domain=A\n"
        "a-to-c,target,c.nii.gz,target_domain=C;source_domain=A\n"
        "plain,source,a.nii.gz,\nplain,target,b.nii.gz,\n"
    )
    by_id = {case.id: case for case in discover_cases(config("paired", layout)).cases}
    assert by_id["b-to-a"].condition == (("target_domain", "A"), ("source_domain", "B"))
    assert by_id["a-to-c"].condition == (("target_domain", "C"), ("source_domain", "A"))
    assert by_id["plain"].condition == ()
    from medi2i.data.cases import case_condition

    assert case_condition({"target_domain": "B", "styles": 2}, by_id["a-to-c"].condition) == {
        "target_domain": "C",
        "styles": 2,
        "source_domain": "A",
    }
    assert case_condition(None, by_id["plain"].condition) is None

    manifest.write_text(
        "case,role,path,condition\np,source,a.nii.gz,target_domain=A\n"
        "p,target,b.nii.gz,target_domain=C\n"
    )
    with pytest.raises(InputError, match=r"pairs\.csv line 3: case 'p' has another condition"):
        discover_cases(config("paired", layout))
    manifest.write_text("case,role,path,condition\np,source,a.nii.gz,target_domain\n")
    with pytest.raises(InputError, match=r"line 2: condition 'target_domain' must be key=value"):
        discover_cases(config("paired", layout))
    manifest.write_text("case,role,path,condition\np,source,a.nii.gz,to=a to=b\n")
    with pytest.raises(InputError, match="repeats a key"):
        discover_cases(config("paired", layout))
    manifest.write_text("case,domain,path,condition\ns,A,a.nii.gz,to=b\n")
    with pytest.raises(InputError, match="only paired manifests"):
        discover_cases(config("unpaired", layout))


def test_csv_unpaired_domains_and_masks(tmp_path: Path) -> None:
    for name in ("a1", "a1m", "b1", "b2"):
        touch(tmp_path / f"{name}.nii.gz")
    manifest = tmp_path / "cases.csv"
    manifest.write_text(
        "case,domain,role,path\n"
        "s1,A,image,a1.nii.gz\ns1,A,mask,a1m.nii.gz\ns2,B,,b1.nii.gz\ns3,B,image,b2.nii.gz\n"
    )
    found = discover_cases(config("unpaired", {"type": "csv", "manifest": str(manifest)}))
    assert found.domains == ("A", "B")
    by_id = {case.id: case for case in found.cases}
    assert set(by_id) == {"A/s1", "B/s2", "B/s3"}
    assert set(by_id["A/s1"].images) == {"image", "mask"}


def test_explicit_split_lists(tmp_path: Path) -> None:
    root = synthrad_root(tmp_path, ["c1", "c2", "c3", "c4"])
    data = config(
        "paired", {"type": "synthrad", "root": str(root)}, validation=["c2"], test=["c4", "c1"]
    )
    splits = discover_splits(data)
    assert [c.id for c in splits.train.cases] == ["c3"]
    assert [c.id for c in splits.validation.cases] == ["c2"]
    assert [c.id for c in splits.test.cases] == ["c1", "c4"]
    unknown = config("paired", {"type": "synthrad", "root": str(root)}, test=["c9"])
    # every case shown, no "..." hinting at cases that are not there
    found = r"the cases found: c1, c2, c3, c4\)"
    with pytest.raises(InputError, match=rf"split\.test names unknown cases c9 \({found}"):
        discover_splits(unknown)


def test_fraction_split_is_seeded_and_keeps_training_cases(tmp_path: Path) -> None:
    root = synthrad_root(tmp_path, [f"c{i}" for i in range(10)])
    layout = {"type": "synthrad", "root": str(root)}
    first = discover_splits(config("paired", layout, validation=0.2, test=0.2, seed=1))
    again = discover_splits(config("paired", layout, validation=0.2, test=0.2, seed=1))
    other = discover_splits(config("paired", layout, validation=0.2, test=0.2, seed=2))
    assert first == again
    assert [len(first.get(n).cases) for n in ("train", "validation", "test")] == [6, 2, 2]
    assert first.test != other.test
    tiny = synthrad_root(tmp_path / "tiny", ["only"])
    with pytest.raises(InputError, match="leaves no training case"):
        discover_splits(config("paired", {"type": "synthrad", "root": str(tiny)}, test=0.5))


def test_label_order_is_the_declared_domains_whatever_the_folder_order(tmp_path: Path) -> None:
    folders = {}
    for domain in ("siemens", "ge"):
        folders[domain] = str(tmp_path / domain)
        touch(tmp_path / domain / f"{domain}0.nii.gz")
    declared = [{"name": "ge", "modality": "MR"}, "siemens"]
    for order in (folders, dict(reversed(folders.items()))):
        data = DataConfig.model_validate(
            {
                "kind": "unpaired",
                "layout": {"type": "folders", "folders": order},
                "domains": declared,
            }
        )
        cases = discover_splits(data).train
        assert cases.domains == ("ge", "siemens")
        assert [spec.modality for spec in cases.specs()] == ["MR", "any"]


def test_declared_domains_must_be_the_layouts(tmp_path: Path) -> None:
    layout = {"type": "folders", "folders": {"a": str(tmp_path / "a"), "b": str(tmp_path / "b")}}
    with pytest.raises(ValueError, match="must name the layout's domains"):
        DataConfig.model_validate({"kind": "unpaired", "layout": layout, "domains": ["a", "c"]})
    with pytest.raises(ValueError, match="unpaired or multi-domain"):
        DataConfig.model_validate(
            {"kind": "paired", "layout": {"type": "synthrad", "root": "."}, "domains": ["mr"]}
        )


def test_a_bad_domain_mapping_is_one_error_about_the_domain(tmp_path: Path) -> None:
    from pydantic import ValidationError

    layout = {"type": "folders", "folders": {"a": str(tmp_path / "a"), "b": str(tmp_path / "b")}}
    with pytest.raises(ValidationError) as raised:
        DataConfig.model_validate(
            {
                "kind": "unpaired",
                "layout": layout,
                "domains": [{"name": "a", "modality": "MRI"}, "b"],
            }
        )
    errors = raised.value.errors()
    assert len(errors) == 1  # not also "a domain entry should be a string"
    assert "did you mean 'MR'" in errors[0]["msg"]


def test_unlabelled_data_is_read_as_images_and_goes_with_paired_data(tmp_path: Path) -> None:
    touch(tmp_path / "pairs" / "p0" / "mr.nii.gz")
    touch(tmp_path / "pairs" / "p0" / "ct.nii.gz")
    touch(tmp_path / "pairs" / "p0" / "mask.nii.gz")
    for name in ("s0", "s1"):
        touch(tmp_path / "other" / f"{name}.nii.gz")
    unlabelled = {"type": "folders", "folders": {"image": str(tmp_path / "other")}}
    layout = {"type": "synthrad", "root": str(tmp_path / "pairs")}

    splits = discover_splits(
        DataConfig.model_validate(
            {"kind": "paired", "layout": layout, "unlabelled_data": unlabelled}
        )
    )

    assert splits.unlabelled is not None
    assert splits.unlabelled.kind is DataKind.SINGLE_DOMAIN
    assert [sorted(c.images) for c in splits.unlabelled.cases] == [["image"], ["image"]]
    assert discover_splits(config("paired", layout)).unlabelled is None
    folders = {"a": str(tmp_path / "a"), "b": str(tmp_path / "b")}
    with pytest.raises(ValueError, match="unlabelled_data goes with paired data"):
        DataConfig.model_validate(
            {
                "kind": "unpaired",
                "layout": {"type": "folders", "folders": folders},
                "unlabelled_data": unlabelled,
            }
        )
    with pytest.raises(ValueError, match="image"):
        DataConfig.model_validate(
            {
                "kind": "paired",
                "layout": layout,
                "unlabelled_data": {"type": "folders", "folders": {"source": "x"}},
            }
        )


def test_csv_manifests_as_spreadsheets_write_them_or_with_a_slip(tmp_path: Path) -> None:
    for name in ("a", "b"):
        touch(tmp_path / f"{name}.nii.gz")
    manifest = tmp_path / "cases.csv"
    layout = {"type": "csv", "manifest": str(manifest)}
    # "CSV UTF-8" from a spreadsheet starts with a byte-order mark: read as any other
    manifest.write_text("case,role,path\np,source,a.nii.gz\np,target,b.nii.gz\n", "utf-8-sig")
    assert [c.id for c in discover_cases(config("paired", layout)).cases] == ["p"]
    # "Unicode text" from a Windows editor is UTF-16 with its byte-order mark
    manifest.write_text("case,role,path\np,source,a.nii.gz\np,target,b.nii.gz\n", "utf-16")
    assert [c.id for c in discover_cases(config("paired", layout)).cases] == ["p"]
    manifest.write_text("case,role,path\né,source,a.nii.gz\n", "latin-1")
    with pytest.raises(InputError, match=r"cases\.csv is not UTF-8 text \(byte 0xe9 at"):
        discover_cases(config("paired", layout))
    # a misspelt optional column would be ignored, and its conditions with it
    manifest.write_text("case,role,path,conditon\np,source,a.nii.gz,target_domain=A\n")
    with pytest.raises(InputError, match=r"unknown columns conditon; paired manifests take"):
        discover_cases(config("paired", layout))
    # a line short of a needed field, or with one too many (an unquoted comma)
    manifest.write_text("case,role,path\np,source\np,target,b.nii.gz\n")
    with pytest.raises(InputError, match=r"cases\.csv line 2: 2 fields where the header has 3"):
        discover_cases(config("paired", layout))
    manifest.write_text("case,role,path\np,source,a.nii.gz\np,target,b.nii.gz,x\n")
    with pytest.raises(InputError, match=r"cases\.csv line 3: 4 fields where the header has 3"):
        discover_cases(config("paired", layout))
    # a trailing optional field may be left out
    manifest.write_text("case,role,path,condition\np,source,a.nii.gz,to=b\np,target,b.nii.gz\n")
    assert discover_cases(config("paired", layout)).cases[0].condition == (("to", "b"),)


def test_paired_folders_say_which_folder_is_empty_and_how_many_are_unmatched(
    tmp_path: Path,
) -> None:
    (tmp_path / "mr").mkdir()
    for index in range(8):
        touch(tmp_path / "ct" / f"s{index}.nii.gz")
    folders = {"source": str(tmp_path / "mr"), "target": str(tmp_path / "ct")}
    layout = {"type": "folders", "folders": folders}
    with pytest.raises(InputError, match=r"the source folder .*mr holds no volumes \(\.nii\.gz"):
        discover_cases(config("paired", layout))
    # the layout may be evaluation.data's: the message names no section it cannot know
    with pytest.raises(InputError, match=r"check the layout's folders\.source \(in data\.layout"):
        discover_cases(config("paired", layout))
    touch(tmp_path / "mr" / "s0.nii.gz")
    unmatched = r"no source counterpart in .*mr: s1, .*, s5, \.\.\. \(7 in all\)"
    with pytest.raises(InputError, match=unmatched):
        discover_cases(config("paired", layout))
