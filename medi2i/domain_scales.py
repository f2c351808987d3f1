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
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from medi2i.body_contour import PackedMask, body_mask
from medi2i.intensity import (
    AIR_HU,
    BODY_MASK_META_KEY,
    DomainIntensities,
    MRForeground,
    domain_to_network,
    foreground,
    foreground_rule,
    is_hounsfield,
)

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.method import StateValue, TrainingStateValue

KEY = "scale."
"""Prefix of the domain scales in ``state_values``."""


DARK_SHARE = 0.2
"""The least share of a domain's training scale's upper end that the median foreground
intensity of an input predicted on that scale must reach (IntensityScaleWarning)."""


class IntensityScaleWarning(UserWarning):
    """An input predicted on its domain's training scale looks like other units."""


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

    def record(
        self,
        domain: str,
        image: torch.Tensor,
        percentiles: tuple[float, float],
        rule: MRForeground = "above-mean",
        body: np.ndarray | None = None,
    ) -> None:
        """Record the ``percentiles`` of ``image``'s foreground (by ``rule``,
        :func:`medi2i.intensity.foreground`; ``body``: its body mask when the caller has
        it) for ``domain``."""
        values = image.detach().cpu().numpy().astype(np.float32)
        digest = hashlib.sha1(values.tobytes(), usedforsecurity=False).hexdigest()
        low, high = np.percentile(foreground(values, rule, body=body), percentiles)
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


