"""Scanner styles: how one anatomy looks on different MR scanners (benchmark Q3).

A :class:`ScannerStyle` turns a real T1w volume into what a given "scanner" would
show, in this order:

1. normalise: divide by the white-matter peak (:func:`white_matter_peak`), so that
   white matter is 1 whatever the source's units and field of view;
2. contrast: a monotone non-linear curve, a blend of a power law and a sigmoid
   (:meth:`ScannerStyle.curve`), so tissue order is kept but contrast changes;
3. resolution: an isotropic Gaussian point-spread function (``blur_fwhm_mm``) and a
   Gaussian slice profile of ``slice_thickness_mm`` along ``slice_axis``; the volume
   stays on its grid, as a thick-slice scan resampled to 1 mm would;
4. a smooth bias field whose shape is fixed by ``bias_seed`` (the scanner's coil);
5. the scanner's units (``signal_scale``) and Rician noise of
   ``noise_fraction * signal_scale``, seeded per acquisition.

Styles ``"A"``, ``"B"`` and ``"C"`` (:data:`NAMED_STYLES`) are the benchmark's scanners;
:func:`random_style` draws more from documented ranges for multi-scanner training.

Example:
    >>> import numpy as np
    >>> t1 = np.random.default_rng(0).random((12, 12, 12)).astype(np.float32)
    >>> styled = apply_style(t1, spacing_mm=(1, 1, 1), style=named_style("B"), seed=0)
    >>> styled.shape
    (12, 12, 12)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from medi2i.errors import OptionsError
from medi2i.synth.fields import bias_field, gaussian_blur_mm, generator, rician_noise
from medi2i.synth.slice_profile import slice_profile_blur

FloatArray = npt.NDArray[np.float32]

HISTOGRAM_BINS = 128
"""Bins of the histogram whose highest peak is the white matter."""


class ScannerStyle(BaseModel):
    """One simulated scanner: contrast curve, resolution, coil bias, units and noise.

    Attributes:
        name: Label of the scanner (e.g. ``"A"``).
        gamma: Exponent of the power-law part of the contrast curve (> 0; < 1
            brightens dark tissue, > 1 darkens it).
        sigmoid_weight: Weight in [0, 1] of the sigmoid part of the curve.
        sigmoid_center: Normalised intensity at the sigmoid's midpoint (grey matter is
            about 0.7, CSF about 0.3).
        sigmoid_width: Width of the sigmoid, in normalised intensity (> 0).
        blur_fwhm_mm: FWHM of the isotropic point-spread function, in mm.
        slice_thickness_mm: FWHM of the slice profile along ``slice_axis``, in mm
            (0 for a 3D acquisition).
        slice_axis: Array axis of the slice profile.
        bias_strength: Largest log-amplitude of the bias field.
        bias_seed: Seed of the bias-field shape (fixed per scanner).
        signal_scale: Output units: the signal of white matter (normalised intensity 1).
        noise_fraction: Rician noise sigma as a fraction of ``signal_scale``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    gamma: float = Field(default=1.0, gt=0)
    sigmoid_weight: float = Field(default=0.0, ge=0, le=1)
    sigmoid_center: float = 0.5
    sigmoid_width: float = Field(default=0.1, gt=0)
    blur_fwhm_mm: float = Field(default=0.0, ge=0)
    slice_thickness_mm: float = Field(default=0.0, ge=0)
    slice_axis: Literal[0, 1, 2] = 2
    bias_strength: float = Field(default=0.1, ge=0)
    bias_seed: int = 0
    signal_scale: float = Field(default=1000.0, gt=0)
    noise_fraction: float = Field(default=0.01, ge=0)

    def curve(self, normalised: npt.ArrayLike) -> FloatArray:
        """The monotone contrast curve on normalised intensities (0 stays 0).

        Both parts increase with intensity, so their blend does too: tissue order is
        never inverted. The sigmoid part is shifted so that it starts at 0.
        """
        u = np.clip(np.asarray(normalised, np.float64), 0.0, None)
        power = u**self.gamma
        sigmoid = _logistic((u - self.sigmoid_center) / self.sigmoid_width)
        sigmoid_at_zero = _logistic(-self.sigmoid_center / self.sigmoid_width)
        sigmoid_at_one = _logistic((1.0 - self.sigmoid_center) / self.sigmoid_width)
        sigmoid = (sigmoid - sigmoid_at_zero) / (sigmoid_at_one - sigmoid_at_zero)
        blended = (1.0 - self.sigmoid_weight) * power + self.sigmoid_weight * sigmoid
        return blended.astype(np.float32)


NAMED_STYLES: dict[str, ScannerStyle] = {
    "A": ScannerStyle(name="A", bias_strength=0.10, bias_seed=101, noise_fraction=0.010),
    "B": ScannerStyle(
        name="B",
        gamma=0.7,
        sigmoid_weight=0.3,
        sigmoid_center=0.55,
        sigmoid_width=0.12,
        blur_fwhm_mm=1.0,
        slice_thickness_mm=3.0,
        slice_axis=2,
        bias_strength=0.25,
        bias_seed=202,
        signal_scale=350.0,
        noise_fraction=0.025,
    ),
    "C": ScannerStyle(
        name="C",
        gamma=1.5,
        sigmoid_weight=0.5,
        sigmoid_center=0.75,
        sigmoid_width=0.08,
        blur_fwhm_mm=0.6,
        slice_thickness_mm=2.0,
        slice_axis=0,
        bias_strength=0.15,
        bias_seed=303,
        signal_scale=2400.0,
        noise_fraction=0.015,
    ),
}
"""The benchmark's scanners. A: near-linear contrast, 1 mm 3D, mild bias, low noise.
B: flattened contrast (power 0.7 + a sigmoid below grey matter), 3 mm axial slice profile,
strong bias, noisier, other units. C: steeper contrast (power 1.5 + a sigmoid between grey
and white matter), 2 mm sagittal slice profile."""


