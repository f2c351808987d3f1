"""Which CT a synthetic CT gives each MR intensity, next to the true CT: a diagnosis.

The MR voxels inside the body mask are cut into ten bins of equal count (deciles of the
MR intensity); for each bin the table gives the true CT's mean and standard deviation,
the synthetic CT's, and their MAE. It then does the same per true-CT tissue range (lung,
air/fat partial volume, fat, soft tissue, dense tissue, bone). It shows *what* mapping a
method learned, which the MAE alone does not: e.g. a translation that keeps bright MR
bright sends fat (the brightest T1w tissue) to bone-like HU.

Usage, from the repository root (the case folder holds ``mr``, ``ct`` and ``mask``)::

    medi2i predict bench-work/q1x/a/validation/a-lung1-val/mr.nii.gz sct.nii.gz \\
        --model benchmarks/quality/models/cyclegan-q1u-a-750-steps -c direction=a2b
    python benchmarks/quality/intensity_map.py bench-work/q1x/a/validation/a-lung1-val \\
        sct.nii.gz --output intensity_map.md
"""

from __future__ import annotations

import argparse
from itertools import pairwise
from pathlib import Path

import numpy as np
import numpy.typing as npt

from medi2i.io import read_volume

TISSUE_RANGES_HU: tuple[tuple[str, float, float], ...] = (
    ("lung and air", -1100.0, -500.0),
    ("air/fat partial volume", -500.0, -150.0),
    ("fat", -150.0, -20.0),
    ("soft tissue", -20.0, 100.0),
    ("dense tissue, cancellous bone", 100.0, 300.0),
    ("bone", 300.0, 3100.0),
)


def _voxels(path: Path) -> npt.NDArray[np.float64]:
    return np.asarray(read_volume(path).numpy(), np.float64).squeeze()


def _case_file(folder: Path, stem: str) -> Path:
    found = sorted(folder.glob(f"{stem}.*"))
    if not found:
        raise SystemExit(f"{folder}: no {stem}.* file; give a case folder with mr, ct and mask")
    return found[0]


def _row(label: str, truth: npt.NDArray[np.float64], synthetic: npt.NDArray[np.float64]) -> str:
    mae = float(np.abs(synthetic - truth).mean())
    return (
        f"| {label} | {truth.size} | {truth.mean():.1f} ± {truth.std():.1f} "
        f"| {synthetic.mean():.1f} ± {synthetic.std():.1f} | {mae:.1f} |"
    )


def intensity_map(case: Path, prediction: Path) -> str:
    """The two tables, as Markdown."""
    mr = _voxels(_case_file(case, "mr"))
    ct = _voxels(_case_file(case, "ct"))
    body = _voxels(_case_file(case, "mask")) > 0
    synthetic = _voxels(prediction)
    if not mr.shape == ct.shape == body.shape == synthetic.shape:
        raise SystemExit(f"{prediction}: its grid {synthetic.shape} is not the case's {ct.shape}")
    header = (
        "| {} | voxels | true CT (HU) | synthetic CT (HU) | MAE (HU) |\n"
        "| --- | --- | --- | --- | --- |"
    )
    lines = [f"Case `{case.name}`, prediction `{prediction.name}`, voxels in the body mask.", ""]
    lines += [header.format("MR intensity decile")]
    edges = np.quantile(mr[body], np.linspace(0.0, 1.0, 11))
    for index, (low, high) in enumerate(pairwise(edges)):
        upper = mr <= high if index == 9 else mr < high
        chosen = body & (mr >= low) & upper
        lines.append(_row(f"{low:.0f}-{high:.0f}", ct[chosen], synthetic[chosen]))
    lines += ["", header.format("true CT range")]
    for name, low, high in TISSUE_RANGES_HU:
        chosen = body & (ct >= low) & (ct < high)
        if chosen.any():
            lines.append(_row(f"{name} ({low:.0f} to {high:.0f})", ct[chosen], synthetic[chosen]))
    lines += ["", f"MAE in the body: {float(np.abs(synthetic[body] - ct[body]).mean()):.2f} HU"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", type=Path, help="case folder with mr, ct and mask volumes")
    parser.add_argument("prediction", type=Path, help="synthetic CT on the case's grid")
    parser.add_argument("--output", type=Path, help="write the Markdown here (else print it)")
    arguments = parser.parse_args()
    text = intensity_map(arguments.case, arguments.prediction)
    if arguments.output:
        arguments.output.write_text(text, encoding="utf-8")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
