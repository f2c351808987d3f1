"""Z-score standardization inside the foreground.

The classic normalization of MR intensities (reviewed by Shinohara et al. 2014 as
"z-score normalization"): subtract the mean and divide by the standard deviation of
the foreground voxels of the volume itself. The whole volume, background included, is
transformed, so the foreground has mean 0 and standard deviation 1.
"""

from __future__ import annotations

import numpy as np

from medi2i import DataKind, InputError, Training
from medi2i_harmonization.samples import (
    FloatArray,
    ForegroundRule,
    degenerate_foreground,
    foreground_values,
    robust_range,
)
from medi2i_harmonization.standardization import (
    StandardizingMethod,
    TargetOptions,
    positive_scale,
)


class ZScoreOptions(TargetOptions):
    """Options of :class:`ZScore`.

    Attributes:
        foreground: Voxels whose mean and standard deviation standardize the volume
            (see :data:`medi2i_harmonization.samples.ForegroundRule`); ``"otsu"``
            separates head from air on whole-head and skull-stripped images alike.
        target_mean: Output foreground mean, or ``None`` for 0 (see
            :class:`~medi2i_harmonization.standardization.TargetOptions`).
        target_std: Output foreground standard deviation, or ``None`` for 1.
    """

    foreground: ForegroundRule = "otsu"


class ZScore(StandardizingMethod):
    """Z-score the volume with its foreground mean and standard deviation.

    Output ``(x - mean) / std`` with the statistics of the volume's own foreground, so
    the foreground has mean 0 and standard deviation 1. With a target (fitted on the
    target domain's volumes, or declared in the options) the output is
    ``(x - mean) / std · target_std + target_mean`` instead: the input's foreground then
    has the target domain's typical foreground mean and standard deviation.

    Example:
        >>> from medi2i.testing import make_volume
        >>> method = ZScore({"foreground": "all"})
        >>> z = method.standardize(make_volume()[0].numpy().astype("float64"))
        >>> abs(float(z.mean())) < 1e-9, round(float(z.std()), 6)
        (True, 1.0)
    """

    id = "zscore"
    version = "0.1.0"
    data = DataKind.NONE
    training = Training.FIT
    Options = ZScoreOptions
    paper = (
        "Shinohara RT et al. Statistical normalization techniques for magnetic resonance "
        "imaging. NeuroImage: Clinical 6:9-19, 2014 (z-score normalization)"
    )

    options: ZScoreOptions
    measured_as = ("foreground_mean", "foreground_std")

    def statistics(self, values: FloatArray) -> tuple[float, float]:
        """Mean and standard deviation of the foreground voxels.

        Extreme voxels (:func:`~medi2i_harmonization.samples.robust_range`; a clean
        volume has none) count at the range of the others: one voxel at 1e7 in the
        foreground would otherwise be most of its standard deviation, and the output
        nearly flat.

        Raises:
            InputError: The foreground is constant; the message says why (a constant
                volume, or a few extreme voxels that took the foreground threshold).
        """
        array = np.asarray(values)
        bounds = robust_range(array)  # once: the foreground rule needs it too
        inside = foreground_values(array, rule=self.options.foreground, bounds=bounds)
        np.clip(inside, *bounds, out=inside)  # float64, a copy of the foreground
        if inside.size and float(inside.min()) == float(inside.max()):
            raise InputError(
                "the foreground has no spread (standard deviation 0.0): "
                + degenerate_foreground(array, inside, rule=self.options.foreground)
            )
        return float(inside.mean()), positive_scale(float(inside.std()), what="foreground")
