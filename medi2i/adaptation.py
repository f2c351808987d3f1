"""Adapting a trained model to target data (e.g. AdaBN on a new scanner's images).

:func:`adapt_model` loads a trained model, hands its :meth:`medi2i.Method.adapt` the
target volumes (read → working grid → preprocessing, as predict sees them) and saves
the result as a new model folder whose manifest names the source model, its weights'
SHA-256 and the volumes it was adapted on. The source model is never changed.

Example:
    >>> adapt_model("model", ["site-b/1.nii.gz"], "model-site-b")  # doctest: +SKIP
    PosixPath('model-site-b')
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.errors import OptionsError

if TYPE_CHECKING:
    from medi2i.method import Method
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
) -> Path:
    """Adapt the model at ``model`` to ``volumes`` and save it at ``output``.

    Args:
        model: A trained-model folder or zip.
        volumes: Target-domain volumes (files or DICOM series folders).
        output: The adapted model's folder (written atomically).
        registry: The plugins; the installed ones by default.
        settings: Device and sliding-window settings of the adaptation.
        seed: Seed of anything random the adaptation does.
        overwrite: Replace an existing ``output``.
        domain: The volumes' domain, passed to preprocessing (domain methods).

    Returns:
        The adapted model's folder.

    Raises:
        OptionsError: The method does not adapt, there are no volumes, or ``output``
            is the source model.
        OutputError: ``output`` holds or lies inside an input, or exists and
            ``overwrite`` is not set (checked before anything is computed).
    """
    from medi2i.io.destinations import check_destination
    from medi2i.model_folder import load_model, read_manifest

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
    adapt_method(method, volumes, registry=registry, settings=settings, seed=seed, domain=domain)
    from medi2i.model_folder import AdaptedFrom, save_model

    source = AdaptedFrom(
        model=str(model),
        weights_sha256=manifest.weights.sha256 if manifest.weights else None,
        data=[str(path) for path in volumes],
    )
    return save_model(
        method,
        output,
        data_cards=manifest.data_cards,
        overwrite=overwrite,
        adapted_from=source,
    )


def adapt_method(
    method: Method,
    volumes: Sequence[Path],
    *,
    registry: Registry | None = None,
    settings: InferenceSettings | None = None,
    seed: int = 0,
    domain: str | None = None,
) -> None:
    """Run ``method.adapt`` on ``volumes`` in place (see :func:`adapt_model`).

    Raises:
        OptionsError: The method does not adapt, or there are no volumes.
    """
    from medi2i.data.loading import read_prepared
    from medi2i.engine import SlidingWindowEngine
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
    prepared = [
        read_prepared(path, method, domain=domain, readers=readers, nonfinite=settings.nonfinite)
        for path in volumes
    ]
    method.adapt(prepared, context)
