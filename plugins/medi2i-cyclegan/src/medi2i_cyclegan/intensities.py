"""Per-domain intensities of the two-way methods, beyond :class:`medi2i.DomainIntensities`.

:class:`medi2i.DomainIntensities` scales each domain by what it is: CT from HU to
[-1, 1] by a fixed Hounsfield scale, MR (no absolute unit) by its own foreground
percentiles. Two things are added here:

- **Air outside the body** for a CT output translated from a non-CT input (option
  ``body_contour``): the body is found in the raw input (:func:`medi2i.body_mask`) and
  every voxel outside it is set to :data:`medi2i.AIR_HU`, as the paired MR→CT methods do.
- **The target domain's scale** for an output of a domain without absolute units (MR):
  the network's [-1, 1] is mapped back onto the foreground percentile values that the
  domain's *training* volumes had on average (:class:`medi2i.DomainScales`, kept in the model's
  ``state_values``). Without it a B→A harmonization would be written in network units and
  could not be compared with scanner A's images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

BODY_MASK_KEY = "medi2i_cyclegan.body_mask"
"""Meta key of the raw input's body mask, put on the preprocessed input at predict time
when the direction translates a non-CT input into CT."""
