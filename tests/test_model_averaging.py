"""Weight averaging (``medi2i average-weights``, :func:`medi2i.model_averaging.average_models`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from medi2i.card_checks import check_model_card
from medi2i.cli.main import build_cli
from medi2i.errors import OptionsError, OutputError
from medi2i.model_averaging import average_models
from medi2i.model_folder import load_model, read_manifest, save_model
from medi2i.registry import Registry
from medi2i.testing.example_methods import FittedStandardization, PointwiseNet


def saved(folder: Path, *, shift: float, hidden: int = 3, cards: tuple[str, ...] = ("d1",)) -> Path:
    method = PointwiseNet({"hidden": hidden})
    with torch.no_grad():
        for parameter in method.network.parameters():
            parameter.fill_(shift)
    return save_model(method, folder, data_cards=list(cards))


def weights_of(folder: Path, registry: Registry) -> dict[str, torch.Tensor]:
    method = load_model(folder, registry=registry)
    assert isinstance(method, PointwiseNet)
    return method.network.state_dict()


def test_the_average_holds_the_mean_of_the_weights_and_a_card_naming_its_models(
    tmp_path: Path, registry: Registry
) -> None:
    a = saved(tmp_path / "a", shift=1.0)
    b = saved(tmp_path / "b", shift=3.0, cards=("d2",))
    folder = average_models([a, b], tmp_path / "mean", registry=registry)
    for value in weights_of(folder, registry).values():
        torch.testing.assert_close(value, torch.full_like(value, 2.0))
    assert read_manifest(folder).data_cards == ["d1", "d2"]
    card = (folder / "README.md").read_text()
    assert f"{a} (weight 0.5" in card
    assert f"{b} (weight 0.5" in card
    data_cards = tmp_path / "cards"
    data_cards.mkdir()
    for name in ("d1", "d2"):
        (data_cards / f"{name}.yaml").write_text(
            f"card: data\nname: {name}\ntitle: t\nkind: synthetic\nmodality: MR\n"
            "licence: CC0\nsource: {description: generated}\n"
            "intended_use: {primary: tests, out_of_scope: none}\n"
        )
    assert check_model_card(folder, data_cards=data_cards) == []
    weighted = average_models([a, b], tmp_path / "weighted", weights=[3.0, 1.0], registry=registry)
    for value in weights_of(weighted, registry).values():
        torch.testing.assert_close(value, torch.full_like(value, 1.5))


def test_the_average_predicts_like_a_model(tmp_path: Path, registry: Registry) -> None:
    from medi2i import predict_tensor
    from medi2i.testing import make_volume

    a = saved(tmp_path / "a", shift=0.1)
    b = saved(tmp_path / "b", shift=0.3)
    folder = average_models([a, b], tmp_path / "mean", registry=registry)
    volume = make_volume((8, 8, 8))
    middle = predict_tensor(load_model(saved(tmp_path / "c", shift=0.2), registry=registry), volume)
    averaged = predict_tensor(load_model(folder, registry=registry), volume)
    torch.testing.assert_close(averaged.as_tensor(), middle.as_tensor())


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("one", "two or more models"),
        ("architecture", r"do not fit those of .*architecture"),
        ("method", "average models of one method"),
        ("fitted", r"fitted to different values \(mean, std\)"),
        ("weights", "one weight per model"),
        ("nonfinite", "is not finite"),
    ],
)
def test_what_cannot_be_averaged_is_refused_and_nothing_is_written(
    tmp_path: Path, registry: Registry, case: str, message: str
) -> None:
    a = saved(tmp_path / "a", shift=1.0)
    output = tmp_path / "mean"
    models: list[Path] = [a, saved(tmp_path / "b", shift=2.0)]
    weights = None
    if case == "one":
        models = [a]
    elif case == "architecture":
        models = [a, saved(tmp_path / "wide", shift=2.0, hidden=5)]
    elif case == "method" or case == "fitted":
        first = FittedStandardization()
        first.mean, first.std = 1.0, 2.0
        second = FittedStandardization()
        second.mean, second.std = 5.0, 3.0
        fitted = save_model(first, tmp_path / "f1")
        models = [a, fitted] if case == "method" else [fitted, save_model(second, tmp_path / "f2")]
    elif case == "weights":
        weights = [1.0]
    elif case == "nonfinite":
        models = [a, saved(tmp_path / "diverged", shift=float("nan"))]
    before = {path: (path / "weights.safetensors").read_bytes() for path in [a]}
    with pytest.raises(OptionsError, match=message):
        average_models(models, output, weights=weights, registry=registry)
    assert not output.exists()
    assert (a / "weights.safetensors").read_bytes() == before[a]


@pytest.mark.parametrize("where", ["a model", "inside a model", "holding the models"])
def test_an_output_at_a_model_is_refused_even_with_overwrite(
    tmp_path: Path, registry: Registry, where: str
) -> None:
    runs = tmp_path / "run"
    models = [saved(runs / "best-model", shift=1.0), saved(runs / "model", shift=2.0)]
    before = {m: (m / "weights.safetensors").read_bytes() for m in models}
    output = {"a model": models[0], "inside a model": models[1] / "avg", "holding the models": runs}
    with pytest.raises(OutputError, match="input"):
        average_models(models, output[where], registry=registry, overwrite=True)
    assert {m: (m / "weights.safetensors").read_bytes() for m in models} == before
    assert not (models[1] / "avg").exists()


def test_an_existing_output_is_refused_without_overwrite(
    tmp_path: Path, registry: Registry
) -> None:
    models = [saved(tmp_path / "a", shift=1.0), saved(tmp_path / "b", shift=2.0)]
    (tmp_path / "mean").mkdir()
    (tmp_path / "mean" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        average_models(models, tmp_path / "mean", registry=registry)
    # overwrite replaces a model folder, never deletes a folder of other files
    with pytest.raises(OutputError, match="not a medi2i model folder"):
        average_models(models, tmp_path / "mean", registry=registry, overwrite=True)
    assert (tmp_path / "mean" / "notes.txt").read_text() == "mine"
    average_models(models, tmp_path / "mean2", registry=registry)
    average_models(models[::-1], tmp_path / "mean2", registry=registry, overwrite=True)
    assert (tmp_path / "mean2" / "weights.safetensors").is_file()


def test_a_zip_output_is_refused(tmp_path: Path, registry: Registry) -> None:
    models = [saved(tmp_path / "a", shift=1.0), saved(tmp_path / "b", shift=2.0)]
    with pytest.raises(OptionsError, match=r"mean\.zip: the averaged model is written as a"):
        average_models(models, tmp_path / "mean.zip", registry=registry)
    assert not (tmp_path / "mean.zip").exists()


def test_the_command_writes_the_average(tmp_path: Path, registry: Registry) -> None:
    a = saved(tmp_path / "a", shift=1.0)
    b = saved(tmp_path / "b", shift=3.0)
    cli = build_cli(registry.plugins)
    result = CliRunner().invoke(
        cli, ["average-weights", str(a), str(b), "-o", str(tmp_path / "m"), "--weight", "1"]
    )
    assert result.exit_code == 1
    assert "one weight per model" in result.output
    result = CliRunner().invoke(cli, ["average-weights", str(a), str(b), "-o", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {tmp_path / 'm'} (the mean of 2 models' weights)")


def test_models_trained_with_other_options_are_averaged_with_a_warning(
    tmp_path: Path, registry: Registry
) -> None:
    from medi2i.model_averaging import AveragingWarning

    first = saved(tmp_path / "a", shift=1.0)
    other = PointwiseNet({"hidden": 3, "roi_size": (8, 8, 8)})
    with torch.no_grad():
        for parameter in other.network.parameters():
            parameter.fill_(2.0)
    second = save_model(other, tmp_path / "b", data_cards=["d1"])
    with pytest.warns(AveragingWarning, match=r"other options than .*\(roi_size\)"):
        average_models([first, second], tmp_path / "mean", registry=registry)
    assert load_model(tmp_path / "mean", registry=registry).options.roi_size == (16, 16, 16)
