"""Per-domain intensities of the domain examples (kept for the imports of earlier code):
the functions live in :mod:`medi2i.intensity`, with the :class:`medi2i.DomainIntensities`
mixin the examples use."""

from __future__ import annotations

from medi2i.intensity import domain_from_network as from_network_range
from medi2i.intensity import domain_to_network as to_network_range
from medi2i.intensity import is_hounsfield

__all__ = ["from_network_range", "is_hounsfield", "to_network_range"]
