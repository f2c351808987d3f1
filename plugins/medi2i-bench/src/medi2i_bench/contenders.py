"""What the benchmarks evaluate, and how a registered method is run as one of them.

A :class:`Contender` is a name and a function from a test case to a prediction on the
reference's grid. Baselines, methods and trained models all become contenders; every one
that is a method (all baselines but the trivial bulk water and no harmonization, every
``--method`` and ``--model``) goes through :func:`method_contender`, which fits it as a
workflow's train stage would and predicts through :func:`medi2i.predict_tensor`, exactly
as ``medi2i predict`` runs it:

- a method that learns nothing from a training set (data kind ``none`` or
  ``single-domain``) but defines ``fit`` is fitted on the benchmark's target-domain
  training images (Q1, Q1x: CT, Q2: 1 mm volumes, Q3: scanner A; Q3m: each case's
  target scanner, one fitted copy per target), so that e.g. an intensity
  standardization lands in the target scanner's units;
- a method that learns from paired data by fitting (``Training.FIT``, e.g.
  ``monotone-mapping``) is fitted on the benchmark's training pairs;
- a method that learns from multi-domain data by fitting (``domain-intensity-map``) is
  fitted on Q3's and Q3m's training images of every scanner (A, B, C), and one that
  learns from unpaired data by fitting on Q3's training images of scanners A and B
  (the two Q3 translates between; Q3m, with three scanners, does not score it); both
  through :func:`medi2i.training.routes.fit_domains_on`, as a workflow's train stage
  fits them: the domains are set in label order first, the volumes read as predict
  reads its input;
- a method trained by gradient steps, or one that learns from unpaired or multi-domain
  data on another benchmark, must come as a trained-model folder (``--model``), which
  is never refitted.

An output on another grid than the reference is resampled onto it (linear).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from medi2i import OptionsError, UnknownMethodError
from medi2i_bench.cache import domain_image_file
from medi2i_bench.cases import BenchCase, BenchDataset
from medi2i_bench.harmonization_data import Q3_SOURCE, Q3_TARGET
from medi2i_bench.mr_ct_data import Q4_SOURCE_STYLE

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i import FitPair, InferenceSettings, Method, Registry
    from medi2i.data.cases import CaseSet

FloatArray = npt.NDArray[np.float32]
ContenderKind = Literal["baseline", "method", "model"]

_FITTED_ON_TARGETS = frozenset({"none", "single-domain"})
"""Data kinds of methods fitted here on target-domain images (when they define ``fit``)."""
_FITTED_ON_DOMAINS = frozenset({"unpaired", "multi-domain"})
"""Data kinds of methods fitted here on the training images of several scanners."""


@dataclass(frozen=True)
class Contender:
    """Something the benchmark evaluates: a baseline, a method or a trained model.

    Attributes:
        name: Row label in the tables, e.g. ``"bulk-water"``.
        kind: ``"baseline"``, ``"method"`` or ``"model"``.
        predict: Maps a test case to a prediction on ``case.target``'s grid.
        description: One line for the Markdown table's legend.
        grid_note: See below; ``None`` for a contender that always predicts on the
            reference's grid.
    """

    name: str
    kind: ContenderKind
    predict: Callable[[BenchCase], FloatArray]
    description: str
    grid_note: Callable[[BenchCase], str | None] | None = None
    """Why its prediction of a case is not made on the reference's voxel size (a ×2
    model on a ×4 case), or ``None`` when it is; the tables mark such a row."""


def registered_method(
    registry: Registry | None, method_id: str, options: Mapping[str, object], *, plugin: str
) -> Method:
    """A new instance of the registered method ``method_id`` with ``options``.

    Args:
        registry: Where to find it; the installed plugins when ``None``.
        method_id: The method's id.
        options: Its options.
        plugin: The distribution that provides it, for the error message.

    Raises:
        OptionsError: The method is not installed.
    """
    from medi2i import Registry

    registry = registry if registry is not None else Registry()
    try:
        method_cls = registry.method(method_id)
    except UnknownMethodError:
        raise OptionsError(
            f"the benchmark runs the method {method_id!r} of the {plugin} plugin, which is "
            f"not installed: pip install -e plugins/{plugin} (make setup installs it)"
        ) from None
    return method_cls(dict(options))


def fit_for(method: Method, kind: ContenderKind, dataset: BenchDataset, name: str) -> None:
    """Fit a baseline or ``--method`` on ``dataset``'s training data as the module docstring
    says; a trained model (``kind == "model"``) is left as it is.

    Raises:
        OptionsError: The method must be trained by a workflow first.
    """
    from medi2i import DataKind, Training

    if kind == "model":
        return
    fittable = method.training is Training.FIT
    if method.data.value in _FITTED_ON_TARGETS and fittable:
        if not _fits_per_target(method, kind, dataset):
            method.fit(target_domain_images(dataset))
    elif method.data is DataKind.PAIRED and fittable:
        paired_fit(method, dataset)
    elif method.data.value in _FITTED_ON_DOMAINS and fittable and dataset.task in ("q3", "q3m"):
        fit_on_domains(method, dataset)
    elif method.data is not DataKind.NONE:
        raise OptionsError(f"method {name!r} {_unfitted_reason(method)}: {_train_first(dataset)}")


def fitted_note(method: Method, kind: ContenderKind, dataset: BenchDataset) -> str:
    """``"; fitted on ..."``: the training data :func:`fit_for` fitted ``method`` on, for
    its row's legend, as a baseline's legend says it; empty for a trained model and for a
    method that is not fitted."""
    from medi2i import DataKind, Training

    if kind == "model" or method.training is not Training.FIT:
        return ""
    if method.data.value in _FITTED_ON_DOMAINS:
        scanners = ", ".join(method.domain_names)
        return f"; fitted on the training images of scanners {scanners}, by scanner"
    if method.data.value in _FITTED_ON_TARGETS:
        return f"; fitted on {_target_images_text(dataset)}"
    if method.data is DataKind.PAIRED:
        return f"; fitted on {_training_pairs_text(dataset)}"
    return ""


def _target_images_text(dataset: BenchDataset) -> str:
    """The images :func:`target_domain_images` gives a target-fitted method, in words."""
    if dataset.task == "q3m":
        return "each case's target scanner's training images, one fitted copy per scanner"
    if dataset.task == "q3":
        count = sum(v.domain == Q3_TARGET for v in dataset.train_domains)
        return f"scanner {Q3_TARGET}'s training {'image' if count == 1 else 'images'}"
    return f"the references of {_training_pairs_text(dataset)}"


def _training_pairs_text(dataset: BenchDataset) -> str:
    """The training pairs :func:`source_style_pairs` gives, in words (with their names)."""
    pairs = source_style_pairs(dataset)
    names = ", ".join(case.name for case in pairs)
    scanner = f" of scanner {Q4_SOURCE_STYLE}" if dataset.task == "q4" else ""
    split = f" of split {dataset.split}" if dataset.split else ""
    return f"the training pairs{scanner}{split} ({names})"


def _unfitted_reason(method: Method) -> str:
    """Why the benchmarks do not fit ``method`` themselves, for the refusal."""
    from medi2i import Training

    if method.training is not Training.FIT:
        return f"learns from {method.data.value} data by gradient steps"
    return (
        f"learns from {method.data.value} data by fitting, which the benchmarks do only on "
        "Q3 (unpaired: scanners A and B; multi-domain: A, B and C) and Q3m (multi-domain)"
    )


def _train_first(dataset: BenchDataset) -> str:
    return (
        f"train it first by a workflow on the benchmark's training set (in {dataset.folder}) "
        "and pass the model folder with --model"
    )


DEFAULT_OVERLAP, DEFAULT_BLEND = 0.25, "gaussian"
"""``medi2i predict``'s sliding window; other settings are named in a row's legend."""


def method_contender(
    name: str,
    kind: ContenderKind,
    method: Method,
    dataset: BenchDataset,
    settings: InferenceSettings,
    *,
    description: str | None = None,
    outside_mask: float | None = None,
) -> Contender:
    """A fitted (or trained) method as a contender that predicts like ``medi2i predict``.

    Args:
        name: Row label.
        kind: ``"baseline"``, ``"method"`` or ``"model"``.
        method: The method, already fitted (:func:`fit_for`) or loaded from a model folder.
        dataset: The benchmark (for a predict-time condition such as Q3's target scanner).
        settings: Inference settings.
        description: Legend line; ``"<kind> <id> <version>"`` when ``None``.
        outside_mask: A value written outside the case's mask (a baseline's rule, e.g.
            -1000 HU), or ``None`` to keep the method's output everywhere.
    """
    per_target = _fits_per_target(method, kind, dataset)
    fitted: dict[str, Method] = {}

    def method_for(case: BenchCase) -> Method:
        if not per_target:
            return method
        if case.target_domain not in fitted:  # a copy fitted on this target's images
            copy = type(method)(method.options)
            copy.fit(target_domain_images(dataset, case.target_domain))
            fitted[case.target_domain] = copy
        return fitted[case.target_domain]

    def predict(case: BenchCase) -> FloatArray:
        from medi2i import Grid, predict_tensor
        from medi2i.resample import resample_to_grid

        chosen = method_for(case)
        condition = _target_condition(chosen, dataset, case)
        output = predict_tensor(
            chosen, case.source.metatensor(), settings=settings, condition=condition
        )
        target = Grid(_shape3(case.target.array.shape), case.target.affine)
        if not Grid.of(output).same_as(target):
            output = resample_to_grid(output, target, mode="linear")
        values = np.asarray(output[0].detach().cpu().numpy(), np.float32)
        if outside_mask is None:
            return values
        return np.where(case.mask.array > 0, values, np.float32(outside_mask)).astype(np.float32)

    def grid_note(case: BenchCase) -> str | None:
        from medi2i import Grid, Medi2iError

        chosen = method_for(case)
        source = Grid(_shape3(case.source.array.shape), np.asarray(case.source.affine))
        reference = Grid(_shape3(case.target.array.shape), np.asarray(case.target.affine))
        try:
            condition = chosen.parse_condition(_target_condition(chosen, dataset, case))
            output = chosen.output_grid(source, condition)
        except Medi2iError:
            return None  # the prediction itself says what is wrong
        return resampling_note(source.spacing, output.spacing, reference.spacing)

    text = description if description is not None else f"{kind} {method.id} {method.version}"
    if settings.overlap != DEFAULT_OVERLAP or settings.blend != DEFAULT_BLEND:
        text += f"; sliding window overlap {settings.overlap:g}, {settings.blend} blending"
    if settings.roi_size is not None:
        text += "; window " + " × ".join(str(n) for n in settings.roi_size) + " voxels"
    if settings.mirror_axes:
        axes = ", ".join(str(axis) for axis in settings.mirror_axes)
        text += f"; test-time mirroring along array axes {axes}"
    if any(settings.reflect_padding):
        widths = ", ".join(str(width) for width in settings.reflect_padding)
        text += f"; reflection padding of ({widths}) voxels"
    return Contender(name, kind, predict, text, grid_note)


SPACING_TOLERANCE = 0.02
"""Relative difference of voxel sizes below which an output's grid counts as the
reference's (rounding of the grids' affines)."""


def resampling_note(
    source: tuple[float, float, float],
    output: tuple[float, float, float],
    reference: tuple[float, float, float],
) -> str | None:
    """Why an output of ``output`` voxel sizes (mm, per array axis) made from an input of
    ``source`` ones is not scored on its own grid against a reference of ``reference``
    ones, or ``None`` when the sizes agree.

    Example:
        >>> note = resampling_note((1, 1, 4), (1, 1, 2), (1, 1, 1))  # ×2 model, ×4 case
        >>> print(note.split(";")[0])  # doctest: +NORMALIZE_WHITESPACE
        refines ×2 through-plane (output voxels 1×1×2 mm) where the case asks ×4
        (reference 1×1×1 mm)
        >>> resampling_note((1, 1, 2), (1, 1, 1), (1, 1, 1)) is None
        True
    """
    if all(_same(made, asked) for made, asked in zip(output, reference, strict=True)):
        return None
    axis = max(range(3), key=lambda i: source[i] / reference[i])  # the case's slice axis
    made, asked = source[axis] / output[axis], source[axis] / reference[axis]
    voxels = f"output voxels {_millimetres(output)} mm"
    mismatch = (
        f"{voxels} where the reference has {_millimetres(reference)} mm"
        if _same(made, asked)
        else f"refines ×{made:.3g} through-plane ({voxels}) where the case asks ×{asked:.3g} "
        f"(reference {_millimetres(reference)} mm)"
    )
    return f"{mismatch}; scored after linear resampling onto the reference's grid"


def _same(size: float, other: float) -> bool:
    return math.isclose(size, other, rel_tol=SPACING_TOLERANCE)


def _millimetres(spacing: tuple[float, float, float]) -> str:
    return "×".join(f"{size:.3g}" for size in spacing)


def paired_fit(method: Method, dataset: BenchDataset) -> None:
    """Fit a method that learns from paired data by fitting (:meth:`~medi2i.Method.fit_pairs`)
    on the benchmark's training pairs (Q4: those of the training scanner), as a
    workflow's train stage would."""
    method.fit_pairs([_fit_pair(method, case) for case in source_style_pairs(dataset)])