class ScaledDomainIntensities(DomainIntensities):
    """:class:`medi2i.DomainIntensities` with outputs in their domain's units, as a mixin
    for unpaired and multi-domain translation methods.

    Beyond the base mixin:

    - in training (no condition) each MR volume's percentile values are recorded for its
      domain (:attr:`scales`), and an MR output is mapped back onto its domain's
      training scale, so a B → A harmonization is written in scanner A's units;
    - with the option ``input_scale`` set to ``"domain"``, a predicted MR volume is
      scaled by its domain's training scale instead of its own percentiles: for scanners
      whose units are stable, so that a field of view unlike the training volumes' (a
      whole head against brain-only training data) does not shift every intensity;
    - with the option ``body_contour`` on, a CT output made from a non-CT input is air
      (:data:`medi2i.AIR_HU`) outside the input's body (:func:`medi2i.body_mask` on the
      raw input), as the paired MR→CT methods do;
    - the scales are kept in the model's ``state_values`` (``scale.<domain>``) and the
      recorded volumes in the training state (``domain_scales``), so a resumed run ends
      with the same scales.

    The output domains of a condition are those of :meth:`medi2i.Method.outputs`. Put it
    before the method base class::

        class MyStar(ScaledDomainIntensities, PatchNetworkMethod[MyOptions, Target]): ...

    A method that overrides :meth:`training_state` merges this class's into its own.
    """

    @property
    def scales(self) -> DomainScales:
        """The MR domains' training scales (created on first use)."""
        found = self.__dict__.get("_domain_scales")
        if found is None:
            found = self.__dict__["_domain_scales"] = DomainScales()
        return cast("DomainScales", found)

    def _is_hounsfield(self, domain: str | None) -> bool:
        return domain is not None and is_hounsfield(self._domain_spec(domain))

    def preprocess(
        self, image: MetaTensor, *, domain: str | None = None, condition: object = None
    ) -> MetaTensor:
        """The whole volume in [-1, 1]; records an MR training volume's scale, and keeps
        the raw input's body mask in the result's meta when a CT output needs it. The
        body mask is computed once, for the statistics and the contour both."""
        mr = domain is not None and not self._is_hounsfield(domain)
        rule = foreground_rule(self.options)
        percentiles = getattr(self.options, "percentiles", (0.5, 99.5))
        clip = getattr(self.options, "clip_intensities", True)
        spec = self._domain_spec(domain)
        scale = self._input_scale(domain, condition)
        own_statistics = mr and (condition is None or scale is None)
        contour = condition is not None and self._needs_body(domain, condition)
        needed = (own_statistics and rule == "body") or contour
        body = body_mask(image.detach().cpu().numpy()) if needed else None
        statistics_mask = body if rule == "body" else None
        if condition is None and mr and domain is not None:
            self.scales.record(domain, image, percentiles, rule, body=statistics_mask)
        if scale is not None and domain is not None:
            self._warn_if_off_scale(image, domain, scale)
            prepared = domain_to_network(
                image, spec, percentiles=(0.0, 100.0), clip=clip, values=scale
            )
        else:
            prepared = domain_to_network(
                image, spec, percentiles=percentiles, clip=clip, rule=rule, body=statistics_mask
            )
        if contour and body is not None:
            prepared.meta[BODY_MASK_META_KEY] = PackedMask.pack(body)
        return prepared

    def _input_scale(self, domain: str | None, condition: object) -> tuple[float, float] | None:
        """The training scale of an MR input's domain when ``options.input_scale`` is
        ``"domain"`` and the volume is predicted (not a training volume), else ``None``
        (the volume is scaled by its own percentiles)."""
        if condition is None or domain is None or self._is_hounsfield(domain):
            return None
        if getattr(self.options, "input_scale", "volume") != "domain":
            return None
        return self.scales.scale(domain)

    @staticmethod
    def _warn_if_off_scale(image: MetaTensor, domain: str, scale: tuple[float, float]) -> None:
        """Warn when the input's median foreground intensity lies outside its domain's
        training scale: then its units differ from the training volumes' (another
        scanner, protocol or rescaling), and a model trained with ``input_scale: volume``
        suits it better. With the ``"body"`` foreground rule the scale's lower end is
        the body's darkest tissue, near zero signal, so a darker input's median stays
        above it: the median is also held to at least :data:`DARK_SHARE` of the scale's
        upper end (an input in a tenth of the training units warns; a bright region
        that moves the upper percentiles, which this scale is there to ignore, does
        not)."""
        selected = foreground(image.detach().cpu().numpy())  # the median: any rule will do
        if not selected.size:
            return
        median = float(np.median(selected))
        low, high = scale
        if not max(low, DARK_SHARE * high) <= median <= high:
            warnings.warn(
                f"the input's median foreground intensity {median:.4g} lies outside the "
                f"training scale of domain {domain!r}, [{low:.4g}, {high:.4g}]: its units "
                "differ from the training volumes' (another scanner, protocol or "
                "rescaling), which this model assumes (input_scale: domain); rescale the "
                "input to them, or use a model trained with input_scale: volume",
                IntensityScaleWarning,
                stacklevel=4,
            )

    def _needs_body(self, domain: str | None, condition: object) -> bool:
        # an input of no named domain is an image without absolute units (not CT)
        if not getattr(self.options, "body_contour", False) or self._is_hounsfield(domain):
            return False
        outputs = cast("Any", self).outputs(condition)
        return any(self._is_hounsfield(output.domain) for output in outputs)

    def postprocess(
        self,
        output: MetaTensor,
        image: MetaTensor,
        *,
        domain: str | None = None,
        condition: object = None,
    ) -> MetaTensor:
        """CT outputs in HU (air outside the input's body when its mask was kept); other
        outputs on their domain's training scale, or in the network range without one."""
        if domain is not None and not self._is_hounsfield(domain):
            scaled = self.scales.to_scale(domain, output)
            if scaled is not None:
                return cast("MetaTensor", scaled)
        result = super().postprocess(output, image, domain=domain, condition=condition)
        body = getattr(image, "meta", {}).get(BODY_MASK_META_KEY)
        if not (self._is_hounsfield(domain) and isinstance(body, PackedMask)):
            return result
        if tuple(body.shape) != tuple(result.shape[-3:]):
            return result
        return cast("MetaTensor", body.fill_outside_(torch.Tensor.clone(result), AIR_HU))

    def state_values(self) -> dict[str, StateValue]:
        """The training scale of every MR domain (``scale.<domain>``: low, high)."""
        names = cast("Any", self).domain_names or None
        return dict(self.scales.state(names))

    def load_state_values(self, values: Mapping[str, StateValue]) -> None:
        self.scales.load_state(values)

    def training_state(self) -> dict[str, TrainingStateValue]:
        """The MR volumes' recorded percentile values, so a resumed run keeps them."""
        return {"domain_scales": self.scales.recorded()}

    def load_training_state(self, state: Mapping[str, TrainingStateValue]) -> None:
        self.scales.load_recorded(state.get("domain_scales", {}))
