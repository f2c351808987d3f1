"""The intensity scale of a domain without absolute units (MR), learned from its
training volumes.

:class:`medi2i.DomainIntensities` maps an MR volume's foreground percentiles (0.5 and
99.5 by default) to -1 and +1 and leaves MR outputs in that network range. A
harmonization B → A is then written in network units, which cannot be compared with
scanner A's images. :class:`DomainScales` records the percentile values of every training
volume of each MR domain (each volume once, however often it is preprocessed) and maps an
output back onto the mean of its domain's: the inverse of the normalization, with the
target domain's typical values. The scales are kept in the model's ``state_values``
(``scale.<domain>``: low, high).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import torch

KEY = "scale."
"""Prefix of the domain scales in ``state_values``."""


class DomainScales:
    """Mean foreground percentile values of each MR domain's training volumes.

    Every training volume is recorded once (by its content's digest, so reading a volume
    again, as a resumed run does, changes nothing); a domain's scale is the mean over its
    volumes. Methods keep :meth:`state` in their ``state_values`` and :meth:`recorded`
    in their training state.

    Example:
        >>> scales = DomainScales()
        >>> scales.record("A", torch.tensor([0.0, 0.0, 10.0, 20.0]), (0.0, 100.0))
        >>> scales.scale("A")
        (10.0, 20.0)
        >>> scales.to_scale("A", torch.tensor([-1.0, 0.0, 1.0])).tolist()
        [10.0, 15.0, 20.0]
    """

    def __init__(self) -> None:
        self._seen: dict[str, dict[str, tuple[float, float]]] = {}
        self._loaded: dict[str, tuple[float, float]] = {}

    def record(self, domain: str, image: torch.Tensor, percentiles: tuple[float, float]) -> None:
        """Record the ``percentiles`` of ``image``'s foreground for ``domain``."""
        values = image.detach().cpu().numpy().astype(np.float32)
        digest = hashlib.sha1(values.tobytes(), usedforsecurity=False).hexdigest()
        # the foreground of medi2i's MR normalization: the voxels above the mean
        selected = values[values > values.mean()]
        low, high = np.percentile(selected if selected.size else values, percentiles)
        self._seen.setdefault(domain, {})[digest] = (float(low), float(high))

    def scale(self, domain: str) -> tuple[float, float] | None:
        """``domain``'s (low, high) values, or ``None`` when none was recorded."""
        seen = self._seen.get(domain)
        if seen:
            lows, highs = zip(*seen.values(), strict=True)
            return float(np.mean(lows)), float(np.mean(highs))
        return self._loaded.get(domain)

    def to_scale(self, domain: str, output: torch.Tensor) -> torch.Tensor | None:
        """``output`` (network range) on ``domain``'s scale, or ``None`` without one."""
        scale = self.scale(domain)
        if scale is None:
            return None
        low, high = scale
        return output * ((high - low) / 2.0) + (high + low) / 2.0

    def state(self, domains: Sequence[str] | None = None) -> dict[str, list[float]]:
        """The scales of ``domains`` (every known domain when ``None``) that have one,
        for ``state_values``."""
        names = sorted({*self._seen, *self._loaded}) if domains is None else domains
        found = {name: self.scale(name) for name in names}
        return {f"{KEY}{name}": list(scale) for name, scale in found.items() if scale}

    def recorded(self) -> dict[str, dict[str, list[float]]]:
        """Every recorded volume's values by domain and volume digest, for a checkpoint:
        a resumed run that reads its volumes lazily ends with the same scales."""
        return {
            domain: {digest: list(values) for digest, values in seen.items()}
            for domain, seen in self._seen.items()
        }

    def load_recorded(self, recorded: Mapping[str, Mapping[str, Sequence[float]]]) -> None:
        """Add what :meth:`recorded` returned to what this run has recorded."""
        for domain, seen in recorded.items():
            for digest, (low, high) in seen.items():
                self._seen.setdefault(domain, {})[digest] = (float(low), float(high))

    def load_state(self, values: Mapping[str, object]) -> None:
        """Restore what :meth:`state` returned."""
        self._seen = {}
        self._loaded = {}
        for key, value in values.items():
            if key.startswith(KEY) and isinstance(value, list) and len(value) == 2:
                self._loaded[key.removeprefix(KEY)] = (float(value[0]), float(value[1]))