def source_style_pairs(dataset: BenchDataset) -> tuple[BenchCase, ...]:
    """The training pairs a benchmark's fitted contenders learn from: all of them, or in
    Q4 those of the training scanner (:data:`~medi2i_bench.mr_ct_data.Q4_SOURCE_STYLE`)."""
    if dataset.task != "q4":
        return dataset.train_pairs
    return tuple(c for c in dataset.train_pairs if c.source_domain == Q4_SOURCE_STYLE)


def _fit_pair(method: Method, case: BenchCase) -> FitPair:
    from medi2i.training.routes import fit_pair

    return fit_pair(
        method,
        case.name,
        source=case.source.metatensor(),
        target=case.target.metatensor(),
        mask=case.mask.metatensor(),
    )


def target_domain_images(dataset: BenchDataset, domain: str = "") -> list[MetaTensor]:
    """The benchmark's training images of the target domain (Q3: scanner A; Q3m: the
    scanner ``domain``; else the training pairs' references)."""
    if dataset.task in ("q3", "q3m"):
        wanted = domain or Q3_TARGET
        return [v.image.metatensor() for v in dataset.train_domains if v.domain == wanted]
    return [case.target.metatensor() for case in source_style_pairs(dataset)]


def fit_on_domains(method: Method, dataset: BenchDataset) -> None:
    """Fit an unpaired or multi-domain method on Q3's or Q3m's training images
    (:func:`domain_cases`) as a workflow's train stage does: through
    :func:`medi2i.training.routes.fit_domains_on`, which sets the method's domains in
    label order before it calls :meth:`~medi2i.Method.fit_domains`."""
    from medi2i.training.routes import fit_domains_on

    fit_domains_on(method, domain_cases(method, dataset))


