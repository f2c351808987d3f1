"""WhiteStripe: standardize by the normal-appearing white matter (Shinohara et al. 2014).

The white stripe is the band of intensities around the white-matter mode of the
volume's histogram, ``τ`` quantiles wide on each side: with ``F`` the empirical
distribution of the foreground and ``m`` the mode, the voxels with intensities in
``[F⁻¹(F(m) - τ), F⁻¹(F(m) + τ)]``. Their mean and standard deviation standardize the
whole volume, so that normal-appearing white matter has mean 0 and standard deviation 1
in every image, whatever the scanner's units.

On T1-weighted images white matter is the brightest large tissue class, so its mode is
the last (highest-intensity) peak of the smoothed histogram; on T2-weighted and FLAIR
images the authors take the largest peak instead. Peaks lower than ``rare_fraction``
of the highest are ignored, as the authors' software does, so that a small bright
class (fat, vessels, a tail of noise) is not mistaken for white matter.

Deviation from the paper, by design: the paper smooths the histogram with a penalized
regression spline; here it is smoothed with a Gaussian kernel whose width is a fixed
fraction of the histogram's range, which finds the same modes without a model fit.
The histogram spans the foreground's range without its extreme voxels
(:func:`~medi2i_harmonization.samples.robust_range`: those beyond its 0.1st to 99.9th
percentiles by more than their distance), not its minimum to maximum: one extreme voxel
(65,535 in a 12-bit scan, a corrupt 1e7) would otherwise widen the bins and the
smoothing until the white-matter peak moved or merged with everything else. The stripe
is taken among the same voxels: when white matter is among the brightest ``τ`` of the
foreground (a crop), the stripe's upper quantile would otherwise be the extreme voxel.

The kernel is never narrower than the step between the volume's intensity levels (1 on
an integer volume): on a crop of an 8-bit scan the foreground spans a few dozen levels,
1 % of that is a third of a level, and every level of white matter's bright tail was a
peak of its own, the last one taken for white matter. The histogram runs half a level
beyond the extreme levels and is reflected at its ends; a histogram whose maximum is at
an end (still rising at its brightest intensity for ``"last"``, tallest at an end for
``"largest"``) has no white-matter peak, and the volume is refused rather than
standardized by a band of its brightest voxels. So is one whose chosen peak is not a
mode: the smoothed density must fall below the peak on both sides, within the
histogram's range, by :data:`PEAK_PROMINENCE` times the sampling noise of the
difference. A flat histogram (a linear ramp of intensities, every level equally common)
has only noise ripples for peaks, the last of them among its brightest voxels; a whole
head's white-matter peak stands hundreds of noise deviations above both sides.

The stripe's standard deviation is never less than that of one intensity level,
``step / √12``: when the stripe holds one or two levels (a crop of an 8-bit scan whose
foreground is mostly white matter), its measured spread is that of where the ``τ``
quantiles fall between levels (0 when they fall in one level), not white matter's. A
stripe of several levels (every whole head, every float volume) is never changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from pydantic import Field
from scipy import ndimage

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

PeakRule = Literal["last", "largest"]


class WhiteStripeOptions(TargetOptions):
    """Options of :class:`WhiteStripe` (defaults: Shinohara et al. 2014, T1-weighted).

    Attributes:
        width: ``τ``, half the width of the stripe in quantiles of the foreground
            (0 < τ < 0.5); the paper's 0.05 takes the 10 % of voxels nearest the mode
            in rank.
        peak: ``"last"``: the highest-intensity peak (T1-weighted, the paper);
            ``"largest"``: the tallest peak (T2-weighted, FLAIR).
        foreground: Voxels whose histogram is searched (see
            :data:`medi2i_harmonization.samples.ForegroundRule`); ``"above-mean"`` is
            what the authors use on images that are not skull-stripped.
        bins: Number of histogram bins over the foreground's intensity range, without
            its extreme voxels (the authors' software uses 2000).
        smoothing: Standard deviation of the Gaussian kernel smoothing the histogram,
            as a fraction of its intensity range; never less than the step between
            intensity levels (1 on an integer volume).
        rare_fraction: Peaks lower than this fraction of the tallest one are ignored
            (the authors' software uses 1/5).
        target_mean: White-stripe mean of the output, or ``None`` for 0 (see
            :class:`~medi2i_harmonization.standardization.TargetOptions`).
        target_std: White-stripe standard deviation of the output, or ``None`` for 1.
    """

    width: float = Field(default=0.05, gt=0.0, lt=0.5)
    peak: PeakRule = "last"
    foreground: ForegroundRule = "above-mean"
    bins: int = Field(default=2000, ge=10)
    smoothing: float = Field(default=0.01, ge=0.0, lt=1.0)
    rare_fraction: float = Field(default=0.2, ge=0.0, le=1.0)


MIN_FOREGROUND_VOXELS = 512
"""Fewest foreground voxels (8³) WhiteStripe searches for white matter: on fewer, e.g.
the 160 noise voxels of a 32³ corner of a head scan outside the head, the histogram's
"peak" is noise, and standardizing by it is meaningless, so the volume is refused."""


PEAK_PROMINENCE = 5.0
"""How far, in standard deviations of its sampling noise, the smoothed histogram must
fall below the chosen peak on each side for the peak to be a mode. The noise is that of
the counts (Poisson) through the smoothing kernel; the ripples of a flat histogram of
random intensities rarely reach 5 (0.95 quantile 3.4 to 4.3 for 13³ to 64³ volumes,
float or 8-bit), the white-matter peaks of MNI152 and Colin27, whole or under the
benchmark's scanners, stand 200 to 430 above both sides."""


@dataclass(frozen=True)
class Stripe:
    """The white stripe of one volume.

    Attributes:
        mode: Intensity of the white-matter peak of the smoothed histogram.
        mode_quantile: ``F(mode)``, the fraction of foreground voxels below the mode.
        low: Lowest intensity of the stripe.
        high: Highest intensity of the stripe.
        mean: Mean intensity of the stripe's voxels.
        std: Their standard deviation, at least that of one intensity level
            (``step / √12``; see the module's docstring).
        voxels: How many voxels the stripe holds.
    """

    mode: float
    mode_quantile: float
    low: float
    high: float
    mean: float
    std: float
    voxels: int


class WhiteStripe(StandardizingMethod):
    """Standardize by the mean and standard deviation of the white stripe.

    Output ``(x - μ_ws) / σ_ws``, so that normal-appearing white matter has mean 0 and
    standard deviation 1 (Shinohara et al. 2014). It is fitted on the input itself at
    predict time. With a target (fitted on the target domain's volumes, or declared in
    the options) the output is ``(x - μ_ws) / σ_ws · target_std + target_mean``: the
    input's white matter then has the target domain's typical white-stripe statistics.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> t1 = np.concatenate([rng.normal(m, 5.0, n) for m, n in ((60, 4000), (100, 9000))])
        >>> round(WhiteStripe().stripe(t1).mode / 10)
        10
    """

    id = "whitestripe"
    version = "0.1.0"
    data = DataKind.NONE
    training = Training.FIT
    Options = WhiteStripeOptions
    paper = (
        "Shinohara RT, Sweeney EM, Goldsmith J, et al. Statistical normalization techniques "
        "for magnetic resonance imaging. NeuroImage: Clinical 6:9-19, 2014"
    )

    options: WhiteStripeOptions

    def statistics(self, values: FloatArray) -> tuple[float, float]:
        """Mean and standard deviation of the white stripe of ``values``."""
        location, scale, _ = self.measure(values)
        return location, scale

    def measure(self, values: FloatArray) -> tuple[float, float, dict[str, object]]:
        """The white stripe's mean and standard deviation, and the whole stripe (its
        ``white_stripe`` entry: mode, quantile, bounds, mean, std, voxels) for the
        provenance."""
        stripe = self.stripe(values)
        scale = positive_scale(stripe.std, what="white stripe")
        return stripe.mean, scale, {"white_stripe": asdict(stripe)}

    def stripe(self, values: FloatArray) -> Stripe:
        """The white stripe of a volume (any shape; its foreground is searched).

        The foreground's extreme voxels
        (:func:`~medi2i_harmonization.samples.robust_range`) are left out of the
        histogram and of the stripe.

        Raises:
            InputError: The foreground is constant (the message says why), or its
                histogram has no white-matter peak inside its range, or its peak is not
                a mode (the histogram is flat on one side of it).
        """
        array = np.asarray(values)
        inside = foreground_values(array, rule=self.options.foreground)  # a float64 copy
        inside.sort()
        if inside[0] == inside[-1]:
            raise InputError(
                "the foreground has no white-matter peak: "
                + degenerate_foreground(array, inside, rule=self.options.foreground)
            )
        # the extreme voxels take no part: when the mode is among the brightest τ of the
        # foreground the stripe's top quantile is its maximum, which may be a corrupt 1e7
        low, high = robust_range(inside)
        inside = inside[(inside >= low) & (inside <= high)]
        if inside.size < MIN_FOREGROUND_VOXELS:
            raise InputError(
                f"WhiteStripe finds too few foreground voxels to locate white matter: "
                f"{inside.size} of {array.size} (foreground: {self.options.foreground}; at "
                f"least {MIN_FOREGROUND_VOXELS} are needed): a crop outside the head, or "
                "background noise?; standardize this image with zscore or nyul instead"
            )
        step = intensity_step(inside)
        mode = self._mode(inside, step)
        below = float(np.searchsorted(inside, mode, side="left")) / inside.size
        quantiles = [max(below - self.options.width, 0.0), min(below + self.options.width, 1.0)]
        low, high = (float(q) for q in np.quantile(inside, quantiles))
        selected = inside[(inside >= low) & (inside <= high)]
        return Stripe(
            mode=mode,
            mode_quantile=below,
            low=low,
            high=high,
            mean=float(selected.mean()),
            std=max(float(selected.std()), step / np.sqrt(12.0)),
            voxels=int(selected.size),
        )

    def white_matter_mode(self, values: FloatArray) -> float:
        """Intensity of the white-matter peak of the smoothed histogram of ``values``.

        The histogram spans the range of ``values`` without its extreme voxels
        (:func:`~medi2i_harmonization.samples.robust_range`), so that a few extreme
        voxels change neither its bins nor its smoothing; its kernel is at least one
        intensity level (:func:`intensity_step`) wide.

        Raises:
            InputError: ``values`` is constant, or the histogram's maximum is at an end
                of its range, not at a peak inside it (see :meth:`_peak_inside`), or
                the peak is not a mode (see :func:`_prominence`).
        """
        if float(values.min()) >= float(values.max()):
            raise InputError(
                "the foreground is constant: its histogram has no white-matter peak; "
                "WhiteStripe needs a T1- or T2-weighted head MR (zscore standardizes others)"
            )
        return self._mode(values, intensity_step(values))

    def _mode(self, values: FloatArray, step: float) -> float:
        """:meth:`white_matter_mode` of non-constant ``values`` of intensity step ``step``."""
        # half a level beyond the extreme levels: the ends then fall between levels, and
        # reflecting the histogram there (below) continues the comb of an integer volume
        low, high = (
            a + b for a, b in zip(robust_range(values), (-step / 2, step / 2), strict=True)
        )
        counts, edges = np.histogram(values, bins=self.options.bins, range=(low, high))
        # never narrower than the step between intensity levels: on a narrow range of
        # integer levels (an 8-bit crop) 1 % of the range is less than one level, and
        # every level would be a peak of its own, the last one far above white matter
        sigma = max(self.options.smoothing * (high - low), step) / ((high - low) / counts.size)
        # reflected, not zero-padded, at the ends: a histogram still rising at an end has
        # its maximum there, instead of a peak one kernel width inside made by the padding
        smooth = ndimage.gaussian_filter1d(counts.astype(np.float64), sigma, mode="reflect")
        peaks = _peaks(smooth, floor=self.options.rare_fraction * float(smooth.max()))
        top = smooth.size - 1
        inner = peaks[(peaks > 0) & (peaks < top)]
        chosen, why = self._peak_inside(smooth, peaks, inner)
        if why:
            at = f"{edges[0]:.6g}" if "lowest" in why else f"{edges[-1]:.6g}"
            raise InputError(
                f"WhiteStripe finds no white-matter peak: the foreground's smoothed histogram "
                f"({low:.6g} to {high:.6g}) {why} ({at}), with no {self.options.peak} peak "
                "inside its range (a crop without white matter, a saturated scan, an unusual "
                "contrast?); standardize this image with zscore or nyul instead"
            )
        mode = float(0.5 * (edges[chosen] + edges[chosen + 1]))
        prominence = _prominence(counts, smooth, chosen, sigma)
        if prominence < PEAK_PROMINENCE:
            raise InputError(
                f"WhiteStripe finds no white-matter peak: the foreground's smoothed histogram "
                f"({low:.6g} to {high:.6g}) is flat on one side of its {self.options.peak} "
                f"peak ({mode:.6g}; it falls {prominence:.2g} noise standard deviations "
                f"below it there, {PEAK_PROMINENCE:g} needed), so that peak is noise, not a "
                "tissue (a flat or ramp histogram, a crop without white matter?); "
                "standardize this image with zscore or nyul instead"
            )
        return mode

    def _peak_inside(
        self, smooth: FloatArray, peaks: np.ndarray, inner: np.ndarray
    ) -> tuple[int, str]:
        """The chosen peak's bin, and ``""``; or why there is none inside the histogram.

        A maximum at an end of the histogram is no peak: the tissue there is cut off by
        the foreground's range (or is a saturation spike). The last peak is refused when
        the histogram still rises to its highest end (higher there than at any inner
        peak); the largest, when it lies at an end.
        """
        top = smooth.size - 1
        if self.options.peak == "largest":
            chosen = int(peaks[np.argmax(smooth[peaks])])
            end = "lowest" if chosen == 0 else "highest" if chosen == top else ""
            return chosen, f"is tallest at its {end} intensity" if end else ""
        if top in peaks and (inner.size == 0 or smooth[top] > smooth[inner[-1]]):
            return top, "still rises at its highest intensity"
        if inner.size == 0:
            return 0, "only falls from its lowest intensity"
        return int(inner[-1]), ""


def intensity_step(values: FloatArray) -> float:
    """The typical step between the distinct intensities of ``values``: the median gap
    between consecutive distinct values; 1 for integer levels, about none for a
    continuous (float) volume.

    Example:
        >>> intensity_step(np.array([3.0, 1.0, 2.0, 2.0, 5.0]))
        1.0
    """
    gaps = np.diff(np.unique(values))
    return float(np.median(gaps)) if gaps.size else 0.0


def _prominence(counts: np.ndarray, smooth: FloatArray, peak: int, sigma: float) -> float:
    """How far the smoothed histogram ``smooth`` falls below bin ``peak`` on its less
    falling side, in standard deviations of the sampling noise of that fall.

    On each side the fall is to the side's lowest bin, anywhere in the range; its noise
    is that of the two smoothed counts, each a sum of Poisson counts weighted by the
    kernel (variance: the counts smoothed by the squared kernel). A bin at an end has
    no fall on its outer side (0).
    """
    weights = _gaussian_weights(sigma)
    variance = ndimage.correlate1d(counts.astype(np.float64), weights**2, mode="reflect")
    falls = []
    for side in (np.arange(peak), np.arange(peak + 1, smooth.size)):
        if side.size == 0:
            return 0.0
        lowest = int(side[np.argmin(smooth[side])])
        noise = np.sqrt(variance[peak] + variance[lowest])
        fall = float(smooth[peak] - smooth[lowest])
        falls.append(fall / noise if noise > 0.0 else (np.inf if fall > 0.0 else 0.0))
    return float(min(falls))


def _gaussian_weights(sigma: float) -> FloatArray:
    """The kernel :func:`scipy.ndimage.gaussian_filter1d` smooths with (its default
    radius, 4 standard deviations)."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (x / sigma) ** 2) if sigma > 0.0 else (x == 0).astype(np.float64)
    normalized: FloatArray = weights / weights.sum()
    return normalized


def _peaks(heights: FloatArray, *, floor: float) -> np.ndarray:
    """Indices of the local maxima of ``heights`` at least ``floor`` high, increasing.

    A plateau counts once, at its first bin; the ends count when nothing beyond them is
    higher.
    """
    padded = np.concatenate([[-np.inf], heights, [-np.inf]])
    rising = padded[1:-1] > padded[:-2]
    not_falling_after = padded[1:-1] >= padded[2:]
    candidates = np.flatnonzero(rising & not_falling_after & (heights >= floor))
    # a plateau's first bin passes only if the plateau then falls: check where it ends
    kept = [i for i in candidates if _falls_after_plateau(heights, int(i))]
    return np.asarray(kept if kept else [int(np.argmax(heights))], dtype=np.int64)


def _falls_after_plateau(heights: FloatArray, start: int) -> bool:
    end = start
    while end + 1 < heights.size and heights[end + 1] == heights[start]:
        end += 1
    return end + 1 == heights.size or heights[end + 1] < heights[start]
