"""``cards check --data-dir`` checks the file of every data card that names one, a
simulated set's too, and never says it checked files it did not."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import yaml
from click.testing import CliRunner

from medi2i.card_checks import check_cards, named_data_files
from medi2i.cli.main import build_cli
from medi2i.plugins import load_plugins

SIMULATED: dict[str, object] = {
    "card": "data",
    "name": "probe-pairs",
    "title": "Simulated pairs",
    "kind": "simulated",
    "modality": "MR+CT",
    "licence": "CC0-1.0",
    "source": {"description": "made for a test", "file": "pairs.nii.gz", "sha256": "0" * 64},
    "subjects": {"count": 1, "description": "nobody"},
    "intended_use": {"primary": "tests", "out_of_scope": "everything else"},
    "simulation": {"simulator": "x", "parameters": {"seed": 0}, "command": "x"},
}


def _cards(folder: Path, card: Mapping[str, object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{card['name']}.yaml").write_text(yaml.safe_dump(card))
    return folder


def test_a_simulated_cards_file_is_checked(tmp_path: Path) -> None:
    cards = _cards(tmp_path / "cards", SIMULATED)
    data = tmp_path / "data"
    data.mkdir()
    (data / "pairs.nii.gz").write_bytes(b"not the card's bytes")
    messages = [p.message for p in check_cards(cards, data_dir=data)]
    assert messages == [f"{data / 'pairs.nii.gz'} does not have the SHA-256 the card gives"]
    digest = hashlib.sha256(b"not the card's bytes").hexdigest()
    source = {"description": "x", "file": "pairs.nii.gz", "sha256": digest}
    _cards(cards, {**SIMULATED, "source": source})
    assert check_cards(cards, data_dir=data) == []
    assert named_data_files(cards) == ["pairs.nii.gz"]


def test_a_missing_data_folder_is_a_problem(tmp_path: Path) -> None:
    cards = _cards(tmp_path / "cards", SIMULATED)
    (problem,) = check_cards(cards, data_dir=tmp_path / "nowhere")
    assert problem.path == tmp_path / "nowhere"
    assert "is not a folder, so no data file could be checked" in problem.message


def test_the_cli_says_which_files_it_checked(tmp_path: Path) -> None:
    cli = build_cli(load_plugins())
    cards = _cards(tmp_path / "cards", {**SIMULATED, "source": {"description": "x"}})
    data = tmp_path / "data"
    data.mkdir()
    result = CliRunner().invoke(cli, ["cards", "check", str(cards), "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "with data files" not in result.output
    assert f"no card names a data file, so none was checked in {data}" in result.output
    result = CliRunner().invoke(
        cli, ["cards", "check", str(cards), "--data-dir", str(tmp_path / "nowhere")]
    )
    assert result.exit_code != 0
    assert "is not a folder" in result.output
    (data / "pairs.nii.gz").write_bytes(b"x")
    digest = hashlib.sha256(b"x").hexdigest()
    source = {"description": "x", "file": "pairs.nii.gz", "sha256": digest}
    _cards(cards, {**SIMULATED, "source": source})
    result = CliRunner().invoke(cli, ["cards", "check", str(cards), "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert f"1 data file(s) checked in {data}" in result.output
