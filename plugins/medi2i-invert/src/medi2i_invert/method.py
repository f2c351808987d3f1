"""Intensity inversion: bright becomes dark, in the input's own units.

The method is deliberately trivial so that it can serve as a template. It shows the
three places a patch-network method puts its work:

* :meth:`IntensityInversion.preprocess` computes whole-volume statistics (two
  percentiles) and rescales the volume to [0, 1] with them;
* the network computes ``1 - x``; it is voxelwise, so the method declares itself
  ``pointwise`` and the core runs it on whole slices instead of sliding windows (a
  network that looks at neighbours leaves ``pointwise`` off and gets the windows);
* :meth:`IntensityInversion.postprocess` maps the result back to the input's range.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from pydantic import Field, model_validator

from medi2i import DataKind, InputError, Options, PatchNetworkMethod, Task, VolumeSpec

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

RANGE_KEY = "medi2i_invert.intensity_range"
"""Meta key of the preprocessed volume holding ``(low, high)`` in input units."""


class InversionOptions(Options):
    """Options of :class:`IntensityInversion`.

    Attributes:
        lower_percentile: Percentile (0-100) of the input mapped to the output's maximum.
        upper_percentile: Percentile (0-100) of the input mapped to the output's minimum.
        roi_size: Sliding-window size in voxels; unused since the method is pointwise
            (kept so that existing model folders and workflows stay valid).
    """

    lower_percentile: float = Field(1.0, ge=0.0, le=100.0)
    upper_percentile: float = Field(99.0, ge=0.0, le=100.0)
    roi_size: tuple[int, int, int] = (64, 64, 64)

    @model_validator(mode="after")
    def _percentiles_ordered(self) -> InversionOptions:
        if self.lower_percentile >= self.upper_percentile:
            raise ValueError(
                f"lower_percentile ({self.lower_percentile}) must be below "
                f"upper_percentile ({self.upper_percentile})"
            )
        return self

    @model_validator(mode="after")
    def _roi_positive(self) -> InversionOptions:
        if min(self.roi_size) < 1:
            raise ValueError(f"roi_size {self.roi_size} must be positive in every axis")
        return self


class OneMinus(torch.nn.Module):
    """A parameter-free network: ``1 - x``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 - x


class IntensityInversion(PatchNetworkMethod):
    """Invert intensities between two percentiles of the input (bright becomes dark).

    Values between the ``lower_percentile`` and ``upper_percentile`` of the whole input
    volume, ``lo`` and ``hi``, are mapped to ``lo + hi - x``; values outside are clipped
    first. The output keeps the input's units and grid.

    Example:
        >>> method = IntensityInversion({"lower_percentile": 0, "upper_percentile": 100})
        >>> method.options.upper_percentile
        100.0
    """

    id = "intensity-inversion"
    version = "0.1.0"
    tasks = (Task.TRANSLATION,)
    data = DataKind.NONE
    input_spec = VolumeSpec(modality="any")
    output_spec = VolumeSpec(modality="any")
    Options = InversionOptions
    paper = "none: a reference plugin for plugin authors"
    pointwise = True  # 1 - x looks at one voxel: no windows, overlap or blending needed

    options: InversionOptions

    def build_network(self) -> torch.nn.Module:
        return OneMinus()

    def preprocess(
        self, image: MetaTensor, *, domain: str | None = None, condition: object = None
    ) -> MetaTensor:
        """Rescale the whole volume to [0, 1] between its two percentiles (clipped).

        The percentiles are taken over the whole volume here, never per window, so every
        window is scaled alike; they travel to :meth:`postprocess` in the volume's meta.
        """
        low, high = self.intensity_range(image)
        span = high - low if high > low else 1.0  # a constant volume stays constant
        # one new volume, then in place: the input belongs to the caller and must stay
        # as it is, but each temporary of a chain of operators would cost a whole volume.
        # torch operations on a MetaTensor return a MetaTensor with a copy of its meta.
        rescaled = cast("MetaTensor", image.float() - low)
        rescaled.div_(span).clamp_(0.0, 1.0)
        rescaled.meta[RANGE_KEY] = (low, high)
        return rescaled

    def postprocess(
        self,
        output: MetaTensor,
        image: MetaTensor,
        *,
        domain: str | None = None,
        condition: object = None,
    ) -> MetaTensor:
        """Map the network's [0, 1] output back to the input's units: ``lo + y (hi - lo)``."""
        intensity_range = image.meta.get(RANGE_KEY)
        if intensity_range is None:
            raise InputError(
                f"method {self.id!r}: the volume given to postprocess was not preprocessed by "
                "this method (its intensity range is missing); run it through medi2i.predict"
            )
        low, high = (float(v) for v in intensity_range)
        # the raw output is the core's own: changing it in place spares a volume
        return cast("MetaTensor", output.mul_(high - low).add_(low))

    def intensity_range(self, image: torch.Tensor) -> tuple[float, float]:
        """The lower and upper percentiles of ``image``, in its units."""
        # in the volume's own type and memory order: a float64 or reordered copy would
        # cost two volumes more than the one the percentile's partition needs
        values = image.detach().cpu().numpy().ravel(order="K")
        percentiles = [self.options.lower_percentile, self.options.upper_percentile]
        low, high = np.percentile(values, percentiles)
        return float(low), float(high)
