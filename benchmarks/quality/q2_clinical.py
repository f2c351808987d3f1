"""Super-resolution of a real thick-slice clinical scan, which has no ground truth.

Q2 scores methods on thick slices simulated from 1 mm volumes. A clinical thick-slice
scan has no finer truth to score against, so this script checks what can be checked:

- **Re-degradation consistency.** The super-resolved volume, degraded again with the
  acquisition's slice profile (a Gaussian of FWHM = the slice spacing, as
  :func:`medi2i.synth.thick_slices` simulates and ``smore`` assumes) and sampled at the
  input's slice positions, should give back the input. Reported as MAE and PSNR inside
  the body mask of the input (:func:`medi2i.body_mask`), the PSNR's peak being the
  input's 99.9th minus 0.1st percentile in the mask. Interpolation passes through the
  input samples, so its re-degradation error is what the profile's blur alone does to a
  smooth through-plane signal; a method that invents structure the acquisition could not
  have produced scores worse than it.
- **Through-plane sharpness.** The mean absolute difference between neighbouring
  output slices along the slice axis, inside the body, relative to cubic B-spline
  interpolation's (1.0 = as smooth as cubic). Sharper is not better by itself; read it
  with the consistency column.
- **Montages** in all three planes: cubic B-spline, each method, each method minus cubic.

Each method runs with ``align=centres`` so that every input slice centre lands on an
output slice and the re-degraded output can be compared voxel for voxel. The default
input is the shared data's chest CT of lung1 (0.57 × 0.57 × 5 mm, a clinical scan) and
the output grid has 1 mm slices (``slice_factor=5``).

Run (from the repository root)::

    MEDI2I_DATA_DIR=<shared data folder> python benchmarks/quality/q2_clinical.py \\
        --method smore --option steps=300 --output benchmarks/quality/results/q2_clinical

It writes ``q2_clinical-LABEL.{json,md,png}`` (LABEL from ``--label``, default the input's
stem) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_INPUT = "ct_chest_pyradiomics_lung1.nii.gz"
"""The clinical thick-slice scan used when ``--input`` is not given (in MEDI2I_DATA_DIR)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=None, help="a thick-slice volume file")
    parser.add_argument("--method", action="append", default=[], help="method id (repeatable)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--slice-factor", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default=None)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)

    from medi2i import InferenceSettings, Registry, body_mask, predict_tensor, read_volume
    from medi2i.cli.options import key_values
    from medi2i.errors import InputError

    path = args.input
    if path is None:
        folder = os.environ.get("MEDI2I_DATA_DIR")
        if not folder:
            raise InputError("give --input, or set MEDI2I_DATA_DIR to the shared data folder")
        path = Path(folder) / DEFAULT_INPUT
    image = read_volume(path)
    registry = Registry()
    settings = InferenceSettings(progress=True, seed=args.seed)
    grid = {"slice_factor": args.slice_factor, "align": "centres"}
    cubic = {"order": "bspline", "target_spacing": None, **grid}
    contenders: list[tuple[str, str, dict[str, Any]]] = [("cubic-bspline", "interpolation", cubic)]
    extra = key_values(tuple(args.option), "--option")
    contenders += [(m, m, {**grid, **extra}) for m in args.method]

    source = image[0].numpy().astype(np.float32)
    affine = np.asarray(image.affine, np.float64)
    mask = body_mask(source)
    low, high = np.percentile(source[mask], [0.1, 99.9])
    peak = float(high - low)
    outputs: dict[str, np.ndarray] = {}
    rows: list[dict[str, Any]] = []
    output_affine = affine
    for name, method_id, options in contenders:
        method = registry.method(method_id)(options)
        started = time.perf_counter()
        result = predict_tensor(method, image, settings=settings)
        seconds = time.perf_counter() - started
        values = result[0].numpy().astype(np.float32)
        output_affine = np.asarray(result.affine, np.float64)
        outputs[name] = values
        again, axis = redegraded(values, output_affine, affine, source.shape)
        error = again[mask] - source[mask]
        mse = float(np.mean(error**2))
        rows.append(
            {
                "contender": name,
                "method": method_id,
                "options": {k: v for k, v in options.items() if v is not None},
                "output_shape": list(values.shape),
                "redegraded_mae": float(np.mean(np.abs(error))),
                "redegraded_psnr": float(10 * np.log10(peak**2 / mse)) if mse > 0 else None,
                "slice_gradient": slice_gradient(values, output_affine, affine, mask, axis),
                "seconds": round(seconds, 1),
            }
        )
        print(f"{name}: {rows[-1]}", flush=True)
    reference = rows[0]["slice_gradient"]
    for row in rows:
        row["sharpness_vs_cubic"] = row["slice_gradient"] / reference if reference else None

    label = args.label or path.name.split(".")[0]
    args.output.mkdir(parents=True, exist_ok=True)
    record = {
        "input": path.name,
        "input_shape": list(source.shape),
        "input_spacing_mm": [float(s) for s in np.linalg.norm(affine[:3, :3], axis=0)],
        "slice_factor": args.slice_factor,
        "seed": args.seed,
        "peak": peak,
        "rows": rows,
        "run": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        },
    }
    stem = args.output / f"q2_clinical-{label}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    table = markdown(record)
    stem.with_suffix(".md").write_text(table, encoding="utf-8")
    montage(outputs, output_affine, stem.with_suffix(".png"), title=f"{path.name}: {label}")
    print(table)


