"""Seeded, documented simulators and phantoms for benchmarks, demos and tests.

- :mod:`medi2i.synth.ct_to_mr`: CT → pseudo-T1w MR (benchmark Q1);
- :mod:`medi2i.synth.slice_profile`: thick-slice degradation (benchmark Q2);
- :mod:`medi2i.synth.scanner_styles`: simulated scanners A, B, C (benchmark Q3);
- :mod:`medi2i.synth.phantom`: procedural heads with labels and paired MR and CT;
- :mod:`medi2i.synth.fields`: bias fields, Rician noise and blur they share.

Every simulator takes an explicit seed and works in mm, so a result is reproducible
and independent of the grid it is computed on.

Example:
    >>> from medi2i.synth import head_phantom, named_style
    >>> phantom = head_phantom(shape=(32, 32, 32), spacing_mm=(5.0, 5.0, 5.0))
    >>> under_b = phantom.under_scanner(named_style("B"), seed=0)
"""

from __future__ import annotations

from medi2i.synth.ct_to_mr import (
    HU_TO_T1_KNOTS,
    PseudoT1Parameters,
    ct_to_pseudo_t1,
    hu_to_t1_signal,
)
from medi2i.synth.fields import bias_field, fwhm_to_sigma, gaussian_blur_mm, rician_noise
from medi2i.synth.phantom import (
    HU_RANGE,
    TISSUE_PROPERTIES,
    Phantom,
    Tissue,
    TissueProperties,
    head_phantom,
)
from medi2i.synth.scanner_styles import (
    NAMED_STYLES,
    ScannerStyle,
    apply_style,
    named_style,
    normalise_intensity,
    otsu_threshold,
    random_style,
    white_matter_peak,
)
from medi2i.synth.slice_profile import (
    ThickSliceVolume,
    measured_fwhm,
    slice_profile_blur,
    thick_slices,
)

__all__ = [
    "HU_RANGE",
    "HU_TO_T1_KNOTS",
    "NAMED_STYLES",
    "TISSUE_PROPERTIES",
    "Phantom",
    "PseudoT1Parameters",
    "ScannerStyle",
    "ThickSliceVolume",
    "Tissue",
    "TissueProperties",
    "apply_style",
    "bias_field",
    "ct_to_pseudo_t1",
    "fwhm_to_sigma",
    "gaussian_blur_mm",
    "head_phantom",
    "hu_to_t1_signal",
    "measured_fwhm",
    "named_style",
    "normalise_intensity",
    "otsu_threshold",
    "random_style",
    "rician_noise",
    "slice_profile_blur",
    "thick_slices",
    "white_matter_peak",
]
