"""Adapting a trained model to target data (e.g. AdaBN on a new scanner's images).

:func:`adapt_model` loads a trained model, hands its :meth:`medi2i.Method.adapt` the
target volumes (read → working grid → preprocessing, as predict sees them) and saves
the result as a new model folder. Each target volume passes predict's input checks
first: the modality rule (a CT in HU given to a model that takes MR is refused unless
``force_modality``) and the warning for a voxel spacing far from the model's training
spacings (:class:`medi2i.training_spacing.SpacingWarning`). The new manifest's
``adapted_from`` names the source model (absolute path), the SHA-256 of the source's
weights file, each target volume with its SHA-256 (as predict's provenance hashes its
input) and, for a model adapted twice, the source's own ``adapted_from``. A source
with a model card passes it on: the adapted model's card keeps its training data,
intended use and limits, records the adaptation in ``adaptations`` and leaves out the
source's metrics, which were measured before adapting. The source model is never
changed.

Example:
    >>> adapt_model("model", ["site-b/1.nii.gz"], "model-site-b")  # doctest: +SKIP
    PosixPath('model-site-b')
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.errors import OptionsError

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.cards import AdaptedVolume, ModelCard
    from medi2i.method import Method
    from medi2i.model_folder import AdaptedFrom
    from medi2i.registry import Registry
    from medi2i.settings import InferenceSettings


def adapt_model(
    model: str | Path,
    volumes: Sequence[Path],
    output: str | Path,
    *,
    registry: Registry | None = None,
    settings: InferenceSettings | None = None,
    seed: int = 0,
    overwrite: bool = False,
    domain: str | None = None,
    command: str = "medi2i.adaptation.adapt_model (Python)",
    force_modality: bool = False,
) -> Path:
    """Adapt the model at ``model`` to ``volumes`` and save it at ``output``.

    Args:
        model: A trained-model folder or zip.
        volumes: Target-domain volumes (files or DICOM series folders).
        output: The adapted model's folder (written atomically).
        registry: The plugins; the installed ones by default.
        settings: Device, progress and non-finite voxel handling of the adaptation
            (and the engine :class:`medi2i.AdaptContext` hands the method).
        seed: Seed of anything random the adaptation does.
        overwrite: Replace an existing ``output``.
        domain: The volumes' domain, passed to preprocessing (domain methods).
        command: What the adapted model's card names as the adapting command.
        force_modality: Skip the modality checks of the volumes, as predict's
            ``force_modality`` (also taken from ``settings.force_modality``).

    Returns:
        The adapted model's folder.

    Warns:
        SpacingWarning: A volume's voxel spacing lies far outside the model's training
            spacings (as predict warns).

    Raises:
        OptionsError: The method does not adapt, there are no volumes, or ``output``
            is the source model.
        OutputError: ``output`` holds or lies inside an input, or exists and
            ``overwrite`` is not set (checked before anything is computed).
        ModelFormatError: The source's ``card.yaml`` is not a valid model card.
        InputError: A volume is plainly not of the modality the model takes (see
            :func:`medi2i.prediction_checks.check_modality`), unless ``force_modality``.
    """
    from medi2i.io.destinations import check_destination
    from medi2i.model_card_files import attach_card
    from medi2i.model_folder import (
        AdaptedFrom,
        load_model,
        read_manifest,
        read_model_card,
        save_model,
        weights_sha256,
    )

    model, output = Path(model), Path(output)
    if output.resolve() == model.resolve():
        raise OptionsError(
            f"the adapted model would replace its source {model}; give another output folder"
        )
    # never a folder that is, holds or lies inside the source model or a target volume
    check_destination(output, inputs=[model, *volumes], overwrite=overwrite, folder=True)
    method = load_model(model, registry=registry)
    names = list(getattr(method, "domain_names", ()) or ())
    if domain is not None and domain not in names:
        have = f"its domains are {names}" if names else "it was trained on no domains"
        raise OptionsError(
            f"{model}: --domain {domain!r} is not a domain of this model ({have}); "
            + ("give one of them" if names else "leave --domain out")
        )
    manifest = read_manifest(model)
    card = read_model_card(model)  # a broken card is refused before the work
    data = adapt_method(
        method,
        volumes,
        registry=registry,
        settings=settings,
        seed=seed,
        domain=domain,
        force_modality=force_modality,
    )
    source = AdaptedFrom(
        model=str(model.resolve()),
        weights_sha256=weights_sha256(model),
        data=data,
        adapted_from=manifest.adapted_from,
    )
    written = save_model(
        method, output, data_cards=manifest.data_cards, overwrite=overwrite, adapted_from=source
    )
    if card is not None:
        attach_card(written, adapted_card(card, source, command=command, seed=seed))
    return written


def adapted_card(card: ModelCard, source: AdaptedFrom, *, command: str, seed: int) -> ModelCard:
    """The card of a model adapted from the model ``card`` describes: its training data,
    provenance, intended use and limits, with the adaptation added to ``adaptations``
    and without its metrics or evaluation data (measured before adapting; a limit says
    which were left out)."""
    from medi2i import __version__
    from medi2i.cards import Adaptation

    adaptation = Adaptation(
        source_model=source.model,
        source_card=card.name,
        source_weights_sha256=source.weights_sha256,
        data=list(source.data),
        medi2i_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command=command,
        seed=seed,
    )
    limits = list(card.limits)
    if card.metrics:
        measured = ", ".join(f"{name} {value:.4g}" for name, value in card.metrics.items())
        limits.append(
            f"the metrics of {card.name} ({measured}) were measured before it was adapted "
            "and are left out of this card: evaluate the adapted model on held-out target "
            "data before use"
        )
    return card.model_copy(
        update={
            "name": _adapted_name(card.name),
            "summary": f"{card.summary} Adapted from {card.name} to "
            f"{len(source.data)} target volumes (see Adaptation).",
            "metrics": {},
            "evaluation_data": [],
            "limits": limits,
            "adaptations": [*card.adaptations, adaptation],
        }
    )


def _adapted_name(name: str) -> str:
    return name if name.endswith("-adapted") else f"{name}-adapted"


def adapt_method(
    method: Method,
    volumes: Sequence[Path],
    *,
    registry: Registry | None = None,
    settings: InferenceSettings | None = None,
    seed: int = 0,
    domain: str | None = None,
    force_modality: bool = False,
) -> list[AdaptedVolume]:
    """Run ``method.adapt`` on ``volumes`` in place (see :func:`adapt_model`), after
    predict's input checks on each volume (:func:`checked_target`).

    Returns:
        Each volume's absolute path and SHA-256, as predict's provenance records its
        input (:func:`medi2i.provenance.input_hash`).

    Raises:
        OptionsError: The method does not adapt, or there are no volumes.
        InputError: A volume fails predict's input checks (modality unless
            ``force_modality`` or ``settings.force_modality``, non-finite voxels).
    """
    from medi2i.data.loading import prepared
    from medi2i.engine import SlidingWindowEngine
    from medi2i.io import read_volume
    from medi2i.method import AdaptContext
    from medi2i.prediction import progress_bars
    from medi2i.settings import InferenceSettings

    if not method.adapts:
        raise OptionsError(
            f"method {method.id!r} does not adapt to target data (it does not implement "
            "adapt); train it on the target data instead"
        )
    if not volumes:
        raise OptionsError("no target volumes to adapt to; give at least one")
    settings = settings or InferenceSettings()
    readers = list(registry.readers.values()) if registry is not None else None
    engine = SlidingWindowEngine(settings=settings)
    context = AdaptContext(
        engine=engine,
        device=engine.device,
        seed=seed,
        progress=progress_bars(settings.progress),
        log=logging.getLogger(f"medi2i.method.{method.id}"),
    )
    prepared_volumes, hashes = [], []
    for path in volumes:
        volume = read_volume(path, readers=readers)
        hashes.append(_volume_record(Path(path), volume))
        force = force_modality or settings.force_modality
        checked = checked_target(method, volume, settings, domain=domain, force_modality=force)
        prepared_volumes.append(prepared(checked, method, domain=domain))
    method.adapt(prepared_volumes, context)
    return hashes


def checked_target(
    method: Method,
    volume: MetaTensor,
    settings: InferenceSettings,
    *,
    domain: str | None = None,
    force_modality: bool = False,
) -> MetaTensor:
    """``volume`` after the input checks predict applies to an input of ``method``: its
    modality (:func:`medi2i.prediction_checks.check_modality`), its non-finite voxels
    (``settings.nonfinite``) and its voxel spacing against the model's training spacings
    (a :class:`medi2i.training_spacing.SpacingWarning`, not an error).

    Raises:
        InputError: As predict refuses the volume.
    """
    from medi2i.errors import InputError
    from medi2i.grid import Grid
    from medi2i.prediction_checks import check_modality, naming_the_input
    from medi2i.training_spacing import check_input_spacing
    from medi2i.voxel_checks import checked_input

    check_modality(method, volume, force=force_modality, domain=domain)
    checked = checked_input(volume, settings.nonfinite)
    grid = Grid.of(checked)
    with naming_the_input(checked.meta, (InputError, OptionsError)):
        output = method.output_grid(grid)
    where = str(checked.meta.get("filename_or_obj") or "a target volume")
    check_input_spacing(method, grid, output, where)
    return checked


def _volume_record(path: Path, volume: MetaTensor) -> AdaptedVolume:
    from medi2i.cards import AdaptedVolume
    from medi2i.provenance import input_hash

    return AdaptedVolume.model_validate(input_hash(path.resolve(), volume))
