"""Per-domain intensities of the domain examples: each domain scaled its own way.

A two-way MR↔CT method must map CT from Hounsfield units (an absolute scale) and MR from
its own whole-volume statistics (no absolute unit) into the network range [-1, 1], and
deliver each output in its domain's units. The domain's :class:`~medi2i.DomainSpec`
decides which: modality ``"CT"`` uses :class:`medi2i.HounsfieldScale`, anything else a
whole-volume percentile normalisation (:func:`medi2i.normalize_mr`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from medi2i.intensity import HounsfieldScale, normalize_mr

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.method import DomainSpec


def is_hounsfield(spec: DomainSpec | None) -> bool:
    """Whether a domain's images are CT values in HU."""
    return spec is not None and (spec.modality == "CT" or spec.units == "HU")


def to_network_range(
    image: MetaTensor, spec: DomainSpec | None, *, percentiles: tuple[float, float]
) -> MetaTensor:
    """One whole volume of domain ``spec`` in the network range [-1, 1].

    Args:
        image: The whole channel-first volume, in its own units.
        spec: Its domain (``None``: an image of no absolute unit).
        percentiles: Foreground percentiles mapped to -1 and +1 for images without an
            absolute unit (see :func:`medi2i.normalize_mr`).
    """
    if is_hounsfield(spec):
        return cast("MetaTensor", HounsfieldScale().to_network(image))
    return cast("MetaTensor", normalize_mr(image, scheme="percentile", percentiles=percentiles))


def from_network_range(output: MetaTensor, spec: DomainSpec | None) -> MetaTensor:
    """A network output delivered in the units of domain ``spec``: HU for CT, the
    network range itself (arbitrary units) for images without an absolute unit."""
    if is_hounsfield(spec):
        return cast("MetaTensor", HounsfieldScale().to_hounsfield(output))
    return output
