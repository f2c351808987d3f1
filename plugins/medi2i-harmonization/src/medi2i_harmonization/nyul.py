"""Nyúl-Udupa histogram standardization (Nyúl & Udupa 1999; Nyúl, Udupa & Zhang 2000).

Landmarks are percentiles of a volume's foreground intensities: ``pc1`` and ``pc2``
bound the intensities of interest, and the deciles in between shape the map (the
decile variant of the 2000 paper). Training maps each volume of the target domain
linearly from ``[pc1, pc2]`` onto a standard range ``[s1, s2]`` and averages the
mapped landmarks over the volumes: the *standard landmarks*. A new volume is mapped
piecewise linearly from its own landmarks onto the standard ones, so the map is
monotone (increasing) over all intensities and keeps the order of tissues.

Outside the landmarks (``below_first_landmark``): above ``pc2`` the last segment is
extended. Below ``pc1`` extending the first segment (the papers' choice, ``"extend"``)
is unsafe on a scan unlike the training ones: a whole-head scan standardized by
landmarks of skull-stripped training images has much tissue below its ``pc1``, and the
steep first segment sends it negative (12 % of Colin27's head voxels, fitted on
MNI152). By default (``"zero"``) the map below ``pc1`` is the line through zero signal,
which stays zero, and ``(pc1, s1)``, continued through zero for negative values: a
non-negative volume stays non-negative, and background noise around zero or a small
negative offset (a spline resampling) stays near zero with its sign, instead of being
painted at ``s1``. ``"clamp"`` sets everything below ``pc1`` to ``s1``. Voxels exactly
0 in the input (air outside a skull-stripped or masked image) are mapped as 0, not
after dequantization, so they stay exactly 0 under ``"zero"``.

Integer-valued volumes (8-bit templates, most DICOM) are dequantized first (option
``dequantize``): each voxel moves by a uniform amount within half an intensity level,
seeded by the volume's content, so the result is reproducible. Without it the map
stretches the empty space between levels and the output histogram is a comb of spikes
and gaps (81 of 200 bins empty for Colin27). The landmarks are measured on the
dequantized volume.

The standard range is the paper's fixed scale when ``standard_range`` is given (the
1999 paper used ``[1, 4095]``, 12-bit); by default it is the target domain's own range,
the mean of its volumes' ``pc1`` and ``pc2`` intensities, so that a volume of another
scanner comes out in the target scanner's units (harmonization).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from itertools import pairwise
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import BaseModel, Field, model_validator

from medi2i import (
    DataKind,
    InputError,
    Method,
    ModelFormatError,
    Options,
    OptionsError,
    Task,
    Training,
)
from medi2i_harmonization.samples import (
    SLAB_VOXELS,
    FloatArray,
    ForegroundRule,
    degenerate_foreground,
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

DECILES = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)
BelowRule = Literal["zero", "clamp", "extend"]
LANDMARKS_KEY = "standard_landmarks"
VOLUMES_KEY = "fitted_volumes"


class NyulOptions(Options):
    """Options of :class:`NyulStandardization` (defaults: the decile variant of Nyúl,
    Udupa & Zhang 2000).

    Attributes:
        lower_percentile: ``pc1``, the lowest percentile of interest of the foreground
            (0-100).
        upper_percentile: ``pc2``, the highest percentile of interest (0-100).
        landmark_percentiles: The percentiles between ``pc1`` and ``pc2`` that shape the
            map, increasing.
        standard_range: ``(s1, s2)``, where ``pc1`` and ``pc2`` land on the standard
            scale; ``None`` for the target domain's own scale (the mean ``pc1`` and
            ``pc2`` intensities of the volumes it was fitted on).
        foreground: Voxels whose percentiles are the landmarks (see
            :data:`medi2i_harmonization.samples.ForegroundRule`).
        below_first_landmark: The map below ``pc1``: ``"zero"`` (the line through
            zero, which stays zero, and ``(pc1, s1)``, negative values included; the
            same as ``"clamp"`` when ``pc1`` or ``s1`` is not positive), ``"clamp"``
            (``s1``) or ``"extend"`` (the first segment continued, the papers' map,
            which can go negative).
        dequantize: Spread an integer-valued volume's voxels uniformly within half an
            intensity level (seeded by its content) before measuring and mapping, so
            the output histogram has no gaps.
    """

    lower_percentile: float = Field(default=1.0, ge=0.0, le=100.0)
    upper_percentile: float = Field(default=99.0, ge=0.0, le=100.0)
    landmark_percentiles: tuple[float, ...] = DECILES
    standard_range: tuple[float, float] | None = None
    foreground: ForegroundRule = "otsu"
    below_first_landmark: BelowRule = "zero"
    dequantize: bool = True

    @model_validator(mode="after")
    def _percentiles_increase(self) -> NyulOptions:
        sequence = self.percentiles()
        if any(b <= a for a, b in pairwise(sequence)):
            raise ValueError(
                "lower_percentile, landmark_percentiles and upper_percentile must increase "
                f"strictly, got {list(sequence)}"
            )
        return self

    @model_validator(mode="after")
    def _range_increases(self) -> NyulOptions:
        if self.standard_range is not None and self.standard_range[1] <= self.standard_range[0]:
            raise ValueError(f"standard_range {self.standard_range} must be (s1, s2) with s1 < s2")
        return self

    def percentiles(self) -> tuple[float, ...]:
        """All landmark percentiles: ``pc1``, the landmarks, ``pc2``."""
        return (self.lower_percentile, *self.landmark_percentiles, self.upper_percentile)


class NyulStandardization(Method):
    """Map intensities piecewise linearly so that histogram landmarks match the target's.

    Fit on volumes of the target domain (e.g. one scanner's T1-weighted images); then
    every volume is mapped so that its foreground percentiles (1st, deciles, 99th by
    default) land on the target domain's average landmarks. The map is increasing, so
    tissue order is kept.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> method = NyulStandardization({"foreground": "all"})
        >>> method.fit([rng.gamma(4.0, 25.0, (8, 8, 8)) for _ in range(3)])
        >>> len(method.standard_landmarks)
        11
    """

    id = "nyul"
    version = "0.1.0"
    tasks = (Task.HARMONIZATION,)
    data = DataKind.SINGLE_DOMAIN
    training = Training.FIT
    input_spec = MR_SPEC
    output_spec = MR_SPEC
    Options = NyulOptions
    paper = (
        "Nyúl LG, Udupa JK. On standardizing the MR image intensity scale. Magn Reson Med "
        "42(6):1072-1081, 1999; Nyúl LG, Udupa JK, Zhang X. New variants of a method of MRI "
        "scale standardization. IEEE Trans Med Imaging 19(2):143-150, 2000"
    )

    options: NyulOptions

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self.standard_landmarks: tuple[float, ...] | None = None
        self.fitted_volumes = 0

    def landmarks(self, values: FloatArray) -> FloatArray:
        """The landmark intensities of a volume's foreground, in its units (of the volume
        as given: dequantize it first, as :meth:`fit` and :meth:`standardize` do).

        Raises:
            InputError: The foreground is constant (the message says why).
        """
        inside = foreground_values(values, rule=self.options.foreground)
        if float(inside.min()) == float(inside.max()):
            raise InputError(
                "the volume's foreground has no histogram to standardize: "
                + degenerate_foreground(values, inside, rule=self.options.foreground)
            )
        # the foreground is a float64 copy already: partitioned in place, not copied again
        landmarks = np.percentile(inside, self.options.percentiles(), overwrite_input=True)
        return np.asarray(landmarks, np.float64)

    def fit(self, volumes: object) -> None:
        """Learn the standard landmarks from volumes of the target domain.

        Args:
            volumes: Volumes of the target domain (tensors, arrays or file paths).

        Raises:
            InputError: No volume, or one whose ``pc1`` and ``pc2`` coincide.
        """
        measured = np.array(
            [self.landmarks(self.prepared(values)) for values in volume_arrays(volumes)]
        )
        spans = measured[:, -1] - measured[:, 0]
        if (spans <= 0).any():
            raise InputError(
                "a volume's lower and upper percentiles coincide: its foreground is constant "
                "and has no histogram to standardize by"
            )
        s1, s2 = self.options.standard_range or (
            float(measured[:, 0].mean()),
            float(measured[:, -1].mean()),
        )
        onto_standard = s1 + (measured - measured[:, :1]) / spans[:, None] * (s2 - s1)
        self.standard_landmarks = tuple(float(v) for v in onto_standard.mean(axis=0))
        self.fitted_volumes = len(measured)

    def standardize(self, values: FloatArray) -> FloatArray:
        """Map a whole volume onto the standard scale (float64).

        Raises:
            OptionsError: The method was not fitted.
            InputError: The volume's foreground has fewer than two distinct landmarks.
        """
        return self.standardized(values, dtype=np.float64)

    def standardized(self, values: FloatArray, *, dtype: type[np.floating]) -> FloatArray:
        """:meth:`standardize` rounded once into ``dtype``: the map is computed in float64
        a slab at a time (:func:`~medi2i_harmonization.samples.mapped_in_slabs`).

        Raises:
            OptionsError: The method was not fitted.
            InputError: The volume's foreground has fewer than two distinct landmarks.
        """
        if self.standard_landmarks is None:
            raise OptionsError(
                f"method {self.id!r} is not fitted: call method.fit(volumes) with volumes "
                "of the target domain, run a workflow with single-domain training data, or "
                "load a fitted model folder (medi2i.load_model) before predicting"
            )
        values = np.asarray(values)
        zeros = values == 0
        values = self.prepared(values)
        landmarks, standard = self.landmarks(values), np.asarray(self.standard_landmarks)
        below = self.options.below_first_landmark

        def onto_standard(slab: FloatArray) -> FloatArray:
            return landmark_map(slab, landmarks, standard, below=below)

        mapped = mapped_in_slabs(values, onto_standard, dtype=dtype)
        if self.options.dequantize and zeros.any():  # exact zeros as zero, not jittered
            mapped[zeros] = landmark_map(np.zeros(1), landmarks, standard, below=below)[0]
        return mapped

    def prepared(self, values: FloatArray) -> FloatArray:
        """``values``, dequantized when the option is on and they are all integers."""
        if self.options.dequantize:
            return dequantized(values)
        return values

    def predict(self, image: MetaTensor, context: PredictContext) -> torch.Tensor:
        if image.shape[0] != 1:
            raise InputError(
                f"method {self.id!r} takes single-channel volumes, got {image.shape[0]} channels"
            )
        standard = self.standardized(volume_array(image), dtype=np.float32)
        return torch.from_numpy(standard)[None]

    def state_values(self) -> dict[str, StateValue]:
        if self.standard_landmarks is None:
            return {}
        return {LANDMARKS_KEY: list(self.standard_landmarks), VOLUMES_KEY: self.fitted_volumes}

    def load_state_values(self, values: Mapping[str, StateValue]) -> None:
        if not values:
            self.standard_landmarks, self.fitted_volumes = None, 0
            return
        landmarks = values.get(LANDMARKS_KEY)
        count = len(self.options.percentiles())
        if not isinstance(landmarks, list) or len(landmarks) != count:
            raise ModelFormatError(
                f"method {self.id!r}: the model folder must hold {count} standard landmarks "
                f"under {LANDMARKS_KEY!r} (one per percentile), found {landmarks!r}"
            )
        numbers = [float(v) for v in landmarks]
        if any(b < a for a, b in pairwise(numbers)):
            raise ModelFormatError(f"method {self.id!r}: standard landmarks must not decrease")
        self.standard_landmarks = tuple(numbers)
        volumes = values.get(VOLUMES_KEY, 0)
        self.fitted_volumes = int(volumes) if isinstance(volumes, (int, float)) else 0


def dequantized(values: FloatArray) -> FloatArray:
    """An integer-valued volume with every voxel moved by a uniform amount in
    ``[-0.5, 0.5)``, kept within the volume's range; other volumes unchanged.

    The noise is seeded by the volume's content (its float64 values in C order): the
    same volume always gives the same result, whatever its type and memory order. The
    result is float64; a volume that is not integer-valued is returned as it is. The
    volume is read a slab at a time, so that no float64 temporary of its size is made
    besides the result.

    Example:
        >>> out = dequantized(np.array([0.0, 1.0, 1.0, 2.0]))
        >>> bool(np.all(np.abs(out - [0, 1, 1, 2]) <= 0.5)), float(out.min()) >= 0.0
        (True, True)
    """
    array = np.asarray(values)
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    flat = np.ascontiguousarray(array).reshape(-1)
    slabs = [flat[start : start + SLAB_VOXELS] for start in range(0, flat.size, SLAB_VOXELS)]
    if flat.size == 0 or not all(np.array_equal(slab, np.round(slab)) for slab in slabs):
        return array
    digest = hashlib.sha256()
    for slab in slabs:
        digest.update(slab.astype(np.float64).tobytes())
    rng = np.random.default_rng(int.from_bytes(digest.digest()[:8], "little"))
    low, high = np.float64(flat.min()), np.float64(flat.max())
    result = np.empty(flat.shape, np.float64)
    for start, slab in zip(range(0, flat.size, SLAB_VOXELS), slabs, strict=True):
        # the same stream as one draw of the whole volume: numbers are drawn in order
        noise = rng.random(slab.size)
        result[start : start + slab.size] = np.clip(slab + (noise - 0.5), low, high)
    return result.reshape(array.shape)


def landmark_map(
    values: FloatArray,
    landmarks: FloatArray,
    standard: FloatArray,
    *,
    below: BelowRule = "extend",
) -> FloatArray:
    """Map ``values`` piecewise linearly from ``landmarks`` onto ``standard``.

    Landmarks that coincide (ties in a quantized image) are merged, their standard
    positions averaged; beyond the last landmark the last segment is extended, below
    the first one ``below`` decides (:class:`NyulOptions`). ``"zero"`` maps ``x`` below
    the first landmark ``k1`` to ``x · t1 / k1`` (``t1`` its standard position), negative
    ``x`` included, so zero stays zero and values around it keep their sign; it falls
    back to ``"clamp"`` when ``k1`` is not positive or ``t1`` is negative, where that
    line would not be increasing. The map is non-decreasing when ``standard`` is.

    Example:
        >>> landmark_map(np.array([-1.0, 0.0, 5.0, 10.0, 20.0]), np.array([10.0, 20.0]),
        ...              np.array([100.0, 200.0]), below="zero").tolist()
        [-10.0, 0.0, 50.0, 100.0, 200.0]

    Raises:
        InputError: Fewer than two distinct landmarks.
    """
    knots, targets = merged_ties(landmarks, standard)
    if knots.size < 2:
        raise InputError(
            "the volume's foreground percentiles all coincide: it is constant and has no "
            "histogram to standardize"
        )
    mapped = np.interp(values, knots, targets)
    low_slope = (targets[1] - targets[0]) / (knots[1] - knots[0])
    high_slope = (targets[-1] - targets[-2]) / (knots[-1] - knots[-2])
    under, above = values < knots[0], values > knots[-1]
    mapped[above] = targets[-1] + (values[above] - knots[-1]) * high_slope
    if below == "extend":
        mapped[under] = targets[0] + (values[under] - knots[0]) * low_slope
    elif below == "zero" and knots[0] > 0.0 and targets[0] >= 0.0:
        # through zero for negative values too: air with noise or an offset stays air
        mapped[under] = values[under] * (targets[0] / knots[0])
    # "clamp" (and "zero" where zero is not below the first landmark): np.interp's s1
    return np.asarray(mapped)
