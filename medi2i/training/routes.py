"""How a method learns, and fitting whole-volume methods on their training volumes.

:func:`training_route` reads the method's declared :class:`~medi2i.Training`;
:func:`fit_on` fits a :attr:`~medi2i.Training.FIT` method on target-domain volumes put
in front of it exactly as predict puts its input (working grid, whole-volume
preprocessing), :func:`fit_pairs_on` fits one that learns from paired data on whole
paired cases (:meth:`~medi2i.Method.fit_pairs`), and :func:`fit_domains_on` one that
learns from unpaired or multi-domain data on the volumes of every domain
(:meth:`~medi2i.Method.fit_domains`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from medi2i.errors import OptionsError

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.data.cases import Case, CaseSet
    from medi2i.io.base import VolumeReader
    from medi2i.method import FitPair, Method, MethodClass

TrainingRoute = Literal["gradient", "fit", "save"]
"""How the train stage handles a method: the trainer, ``fit`` on volumes, or neither."""


def training_route(method: Method | MethodClass, *, fit: bool = True) -> TrainingRoute:
    """How the train stage handles ``method`` (or its class), from its declared
    ``training``.

    ``"gradient"`` for :attr:`~medi2i.Training.GRADIENT`; ``"fit"`` for
    :attr:`~medi2i.Training.FIT` when the method needs data (its data kind is not
    ``none``, e.g. Nyul) or ``fit`` is on (z-score onto a target's statistics);
    ``"save"`` for a method with nothing to learn.

    Raises:
        OptionsError: The method needs data but declares ``Training.NONE``.
    """
    from medi2i.method import DataKind, Training

    if method.training is Training.GRADIENT:
        return "gradient"
    if method.training is Training.FIT and (fit or method.data is not DataKind.NONE):
        return "fit"
    if method.data is DataKind.NONE:
        return "save"
    raise OptionsError(
        f"method {method.id!r} learns from {method.data.value} data but declares no way to "
        "learn (training = Training.NONE); declare Training.GRADIENT or Training.FIT"
    )


def fit_on(
    method: Method, paths: Sequence[Path], *, readers: Sequence[VolumeReader] | None = None
) -> None:
    """Fit ``method`` on the volumes at ``paths``, as predict would see them."""
    from medi2i.data.loading import read_prepared

    method.fit([read_prepared(path, method, readers=readers) for path in paths])
    require_fitted_state(method)


def fit_domains_on(
    method: Method, cases: CaseSet, *, readers: Sequence[VolumeReader] | None = None
) -> None:
    """Fit ``method`` on the ``image`` of every unpaired or multi-domain case, by domain
    (:meth:`~medi2i.Method.fit_domains`), each read as predict would see it; the
    method is given the data's domains in label order first.

    Raises:
        InputError: The data is not unpaired or multi-domain, or a domain has no volume.
    """
    from medi2i.data.cases import IMAGE
    from medi2i.data.loading import read_prepared
    from medi2i.errors import InputError
    from medi2i.method import DataKind, DomainSpec
    from medi2i.training.data import domain_labels

    if cases.kind not in (DataKind.UNPAIRED, DataKind.MULTI_DOMAIN):
        raise InputError(
            f"method {method.id!r} is fitted on the volumes of every domain: it needs "
            f"unpaired or multi-domain data, not {cases.kind.value}"
        )
    names = domain_labels(cases)
    by_name = {spec.name: spec for spec in cases.specs()}
    method.use_domains([by_name.get(name, DomainSpec(name=name)) for name in names])
    files = {name: [c.images[IMAGE] for c in cases.cases if c.domain == name] for name in names}
    empty = [name for name, paths in files.items() if not paths]
    if empty:
        raise InputError(
            f"no training volume of domain {', '.join(map(repr, empty))} to fit method "
            f"{method.id!r} on; every domain needs at least one"
        )
    method.fit_domains(
        {
            name: [read_prepared(path, method, readers=readers) for path in paths]
            for name, paths in files.items()
        }
    )
    require_fitted_state(method)


def fit_pairs_on(
    method: Method, cases: Sequence[Case], *, readers: Sequence[VolumeReader] | None = None
) -> None:
    """Fit ``method`` on paired cases (roles ``source``, ``target`` and optionally
    ``mask``), each read and made a :class:`~medi2i.FitPair` by :func:`fit_pair`."""
    from medi2i.data.cases import MASK, SOURCE, TARGET
    from medi2i.io import read_volume

    def read(path: Path) -> MetaTensor:
        return read_volume(path, readers=list(readers) if readers is not None else None)

    pairs = [
        fit_pair(
            method,
            case.id,
            source=read(case.images[SOURCE]),
            target=read(case.images[TARGET]),
            mask=read(case.images[MASK]) if MASK in case.images else None,
        )
        for case in cases
    ]
    method.fit_pairs(pairs)
    require_fitted_state(method)


def require_fitted_state(method: Method) -> None:
    """Refuse a fitted method that keeps nothing of its fit: its model folder would
    predict exactly as the unfitted method does, with nothing to say so.

    Raises:
        TrainingError: Neither :meth:`~medi2i.Method.state_values` nor
            :meth:`~medi2i.Method.state_tensors` returns anything after the fit.
    """
    from medi2i.errors import TrainingError

    if not method.state_values() and not method.state_tensors():
        raise TrainingError(
            f"method {method.id!r} was fitted but keeps nothing: its state_values() and "
            "state_tensors() are empty, so the saved model would predict as the unfitted "
            "method; return what fit() learned from state_values() (and restore it in "
            "load_state_values())"
        )


def fit_pair(
    method: Method,
    case_id: str,
    *,
    source: MetaTensor,
    target: MetaTensor,
    mask: MetaTensor | None = None,
) -> FitPair:
    """One paired case as :meth:`~medi2i.Method.fit_pairs` receives it: the source
    planned and preprocessed, the target planned and through ``preprocess_target``,
    the mask planned (see :func:`medi2i.data.loading.planned_mask`). The target may lie
    on a finer grid than the source (super-resolution); a target of the source's shape,
    and the mask, must lie on the source's grid.

    Raises:
        GeometryError: The mask, or a target of the source's shape, is not on the
            source's working grid.
    """
    from medi2i.data.loading import planned, planned_mask, require_on_source_grid
    from medi2i.method import FitPair

    planned_source = planned(source, method)
    planned_target = planned(target, method)
    if tuple(planned_target.shape[1:]) == tuple(planned_source.shape[1:]):
        require_on_source_grid(planned_target, planned_source, case_id=case_id, role="target")
    inside = planned_mask(mask, method) if mask is not None else None
    if inside is not None:
        require_on_source_grid(inside, planned_source, case_id=case_id, role="mask")
    prepared_source = method.preprocess(planned_source, domain=None, condition=None)
    prepared_target = method.preprocess_target(planned_target)
    return FitPair(case_id, prepared_source, prepared_target, inside)
