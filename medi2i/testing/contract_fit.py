"""The contract check's own fit of a ``Training.FIT`` method given no ``prepare``.

:func:`medi2i.testing.check_method_contract` must see a fitted method's fit change
``state_values()``/``state_tensors()``: otherwise an empty ``fit`` would pass whenever
its author leaves ``prepare`` out. Without ``prepare`` the check fits the method itself,
through the hook its data kind declares (``fit``, ``fit_pairs`` or ``fit_domains``), on
volumes of its own, put in front of the method as the train stage puts them (working
grid, whole-volume preprocessing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from medi2i.method import DataKind, Method, Training

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

VolumeOf = Callable[[Method[Any, Any], int], "MetaTensor"]
"""The check's test volume for a method, from a seed (in HU where the method takes HU)."""


def fit_hook(method: Method[Any, Any]) -> str:
    """The name of the hook the train stage fits ``method`` with, from its data kind."""
    if method.data is DataKind.PAIRED:
        return "fit_pairs"
    if method.data in (DataKind.UNPAIRED, DataKind.MULTI_DOMAIN):
        return "fit_domains"
    return "fit"


def fitted_before_predicting(method: Method[Any, Any]) -> bool:
    """Whether ``method`` is a ``Training.FIT`` method that every model of it has fitted
    (it learns from data); one of data kind ``none`` (z-score) may also predict unfitted,
    so the check predicts with it unfitted and fits a separate instance."""
    return method.training is Training.FIT and method.data is not DataKind.NONE


def own_fit(volume: VolumeOf, shape: tuple[int, int, int]) -> Callable[[Method[Any, Any]], None]:
    """A ``prepare`` that fits a method on the check's own volumes with its data kind's
    hook; a fit that raises fails in one line that asks for ``prepare=``.

    Args:
        volume: The check's test volume for a method and a seed.
        shape: Spatial shape of the volumes, in voxels.
    """

    def fit(method: Method[Any, Any]) -> None:
        hook = fit_hook(method)
        try:
            _fit(method, hook, volume, shape)
        except Exception as exc:
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise AssertionError(
                f"{method.id} is a Training.FIT method and the check was given no prepare, so "
                f"it fitted it itself with {hook}() on its own test volumes, which raised "
                f"{reason}; pass prepare= a callable that fits it on volumes it can fit (e.g. "
                f"prepare=lambda m: m.{hook}(...)) so the check can see the fit change "
                "state_values()/state_tensors()"
            ) from exc

    return fit


def _fit(
    method: Method[Any, Any], hook: str, volume: VolumeOf, shape: tuple[int, int, int]
) -> None:
    from medi2i.data.loading import prepared

    if hook == "fit_domains":
        method.fit_domains(_domain_volumes(method, shape))
    elif hook == "fit_pairs":
        method.fit_pairs([_pair(method, volume)])
    else:
        method.fit([prepared(volume(method, 1), method)])


def _pair(method: Method[Any, Any], volume: VolumeOf) -> Any:
    """One paired case: the test volume (seed 1) as source, another blob volume (seed
    2, in HU when the method writes CT) as target, on the same grid, without a mask."""
    from typing import cast

    from medi2i.testing.domain_cases import CT_OFFSET_HU, CT_SLOPE
    from medi2i.testing.volumes import make_volume
    from medi2i.training.routes import fit_pair

    source = volume(method, 1)
    target = make_volume(tuple(source.shape[1:]), seed=2)  # type: ignore[arg-type]
    spec = method.output_spec
    if spec.modality == "CT" or spec.units == "HU":
        target = cast("MetaTensor", target * CT_SLOPE + CT_OFFSET_HU)
    target.affine = source.affine
    return fit_pair(method, "contract-check", source=source, target=target)


def _domain_volumes(
    method: Method[Any, Any], shape: tuple[int, int, int]
) -> dict[str, list[MetaTensor]]:
    """One toy volume per domain of ``method`` (its domains, in label order), each
    through the domain's own intensity response and preprocessed with its domain."""
    from medi2i.data.loading import prepared
    from medi2i.testing.domain_cases import domain_volume

    return {
        spec.name: [
            prepared(
                domain_volume(spec, index=label, shape=shape, seed=label + 1),
                method,
                domain=spec.name,
            )
        ]
        for label, spec in enumerate(method.domains)
    }
