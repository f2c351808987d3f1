"""Map one scanner's intensities onto another's with tables fitted per scanner.

A baseline, not a paper: it learns nothing but uses what the learned harmonization
methods (CycleGAN, StarGAN) use, unpaired training volumes of every scanner (domain)
and, at predict time, which scanner the input comes from. Each domain's pooled
foreground intensities give a table; the input is mapped from its source domain's
table onto the target domain's:

- ``kind: quantile``: ``quantiles`` evenly spaced quantiles (0 % to 100 %) of the
  pooled foreground; the map is piecewise linear between the source's and the target's
  quantiles (ties merged), so the source's training quantiles land on the target's.
  Outside the fitted range it is the straight line through zero signal and the nearest
  end quantile pair, ``y = x · t / s``: zero stays zero (air stays air), the map is
  continuous and increasing, and intensities above the range keep their contrast
  instead of being clipped. Where that line does not exist (an end quantile ``s <= 0``
  or ``t < 0``) the map is constant there, at the target's end quantile.
- ``kind: zscore``: the pooled foreground's mean and standard deviation;
  ``y = (x - μ_s) / σ_s · σ_t + μ_t`` over the whole volume, background included.

Unlike ``zscore`` and ``nyul``, which standardize each volume by its own statistics,
the input's own histogram is never measured: the map depends on its scanner only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from medi2i import (
    DataKind,
    DomainSpec,
    InputError,
    Method,
    ModelFormatError,
    Options,
    OptionsError,
    TargetDomain,
    TargetDomainOutputs,
    Task,
    Training,
)
from medi2i_harmonization.samples import (
    FloatArray,
    ForegroundRule,
    foreground_values,
    mapped_in_slabs,
    merged_ties,
    volume_array,
    volume_arrays,
)
from medi2i_harmonization.standardization import MR_SPEC

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i import PredictContext, StateValue

MapKind = Literal["quantile", "zscore"]


class DomainMapOptions(Options):
    """Options of :class:`DomainIntensityMap`.

    Attributes:
        kind: ``"quantile"`` (pooled foreground quantiles, piecewise-linear map) or
            ``"zscore"`` (pooled foreground mean and standard deviation, affine map).
        quantiles: How many evenly spaced quantiles, 0 % to 100 % (``kind: quantile``).
        foreground: Voxels of the training volumes the tables come from (see
            :data:`medi2i_harmonization.samples.ForegroundRule`); the map itself
            applies to every voxel of the input.
    """

    kind: MapKind = "quantile"
    quantiles: int = Field(default=1001, ge=2)
    foreground: ForegroundRule = "otsu"


class DomainIntensityMap(TargetDomainOutputs, Method[DomainMapOptions, TargetDomain]):
    """Map intensities from the source scanner's pooled training foreground onto the
    target scanner's (quantiles or mean and standard deviation).

    Fit on unpaired volumes of two or more domains (a mapping from domain name to its
    volumes); predict with the condition ``source_domain`` and ``target_domain``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> method = DomainIntensityMap({"foreground": "all", "quantiles": 5})
        >>> method.fit_domains({"A": [rng.gamma(4.0, 25.0, (8, 8, 8))],
        ...                     "B": [rng.gamma(4.0, 50.0, (8, 8, 8))]})
        >>> method.domain_names
        ('A', 'B')
    """

    id = "domain-intensity-map"
    version = "0.1.0"
    tasks = (Task.HARMONIZATION,)
    data = DataKind.MULTI_DOMAIN
    training = Training.FIT
    input_spec = MR_SPEC
    output_spec = MR_SPEC

    options: DomainMapOptions

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self.tables: dict[str, tuple[float, ...]] = {}
        """Per domain: its quantiles (``kind: quantile``) or ``(mean, std)``."""
        self.fitted_volumes: dict[str, int] = {}

    # -- fitting -------------------------------------------------------------------------

    def fit_domains(self, volumes: Mapping[str, Sequence[MetaTensor]]) -> None:
        """Fit one table per domain on its pooled foreground voxels.

        Args:
            volumes: A mapping from domain name to that domain's volumes (tensors,
                arrays or file paths), two or more domains. When :attr:`domains` is
                set, the mapping must hold exactly those domains.

        Raises:
            InputError: ``volumes`` is not such a mapping, or a domain has no volume.
            OptionsError: Fewer than two domains, or not the method's domains.
        """
        if not isinstance(volumes, Mapping):
            raise InputError(
                f"method {self.id!r} is fitted on a mapping from domain name to that "
                f"domain's volumes (two or more domains), got {type(volumes).__name__}"
            )
        names = [str(name) for name in volumes]
        if self.domains and set(names) != set(self.domain_names):
            raise OptionsError(
                f"method {self.id!r} has the domains {list(self.domain_names)}; "
                f"fit_domains got volumes of {names}"
            )
        if not self.domains:
            self.use_domains([DomainSpec(name=name, modality="MR") for name in names])
        tables, counts = {}, {}
        for name, given in volumes.items():
            if isinstance(given, Sized) and len(given) == 0:
                raise InputError(f"method {self.id!r}: domain {name!r} has no volume to fit on")
            arrays = volume_arrays(given)
            pooled = np.concatenate(
                [foreground_values(a, rule=self.options.foreground) for a in arrays]
            )
            tables[str(name)] = self._table(pooled)
            counts[str(name)] = len(arrays)
        self.tables, self.fitted_volumes = tables, counts

    def fit(self, volumes: Sequence[MetaTensor]) -> None:
        """Refused: the map needs every domain's volumes, by domain (:meth:`fit_domains`)."""
        raise InputError(
            f"method {self.id!r} is fitted on the volumes of every domain, by domain: call "
            "fit_domains({'A': [...], 'B': [...]}), not fit (one domain's volumes)"
        )

    def _table(self, pooled: FloatArray) -> tuple[float, ...]:
        if self.options.kind == "zscore":
            std = float(pooled.std())
            if not np.isfinite(std) or std <= 0.0:
                raise InputError(
                    "a domain's pooled foreground is constant (standard deviation 0): "
                    "check its volumes and the foreground rule"
                )
            return (float(pooled.mean()), std)
        levels = np.linspace(0.0, 100.0, self.options.quantiles)
        return tuple(float(v) for v in np.percentile(pooled, levels))

    # -- prediction ----------------------------------------------------------------------

    def check_condition(self, condition: TargetDomain) -> None:
        """Both domains are named and are domains the method was fitted on."""
        super().check_condition(condition)
        if condition.source_domain is None or condition.target_domain is None:
            raise OptionsError(
                f"method {self.id!r} maps from one domain to another: name both, "
                f"-c source_domain=NAME -c target_domain=NAME (of {list(self.domain_names)})"
            )

    def map_values(
        self,
        values: FloatArray,
        *,
        source: str,
        target: str,
        dtype: type[np.floating] = np.float64,
    ) -> FloatArray:
        """``values`` (source domain's units) in the target domain's units, as ``dtype``
        (the map computed in float64 a slab at a time, rounded once).

        Raises:
            OptionsError: The method was not fitted, or a domain it was not fitted on.
        """
        if not self.tables:
            raise OptionsError(
                f"method {self.id!r} is not fitted: call method.fit_domains(...) with the "
                "volumes of each domain, run a workflow with multi-domain training data, or "
                "load a fitted model folder (medi2i.load_model) before predicting"
            )
        for name in (source, target):
            if name not in self.tables:
                raise OptionsError(
                    f"method {self.id!r} has no domain {name!r}; its domains: "
                    f"{list(self.domain_names)}"
                )
        low, high = np.asarray(self.tables[source]), np.asarray(self.tables[target])

        def onto_target(slab: FloatArray) -> FloatArray:
            if self.options.kind == "zscore":
                return np.asarray((slab - low[0]) / low[1] * high[1] + high[0])
            return quantile_map(slab, low, high)

        return mapped_in_slabs(np.asarray(values), onto_target, dtype=dtype)

    def predict(
        self, image: MetaTensor, context: PredictContext[TargetDomain]
    ) -> torch.Tensor | Mapping[str, torch.Tensor]:
        if image.shape[0] != 1:
            raise InputError(
                f"method {self.id!r} takes single-channel volumes, got {image.shape[0]} channels"
            )
        condition = context.condition
        mapped = self.map_values(
            volume_array(image),
            source=str(condition.source_domain),
            target=str(condition.target_domain),
            dtype=np.float32,
        )
        return torch.from_numpy(mapped)[None]

    # -- model folder --------------------------------------------------------------------

    def state_values(self) -> dict[str, StateValue]:
        values: dict[str, StateValue] = {}
        for name in self.domain_names:
            if name in self.tables:
                values[f"{name}.{self.options.kind}"] = list(self.tables[name])
                values[f"{name}.volumes"] = self.fitted_volumes.get(name, 0)
        return values

    def load_state_values(self, values: Mapping[str, StateValue]) -> None:
        if not values:
            self.tables, self.fitted_volumes = {}, {}
            return
        size = self.options.quantiles if self.options.kind == "quantile" else 2
        expected = {f"{n}.{s}" for n in self.domain_names for s in (self.options.kind, "volumes")}
        if set(values) != expected:
            raise ModelFormatError(
                f"method {self.id!r} ({self.options.kind}) keeps {sorted(expected)} in a model "
                f"folder, found {sorted(values)}"
            )
        tables, counts = {}, {}
        for name in self.domain_names:
            table = values[f"{name}.{self.options.kind}"]
            if not isinstance(table, list) or len(table) != size:
                raise ModelFormatError(
                    f"method {self.id!r}: domain {name!r} needs {size} numbers, found {table!r}"
                )
            numbers = np.asarray([float(v) for v in table])
            broken = not np.isfinite(numbers).all() or (
                bool((np.diff(numbers) < 0).any())
                if self.options.kind == "quantile"
                else numbers[1] <= 0
            )
            if broken:
                raise ModelFormatError(
                    f"method {self.id!r}: domain {name!r}'s table is not finite and "
                    "non-decreasing (quantiles) or has std <= 0 (zscore)"
                )
            tables[name] = tuple(float(v) for v in numbers)
            count = values[f"{name}.volumes"]
            counts[name] = int(count) if isinstance(count, (int, float)) else 0
        self.tables, self.fitted_volumes = tables, counts


