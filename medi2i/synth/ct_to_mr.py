"""CT → pseudo-T1-weighted MR: the simulator behind benchmark Q1.

No paired MR and CT of one subject are available here, so benchmark Q1 builds the MR
from the real CT with a documented, seeded forward model:

1. smooth the HU slightly (``ct_smoothing_fwhm_mm``): CT noise of ~7 HU would otherwise
   be amplified by the steep soft-tissue part of the curve;
2. map HU to a T1-weighted signal with the smooth, shape-preserving (PCHIP) curve
   :data:`HU_TO_T1_KNOTS`. Cortical bone and air are both dark, which is the real
   ambiguity of MR→CT; fat is the brightest tissue; CSF is darker than brain; white
   matter (≈16-20 HU here) is slightly brighter than grey matter (≈30 HU), as on T1w MR;
3. blur with a Gaussian point-spread function (``blur_fwhm_mm``);
4. multiply by a smooth bias field (``bias_strength``, see :func:`~medi2i.synth.fields.bias_field`);
5. scale to ``signal_scale`` and add Rician noise with ``sigma = noise_fraction * signal_scale``.

Example:
    >>> import numpy as np
    >>> ct = np.full((8, 8, 8), 30.0, np.float32)  # brain
    >>> mr = ct_to_pseudo_t1(ct, spacing_mm=(1.0, 1.0, 1.0), seed=0)
    >>> bool(500 < float(mr.mean()) < 900)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from scipy.interpolate import PchipInterpolator

from medi2i.synth.fields import bias_field, gaussian_blur_mm, generator, rician_noise

FloatArray = npt.NDArray[np.float32]

HU_TO_T1_KNOTS: tuple[tuple[float, float], ...] = (
    (-1024.0, 0.0),  # air outside the head and in the sinuses: no signal
    (-600.0, 0.0),
    (-250.0, 0.35),  # partial volume of air and fat
    (-100.0, 1.0),  # fat: the brightest tissue on T1w
    (-40.0, 0.75),
    (0.0, 0.20),  # CSF: dark
    (6.0, 0.24),
    (16.0, 0.70),  # white matter
    (30.0, 0.60),  # grey matter, a little darker than white matter
    (60.0, 0.45),  # muscle, blood, dense soft tissue
    (150.0, 0.40),
    (400.0, 0.25),  # cancellous bone
    (1000.0, 0.06),  # cortical bone: nearly as dark as air
    (3071.0, 0.03),
)
"""``(HU, relative T1w signal)`` knots of the tissue curve; signal 1 is fat."""


class PseudoT1Parameters(BaseModel):
    """Parameters of the CT → pseudo-T1w simulation (defaults are benchmark Q1's).

    Attributes:
        signal_scale: Signal of fat, in arbitrary MR units.
        noise_fraction: Rician noise sigma as a fraction of ``signal_scale``.
        bias_strength: Largest log-amplitude of the bias field (0.2 ≈ ±20 %).
        blur_fwhm_mm: FWHM of the isotropic point-spread function, in mm.
        ct_smoothing_fwhm_mm: FWHM of the smoothing applied to the HU before the tissue
            curve, in mm.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    signal_scale: float = Field(default=1000.0, gt=0)
    noise_fraction: float = Field(default=0.015, ge=0)
    bias_strength: float = Field(default=0.2, ge=0)
    blur_fwhm_mm: float = Field(default=1.2, ge=0)
    ct_smoothing_fwhm_mm: float = Field(default=1.5, ge=0)


@lru_cache(maxsize=1)
def _tissue_curve() -> PchipInterpolator:
    hu, signal = zip(*HU_TO_T1_KNOTS, strict=True)
    return PchipInterpolator(np.asarray(hu), np.asarray(signal), extrapolate=False)


def hu_to_t1_signal(hu: npt.ArrayLike) -> FloatArray:
    """The noise-free relative T1w signal (fat = 1) of tissue with the given HU.

    HU outside [-1024, 3071] are clipped first. Example: ``hu_to_t1_signal([-1000, 25])``
    is about ``[0.0, 0.64]``.
    """
    lowest, highest = HU_TO_T1_KNOTS[0][0], HU_TO_T1_KNOTS[-1][0]
    clipped = np.clip(np.asarray(hu, np.float64), lowest, highest)
    return np.asarray(_tissue_curve()(clipped), np.float32)


def ct_to_pseudo_t1(
    ct_hu: npt.ArrayLike,
    *,
    spacing_mm: Sequence[float],
    seed: int | np.random.Generator,
    parameters: PseudoT1Parameters | None = None,
) -> FloatArray:
    """Simulate a T1-weighted MR of the anatomy in a CT (steps in the module docstring).

    Args:
        ct_hu: CT volume in HU, ``(X, Y, Z)``.
        spacing_mm: Its voxel size per axis, in mm.
        seed: Seed (or generator) of the bias field and the noise; the same seed gives
            the same image.
        parameters: Simulation parameters; benchmark Q1's defaults when ``None``.

    Returns:
        float32 MR image on the CT's grid, non-negative, arbitrary units (fat ≈
        ``signal_scale``).
    """
    params = parameters or PseudoT1Parameters()
    rng = generator(seed)
    spacing = tuple(float(s) for s in spacing_mm)
    smooth = (params.ct_smoothing_fwhm_mm,) * 3
    tissue_hu = gaussian_blur_mm(ct_hu, spacing_mm=spacing, fwhm_mm=smooth)
    signal = hu_to_t1_signal(tissue_hu)
    signal = gaussian_blur_mm(signal, spacing_mm=spacing, fwhm_mm=(params.blur_fwhm_mm,) * 3)
    field = bias_field(signal.shape, spacing_mm=spacing, strength=params.bias_strength, seed=rng)
    clean = signal * field * np.float32(params.signal_scale)
    sigma = params.noise_fraction * params.signal_scale
    return rician_noise(clean, sigma=sigma, seed=rng)