def redegraded(
    values: np.ndarray,
    output_affine: np.ndarray,
    input_affine: np.ndarray,
    input_shape: tuple[int, ...],
) -> tuple[np.ndarray, int]:
    """The output degraded with the input's slice profile at the input's slice positions,
    and the slice axis (the axis along which input and output spacings differ)."""
    from medi2i.synth import thick_slices

    spacing_in = np.linalg.norm(input_affine[:3, :3], axis=0)
    spacing_out = np.linalg.norm(output_affine[:3, :3], axis=0)
    axis = int(np.argmax(spacing_in / spacing_out))
    thick = thick_slices(
        values, affine=output_affine, axis=axis, slice_spacing_mm=float(spacing_in[axis])
    )
    count = input_shape[axis]
    data = np.take(thick.data, range(count), axis=axis)
    if data.shape != tuple(input_shape) or not np.allclose(thick.affine, input_affine, atol=1e-3):
        raise ValueError("the re-degraded output does not fall on the input's grid")
    return data, axis


def slice_gradient(
    values: np.ndarray,
    output_affine: np.ndarray,
    input_affine: np.ndarray,
    mask: np.ndarray,
    axis: int,
) -> float:
    """Mean absolute difference of neighbouring output slices along ``axis``, inside the
    input's body mask carried to the output grid by nearest slice."""
    spacing_in = np.linalg.norm(input_affine[:3, :3], axis=0)
    spacing_out = np.linalg.norm(output_affine[:3, :3], axis=0)
    step = spacing_in[axis] / spacing_out[axis]
    nearest = np.clip(np.round(np.arange(values.shape[axis]) / step).astype(int), 0, None)
    nearest = np.minimum(nearest, mask.shape[axis] - 1)
    inside = np.take(mask, nearest, axis=axis)
    difference = np.abs(np.diff(values, axis=axis))
    both = np.take(inside, range(values.shape[axis] - 1), axis=axis) & np.take(
        inside, range(1, values.shape[axis]), axis=axis
    )
    return float(difference[both].mean())


def markdown(record: dict[str, Any]) -> str:
    spacing = " × ".join(f"{s:.3g}" for s in record["input_spacing_mm"])
    lines = [
        f"# Q2 clinical: {record['input']} ({spacing} mm), slices refined ×"
        f"{record['slice_factor']:g}, no ground truth",
        "",
        "| contender | re-degraded MAE ↓ | re-degraded PSNR (dB) ↑ | through-plane "
        "sharpness (cubic = 1) | seconds |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in record["rows"]:
        psnr = "∞" if row["redegraded_psnr"] is None else f"{row['redegraded_psnr']:.2f}"
        lines.append(
            f"| {row['contender']} | {row['redegraded_mae']:.2f} | {psnr} | "
            f"{row['sharpness_vs_cubic']:.3f} | {row['seconds']:.0f} |"
        )
    lines += [""]
    for row in record["rows"]:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(row["options"].items()))
        lines.append(f"- `{row['contender']}`: method {row['method']} ({shown})")
    lines += [
        "",
        "Re-degraded: the output blurred with a Gaussian slice profile of FWHM = the input's "
        "slice spacing and sampled at the input's slices, against the input, inside its "
        f"body mask (PSNR peak {record['peak']:.1f}, the input's 0.1-99.9th percentile "
        f"range there). Seed {record['seed']}. Run {record['run']['date']} on "
        f"{record['run']['machine']}.",
        "",
    ]
    return "\n".join(lines)


def montage(outputs: dict[str, np.ndarray], affine: np.ndarray, path: Path, title: str) -> None:
    from medi2i.report.figures import MontageRow, slice_montage

    names = list(outputs)
    cubic = outputs[names[0]]
    window = (float(np.percentile(cubic, 1)), float(np.percentile(cubic, 99)))
    rows = [MontageRow(name, outputs[name], window) for name in names]
    for name in names[1:]:
        difference = outputs[name] - cubic
        bound = float(np.percentile(np.abs(difference), 99.5)) or 1.0
        rows.append(MontageRow(f"{name} - {names[0]}", difference, (-bound, bound), True))
    slice_montage(rows, affine=affine, path=path, title=title, palette=True)


if __name__ == "__main__":
    main()