def named_style(name: str) -> ScannerStyle:
    """One of the benchmark's scanners ``"A"``, ``"B"`` or ``"C"``."""
    try:
        return NAMED_STYLES[name]
    except KeyError:
        known = ", ".join(sorted(NAMED_STYLES))
        raise OptionsError(f"unknown scanner style {name!r}; the named ones are {known}") from None


def random_style(*, seed: int, name: str | None = None) -> ScannerStyle:
    """A random scanner with parameters drawn uniformly from documented ranges.

    Ranges: gamma 0.6-1.6, sigmoid weight 0-0.5 (centre 0.4-0.9, width 0.06-0.15),
    blur 0-1.2 mm, slice thickness 0-3 mm along a random axis, bias strength 0.05-0.3,
    signal scale 200-3000 (log-uniform), noise 0.5-3 % of the scale.

    Args:
        seed: Seed of every parameter, the bias-field shape included.
        name: Label; ``"random-<seed>"`` when ``None``.
    """
    rng = np.random.default_rng(seed)
    return ScannerStyle(
        name=name or f"random-{seed}",
        gamma=float(rng.uniform(0.6, 1.6)),
        sigmoid_weight=float(rng.uniform(0.0, 0.5)),
        sigmoid_center=float(rng.uniform(0.4, 0.9)),
        sigmoid_width=float(rng.uniform(0.06, 0.15)),
        blur_fwhm_mm=float(rng.uniform(0.0, 1.2)),
        slice_thickness_mm=float(rng.uniform(0.0, 3.0)),
        slice_axis=int(rng.integers(0, 3)),  # type: ignore[arg-type]
        bias_strength=float(rng.uniform(0.05, 0.3)),
        bias_seed=int(rng.integers(0, 2**31)),
        signal_scale=float(np.exp(rng.uniform(np.log(200.0), np.log(3000.0)))),
        noise_fraction=float(rng.uniform(0.005, 0.03)),
    )


def white_matter_peak(volume: npt.ArrayLike) -> float:
    """The white-matter intensity of a T1w head or brain volume.

    The mode of the (lightly smoothed) histogram of the voxels above the Otsu threshold
    in the central third of the array along every axis. There white matter is the
    largest bright tissue both in a whole head (scalp fat and muscle lie outside the
    central box) and in a skull-stripped brain, so the same tissue sets the scale of
    both. Assumes the head is roughly centred in the field of view.
    """
    from scipy import ndimage

    data = np.asarray(volume, np.float32)
    if not (data > 0).any():
        raise OptionsError("the volume has no positive voxel; a scanner style needs an image")
    centre = data[tuple(slice(n // 3, n - n // 3) for n in data.shape)]
    threshold = otsu_threshold(data)
    tissue = centre[centre > threshold]
    if tissue.size == 0:
        tissue = data[data > threshold]
    counts, edges = np.histogram(
        tissue, bins=HISTOGRAM_BINS, range=(threshold, float(tissue.max()))
    )
    peak = int(ndimage.gaussian_filter1d(counts.astype(np.float64), 2.0).argmax())
    return float(0.5 * (edges[peak] + edges[peak + 1]))


def otsu_threshold(image: npt.ArrayLike) -> float:
    """Otsu's threshold of an image's intensities (separates background from tissue)."""
    from skimage.filters import threshold_otsu

    values = np.asarray(image).ravel()  # a last axis of 3 or 4 is not RGB here
    return float(threshold_otsu(values))  # type: ignore[no-untyped-call]


def normalise_intensity(volume: npt.ArrayLike) -> FloatArray:
    """Divide by :func:`white_matter_peak`, so that white matter is about 1."""
    data = np.asarray(volume, np.float32)
    return np.clip(data, 0.0, None) / np.float32(white_matter_peak(data))


def apply_style(
    volume: npt.ArrayLike,
    *,
    spacing_mm: Sequence[float],
    style: ScannerStyle,
    seed: int | np.random.Generator,
) -> FloatArray:
    """Show a T1w volume as ``style``'s scanner would (steps in the module docstring).

    Args:
        volume: Real or phantom T1w volume ``(X, Y, Z)``, any non-negative units.
        spacing_mm: Voxel size per axis, in mm.
        style: The scanner.
        seed: Seed of this acquisition's noise (the bias shape comes from the style).

    Returns:
        float32 volume on the same grid, in the scanner's units, non-negative.
    """
    spacing = tuple(float(s) for s in spacing_mm)
    contrast = style.curve(normalise_intensity(volume))
    blurred = gaussian_blur_mm(contrast, spacing_mm=spacing, fwhm_mm=(style.blur_fwhm_mm,) * 3)
    axis = style.slice_axis
    blurred = slice_profile_blur(
        blurred, axis=axis, voxel_mm=spacing[axis], fwhm_mm=style.slice_thickness_mm
    )
    field = bias_field(
        blurred.shape, spacing_mm=spacing, strength=style.bias_strength, seed=style.bias_seed
    )
    clean = blurred * field * np.float32(style.signal_scale)
    sigma = style.noise_fraction * style.signal_scale
    return rician_noise(clean, sigma=sigma, seed=generator(seed))


def _logistic(x: npt.NDArray[np.float64] | float) -> npt.NDArray[np.float64]:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64))))
