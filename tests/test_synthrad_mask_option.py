"""The ``synthrad`` layout's ``mask``: required in every case folder unless set to
``null``; ``validate --check-data`` lists every folder without one at once and says how
to turn masks off, while plain ``validate`` reads no data."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from medi2i.cli.main import build_cli
from medi2i.data.cases import MASK
from medi2i.data.discovery import discover_cases
from medi2i.errors import InputError
from medi2i.plugins import load_plugins
from medi2i.workflow.demo_data import write_demo_cases
from medi2i.workflow.schema import DataConfig, SynthradLayout


@pytest.fixture(scope="module")
def unmasked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unmasked") / "cases"
    write_demo_cases(root, count=3, shape=(8, 8, 8))
    for mask in root.glob("*/mask.*"):
        mask.unlink()
    return root


def _data(root: Path, **layout: object) -> DataConfig:
    return DataConfig.model_validate(
        {"kind": "paired", "layout": {"type": "synthrad", "root": str(root), **layout}}
    )


def test_missing_masks_are_listed_at_once_with_the_way_to_turn_them_off(
    unmasked: Path,
) -> None:
    with pytest.raises(InputError) as raised:
        discover_cases(_data(unmasked))
    lines = str(raised.value).splitlines()
    assert [line.count("has no mask volume") for line in lines[:3]] == [1, 1, 1]
    assert lines[3] == "3 incomplete cases"
    assert "set mask: null in its synthrad layout" in lines[4]


def test_a_missing_source_alone_does_not_suggest_turning_masks_off(tmp_path: Path) -> None:
    root = tmp_path / "cases"
    write_demo_cases(root, count=1, shape=(8, 8, 8))
    next(root.glob("demo000/mr.*")).unlink()
    with pytest.raises(InputError, match="has no mr volume") as raised:
        discover_cases(_data(root))
    assert "mask: null" not in str(raised.value)


def test_mask_null_takes_cases_without_masks(unmasked: Path) -> None:
    cases = discover_cases(_data(unmasked, mask=None)).cases
    assert [case.id for case in cases] == ["demo000", "demo001", "demo002"]
    assert all(MASK not in case.images for case in cases)


def test_the_layout_documents_mask_null() -> None:
    described = SynthradLayout.model_json_schema()["description"]
    assert "mask: null" in described
    assert "air_mae" in described


def test_plain_validate_reads_no_data_and_check_data_names_every_folder(
    tmp_path: Path, unmasked: Path
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        "data:\n"
        "  kind: paired\n"
        f"  layout: {{type: synthrad, root: {unmasked}}}\n"
        "  split: {test: [demo002]}\n"
        "method: {id: interpolation, options: {target_spacing: [2.0, 2.0, 2.0]}}\n"
        "inference: {device: cpu, progress: false}\n"
        f"output: {{root: {tmp_path / 'runs'}}}\n"
    )
    cli = build_cli(load_plugins())
    assert CliRunner().invoke(cli, ["validate", str(path)]).exit_code == 0
    checked = CliRunner().invoke(cli, ["validate", str(path), "--check-data"])
    assert checked.exit_code != 0
    assert checked.output.count("has no mask volume") == 3
    assert "mask: null" in checked.output
