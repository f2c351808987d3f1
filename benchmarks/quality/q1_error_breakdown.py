"""Q1: where a synthetic CT's error lies, next to the resolution yardstick.

A diagnostic for explaining a score that was already taken, not for choosing anything:
it reads the scored CT. The MAE of a prediction in the body mask (HU clipped to
[-1024, 3000] as the SynthRAD MAE does) is split by

- the true CT's tissue class (HU ranges), and
- how flat the true CT is around the voxel (gradient magnitude of the CT smoothed by a
  Gaussian of sigma 1 voxel, in HU per voxel),

and each class's share of the total MAE is given. The same split of the resolution
yardstick of ``q1_resolution_floor.py`` (the true CT blurred as the simulator blurs it,
which a perfect translation that does not sharpen would score) says which part of the
error the MR's resolution explains and which part it does not. The largest connected
regions of error above 150 HU are listed with their share of the total.

From the repository root, after ``medi2i bench prepare --task q1 --work-dir bench-work``
and a prediction of the test half, e.g.::

    medi2i predict bench-work/q1/test/invesalius0051-test/mr.nii.gz pred.nii.gz \\
        --model benchmarks/quality/models/regression-unet-q1-body-250-steps \\
        --roi-size 512,512,512 --mirror-axes 1,2
    python benchmarks/quality/q1_error_breakdown.py pred.nii.gz --work-dir bench-work \\
        --output benchmarks/quality/results/q1_error_breakdown.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
from q1_resolution_floor import _read  # this script's folder
from scipy import ndimage

from medi2i.synth import PseudoT1Parameters
from medi2i.synth.fields import gaussian_blur_mm

TISSUES = (
    ("air and lung (< -500)", -np.inf, -500.0),
    ("fat (-500 to -50)", -500.0, -50.0),
    ("CSF and fluid (-50 to 20)", -50.0, 20.0),
    ("brain and muscle (20 to 100)", 20.0, 100.0),
    ("dense tissue (100 to 300)", 100.0, 300.0),
    ("cancellous bone (300 to 1000)", 300.0, 1000.0),
    ("cortical bone (>= 1000)", 1000.0, np.inf),
)
EDGES = (
    ("flat (< 50 HU/voxel)", 0.0, 50.0),
    ("soft edges (50 to 200)", 50.0, 200.0),
    ("sharp edges (>= 200)", 200.0, np.inf),
)
LARGE_ERROR_HU = 150.0

Array = npt.NDArray[np.float64]


def _split(error: Array, key: Array, bins: tuple[tuple[str, float, float], ...]) -> list[dict]:
    total = float(error.sum())
    rows = []
    for name, low, high in bins:
        inside = (key >= low) & (key < high)
        count = int(inside.sum())
        rows.append(
            {
                "class": name,
                "fraction": count / error.size,
                "mae": float(error[inside].mean()) if count else float("nan"),
                "share_hu": float(error[inside].sum()) / error.size,
                "share": float(error[inside].sum()) / total if total else 0.0,
            }
        )
    return rows


def _largest_regions(
    error: Array, ct: Array, prediction: Array, body: npt.NDArray[np.bool_]
) -> list[dict]:
    """The five connected regions of error above LARGE_ERROR_HU (opened by one voxel)
    holding the most error."""
    large = ndimage.binary_opening((error > LARGE_ERROR_HU) & body)
    labels, count = ndimage.label(large)
    if not count:
        return []
    sums = ndimage.sum(error, labels, range(1, count + 1))
    total = float(error[body].sum())
    regions = []
    for index in np.argsort(sums)[::-1][:5]:
        region = labels == index + 1
        box = ndimage.find_objects(region.astype(np.int32))[0]
        regions.append(
            {
                "voxels": int(region.sum()),
                "share": float(sums[index]) / total,
                "box": [[int(s.start), int(s.stop)] for s in box],
                "ct_mean": float(ct[region].mean()),
                "prediction_mean": float(prediction[region].mean()),
            }
        )
    return regions


def breakdown(case: Path, prediction_file: Path) -> dict:
    ct, spacing = _read(case, "ct")
    body = _read(case, "mask")[0] > 0
    from medi2i.io import read_volume

    prediction = np.asarray(read_volume(prediction_file).numpy(), np.float64).squeeze()
    if prediction.shape != ct.shape:
        raise SystemExit(f"{prediction_file}: shape {prediction.shape}, the CT's is {ct.shape}")
    params = PseudoT1Parameters()
    smoothed = gaussian_blur_mm(ct, spacing_mm=spacing, fwhm_mm=(params.ct_smoothing_fwhm_mm,) * 3)
    floor = np.asarray(
        gaussian_blur_mm(smoothed, spacing_mm=spacing, fwhm_mm=(params.blur_fwhm_mm,) * 3),
        np.float64,
    )
    truth = np.clip(ct, -1024, 3000)
    gradient = ndimage.gaussian_gradient_magnitude(ct, 1.0)
    result: dict = {"voxels": int(body.sum())}
    for name, volume in (("prediction", prediction), ("resolution_floor", floor)):
        error = np.abs(np.clip(volume, -1024, 3000) - truth)
        result[name] = {
            "mae": float(error[body].mean()),
            "tissues": _split(error[body], ct[body], TISSUES),
            "edges": _split(error[body], gradient[body], EDGES),
        }
    error = np.abs(np.clip(prediction, -1024, 3000) - truth)
    result["prediction"]["largest_regions"] = _largest_regions(error, ct, prediction, body)
    return result


def _table(result: dict, key: str, title: str) -> list[str]:
    lines = [
        f"| {title} | fraction of the mask | MAE (HU) | share of the MAE (HU) "
        "| resolution yardstick MAE (HU) | its share (HU) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for mine, floor in zip(result["prediction"][key], result["resolution_floor"][key], strict=True):
        lines.append(
            f"| {mine['class']} | {mine['fraction']:.3f} | {mine['mae']:.1f} "
            f"| {mine['share_hu']:.1f} | {floor['mae']:.1f} | {floor['share_hu']:.1f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prediction", type=Path, help="the synthetic CT of the test half")
    parser.add_argument("--work-dir", type=Path, default=Path("bench-work"))
    parser.add_argument("--case", default="test/invesalius0051-test")
    parser.add_argument("--label", default=None, help="what the prediction is (for the table)")
    parser.add_argument("--output", type=Path, help="write the Markdown here (and .json)")
    arguments = parser.parse_args()
    result = breakdown(arguments.work_dir / "q1" / arguments.case, arguments.prediction)
    result["case"] = arguments.case
    result["label"] = arguments.label or arguments.prediction.name
    lines = [
        f"# Q1: where the error lies ({result['label']}, {arguments.case})",
        "",
        f"MAE in the body mask {result['prediction']['mae']:.2f} HU; the resolution "
        f"yardstick (the true CT at the MR's resolution) {result['resolution_floor']['mae']:.2f}"
        " HU. A class's share is its part of the MAE (the shares add up to it).",
        "",
        *_table(result, "tissues", "true CT"),
        "",
        *_table(result, "edges", "flatness of the true CT"),
        "",
        f"Largest connected regions of error above {LARGE_ERROR_HU:.0f} HU:",
        "",
        "| voxels | share of the MAE | array box (x, y, z) | true CT mean (HU) "
        "| prediction mean (HU) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for region in result["prediction"]["largest_regions"]:
        box = ", ".join(f"{low}-{high}" for low, high in region["box"])
        lines.append(
            f"| {region['voxels']} | {region['share']:.3f} | {box} "
            f"| {region['ct_mean']:.0f} | {region['prediction_mean']:.0f} |"
        )
    lines += [
        "",
        "Produced by `benchmarks/quality/q1_error_breakdown.py`, a diagnostic that reads the",
        "scored CT: it explains a score, nothing is chosen with it.",
    ]
    text = "\n".join(lines) + "\n"
    if arguments.output:
        arguments.output.write_text(text, encoding="utf-8")
        arguments.output.with_suffix(".json").write_text(
            json.dumps(result, indent=2) + "\n", encoding="utf-8"
        )
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
