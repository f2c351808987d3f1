"""Q1: how much of the CT the simulated MR can show at all, two yardsticks for the MAE.

A diagnostic of the benchmark's data, not a method. The pseudo-T1w MR of Q1 is made from
the CT (:func:`medi2i.synth.ct_to_pseudo_t1`): the HU are smoothed (FWHM 1.5 mm), mapped
through the tissue curve, blurred again (FWHM 1.2 mm), multiplied by a bias field and
given Rician noise. Two numbers bound what a synthetic CT can be expected to reach:

1. **The CT at the MR's resolution**: the true CT blurred by the two Gaussians of the
   simulator in turn, with the simulator's own sampled kernels (in the continuum one
   Gaussian of FWHM sqrt(1.5² + 1.2²) ≈ 1.92 mm), scored against the true CT in the
   body mask. A method that inverted the tissue curve
   perfectly, noise and bias included, but did not sharpen would score this; going below
   it takes deblurring (recovering the skull's edges from their blurred image) on top of
   the translation. The 1.5 mm smoothing alone, which happens before the tissue curve, is
   given too.
2. **The best voxelwise map, fitted on the scored voxels**: each voxel predicted by the
   median true HU of the MR voxels of the same intensity (256 quantile bins of the MR in
   the body mask, ``q3m_voxelwise_floor.conditional_median_mae``), fitted on the very
   case it is scored on. A method that sees only a voxel's MR value could not beat it
   on that case; context (where the voxel lies, what
   surrounds it) is what a network adds.

From the repository root, after ``medi2i bench prepare --task q1 --work-dir bench-work``::

    python benchmarks/quality/q1_resolution_floor.py --work-dir bench-work \\
        --output benchmarks/quality/results/q1_resolution_floor.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
from q3m_voxelwise_floor import conditional_median_mae  # this script's folder

from medi2i.io import read_volume
from medi2i.synth import PseudoT1Parameters
from medi2i.synth.fields import gaussian_blur_mm

CASES = (("validation", "invesalius0051-val"), ("test", "invesalius0051-test"))


def _read(folder: Path, stem: str) -> tuple[npt.NDArray[np.float64], tuple[float, ...]]:
    found = sorted(folder.glob(f"{stem}.*"))
    if not found:
        raise SystemExit(f"{folder}: no {stem}.* file; run `medi2i bench prepare --task q1` first")
    volume = read_volume(found[0])
    affine = np.asarray(volume.affine, np.float64)[:3, :3]
    spacing = tuple(float(s) for s in np.linalg.norm(affine, axis=0))
    return np.asarray(volume.numpy(), np.float64).squeeze(), spacing


def yardsticks(case: Path) -> dict[str, float]:
    """The case's yardsticks, in HU (keys as in the table)."""
    ct, spacing = _read(case, "ct")
    mr, _ = _read(case, "mr")
    body = _read(case, "mask")[0] > 0
    params = PseudoT1Parameters()
    smoothed = gaussian_blur_mm(ct, spacing_mm=spacing, fwhm_mm=(params.ct_smoothing_fwhm_mm,) * 3)
    at_mr_resolution = gaussian_blur_mm(
        smoothed, spacing_mm=spacing, fwhm_mm=(params.blur_fwhm_mm,) * 3
    )
    truth = ct[body]
    return {
        "voxels": float(body.sum()),
        "smoothing_only": float(np.abs(np.asarray(smoothed)[body] - truth).mean()),
        "mr_resolution": float(np.abs(np.asarray(at_mr_resolution)[body] - truth).mean()),
        "voxelwise_oracle": conditional_median_mae(mr[body], truth),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path("bench-work"))
    parser.add_argument("--output", type=Path, help="write the Markdown here (and .json)")
    arguments = parser.parse_args()
    q1 = arguments.work_dir / "q1"
    params = PseudoT1Parameters()
    results = {name: yardsticks(q1 / name / case) for name, case in CASES}
    lines = [
        "# Q1: what the simulated MR can show, in HU (MAE in the body mask)",
        "",
        "| case | voxels | true CT smoothed as before the tissue curve "
        f"(FWHM {params.ct_smoothing_fwhm_mm} mm) | true CT at the MR's resolution "
        f"(FWHM {params.ct_smoothing_fwhm_mm}, then {params.blur_fwhm_mm} mm) "
        "| best voxelwise map, fitted on the case |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, values in results.items():
        lines.append(
            f"| {name} | {values['voxels']:.0f} | {values['smoothing_only']:.2f} "
            f"| {values['mr_resolution']:.2f} | {values['voxelwise_oracle']:.2f} |"
        )
    lines += [
        "",
        "Produced by `benchmarks/quality/q1_resolution_floor.py`; neither yardstick is a",
        "method (both look at the scored CT).",
    ]
    text = "\n".join(lines) + "\n"
    if arguments.output:
        arguments.output.write_text(text, encoding="utf-8")
        arguments.output.with_suffix(".json").write_text(
            json.dumps(results, indent=2) + "\n", encoding="utf-8"
        )
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
