"""Image-formation effects shared by the simulators: bias field, Rician noise, blur.

Every function works on plain ``numpy`` arrays indexed ``(x, y, z)`` and takes the
voxel spacing in mm, so an effect looks the same on any grid: a bias field is defined
over the physical extent of the volume and a blur is given in mm, not voxels. All
randomness comes from an explicit seed or ``numpy.random.Generator``.

Example:
    >>> import numpy as np
    >>> field = bias_field((16, 16, 16), spacing_mm=(1.0, 1.0, 1.0), strength=0.2, seed=3)
    >>> bool(0.8 < field.min() and field.max() < 1.25)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from medi2i.errors import OptionsError

FloatArray = npt.NDArray[np.float32]
Spacing = tuple[float, float, float]

FWHM_PER_SIGMA = float(2.0 * np.sqrt(2.0 * np.log(2.0)))
"""Full width at half maximum of a Gaussian, in units of its standard deviation (2.3548)."""

BIAS_ORDER = 2
"""Highest degree of the Legendre polynomials a bias field is made of: a quadratic
field varies over the whole head and not within a structure, as a receive-coil
sensitivity does at 1.5-3 T."""


def bias_field(
    shape: Sequence[int],
    *,
    spacing_mm: Sequence[float],
    strength: float,
    seed: int | np.random.Generator,
) -> FloatArray:
    """A smooth multiplicative bias field (receive-coil sensitivity).

    The field is ``exp(strength * p)`` where ``p`` is a random combination of Legendre
    polynomials up to degree :data:`BIAS_ORDER` over the physical extent of the volume
    (each axis mapped to [-1, 1]), scaled so that ``max |p| = 1``. So the field lies in
    ``[exp(-strength), exp(strength)]`` and has no feature smaller than the volume.

    Args:
        shape: Array shape ``(X, Y, Z)`` in voxels.
        spacing_mm: Voxel size along each axis, in mm (sets the aspect of the field).
        strength: Largest log-amplitude; 0.2 gives about ±20 %. 0 gives a field of ones.
        seed: Seed or generator of the coefficients; one seed gives one field shape on
            every grid.

    Returns:
        float32 array of ``shape``, positive.

    Example:
        >>> bias_field((8, 8, 8), spacing_mm=(1, 1, 1), strength=0.0, seed=0).max()
        np.float32(1.0)
    """
    if strength < 0:
        raise OptionsError(f"bias field strength must be >= 0, got {strength}")
    rng = np.random.default_rng(seed)
    extent = np.asarray(shape, np.float64) * np.asarray(spacing_mm, np.float64)
    # the longest axis spans [-1, 1]; shorter ones a proportional part of it, so the field
    # is not stretched along a short axis
    half = extent / extent.max()
    axes = [np.linspace(-h, h, n) for h, n in zip(half, shape, strict=True)]
    bases = [np.polynomial.legendre.legvander(a, BIAS_ORDER) for a in axes]
    degree = np.add.outer(
        np.add.outer(*(np.arange(BIAS_ORDER + 1),) * 2), np.arange(BIAS_ORDER + 1)
    )
    coefficients = rng.normal(size=degree.shape) * (degree <= BIAS_ORDER)
    coefficients[0, 0, 0] = 0.0  # the mean level belongs to the image, not the field
    log_field = np.einsum("ia,jb,kc,abc->ijk", *bases, coefficients, optimize=True)
    peak = float(np.abs(log_field).max())
    if peak > 0:
        log_field *= strength / peak
    return np.asarray(np.exp(log_field), np.float32)


def rician_noise(
    signal: npt.ArrayLike, *, sigma: float, seed: int | np.random.Generator
) -> FloatArray:
    """The magnitude of ``signal`` plus complex Gaussian noise: Rician noise, as in MR.

    Each voxel becomes ``sqrt((s + n1)**2 + n2**2)`` with ``n1, n2 ~ N(0, sigma**2)``.
    Where there is no signal the result follows a Rayleigh law (mean
    ``sigma * sqrt(pi / 2)``), so the background of an MR image is never zero.

    Args:
        signal: Noise-free magnitude image (non-negative), any shape.
        sigma: Standard deviation of each of the real and imaginary noise parts, in the
            units of ``signal``. 0 returns ``signal`` unchanged (as float32).
        seed: Seed or generator of the noise.

    Returns:
        float32 array of ``signal``'s shape, non-negative.
    """
    clean = np.asarray(signal, np.float32)
    if sigma < 0:
        raise OptionsError(f"noise sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return clean.copy()
    rng = np.random.default_rng(seed)
    real = clean + rng.normal(0.0, sigma, clean.shape).astype(np.float32)
    imaginary = rng.normal(0.0, sigma, clean.shape).astype(np.float32)
    return np.hypot(real, imaginary).astype(np.float32)


def gaussian_blur_mm(
    volume: npt.ArrayLike, *, spacing_mm: Sequence[float], fwhm_mm: Sequence[float]
) -> FloatArray:
    """Blur with a Gaussian point-spread function given by its FWHM in mm per axis.

    Args:
        volume: 3D array ``(X, Y, Z)``.
        spacing_mm: Voxel size per axis, in mm.
        fwhm_mm: Full width at half maximum of the blur per axis, in mm; 0 leaves an
            axis unblurred.

    Returns:
        float32 array of the same shape (edges replicated, so no dark rim appears).
    """
    data = np.asarray(volume, np.float32)
    sigmas = [fwhm_to_sigma(f) / s for f, s in zip(fwhm_mm, spacing_mm, strict=True)]
    if min(sigmas) < 0:
        raise OptionsError(f"blur FWHM must be >= 0 mm on every axis, got {tuple(fwhm_mm)}")
    if max(sigmas) == 0:
        return data.copy()
    return np.asarray(ndimage.gaussian_filter(data, sigma=sigmas, mode="nearest"), np.float32)


def fwhm_to_sigma(fwhm: float) -> float:
    """Standard deviation of a Gaussian with full width at half maximum ``fwhm``."""
    return float(fwhm) / FWHM_PER_SIGMA


def generator(seed: int | np.random.Generator) -> np.random.Generator:
    """A ``numpy`` generator from a seed (or the generator itself)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
