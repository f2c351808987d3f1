"""Standardizing by a location and a scale measured on the input, optionally mapped onto
a target domain.

Z-score and WhiteStripe share one shape: measure a location ``μ`` and a scale ``σ`` on
the input volume (foreground mean and standard deviation, or those of the white
stripe), then output ``(x - μ) / σ``. That output is on a normalized scale, not on any
scanner's. To harmonize scanner B to scanner A, the same statistics are measured on
scanner A's volumes (:meth:`StandardizingMethod.fit`, or declared as the options
``target_mean`` and ``target_std``) and the output becomes ``(x - μ) / σ · σ_A + μ_A``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch
from pydantic import BaseModel, Field, model_validator

from medi2i import (
    InputError,
    Method,
    ModelFormatError,
    Options,
    OptionsError,
    Task,
    VolumeSpec,
)
from medi2i_harmonization.samples import (
    FloatArray,
    mapped_in_slabs,
    volume_array,
    volume_arrays,
)

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i import PredictContext, StateValue

MR_SPEC = VolumeSpec(modality="MR", units="arbitrary", channels=1)
TARGET_KEYS = ("target_mean", "target_std")
"""Names of the fitted target statistics in a model folder."""


class TargetOptions(Options):
    """Options that declare the target domain's statistics instead of fitting them.

    Attributes:
        target_mean: Location the input's location is mapped to (target units), or
            ``None`` to output the normalized scale. Give it with ``target_std``.
        target_std: Scale the input's scale is mapped to (target units, > 0), or
            ``None``. Give it with ``target_mean``.
    """

    target_mean: float | None = None
    target_std: float | None = Field(default=None, gt=0.0)

    @model_validator(mode="after")
    def _both_or_neither(self) -> TargetOptions:
        if (self.target_mean is None) != (self.target_std is None):
            raise ValueError("give target_mean and target_std together, or neither")
        return self


class StandardizingMethod(Method):
    """Base of methods that output ``(x - μ) / σ`` with ``μ, σ`` measured on the input.

    Subclasses define :meth:`statistics`; the output is mapped onto a target's
    ``(mean, std)`` when one was fitted or declared.
    """

    tasks = (Task.HARMONIZATION,)
    input_spec = MR_SPEC
    output_spec = MR_SPEC
    fits_at_predict = True
    measured_as: tuple[str, str] = ("location", "scale")
    """Names of the location and scale in the provenance's ``"run"`` entry."""

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self.fitted_target: tuple[float, float] | None = None

    @abc.abstractmethod
    def statistics(self, values: FloatArray) -> tuple[float, float]:
        """The location and scale (> 0) of a volume, in its units.

        Raises:
            InputError: The volume has no spread to standardize by.
        """

    def target(self) -> tuple[float, float] | None:
        """The target ``(mean, std)``: fitted, else declared in the options, else ``None``."""
        if self.fitted_target is not None:
            return self.fitted_target
        mean = getattr(self.options, "target_mean", None)
        std = getattr(self.options, "target_std", None)
        return None if mean is None or std is None else (float(mean), float(std))

    def measure(self, values: FloatArray) -> tuple[float, float, dict[str, object]]:
        """The location and scale of a volume (:meth:`statistics`) and what the provenance
        records of the measurement (its ``"run"`` entry): by default the two numbers,
        named by :attr:`measured_as`."""
        location, scale = self.statistics(values)
        return location, scale, dict(zip(self.measured_as, (location, scale), strict=True))

    def standardize(self, values: FloatArray) -> FloatArray:
        """``(x - μ) / σ`` of the whole volume, mapped onto the target when there is one
        (float64)."""
        return self.standardized(values)[0]

    def standardized(
        self, values: FloatArray, *, dtype: type[np.floating] = np.float64
    ) -> tuple[FloatArray, dict[str, object]]:
        """:meth:`standardize`, with what :meth:`measure` records for the provenance.

        The map is computed in float64 a slab at a time and rounded once into ``dtype``
        (:func:`~medi2i_harmonization.samples.mapped_in_slabs`): float32 output costs
        no float64 array of the volume's size.
        """
        location, scale, measured = self.measure(values)
        target = self.target()

        def standard(slab: FloatArray) -> FloatArray:
            z = (slab - location) / scale
            return z if target is None else z * target[1] + target[0]

        return mapped_in_slabs(np.asarray(values), standard, dtype=dtype), measured

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        if image.shape[0] != 1:
            raise InputError(
                f"method {self.id!r} takes single-channel volumes, got {image.shape[0]} channels"
            )
        standard, measured = self.standardized(volume_array(image), dtype=np.float32)
        context.facts.update(measured)
        return torch.from_numpy(standard)[None]

    def fit(self, volumes: object) -> None:
        """Measure the target domain: the mean over ``volumes`` of each one's statistics.

        Each volume contributes its own location and scale, as the input will at
        predict time, so the target is a typical volume of the domain (pooling voxels
        instead would add the spread between volumes to the scale).

        Args:
            volumes: Volumes of the target domain (tensors, arrays or file paths).

        Raises:
            OptionsError: The options already declare a target.
            InputError: No volume, or a volume without spread.
        """
        if getattr(self.options, "target_mean", None) is not None:
            raise OptionsError(
                f"method {self.id!r} declares target_mean and target_std in its options; "
                "fitting would ignore them: drop them from the options or do not fit"
            )
        measured = np.array([self.statistics(values) for values in volume_arrays(volumes)])
        self.fitted_target = (float(measured[:, 0].mean()), float(measured[:, 1].mean()))

    def state_values(self) -> dict[str, StateValue]:
        if self.fitted_target is None:
            return {}
        return dict(zip(TARGET_KEYS, self.fitted_target, strict=True))

    def load_state_values(self, values: Mapping[str, StateValue]) -> None:
        if not values:
            self.fitted_target = None
            return
        if set(values) != set(TARGET_KEYS):
            raise ModelFormatError(
                f"method {self.id!r} keeps {list(TARGET_KEYS)} in a model folder, "
                f"found {sorted(values)}"
            )
        mean, std = (values[key] for key in TARGET_KEYS)
        if not isinstance(mean, (int, float)) or not isinstance(std, (int, float)) or std <= 0:
            raise ModelFormatError(
                f"method {self.id!r}: the fitted target must be two numbers with std > 0, "
                f"found {dict(values)}"
            )
        self.fitted_target = (float(mean), float(std))


def positive_scale(scale: float, *, what: str) -> float:
    """``scale`` when it is positive and finite.

    Raises:
        InputError: It is not (a constant foreground, or an empty selection).
    """
    if not np.isfinite(scale) or scale <= 0.0:
        raise InputError(
            f"the {what} has no spread (standard deviation {scale}); the volume cannot be "
            "standardized: check that it is not constant and that its foreground is right"
        )
    return float(scale)