def domain_cases(method: Method, dataset: BenchDataset) -> CaseSet:
    """Q3's or Q3m's training images as the cases of a workflow's unpaired or
    multi-domain data, with the domains in label order as the benchmark workflows name
    them (``workflows/q3u_*.yaml``: A, B; ``workflows/q3m_*.yaml``: A, B, C), each an MR
    domain. An unpaired method gets the two scanners Q3 translates between."""
    from medi2i import DataKind, DomainSpec
    from medi2i.data.cases import IMAGE, Case, CaseSet

    names = tuple(sorted({v.domain for v in dataset.train_domains}))
    if method.data is DataKind.UNPAIRED:
        names = tuple(sorted((Q3_SOURCE, Q3_TARGET)))
    cases = tuple(
        Case(v.name, {IMAGE: domain_image_file(dataset.folder, v.name)}, v.domain)
        for v in dataset.train_domains
        if v.domain in names
    )
    specs = tuple(DomainSpec(name=name, modality="MR") for name in names)
    return CaseSet(method.data, cases, names, specs)


def _fits_per_target(method: Method, kind: ContenderKind, dataset: BenchDataset) -> bool:
    """Whether ``method`` is fitted once per target domain (Q3m's target-fitted methods)."""
    from medi2i import Training

    return (
        dataset.task == "q3m"
        and kind != "model"
        and method.training is Training.FIT
        and method.data.value in _FITTED_ON_TARGETS
    )


