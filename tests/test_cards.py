"""Tests of medi2i.cards and ``medi2i cards check``: schemas, references, the committed cards."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from medi2i.card_checks import check_cards, check_model_card
from medi2i.cards import CARD_FIELDS_DOC, DataCard, ModelCard, load_card
from medi2i.cli.cards_commands import cards_group
from medi2i.errors import InputError

REPOSITORY = Path(__file__).resolve().parent.parent
DATA_CARDS = REPOSITORY / "data_cards"

DATA_CARD = {
    "card": "data",
    "name": "tiny-ct",
    "title": "A tiny CT",
    "kind": "real",
    "modality": "CT",
    "licence": "CC0-1.0",
    "source": {"description": "made for a test", "file": "tiny.nii.gz"},
    "subjects": {"count": 1, "description": "nobody"},
    "intended_use": {"primary": "tests", "out_of_scope": "everything else"},
}
MODEL_CARD = {
    "card": "model",
    "name": "tiny-model",
    "method": {"id": "pix2pix", "version": "0.1.0"},
    "summary": "A model trained on a tiny CT.",
    "training_data": ["tiny-ct"],
    "provenance": {"medi2i_version": "0.1.0", "created": "2025-01-01T00:00:00Z", "command": "x"},
    "metrics": {"mae_hu": 80.5},
    "intended_use": {"primary": "tests", "out_of_scope": "clinical use"},
}


def _write(folder: Path, card: Mapping[str, object], name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name or card['name']}.yaml"
    path.write_text(yaml.safe_dump(dict(card), allow_unicode=True))
    return path


def test_committed_data_cards_are_valid() -> None:
    data_dir = os.environ.get("MEDI2I_DATA_DIR")
    checked_files = data_dir if data_dir and Path(data_dir).is_dir() else None
    assert check_cards(DATA_CARDS, data_dir=checked_files) == []


@pytest.mark.parametrize(
    "model", sorted(p.parent.name for p in REPOSITORY.glob("benchmarks/quality/models/*/card.yaml"))
)
def test_committed_models_have_valid_cards(model: str) -> None:
    folder = REPOSITORY / "benchmarks" / "quality" / "models" / model
    assert check_model_card(folder, data_cards=DATA_CARDS) == []
    card = load_card(folder / "card.yaml")
    assert isinstance(card, ModelCard)
    assert card.metrics


def test_every_committed_model_folder_has_a_card() -> None:
    folders = [p.parent for p in REPOSITORY.glob("benchmarks/quality/models/*/medi2i-model.json")]
    assert folders
    assert all((folder / "card.yaml").is_file() for folder in folders)


def _model_folder(folder: Path) -> dict[str, object]:
    """A tiny saved SRCNN at ``folder``; the model card of :data:`MODEL_CARD` naming it."""
    from medi2i.model_folder import save_model
    from medi2i.registry import Registry

    options = {"filters": [4, 4], "kernel_sizes": [3, 1, 3], "roi_size": [8, 8, 8]}
    method = Registry().method("srcnn")(options)
    save_model(method, folder)
    return {**MODEL_CARD, "method": {"id": method.id, "version": method.version}}


def test_a_model_folder_card_is_checked_against_the_data_cards(tmp_path: Path) -> None:
    _write(tmp_path / "data_cards", DATA_CARD)
    model = tmp_path / "model"
    card = _model_folder(model)
    _write(model, card, name="card")
    runner = CliRunner()
    args = ["check", str(model), "--data-cards", str(tmp_path / "data_cards")]
    result = runner.invoke(cards_group(), args)
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    _write(model, {**card, "evaluation_data": ["unknown-set"]}, name="card")
    result = runner.invoke(cards_group(), args)
    assert result.exit_code != 0
    assert "evaluation_data names 'unknown-set'" in result.output
    (problem,) = check_model_card(model, data_cards=tmp_path / "no_such_folder")
    assert "is not a folder of cards, and the card names the data cards" in str(problem)
    _write(model, {**card, "training_data": [], "evaluation_data": []}, name="card")
    assert check_model_card(model, data_cards=tmp_path / "no_such_folder") == []
    args = ["check", str(model), "--data-cards", str(tmp_path / "no_such_folder")]
    result = runner.invoke(cards_group(), args)
    assert result.exit_code == 0, result.output
    assert "valid (no data cards named)" in result.output  # not a folder that is not there
    (model / "card.yaml").unlink()
    assert "is missing" in str(check_model_card(model, data_cards=tmp_path / "data_cards")[0])


def test_a_model_card_must_name_the_models_method_and_its_weights_be_intact(
    tmp_path: Path,
) -> None:
    _write(tmp_path / "data_cards", DATA_CARD)
    model = tmp_path / "model"
    card = _model_folder(model)
    _write(model, {**card, "method": {"id": "edsr", "version": "0.1.0"}}, name="card")
    (problem,) = check_model_card(model, data_cards=tmp_path / "data_cards")
    assert "names method 'edsr'" in str(problem)
    assert "but the model is 'srcnn'" in str(problem)
    _write(model, card, name="card")
    assert check_model_card(model, data_cards=tmp_path / "data_cards") == []
    weights = model / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    (problem,) = check_model_card(model, data_cards=tmp_path / "data_cards")
    assert "does not match the SHA-256" in str(problem)


def test_a_model_card_must_agree_with_what_the_run_recorded(tmp_path: Path) -> None:
    import json

    from medi2i.model_folder import save_model
    from medi2i.registry import Registry

    _write(tmp_path / "data_cards", DATA_CARD)
    _write(tmp_path / "data_cards", {**DATA_CARD, "name": "other-ct"})
    model = tmp_path / "model"
    options = {"filters": [4, 4], "kernel_sizes": [3, 1, 3], "roi_size": [8, 8, 8]}
    method = Registry().method("srcnn")(options)
    save_model(method, model, data_cards=["tiny-ct"], metrics={"mae": 80.5, "psnr": 20.25})
    card = {
        **MODEL_CARD,
        "method": {"id": method.id, "version": method.version},
        "metrics": {"validation_mae": 80.5, "validation_psnr": 20.25, "mae_hu": 70.0},
    }
    _write(model, card, name="card")
    assert check_model_card(model, data_cards=tmp_path / "data_cards") == []
    _write(model, {**card, "training_data": ["other-ct"]}, name="card")
    (problem,) = check_model_card(model, data_cards=tmp_path / "data_cards")
    assert "records the data cards ['tiny-ct']" in str(problem)
    _write(model, {**card, "metrics": {"validation_mae": 12.0}}, name="card")
    (problem,) = check_model_card(model, data_cards=tmp_path / "data_cards")
    assert "validation_mae 12 (metrics.json: 80.5)" in str(problem)
    (model / "metrics.json").write_text(json.dumps({"mae": 12.0}))
    assert check_model_card(model, data_cards=tmp_path / "data_cards") == []


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"synthrad_ms_ssim": float("nan")}, "measured, finite values"),
        ({"mae_hu": float("inf")}, "measured, finite values"),
        ({"synthrad_ms_ssim": 1.7}, "between -1 and 1"),
        ({"validation_ssim": -3.0}, "between -1 and 1"),
    ],
)
def test_a_card_refuses_impossible_metric_values(
    tmp_path: Path, metrics: dict[str, float], message: str
) -> None:
    path = _write(tmp_path, {**MODEL_CARD, "metrics": metrics})
    with pytest.raises(InputError, match=message):
        load_card(path)


def test_every_shared_data_file_and_benchmark_set_has_a_card() -> None:
    cards = [load_card(p) for p in sorted(DATA_CARDS.glob("*.yaml"))]
    files = {c.source.file for c in cards if isinstance(c, DataCard) and c.kind == "real"}
    assert files >= {
        "ct_head_invesalius0051.nii.gz",
        "mr_t1_colin27_1mm.nii.gz",
        "mni152_2009a_t1_1mm.nii.gz",
        "mni152_2009a_gm_1mm.nii.gz",
        "mni152_2009a_wm_1mm.nii.gz",
    }
    simulated = {c.name for c in cards if isinstance(c, DataCard) and c.kind == "simulated"}
    assert len(simulated) >= 4  # Q1, Q2, Q3 and the phantoms


def test_load_card_reads_both_kinds(tmp_path: Path) -> None:
    assert isinstance(load_card(_write(tmp_path, DATA_CARD)), DataCard)
    model = load_card(_write(tmp_path, MODEL_CARD))
    assert isinstance(model, ModelCard)
    assert model.training_data == ["tiny-ct"]


def test_load_card_names_the_invalid_field(tmp_path: Path) -> None:
    broken = {**DATA_CARD, "modality": "PET", "licence": None}
    with pytest.raises(InputError, match=r"modality.*licence|licence.*modality"):
        load_card(_write(tmp_path, broken))
    unknown = {**DATA_CARD, "colour": "blue"}
    with pytest.raises(InputError, match="colour"):
        load_card(_write(tmp_path, unknown, name="other"))


def test_an_invalid_card_is_told_by_its_keys_as_written_and_where_the_fields_are(
    tmp_path: Path,
) -> None:
    card = {key: value for key, value in MODEL_CARD.items() if key != "intended_use"}

    with pytest.raises(InputError) as caught:
        load_card(_write(tmp_path, {**card, "colour": "blue"}))

    message = str(caught.value)
    assert "intended_use: missing (a required field)" in message
    assert "colour: not a field of a model card" in message
    assert "model.intended_use" not in message  # the card's kind is no key of the file
    assert "medi2i.cards" not in message
    assert CARD_FIELDS_DOC in message


def test_the_documented_card_fields_are_the_cards_fields() -> None:
    document, section = CARD_FIELDS_DOC.split(', section "')
    text = (REPOSITORY / document).read_text(encoding="utf-8")
    heading = f"## {section.removesuffix(chr(34))}\n"
    assert heading in text
    listed = set(re.findall(r"^\| `(\w+)`", text.split(heading)[1].split("\n## ")[0], re.M))

    fields = {*DataCard.model_fields, *ModelCard.model_fields} - {"card"}
    assert listed == fields


def test_load_card_rejects_missing_files_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_card(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("card: [data\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_card(bad)


def test_check_cards_finds_names_references_and_simulation_problems(tmp_path: Path) -> None:
    _write(tmp_path, DATA_CARD, name="wrong-file-name")
    _write(tmp_path, {**MODEL_CARD, "training_data": ["tiny-ct", "missing-set"]})
    _write(tmp_path, {**DATA_CARD, "name": "sim", "kind": "simulated"})
    messages = [p.message for p in check_cards(tmp_path)]
    assert any("differs from the file name" in m for m in messages)
    assert any("'missing-set'" in m for m in messages)
    assert any("simulation" in m for m in messages)
    assert len(messages) == 3


def test_an_unquoted_digest_is_told_to_be_quoted_and_its_card_still_counts(
    tmp_path: Path,
) -> None:
    (tmp_path / "tiny-ct.yaml").write_text(
        yaml.safe_dump(DATA_CARD).replace(
            "file: tiny.nii.gz", "file: tiny.nii.gz\n  sha256: " + "0" * 64
        )
    )
    _write(tmp_path, {**MODEL_CARD, "training_data": ["tiny-ct"]})
    (problem,) = check_cards(tmp_path)  # no second problem: tiny-ct is named, only invalid
    assert "write the digest in quotes" in problem.message
    assert problem.path.name == "tiny-ct.yaml"


def test_check_cards_verifies_data_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "tiny.nii.gz").write_bytes(b"not really a volume")
    digest = hashlib.sha256(b"not really a volume").hexdigest()
    source = {**DATA_CARD["source"], "sha256": digest}  # type: ignore[dict-item]
    _write(tmp_path / "cards", {**DATA_CARD, "source": source})
    assert check_cards(tmp_path / "cards", data_dir=data) == []
    (data / "tiny.nii.gz").write_bytes(b"changed")
    messages = [p.message for p in check_cards(tmp_path / "cards", data_dir=data)]
    assert messages == [f"{data / 'tiny.nii.gz'} does not have the SHA-256 the card gives"]


@pytest.mark.parametrize("outside", ["../secret.nii.gz", "/etc/hostname"])
def test_a_data_file_outside_the_data_folder_is_not_read(tmp_path: Path, outside: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "secret.nii.gz").write_bytes(b"someone else's file")
    source = {**DATA_CARD["source"], "file": outside}  # type: ignore[dict-item]
    _write(tmp_path / "cards", {**DATA_CARD, "source": source})
    messages = [p.message for p in check_cards(tmp_path / "cards", data_dir=data)]
    assert messages == [
        f"source.file {outside!r} leaves the data folder; give the file's name within it "
        "(a path relative to the data folder, without '..')"
    ]


def test_cards_check_command_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    _write(tmp_path / "good", DATA_CARD)
    result = runner.invoke(
        cards_group(), ["check", str(tmp_path / "good")], env={"MEDI2I_DATA_DIR": ""}
    )
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    _write(tmp_path / "bad", DATA_CARD, name="mismatch")
    result = runner.invoke(
        cards_group(), ["check", str(tmp_path / "bad")], env={"MEDI2I_DATA_DIR": ""}
    )
    assert result.exit_code != 0
    assert "differs from the file name" in result.output


def test_cards_check_names_a_missing_path_and_a_file(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cards_group(), ["check", str(tmp_path / "gone")])
    assert result.exit_code != 0
    assert "does not exist" in str(result.exception)
    (tmp_path / "model.zip").write_bytes(b"PK")
    result = runner.invoke(cards_group(), ["check", str(tmp_path / "model.zip")])
    assert result.exit_code != 0
    assert "is a file" in str(result.exception)
    assert "unzip" in str(result.exception)


@pytest.mark.parametrize(
    ("card", "repeated"),
    [(DATA_CARD, "kind: simulated\n"), (MODEL_CARD, "metrics:\n  mae_hu: 80.5\n  mae_hu: 12.0\n")],
)
def test_a_key_written_twice_is_refused(
    tmp_path: Path, card: dict[str, object], repeated: str
) -> None:
    """YAML keeps the last of two equal keys without a word: `kind: real` then
    `kind: simulated` was a valid simulated card."""
    path = _write(tmp_path, card)
    text = path.read_text()
    if "metrics" in repeated:
        text = text.replace("metrics:\n  mae_hu: 80.5\n", repeated)
    else:
        text += repeated
    path.write_text(text)
    key = "mae_hu" if "metrics" in repeated else "kind"
    with pytest.raises(InputError, match=rf"line \d+: key '{key}' appears twice"):
        load_card(path)


@pytest.mark.parametrize(
    ("acquisition", "field"),
    [
        ({"spacing_mm": [float("nan"), 1.0, 1.0]}, "spacing_mm.0"),
        ({"spacing_mm": [1.0, 1.0, -5.0]}, "spacing_mm.2"),
        ({"spacing_mm": [1.0, 0.0, 1.0]}, "spacing_mm.1"),
        ({"shape": [512, 0, 48]}, "shape.1"),
        ({"shape": [512, 512, -48]}, "shape.2"),
        ({"shape": [512, 512.5, 48]}, "shape.1"),
        ({"value_range": [3071, -1024]}, "value_range"),
        ({"value_range": [float("-inf"), 10]}, "value_range.0"),
    ],
)
def test_impossible_acquisition_values_are_refused(
    tmp_path: Path, acquisition: dict[str, object], field: str
) -> None:
    path = _write(tmp_path, {**DATA_CARD, "acquisition": acquisition})
    with pytest.raises(InputError, match=rf"acquisition\.{re.escape(field)}"):
        load_card(path)


def test_check_cards_compares_shape_and_spacing_with_the_data_file(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    data = tmp_path / "data"
    data.mkdir()
    image = nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), np.diag([0.5703125, 0.57, 5.0, 1]))
    nib.save(image, data / "tiny.nii.gz")
    said = {"shape": [4, 5, 6], "spacing_mm": [0.570, 0.570, 5.0]}  # rounded, as cards are
    _write(tmp_path / "cards", {**DATA_CARD, "acquisition": said})
    assert check_cards(tmp_path / "cards", data_dir=data) == []
    wrong = {"shape": [4, 5, 7], "spacing_mm": [0.570, 0.570, 2.5]}
    _write(tmp_path / "cards", {**DATA_CARD, "acquisition": wrong})
    (problem,) = check_cards(tmp_path / "cards", data_dir=data)
    assert "shape [4, 5, 7] (the file: [4, 5, 6])" in problem.message
    assert "spacing_mm [0.57, 0.57, 2.5] (the file: [0.5703, 0.57, 5.0])" in problem.message
    assert check_cards(tmp_path / "cards") == []  # without the data folder: not compared


def test_duplicate_key_finds_a_repeated_key_at_any_depth_and_skips_merge_keys() -> None:
    from medi2i.bounded_yaml import duplicate_key, load_yaml

    assert duplicate_key(load_yaml("a: 1\nb: 2\n")[1]) is None
    assert duplicate_key(load_yaml("a: 1\nb:\n  - {c: 1}\n  - {c: 2, c: 3}\n")[1]) == ("c", 4)
    merged = "base: &b {x: 1}\nuse:\n  <<: *b\n  <<: *b\n  y: 2\n"
    assert duplicate_key(load_yaml(merged)[1]) is None
    assert duplicate_key(None) is None
