"""How much a trained model's output depends on the air around the body.

The same MR volume is predicted twice: as it is, and cropped in-plane to its body's
bounding box (``medi2i.body_mask``) plus a margin, which removes only air. The two
outputs are compared where they overlap, inside the case's mask: a method whose
normalization ignores the air gives the same output; one whose statistics come from
voxels above the volume's mean (the rule of models saved before ``mr_foreground`` /
``foreground`` existed) does not, since the mean rises as air is cropped away.

Run from the repository root, on a validation case (never the test case):

    python benchmarks/quality/crop_invariance.py bench-work/q1x/a/validation/a-lung1-val \\
        --model benchmarks/quality/models/<model> [-c direction=a2b] --output result.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from medi2i import body_mask


def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)


def _predict(source: Path, output: Path, model: str, conditions: list[str]) -> np.ndarray:
    command = [sys.executable, "-m", "medi2i.cli.main", "predict", str(source), str(output)]
    command += ["--model", model, "--no-progress"]
    for condition in conditions:
        command += ["-c", condition]
    subprocess.run(command, check=True, capture_output=True)
    return _load(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", type=Path, help="a case folder with mr, ct and mask")
    parser.add_argument("--model", required=True)
    parser.add_argument("-c", "--condition", action="append", default=[])
    parser.add_argument("--margin", type=int, default=3, help="voxels kept around the body")
    parser.add_argument("--output", type=Path, help="append the result row to this file")
    args = parser.parse_args()

    source = args.case / "mr.nii.gz"
    image = nib.load(str(source))
    reference = _load(args.case / "ct.nii.gz")
    mask = _load(args.case / "mask.nii.gz") > 0
    inside = np.argwhere(body_mask(_load(source)).any(axis=2))
    low = np.maximum(inside.min(axis=0) - args.margin, 0)
    high = np.minimum(inside.max(axis=0) + 1 + args.margin, image.shape[:2])
    box = (slice(low[0], high[0]), slice(low[1], high[1]))
    with tempfile.TemporaryDirectory() as folder:
        cropped_source = Path(folder) / "cropped_mr.nii.gz"
        nib.save(image.slicer[box[0], box[1], :], str(cropped_source))
        whole = _predict(source, Path(folder) / "whole.nii.gz", args.model, args.condition)
        cropped = _predict(
            cropped_source, Path(folder) / "cropped.nii.gz", args.model, args.condition
        )
    whole, kept, truth = whole[box], mask[box], reference[box]
    removed = 1.0 - kept.size / mask.size
    row = (
        f"| {Path(args.model).name} | {args.case.name} | {100 * removed:.0f} % | "
        f"{np.abs(whole - cropped)[kept].mean():.2f} | {np.abs(whole - truth)[kept].mean():.2f} | "
        f"{np.abs(cropped - truth)[kept].mean():.2f} |"
    )
    print(row)
    if args.output is not None:
        if not args.output.exists():
            args.output.write_text(
                "| model | case | voxels cropped (air) | mean abs. difference (HU) | MAE whole "
                "(HU) | MAE cropped (HU) |\n| --- | --- | --- | --- | --- | --- |\n"
            )
        with args.output.open("a") as handle:
            handle.write(row + "\n")


if __name__ == "__main__":
    main()
