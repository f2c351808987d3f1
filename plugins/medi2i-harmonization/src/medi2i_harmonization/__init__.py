"""medi2i-harmonization: MR intensity standardization across scanners.

Methods: ``zscore`` (foreground z-score), ``whitestripe`` (Shinohara et al. 2014),
``nyul`` (Nyúl-Udupa histogram standardization), and the baseline
``domain-intensity-map`` (one scanner's pooled foreground quantiles or mean and
standard deviation mapped onto another's). This module holds the plugin's hook
implementation; medi2i imports it on every command, so the method modules (numpy,
scipy, torch) are imported inside the hook only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import medi2i

if TYPE_CHECKING:
    from medi2i import MethodClass

MEDI2I_PLUGIN_API = "2.0"
__all__ = ["register_methods"]


@medi2i.hookimpl
def register_methods(register: Callable[[MethodClass], None]) -> None:
    """Register :class:`~medi2i_harmonization.zscore.ZScore`,
    :class:`~medi2i_harmonization.whitestripe.WhiteStripe`,
    :class:`~medi2i_harmonization.nyul.NyulStandardization` and
    :class:`~medi2i_harmonization.domain_map.DomainIntensityMap`."""
    from medi2i_harmonization.domain_map import DomainIntensityMap
    from medi2i_harmonization.nyul import NyulStandardization
    from medi2i_harmonization.whitestripe import WhiteStripe
    from medi2i_harmonization.zscore import ZScore

    register(ZScore)
    register(WhiteStripe)
    register(NyulStandardization)
    register(DomainIntensityMap)
