"""Weight averaging: one trained model from the weights of several of the same method
and architecture (checkpoint averaging, as in stochastic weight averaging: Izmailov et
al., "Averaging Weights Leads to Wider Optima and Better Generalization", UAI 2018).

Models from one training run (the best and the last checkpoint), or fine-tunings of one
model, lie near each other in weight space, and their average often predicts better
than either. Models trained from different random starts do not: their average can be
far worse than both, so score an average on validation data before using it.

Only floating-point weights are averaged; integer buffers (counters) are taken from the
first model. Fitted values (intensity statistics, domains) must be the same in every
model: an average of networks fitted to different normalisations means nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.errors import OptionsError

if TYPE_CHECKING:
    import torch

    from medi2i.method import Method
    from medi2i.registry import Registry


def average_models(
    models: Sequence[str | Path],
    output: str | Path,
    *,
    weights: Sequence[float] | None = None,
    registry: Registry | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model folder whose weights are the (weighted) mean of ``models``' weights.

    Args:
        models: Two or more trained-model folders or zips of one method, with the same
            architecture options and fitted values (training options such as the
            learning rate may differ; the first model's are kept).
        output: The new model folder; refused if it exists unless ``overwrite``.
        weights: One non-negative weight per model (normalised to sum to 1); equal
            weights by default.
        registry: Plugins to load the models with; the installed ones by default.
        overwrite: Replace an existing ``output`` (never one of ``models``).

    Returns:
        The folder written. Its card names the models averaged and their weights' SHA-256,
        and carries no metrics: the average has not been evaluated.

    Raises:
        OptionsError: Fewer than two models, weights that do not match them, models of
            different methods, architectures, fitted values or domains, a model without
            weights (nothing to average), or weights whose average is not finite.
        OptionsError: ``output`` names a zip file (the model is written as a folder).
        OutputError: ``output`` is, lies inside or holds one of the models, or is an
            existing folder that is not empty and ``overwrite`` is not set.
        ModelFormatError: A model folder is not valid.
    """
    from medi2i.io.destinations import check_destination
    from medi2i.model_folder import load_model, read_manifest, save_model
    from medi2i.onnx_model import is_onnx_model
    from medi2i.registry import Registry
    from medi2i.training_spacing import merged_training_spacing, record_training_spacing

    paths = [Path(model) for model in models]
    if len(paths) < 2:
        raise OptionsError(f"give two or more models to average, not {len(paths)}")
    shares = _shares(weights, len(paths))
    output = Path(output)
    for path in paths:
        if is_onnx_model(path):
            raise OptionsError(f"{path} is an ONNX export; average the medi2i model folders")
    if output.suffix.lower() == ".zip":
        raise OptionsError(
            f"{output}: the averaged model is written as a folder, not a zip; name a "
            f"folder (e.g. {output.with_suffix('')}) and zip it afterwards if you need one"
        )
    # the output may be none of the models, lie inside one or hold one: save_model
    # replaces an existing folder whole under overwrite
    check_destination(output, inputs=paths, overwrite=overwrite, folder=True)
    registry = registry if registry is not None else Registry()
    loaded = [load_model(path, registry=registry) for path in paths]
    first = loaded[0]
    for path, method in zip(paths[1:], loaded[1:], strict=True):
        _require_compatible(first, paths[0], method, path)
    averaged = _mean_tensors([method.state_tensors() for method in loaded], shares, paths)
    for path, method in zip(paths[1:], loaded[1:], strict=True):
        _warn_about_options(first, paths[0], method, path)
    first.load_state_tensors(averaged)
    record_training_spacing(first, merged_training_spacing(loaded))
    data_cards = list(dict.fromkeys(c for p in paths for c in read_manifest(p).data_cards))
    folder = save_model(first, output, data_cards=data_cards, overwrite=overwrite)
    _attach_card(folder, first, paths, shares, data_cards)
    return folder


class AveragingWarning(UserWarning):
    """Models averaged although trained with different options."""


def _warn_about_options(first: Method, first_path: Path, other: Method, path: Path) -> None:
    """Warn when ``other`` was trained with options other than ``first``'s (the weights
    fit the same network, else averaging failed before)."""
    import warnings

    mine, theirs = first.options.model_dump(mode="json"), other.options.model_dump(mode="json")
    differing = sorted(key for key in {*mine, *theirs} if mine.get(key) != theirs.get(key))
    if differing:
        warnings.warn(
            f"{path} was trained with other options than {first_path} "
            f"({', '.join(differing)}); the average keeps {first_path}'s. Weights trained "
            "under another normalization or input scaling do not average into a model of "
            "either: average models trained alike (checkpoints or fine-tunings of one run)",
            AveragingWarning,
            stacklevel=3,
        )


