"""Tests of what the messages about an incomplete case of ``data.validation_data`` and
``data.unlabelled_data`` advise: ``data.include`` does not filter them, so it is never
the way out they give, and validation cases are said to be pairs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from medi2i.data.discovery import discover_splits, unlabelled_cases, validation_cases
from medi2i.errors import InputError
from medi2i.workflow.schema import CsvLayout, DataConfig, FoldersLayout, SynthradLayout


def _touch(*paths: Path) -> None:
    """Discovery only looks at the file names: empty files stand for volumes."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def _refusal(call: Callable[..., object], *args: object) -> str:
    with pytest.raises(InputError) as caught:
        call(*args)
    return str(caught.value)


def test_a_synthrad_validation_case_without_a_target_says_cases_are_pairs(
    tmp_path: Path,
) -> None:
    train, held = tmp_path / "train", tmp_path / "vd"
    _touch(train / "a" / "image.nii.gz", held / "c" / "image.nii.gz")
    layout = SynthradLayout(type="synthrad", root=held, source="image", mask=None)
    data = DataConfig(
        kind="single-domain",
        layout=SynthradLayout(type="synthrad", root=train, source="image", mask=None),
        include=["a"],
        validation_data=layout,
    )

    message = _refusal(discover_splits, data)

    assert message.startswith(f"case folder {held / 'c'} has no ct volume")
    assert "validation_data cases are pairs whatever the data kind" in message
    assert "needs its image and ct volumes" in message
    assert f"move it out of {held}" in message
    assert "data.include" not in message
    assert "\n" not in message


def test_a_csv_validation_case_without_a_target_row_is_not_left_to_data_include(
    tmp_path: Path,
) -> None:
    _touch(tmp_path / "c.nii.gz")
    manifest = tmp_path / "validation.csv"
    manifest.write_text("case,role,path\nc,source,c.nii.gz\n", encoding="utf-8")

    message = _refusal(validation_cases, CsvLayout(type="csv", manifest=manifest))

    assert "has no target row" in message
    assert "validation_data cases are pairs" in message
    assert f"rows in {manifest}" in message
    assert "data.include" not in message


def test_a_folders_validation_file_without_its_counterpart_is_not_left_to_data_include(
    tmp_path: Path,
) -> None:
    _touch(tmp_path / "mr" / "c.nii.gz")
    (tmp_path / "ct").mkdir()
    folders = {"source": tmp_path / "mr", "target": tmp_path / "ct"}

    message = _refusal(validation_cases, FoldersLayout(type="folders", folders=folders))

    assert "has no counterpart in the target folder" in message
    assert "validation_data.folders" in message
    assert "data.include" not in message


def test_an_unlabelled_case_says_data_include_does_not_apply(tmp_path: Path) -> None:
    manifest = tmp_path / "unlabelled.csv"
    manifest.write_text("case,role,path\nu,image,missing.nii.gz\n", encoding="utf-8")

    message = _refusal(unlabelled_cases, CsvLayout(type="csv", manifest=manifest))

    assert "does not exist" in message
    assert "data.include does not apply to it" in message
    assert "give data.include" not in message


def test_a_training_case_is_still_left_out_with_data_include(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "image.nii.gz", tmp_path / "b" / "other.nii.gz")
    layout = SynthradLayout(type="synthrad", root=tmp_path, source="image", target="other")
    data = DataConfig(kind="paired", layout=layout.model_copy(update={"mask": None}))

    message = _refusal(discover_splits, data)

    assert "give data.include glob patterns that do not match it" in message