def _target_condition(
    method: Method, dataset: BenchDataset, case: BenchCase
) -> dict[str, object] | None:
    """The condition that translates ``case`` into the benchmark's target domain.

    Raises:
        OptionsError: A two-domain model lacks one of a Q3m case's scanners.
    """
    fields = method.Condition.model_fields
    harmonization = dataset.task in ("q3", "q3m")
    source = case.source_domain or Q3_SOURCE
    target = case.target_domain or Q3_TARGET
    if "direction" in fields and len(method.domains) == 2:
        # a two-way method (CycleGAN, UNIT, ...): the direction into the benchmark's
        # target domain (Q3: scanner A; MR→CT: the domain of CT images)
        first, second = method.domains
        if dataset.task == "q3m" and {first.name, second.name} != {source, target}:
            raise OptionsError(
                f"model {method.id!r} translates between its two domains {first.name} and "
                f"{second.name}; Q3m's case {case.name} needs {source} → {target}: a "
                "two-domain model is scored on Q3 (--task q3)"
            )
        into_second = second.name == target if harmonization else second.modality == "CT"
        return {"direction": "a2b" if into_second else "b2a"}
    if not harmonization or "target_domain" not in fields:
        return None
    condition: dict[str, object] = {"target_domain": target}
    if "source_domain" in fields:
        condition["source_domain"] = source
    return condition


def _shape3(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (int(shape[0]), int(shape[1]), int(shape[2]))
