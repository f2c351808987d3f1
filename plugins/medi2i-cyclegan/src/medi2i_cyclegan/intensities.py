"""Per-domain intensities of the two-way methods, beyond :class:`medi2i.DomainIntensities`.

:class:`medi2i.DomainIntensities` scales each domain by what it is: CT from HU to
[-1, 1] by a fixed Hounsfield scale, MR (no absolute unit) by its own foreground
percentiles. Two things are added here:

- **Air outside the body** for a CT output translated from a non-CT input (option
  ``body_contour``): the body is found in the raw input (:func:`medi2i.body_mask`) and
  every voxel outside it is set to :data:`medi2i.AIR_HU`, as the paired MR→CT methods do.
- **The target domain's scale** for an output of a domain without absolute units (MR):
  the network's [-1, 1] is mapped back onto the foreground percentile values that the
  domain's *training* volumes had on average (:class:`DomainScales`, kept in the model's
  ``state_values``). Without it a B→A harmonization would be written in network units and
  could not be compared with scanner A's images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from medi2i import DomainSpec

BODY_MASK_KEY = "medi2i_cyclegan.body_mask"
"""Meta key of the raw input's body mask, put on the preprocessed input at predict time
when the direction translates a non-CT input into CT."""


def is_hounsfield(spec: DomainSpec | None) -> bool:
    """Whether a domain's images are CT values in HU (modality CT or units HU)."""
    return spec is not None and (spec.modality == "CT" or spec.units == "HU")


def foreground_percentiles(
    image: torch.Tensor, percentiles: tuple[float, float]
) -> tuple[float, float]:
    """The ``percentiles`` of an MR volume's foreground, the voxels brighter than the
    volume's mean (the foreground :func:`medi2i.normalize_mr` maps to [-1, 1])."""
    values = image.detach().cpu().numpy().astype(np.float64).ravel()
    selected = values[values > values.mean()]
    if not selected.size:
        selected = values
    low, high = np.percentile(selected, percentiles)
    return float(low), float(high)


class DomainScales:
    """The intensity scale of each non-CT domain, from its training volumes.

    Every training volume the trainer preprocesses is recorded once (by its content's
    digest, so reading a volume again, as a resumed run does, changes nothing) with its
    foreground percentile values; a domain's scale is their mean over its volumes.

    Example:
        >>> scales = DomainScales()
        >>> scales.record("A", torch.tensor([0.0, 0.0, 10.0, 20.0]), (0.0, 100.0))
        >>> scales.scale("A")
        (10.0, 20.0)
        >>> scales.to_scale("A", torch.tensor([-1.0, 0.0, 1.0])).tolist()
        [10.0, 15.0, 20.0]
    """

    def __init__(self) -> None:
        self._volumes: dict[str, dict[str, tuple[float, float]]] = {}
        self._loaded: dict[str, tuple[float, float]] = {}

    def record(self, domain: str, image: torch.Tensor, percentiles: tuple[float, float]) -> None:
        """Record one training volume of ``domain`` (raw intensities)."""
        digest = hashlib.sha256(image.detach().cpu().numpy().tobytes()).hexdigest()
        values = foreground_percentiles(image, percentiles)
        self._volumes.setdefault(domain, {})[digest] = values

    def scale(self, domain: str) -> tuple[float, float] | None:
        """The (low, high) foreground percentile values of ``domain``, or ``None``."""
        volumes = self._volumes.get(domain)
        if not volumes:
            return self._loaded.get(domain)
        ordered = [volumes[key] for key in sorted(volumes)]
        low = float(np.mean([values[0] for values in ordered]))
        high = float(np.mean([values[1] for values in ordered]))
        return low, high

    def to_scale(self, domain: str, output: torch.Tensor) -> torch.Tensor:
        """``output`` in [-1, 1] on ``domain``'s scale (unchanged if it has none)."""
        scale = self.scale(domain)
        if scale is None:
            return output
        low, high = scale
        return (output + 1.0) * (0.5 * (high - low)) + low

    def state(self) -> dict[str, list[float]]:
        """``{"scale.<domain>": [low, high]}`` for every domain with a scale."""
        names = sorted({*self._volumes, *self._loaded})
        scales = {name: self.scale(name) for name in names}
        return {f"scale.{name}": list(value) for name, value in scales.items() if value}

    def load_state(self, values: Mapping[str, object]) -> None:
        """Restore what :meth:`state` returned (other keys are ignored)."""
        self._volumes = {}
        self._loaded = {}
        for key, value in values.items():
            if key.startswith("scale.") and isinstance(value, list) and len(value) == 2:
                self._loaded[key.removeprefix("scale.")] = (float(value[0]), float(value[1]))