def _shares(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0 / count] * count
    values = [float(w) for w in weights]
    if len(values) != count:
        raise OptionsError(f"give one weight per model: {len(values)} weights for {count} models")
    if any(not w >= 0.0 for w in values) or sum(values) <= 0.0:  # catches NaN too
        raise OptionsError(f"weights must be >= 0 with a positive sum, not {values}")
    total = sum(values)
    return [w / total for w in values]


def _require_compatible(first: Method, first_path: Path, other: Method, path: Path) -> None:
    if other.id != first.id:
        raise OptionsError(
            f"{path} is a model of method {other.id!r}, {first_path} of {first.id!r}; "
            "average models of one method"
        )
    if other.state_values() != first.state_values():
        differing = sorted(
            key
            for key in {*first.state_values(), *other.state_values()}
            if first.state_values().get(key) != other.state_values().get(key)
        )
        raise OptionsError(
            f"{path} and {first_path} were fitted to different values ({', '.join(differing)}); "
            "average models fitted on the same data (checkpoints of one run, or fine-tunings "
            "of one model)"
        )
    if other.domains != first.domains:
        raise OptionsError(
            f"{path} and {first_path} have different domains; average models of one run"
        )


def _mean_tensors(
    states: Sequence[dict[str, torch.Tensor]], shares: Sequence[float], paths: Sequence[Path]
) -> dict[str, torch.Tensor]:
    import torch

    reference = states[0]
    if not reference:
        raise OptionsError(f"{paths[0]} has no weights; there is nothing to average")
    for state, path in zip(states[1:], paths[1:], strict=True):
        mismatched = sorted(
            key
            for key in {*reference, *state}
            if key not in reference or key not in state or reference[key].shape != state[key].shape
        )
        if mismatched:
            shown = ", ".join(mismatched[:5]) + (" ..." if len(mismatched) > 5 else "")
            raise OptionsError(
                f"the weights of {path} do not fit those of {paths[0]} ({shown}): the models "
                "differ in architecture options; average models of one architecture"
            )
    averaged: dict[str, torch.Tensor] = {}
    for key, tensor in reference.items():
        if not tensor.is_floating_point():
            averaged[key] = tensor.clone()
            continue
        total = torch.zeros(tensor.shape, dtype=torch.float64)
        for state, share in zip(states, shares, strict=True):
            total += state[key].detach().cpu().to(torch.float64) * share
        if not torch.isfinite(total).all():
            raise OptionsError(
                f"the average of weight {key} is not finite (a model holds NaN or Inf "
                "weights, from a diverged training); average sound models only"
            )
        averaged[key] = total.to(tensor.dtype)
    return averaged


def _attach_card(
    folder: Path, method: Method, paths: Sequence[Path], shares: Sequence[float], cards: list[str]
) -> None:
    from medi2i import __version__
    from medi2i.cards import IntendedUse, MethodReference, ModelCard, RunProvenance
    from medi2i.model_card_files import attach_card
    from medi2i.model_folder import read_manifest
    from medi2i.workflow.model_card import card_name

    members = []
    for path, share in zip(paths, shares, strict=True):
        record = read_manifest(path).weights
        digest = record.sha256[:12] if record is not None else "none"
        members.append(f"{path} (weight {share:.3g}, weights SHA-256 {digest}...)")
    card = ModelCard(
        card="model",
        name=card_name(folder.name),
        method=MethodReference(id=method.id, version=method.version),
        summary=(
            f"{method.summary()} Weights averaged from {len(paths)} models of this method: "
            f"{'; '.join(members)}. Options and fitted values are the first model's."
        ),
        training_data=cards,
        provenance=RunProvenance(
            medi2i_version=__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            command="medi2i average-weights " + " ".join(str(p) for p in paths),
        ),
        intended_use=IntendedUse(
            primary="research on data like the training data its cards describe",
            out_of_scope="clinical use; data unlike the training data",
        ),
        limits=["not evaluated as an average: score it on validation data before use"],
    )
    attach_card(folder, card)
