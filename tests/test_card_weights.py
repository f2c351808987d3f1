"""``medi2i cards check`` ties a model card to its weights, its adaptation and the
``metrics.json`` its ``validation_*`` claims come from."""

from __future__ import annotations

from pathlib import Path

from medi2i.card_checks import check_model_card
from medi2i.cards import Adaptation, IntendedUse, MethodReference, ModelCard, RunProvenance
from medi2i.model_card_files import attach_card
from medi2i.model_folder import AdaptedFrom, read_manifest, save_model, weights_sha256
from medi2i.registry import Registry

_OPTIONS = {"filters": [4, 4], "kernel_sizes": [3, 1, 3], "roi_size": [8, 8, 8]}


def _card(**update: object) -> ModelCard:
    card = ModelCard(
        card="model",
        name="tiny-model",
        method=MethodReference(id="srcnn", version=Registry().method("srcnn").version),
        summary="A tiny model.",
        training_data=[],
        provenance=RunProvenance(medi2i_version="0", created="2025-01-01", command="x"),
        intended_use=IntendedUse(primary="tests", out_of_scope="clinical use"),
    )
    return card.model_copy(update=update)


def _saved(folder: Path, **kwargs: object) -> Path:
    method = Registry().method("srcnn")(_OPTIONS)
    return save_model(method, folder, **kwargs)  # type: ignore[arg-type]


def _problems(model: Path, tmp_path: Path) -> list[str]:
    return [str(p) for p in check_model_card(model, data_cards=tmp_path / "no_cards")]


def test_a_claimed_validation_metric_needs_metrics_json_holding_it(tmp_path: Path) -> None:
    """Claims absent from metrics.json, or with no metrics.json at all, used to pass."""
    model = _saved(tmp_path / "model", metrics={"mae": 80.5})
    attach_card(model, _card(metrics={"validation_mae": 80.5}))
    assert _problems(model, tmp_path) == []
    attach_card(model, _card(metrics={"validation_mae_hu": 80.5}))  # as older cards wrote it
    assert _problems(model, tmp_path) == []
    attach_card(model, _card(metrics={"validation_mae": 80.5, "validation_ssim": 0.97}))
    (problem,) = _problems(model, tmp_path)
    assert "claims validation_ssim, which metrics.json does not hold (it holds mae)" in problem
    (model / "metrics.json").unlink()
    attach_card(model, _card(metrics={"validation_mae": 40.0}))
    (problem,) = _problems(model, tmp_path)
    assert "claims validation_mae, but the model folder has no metrics.json" in problem
    attach_card(model, _card(metrics={"mae_hu": 40.0}))  # not a validation claim
    assert _problems(model, tmp_path) == []


def test_the_card_records_its_weights_and_a_card_of_other_weights_is_refused(
    tmp_path: Path,
) -> None:
    """Re-saved weights with an updated manifest used to pass with the old card."""
    model = _saved(tmp_path / "model")
    attach_card(model, _card())
    written = (model / "card.yaml").read_text()
    digest = weights_sha256(model)
    assert digest is not None
    assert f"weights_sha256: {digest}" in written
    assert digest in (model / "README.md").read_text()
    assert _problems(model, tmp_path) == []
    other = _saved(tmp_path / "other")  # new random weights
    (model / "weights.safetensors").write_bytes((other / "weights.safetensors").read_bytes())
    (model / "medi2i-model.json").write_text((other / "medi2i-model.json").read_text())
    (problem,) = _problems(model, tmp_path)
    assert "the weights were replaced after the card was written" in problem
    attach_card(model, _card())
    assert _problems(model, tmp_path) == []
    # a card written before medi2i recorded the weights' SHA-256 is not compared
    older = (model / "card.yaml").read_text()
    older = older.replace(f"weights_sha256: {weights_sha256(model)}\n", "")
    assert "weights_sha256" not in older
    (model / "card.yaml").write_text(older)
    (model / "weights.safetensors").write_bytes(
        (source := _saved(tmp_path / "third")).joinpath("weights.safetensors").read_bytes()
    )
    (model / "medi2i-model.json").write_text((source / "medi2i-model.json").read_text())
    assert _problems(model, tmp_path) == []


def test_an_adapted_cards_source_weights_must_be_the_manifests(tmp_path: Path) -> None:
    source = _saved(tmp_path / "source")
    digest = weights_sha256(source)
    record = AdaptedFrom(model=str(source), weights_sha256=digest, data=[])
    model = _saved(tmp_path / "model", adapted_from=record)
    assert read_manifest(model).adapted_from == record

    def adaptation(sha: str | None) -> Adaptation:
        return Adaptation(
            source_model=str(source),
            source_card="tiny-model",
            source_weights_sha256=sha,
            data=[],
            medi2i_version="0",
            created="2025-01-01",
            command="medi2i adapt",
        )

    attach_card(model, _card(adaptations=[adaptation(digest)]))
    assert _problems(model, tmp_path) == []
    attach_card(model, _card(adaptations=[adaptation("0" * 64)]))
    (problem,) = _problems(model, tmp_path)
    assert f"records {digest} (adapted_from.weights_sha256)" in problem
    plain = _saved(tmp_path / "plain")
    attach_card(plain, _card(adaptations=[adaptation(digest)]))
    (problem,) = _problems(plain, tmp_path)
    assert "records no adapted_from" in problem
