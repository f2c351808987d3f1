"""Image-quality metrics, registered through the ``register_metrics`` hook.

A metric compares a prediction with a reference on the same grid, optionally inside
a mask (``mask > 0``). The built-ins here are the plain masked MAE and PSNR; plugins
add more by registering :class:`Metric` instances.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medi2i.errors import GeometryError

FloatArray = npt.NDArray[np.floating]


class Metric(abc.ABC):
    """A named image metric.

    Attributes:
        name: Unique name, e.g. ``"mae"``.
        higher_is_better: Whether larger values mean a better prediction.
        units: Units of the value (``"HU"``, ``"dB"``, ``""``).
    """

    name: str
    higher_is_better: bool
    units: str = ""

    def __call__(
        self, prediction: FloatArray, reference: FloatArray, mask: FloatArray | None = None
    ) -> float:
        """The metric of ``prediction`` against ``reference`` (voxels with ``mask > 0``)."""
        if prediction.shape != reference.shape or (
            mask is not None and mask.shape != reference.shape
        ):
            shapes = [a.shape for a in (prediction, reference, mask) if a is not None]
            raise GeometryError(f"metric {self.name!r} needs volumes of one shape, got {shapes}")
        inside = np.ones(reference.shape, bool) if mask is None else np.asarray(mask) > 0
        if not inside.any():
            raise GeometryError(f"metric {self.name!r}: the mask selects no voxel")
        return self.compute(
            np.asarray(prediction, np.float64), np.asarray(reference, np.float64), inside
        )

    @abc.abstractmethod
    def compute(
        self, prediction: FloatArray, reference: FloatArray, inside: npt.NDArray[np.bool_]
    ) -> float:
        """The metric on float64 arrays and a boolean mask of at least one voxel."""


@dataclass(frozen=True)
class MeanAbsoluteError(Metric):
    """Mean absolute difference over the mask, in the images' units."""

    name: str = "mae"
    higher_is_better: bool = False
    units: str = "image units"

    def compute(
        self, prediction: FloatArray, reference: FloatArray, inside: npt.NDArray[np.bool_]
    ) -> float:
        return float(np.abs(prediction[inside] - reference[inside]).mean())


@dataclass(frozen=True)
class PeakSignalToNoiseRatio(Metric):
    """PSNR over the mask, with the data range of the reference inside the mask (dB)."""

    name: str = "psnr"
    higher_is_better: bool = True
    units: str = "dB"

    def compute(
        self, prediction: FloatArray, reference: FloatArray, inside: npt.NDArray[np.bool_]
    ) -> float:
        ref = reference[inside]
        mse = float(np.mean((prediction[inside] - ref) ** 2))
        data_range = float(ref.max() - ref.min()) or 1.0
        return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def builtin_metrics() -> list[Metric]:
    """The metrics medi2i registers itself."""
    return [MeanAbsoluteError(), PeakSignalToNoiseRatio()]
