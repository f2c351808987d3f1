"""Q3m: how well the source voxel's value alone predicts the target scanner's image.

A diagnostic for the training images, not a method: MNI152 under scanners A, B and C
is one anatomy, so each scanner pair is aligned there (training never uses that). For
every ordered pair this script bins the source image's values inside the target's mask
into 256 quantile bins and predicts each voxel by the median of the target's values in
its bin: the best map from one voxel's value to the target's (for the MAE, within the
binning), fitted on the very voxels it is scored on. A harmonization that sees only a
voxel's value and its scanner could not beat it on these images; one that reads texture
or anatomy could, by undoing blur. Its MAE (in the target's units, as the benchmark's)
is the yardstick the learned rows on the same images are compared with in
``benchmarks/quality/README.md`` (Q3m).

From the repository root, after ``medi2i bench prepare --task q3 --work-dir bench-work``::

    python benchmarks/quality/q3m_voxelwise_floor.py --work-dir bench-work \\
        --output benchmarks/quality/results/q3m/voxelwise_floor.md
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import nibabel as nib
import numpy as np

SCANNERS = ("A", "B", "C")
BINS = 256


def conditional_median_mae(source: np.ndarray, target: np.ndarray, bins: int = BINS) -> float:
    """MAE of predicting ``target`` by its median within quantile bins of ``source``.

    Example:
        >>> x = np.arange(1000.0)
        >>> conditional_median_mae(x, 2 * x + 5, bins=1000)
        0.0
    """
    edges = np.quantile(source, np.linspace(0.0, 1.0, bins + 1))
    index = np.clip(np.searchsorted(edges, source, side="right") - 1, 0, bins - 1)
    medians = np.zeros(bins)
    for k in np.unique(index):
        medians[k] = np.median(target[index == k])
    return float(np.abs(medians[index] - target).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path("bench-work"))
    parser.add_argument("--output", type=Path, help="Markdown file to write (default: print)")
    args = parser.parse_args()
    root = args.work_dir / "q3" / "train_domains"
    images, masks = {}, {}
    for name in SCANNERS:
        folder = root / f"mni152-{name}"
        images[name] = np.asarray(nib.load(folder / "image.nii.gz").dataobj, np.float64)
        masks[name] = np.asarray(nib.load(folder / "mask.nii.gz").dataobj) > 0
    rows = ["| pair (MNI152) | voxel-wise floor MAE |", "| --- | --- |"]
    values = []
    for source, target in itertools.permutations(SCANNERS, 2):
        mask = masks[target]
        value = conditional_median_mae(images[source][mask], images[target][mask])
        values.append(value)
        rows.append(f"| {source} → {target} | {value:.1f} |")
    rows.append(f"| mean | {np.mean(values):.1f} |")
    text = "\n".join(rows) + "\n"
    if args.output is None:
        print(text, end="")
    else:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
