"""The predict path: read → spatial plan → preprocess → predict → postprocess →
back onto the input (or target) grid → write, with a provenance sidecar.

Example:
    >>> import medi2i
    >>> medi2i.predict("t1.nii.gz", "out.nii.gz", method="intensity-inversion")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

from pydantic import BaseModel

from medi2i.errors import InputError, ModelFormatError, OptionsError
from medi2i.grid import Grid
from medi2i.method import (
    DataKind,
    Method,
    Output,
    PredictContext,
    Progress,
    Training,
    no_progress,
)
from medi2i.output_records import check_sidecar_destination as check_sidecar_destination
from medi2i.output_records import grid_record as grid_record
from medi2i.output_records import named_output_path as named_output_path
from medi2i.prediction_checks import (
    check_modality,
    naming_the_input,
    outputs_by_name,
    require_declared_channels,
    require_engine,
    require_no_collapsed_axis,
    require_output_fits,
    require_placed,
    require_ready_call,
    settings_of,
    with_grid,
)
from medi2i.prediction_state import seeded, state_kept
from medi2i.provenance import output_record, provenance, run_record, staged_sidecar
from medi2i.settings import InferenceSettings

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.engine import SlidingWindowEngine
    from medi2i.registry import Registry

Condition = Mapping[str, object] | BaseModel | None


def predict_outputs(
    method: Method,
    image: MetaTensor,
    *,
    settings: InferenceSettings | None = None,
    condition: Condition = None,
    engine: SlidingWindowEngine | None = None,
    run_facts: dict[str, object] | None = None,
    allow_constant: bool = False,
) -> dict[str, MetaTensor]:
    """Translate one channel-first volume in memory into every output of the method.

    Every path that predicts (:func:`predict`, :func:`predict_tensor`, ``medi2i
    batch``, the DICOM node, a workflow's evaluation) runs through here, so each
    refuses the same outputs: non-finite ones, and constant ones (constant inputs are
    refused, so a constant translation of a varying input is a method that collapsed).

    Args:
        method: A ready method (fitted or loaded from a model folder).
        image: Channel-first ``MetaTensor`` with its affine (RAS, mm).
        settings: Sliding-window and device settings (or a mapping of their fields);
            defaults otherwise.
        condition: Predict-time condition (e.g. ``{"target_domain": "B"}``), validated
            against the method's ``Condition`` model and its state (its domains).
        engine: The sliding-window engine to use (one per batch keeps what it learns,
            such as an out-of-memory back-off); a new one from ``settings`` otherwise.
        run_facts: Filled with what the method reports about this run
            (:attr:`medi2i.PredictContext.facts`, e.g. the steps a time budget stopped
            its fitting at), for the caller's provenance; not kept when ``None``.
        allow_constant: Return an output whose voxels all hold one value instead of
            refusing it, for a caller that scores outputs rather than delivers them
            (validation during training, where a collapsed network scores badly).

    Returns:
        The outputs by name (:meth:`medi2i.Method.outputs`; ``""`` for the single output
        of most methods), each a ``MetaTensor`` on ``method.output_grid`` of the input
        grid carrying the input's metadata and the output's modality and units.

    Raises:
        OptionsError: ``method`` is not a ready :class:`~medi2i.Method` (a class, an id),
            the settings or the condition are invalid, or the method returned other
            outputs than it declares.
        InputError: ``image`` is not a ``MetaTensor`` of real numbers, or its voxels
            are non-finite (see ``settings.nonfinite``), constant or empty.
        GeometryError: ``image`` is not channel-first 3D, its affine is not a finite,
            invertible 4x4 matrix, or its channels are not those of a patch network's
            ``input_spec``.
        OutputError: An output is not finite, is constant (every voxel the same value,
            unless ``allow_constant``), has other channels than it declares, or is not
            a volume the core can place on a grid (not channel-first 3D; another shape
            under the input's affine).
    """
    from medi2i.data.loading import prepared as prepared_volume
    from medi2i.engine import SlidingWindowEngine
    from medi2i.reflect_padding import cropped_to_grid, reflected_volume, reflection_widths
    from medi2i.trained_state import warn_if_untrained
    from medi2i.training_spacing import check_input_spacing
    from medi2i.voxel_checks import checked_input

    require_ready_call(method, image)
    settings = settings_of(settings)
    parsed = method.parse_condition(condition)
    input_domain = method.input_domain(parsed)
    check_modality(method, image, force=settings.force_modality, domain=input_domain)
    declared = method.outputs(parsed)
    image = checked_input(image, settings.nonfinite)
    with naming_the_input(image.meta, (InputError, OptionsError)):
        output_grid = method.output_grid(Grid.of(image), parsed)
    where = str(image.meta.get("filename_or_obj") or "the input volume")
    require_no_collapsed_axis(method, Grid.of(image), output_grid, where)
    require_output_fits(method, output_grid)
    engine = require_engine(engine) or SlidingWindowEngine(settings=settings)
    context = PredictContext(
        engine=engine,
        condition=parsed,
        device=engine.device,
        seed=settings.seed,
        progress=progress_bars(settings.progress),
        log=logging.getLogger(f"medi2i.method.{method.id}"),
        facts=run_facts if run_facts is not None else {},
    )
    input_grid = Grid.of(image)
    input_channels = int(image.shape[0])
    source_meta = dict(image.meta)
    widths = reflection_widths(input_grid.shape, settings.reflect_padding)
    if any(widths):  # the method sees the volume extended by its mirror image
        image = reflected_volume(image, widths)
    if widths != tuple(settings.reflect_padding):  # capped by a short axis: say so
        context.facts["reflect_padding"] = list(widths)
    seen_grid = Grid.of(image)
    warn_if_untrained(method)  # after every refusal: a warning, then a result
    outside = check_input_spacing(method, input_grid, output_grid, where, condition=parsed)
    if outside is not None:
        context.facts["spacing_outside_training_mm"] = outside
    with naming_the_input(source_meta):
        prepared = prepared_volume(image, method, domain=input_domain, condition=parsed)
    # from here the input is needed for its metadata only; a caller that handed over its
    # only reference (as predict_all does) frees a whole volume before the inference
    del image
    with state_kept(method), naming_the_input(source_meta), seeded(settings.seed, engine.device):
        raw = outputs_by_name(method, method.predict(prepared, context), declared)
    results: dict[str, MetaTensor] = {}
    for output in declared:
        shaped = with_grid(method, raw[output.name], prepared)
        done = method.postprocess(shaped, prepared, domain=output.domain, condition=parsed)
        require_placed(method, done, shaped, "postprocess")
        require_declared_channels(method, done, output, input_channels)
        delivered = _delivered(method, done, seen_grid, source_meta, output, parsed)
        if any(widths):  # back to the output grid of the volume itself
            delivered = cropped_to_grid(delivered, output_grid, method_id=method.id)
        if not allow_constant:
            _require_varying(method, delivered, output, source_meta)
        results[output.name] = delivered
    return results


def predict_tensor(
    method: Method,
    image: MetaTensor,
    *,
    settings: InferenceSettings | None = None,
    condition: Condition = None,
    engine: SlidingWindowEngine | None = None,
    run_facts: dict[str, object] | None = None,
    allow_constant: bool = False,
) -> MetaTensor:
    """Translate one channel-first volume in memory (a method with one output).

    Example:
        >>> method = medi2i.Registry().method("intensity-inversion")()  # doctest: +SKIP
        >>> output = predict_tensor(method, medi2i.read_volume("t1.nii.gz"))  # doctest: +SKIP

    Args:
        method: A ready method (fitted or loaded from a model folder).
        image: Channel-first ``MetaTensor`` with its affine (RAS, mm).
        settings: Sliding-window and device settings (or a mapping of their fields);
            defaults otherwise.
        condition: Predict-time condition (e.g. ``{"target_domain": "B"}``).
        engine: The sliding-window engine to run on, kept by a caller that predicts
            many volumes so that what it learns (the out-of-memory back-off) carries
            over; its own settings then govern the windows and the device. A new
            engine made from ``settings`` when ``None``.
        run_facts: Filled with what the method reports about this run, as
            :func:`predict_outputs` fills it.
        allow_constant: Return a constant output instead of refusing it (see
            :func:`predict_outputs`).

    Returns:
        The output as a ``MetaTensor`` on ``method.output_grid`` of the input grid
        (the input grid itself unless the method changes resolution), carrying the
        input's metadata.

    Raises:
        OptionsError: The method yields several named outputs under ``condition``
            (use :func:`predict_outputs`); otherwise as :func:`predict_outputs`.
        InputError: As :func:`predict_outputs`.
        OutputError: The output is not finite or is constant (the method collapsed on
            this input), as :func:`predict_outputs` refuses it.
    """
    results = predict_outputs(
        method,
        image,
        settings=settings,
        condition=condition,
        engine=engine,
        run_facts=run_facts,
        allow_constant=allow_constant,
    )
    if len(results) != 1:
        raise OptionsError(
            f"method {method.id!r} yields {len(results)} outputs ({', '.join(results)}) "
            "under this condition; predict them with predict_outputs"
        )
    return next(iter(results.values()))


def _require_varying(
    method: Method, output: MetaTensor, declared: Output, source_meta: Mapping[str, object]
) -> None:
    """Refuse an output whose voxels all hold one value: the method collapsed."""
    from medi2i.voxel_checks import COLLAPSED_HINT, require_varying_output

    named = f" {declared.name!r}" if declared.name else ""
    where = source_meta.get("filename_or_obj") or "the input"
    require_varying_output(
        output.as_tensor().detach().cpu().numpy(),
        f"the output{named} of {method.id!r} for {where}",
        hint=COLLAPSED_HINT,
    )


def _delivered(
    method: Method,
    output: MetaTensor,
    input_grid: Grid,
    source_meta: Mapping[str, object],
    declared: Output,
    condition: object,
) -> MetaTensor:
    from medi2i.resample import resample_to_grid
    from medi2i.voxel_checks import require_declared_range, require_finite_output

    output = cast("MetaTensor", output.detach())  # no autograd graph kept alive with it
    if not output.is_floating_point():  # a bool or integer output: values, as written
        output = cast("MetaTensor", output.float())
    result = resample_to_grid(output, method.output_grid(input_grid, condition), mode="linear")
    named = f" {declared.name!r}" if declared.name else ""
    values = result.as_tensor().detach().cpu().numpy()
    what = (
        f"the output{named} of {method.id!r} for {source_meta.get('filename_or_obj', 'the input')}"
    )
    require_finite_output(
        values,
        what,
        hint=(
            "the method failed on this input (a diverged model, or an input unlike its "
            "training data); nothing was written"
            if method.training is not Training.NONE
            else "the method, which learns nothing, computed them from this input (a bug "
            "in the method, or an input it cannot handle); nothing was written"
        ),
    )
    if declared.spec.value_range is not None:
        require_declared_range(values, declared.spec.value_range, what, method_id=method.id)
    result.meta = {
        **source_meta,
        **_grid_meta(result),
        "medi2i.method.id": method.id,
        "medi2i.method.version": method.version,
        "medi2i.output.name": declared.name,
        "medi2i.output.modality": declared.spec.modality,
        "medi2i.output.units": declared.spec.units,
    }
    return result


def progress_bars(enabled: bool | None) -> Progress:
    """A :data:`~medi2i.method.Progress` showing tqdm bars when ``enabled`` (``None``:
    when standard error is a terminal)."""
    from medi2i.settings import wants_progress

    if not wants_progress(enabled):
        return no_progress

    def progress(
        iterable: Iterable[object], description: str = "", total: int | None = None
    ) -> Iterable[object]:
        from tqdm.auto import tqdm

        bar: Iterable[object] = tqdm(iterable, desc=description or None, total=total, leave=False)
        return bar

    return progress


def _grid_meta(volume: MetaTensor) -> dict[str, object]:
    # outputs are continuous: never inherit an integer on-disk type from the input
    return {
        "spatial_shape": tuple(int(s) for s in volume.shape[1:]),
        "affine": volume.affine,
        "medi2i.dtype": "float32",
    }


def load_method(
    *,
    method: str | None,
    model: str | Path | None,
    options: Mapping[str, object] | None,
    registry: Registry,
) -> Method:
    """The method named by ``method`` (untrained, with ``options``) or loaded from ``model``."""
    from medi2i.model_folder import load_model
    from medi2i.onnx_model import is_onnx_model, load_onnx_model

    if (method is None) == (model is None):
        raise OptionsError(
            "give either --method (a method id) or --model (a trained-model folder), "
            "not both or neither (method= or model= in Python)"
        )
    if model is not None:
        from medi2i.io.base import require_not_special
        from medi2i.method_references import require_model_path

        require_model_path(model)
        require_not_special(  # a FIFO named as the model would block its read for ever
            Path(model),
            "a trained model",
            "the trained-model folder, its zip or the .onnx file itself",
            ModelFormatError,
        )
        if options:
            raise OptionsError(
                f"options are fixed by the trained model {model}; do not pass options with it"
            )
        if is_onnx_model(model):
            return load_onnx_model(model, registry=registry)
        return load_model(model, registry=registry)
    assert method is not None
    method_cls = registry.method(method)
    if method_cls.data is not DataKind.NONE:
        raise OptionsError(
            f"method {method!r} must be trained before it can predict "
            f"(it learns from {method_cls.data.value} data); pass a trained-model folder instead"
        )
    return method_cls(options)


def predict(
    source: str | Path,
    output: str | Path,
    *,
    method: str | None = None,
    model: str | Path | None = None,
    options: Mapping[str, object] | None = None,
    settings: InferenceSettings | None = None,
    condition: Condition = None,
    registry: Registry | None = None,
    image: MetaTensor | None = None,
    overwrite: bool = False,
    engine: SlidingWindowEngine | None = None,
) -> Path:
    """Translate the volume at ``source`` and write it to ``output``.

    Args:
        source: Input volume file (NIfTI, NRRD, MHA, or anything a reader plugin reads).
        output: Output path; its suffix picks the format. Written atomically.
        method: Id of a method that needs no training (see ``medi2i methods``).
        model: A trained-model folder or zip (instead of ``method``).
        options: Options of ``method``.
        settings: Sliding-window and device settings (an :class:`InferenceSettings`, or
            a mapping of its fields such as ``{"overlap": 0.5}``); defaults otherwise.
        condition: Predict-time condition for conditioned methods.
        registry: Plugins to use; the installed ones by default.
        image: The volume at ``source`` when the caller has read it already (the CLI
            reads a DICOM folder from the header scan it made to tell a series from a
            tree of studies); ``source`` still names the input in the provenance.
        overwrite: Replace an existing output (atomically, after the new one is
            written in full). Without it an existing output is refused; an output that
            is, holds or lies inside the input, or a file the condition reads, is always
            refused (:mod:`medi2i.io.destinations`, ``condition_inputs``).
        engine: The sliding-window engine to run on (see :func:`predict_tensor`), for a
            caller that predicts many volumes.

    Returns:
        The written output path. A provenance sidecar ``<output stem>.provenance.json``
        is written next to it.

    Raises:
        OutputError: The output is the input, or exists and ``overwrite`` is not set,
            or the method's output is not finite or is constant (nothing is written
            then).
        InputError: The input is unreadable, non-finite (see ``settings.nonfinite``),
            constant or empty, or of another modality than the method takes; no writer
            takes the output's suffix.
        OptionsError: Neither or both of ``method`` and ``model``, a method that must be
            trained first, or invalid options, settings or condition.
        UnknownMethodError: No installed plugin registers ``method``.
        ModelFormatError: ``model`` is not a valid trained-model folder or zip.
        DeviceError: ``settings.device`` is not available.
    """
    written = predict_all(
        source,
        output,
        method=method,
        model=model,
        options=options,
        settings=settings,
        condition=condition,
        registry=registry,
        image=image,
        overwrite=overwrite,
        single=True,
        engine=engine,
    )
    return next(iter(written.values()))


def predict_all(
    source: str | Path,
    output: str | Path,
    *,
    method: str | None = None,
    model: str | Path | None = None,
    options: Mapping[str, object] | None = None,
    settings: InferenceSettings | None = None,
    condition: Condition = None,
    registry: Registry | None = None,
    image: MetaTensor | None = None,
    overwrite: bool = False,
    single: bool = False,
    engine: SlidingWindowEngine | None = None,
) -> dict[str, Path]:
    """Like :func:`predict`, for methods with several named outputs too.

    The single output of most methods goes to ``output``; named outputs (MUNIT styles,
    StarGAN targets) go to ``OUT_{name}`` (:func:`named_output_path`), each with its
    own provenance sidecar naming the output and its condition. Every destination is
    checked before the inference starts.

    Args:
        single: Refuse a method that yields several outputs (what :func:`predict` does).
        engine: The sliding-window engine to run on (see :func:`predict_tensor`).

    Returns:
        The written paths by output name (``""`` for the single output).
    """
    from contextlib import nullcontext

    from medi2i.io import read_volume, write_volume, writer_for
    from medi2i.io.atomic import refusing_existing
    from medi2i.io.base import require_not_special
    from medi2i.io.destinations import as_output_path, check_destination, condition_inputs
    from medi2i.method_references import require_source_path
    from medi2i.registry import Registry

    require_source_path(source)
    require_not_special(Path(source))  # a FIFO would block the read: refused before any work
    output = as_output_path(output)
    registry = registry if registry is not None else Registry()
    writer = writer_for(output, list(registry.writers.values()))  # before any inference
    settings = settings_of(settings)
    ready = load_method(method=method, model=model, options=options, registry=registry)
    if image is not None:
        require_ready_call(ready, image)
    parsed = ready.parse_condition(condition)
    declared = ready.outputs(parsed)
    if single and len(declared) != 1:
        raise OptionsError(
            f"method {ready.id!r} yields the outputs {[o.name for o in declared]} under this "
            "condition; use predict_all (or the medi2i predict command), which writes each"
        )
    paths = {o.name: named_output_path(output, o.name) for o in declared}
    inputs = [Path(source), *condition_inputs(parsed)]
    for path in paths.values():
        check_destination(path, inputs=inputs, overwrite=overwrite, folder=not writer.suffixes)
        check_sidecar_destination(
            path, inputs, list(registry.writers.values()), overwrite=overwrite
        )
    if image is None:
        image = read_volume(source, readers=list(registry.readers.values()))
    # a result the writer would refuse is refused before the inference, not after it
    input_grid = Grid.of(image)
    with naming_the_input(image.meta, (InputError, OptionsError)):
        grid = ready.output_grid(input_grid, parsed)
    for declared_output in declared:
        meta = {
            **image.meta,
            "medi2i.method.id": ready.id,
            "medi2i.output.modality": declared_output.spec.modality,
        }
        writer.check(grid.affine, meta, paths[declared_output.name])
    record = provenance(
        ready,
        source=Path(source),
        model=model,
        settings=settings,
        registry=registry,
        image=image,
        condition=parsed,
    )
    # hand the volume over without keeping a reference here, so that predict_outputs
    # can free it once preprocessed (a volume less at the peak)
    held, image = [image], None
    facts: dict[str, object] = {}
    results = predict_outputs(
        ready, held.pop(), settings=settings, condition=parsed, engine=engine, run_facts=facts
    )
    record["run"] = run_record(facts)  # the method's own report
    written: dict[str, Path] = {}
    for declared_output in declared:
        path = paths[declared_output.name]
        described = {
            **output_record(declared_output),
            "file": path.name,
            **grid_record(input_grid, Grid.of(results[declared_output.name])),
        }
        # checked free before the work; without overwrite, a file another process or
        # thread wrote there meanwhile is refused at the rename, not replaced
        claim = nullcontext() if overwrite else refusing_existing()
        with staged_sidecar(path, {**record, "output": described}), claim:
            written[declared_output.name] = write_volume(  # the destination was checked
                results[declared_output.name], path, writers=[writer], overwrite=True
            )
    return written