def quantile_map(values: FloatArray, source: FloatArray, target: FloatArray) -> FloatArray:
    """Map ``values`` piecewise linearly from the ``source`` quantiles onto ``target``'s.

    Tied source quantiles are merged (their target positions averaged). Outside
    ``[source[0], source[-1]]`` the map is ``y = x · t / s`` with ``(s, t)`` the nearest
    end pair (zero stays zero), or constant at ``t`` where ``s <= 0`` or ``t < 0``. The
    map is non-decreasing when ``target`` is.

    Example:
        >>> quantile_map(np.array([0.0, 5.0, 10.0, 15.0, 40.0]),
        ...              np.array([10.0, 20.0]), np.array([100.0, 300.0])).tolist()
        [0.0, 50.0, 100.0, 200.0, 600.0]

    Raises:
        InputError: Fewer than two distinct source quantiles.
    """
    knots, heights = merged_ties(source, target)
    if knots.size < 2:
        raise InputError(
            "the source domain's quantiles all coincide: its foreground is constant and "
            "gives no map"
        )
    mapped = np.interp(values, knots, heights)
    for end, side in ((0, values < knots[0]), (-1, values > knots[-1])):
        if knots[end] > 0.0 and heights[end] >= 0.0:
            mapped[side] = values[side] * (heights[end] / knots[end])
    return np.asarray(mapped)
