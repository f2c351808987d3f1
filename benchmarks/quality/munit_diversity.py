"""MUNIT diversity: how far N style samples of one input spread, and whether each stays
in the target domain.

MUNIT (Huang et al. 2018) decodes one input's content with any style of the target
domain; drawn styles should change the output's look (its tissue intensities) while
every sample still looks like the target domain. For one input and a trained ``munit``
model this script:

1. predicts ``--samples`` outputs with styles drawn from ``--style-seed``
   (``-c styles=N``, as ``medi2i predict`` does), plus the unstyled input for reference;
2. reports each sample's intensity statistics inside the input's mask (mean, standard
   deviation, the 5th, 50th and 95th percentiles: the tissue intensity statistics) and
   their spread over the samples (standard deviation and range of each statistic);
3. compares each sample with a volume of the target domain inside its own mask: the
   histogram distance (Wasserstein-1 between the intensity distributions, as the
   quantile gap at 100 levels divided by the reference's 1st-99th percentile range, the
   definition of ``medi2i.evaluation``'s ``histogram_distance``) and the fraction of
   voxels inside the reference's 1st-99th percentile range. The input's own distance (the
   source domain, before translation) is the yardstick: a sample that stays in the
   target domain is much closer than that.

Samples and the reference are compared as the model delivers outputs: CT in HU, MR on
the target domain's training scale (the reference and the input go through the model's
preprocessing and postprocessing of their domains to get there).

On Q3 (bench-work/q3 after ``medi2i bench prepare --task q3 --work-dir bench-work``),
with a model from ``workflows/q3u_munit.yaml``::

    python benchmarks/quality/munit_diversity.py --model RUN/model --work-dir bench-work

translates Colin27 under scanner B to scanner A (``--direction b2a``, the default: the
workflow's domains are A, then B) and compares with MNI152 under A (the target domain's
training volume). ``--input``, ``--mask``, ``--reference`` and
``--reference-mask`` choose other volumes; ``--output`` writes the JSON there.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import medi2i
from medi2i import InferenceSettings

LEVELS = 100
"""Quantile levels of the histogram distance."""
PERCENTILES = (5.0, 50.0, 95.0)
"""Percentiles reported per sample, with the mean and the standard deviation."""
Q3_INPUT = ("q3", "test", "colin27-B-to-A", "source.nii.gz")
Q3_MASK = ("q3", "test", "colin27-B-to-A", "mask.nii.gz")
Q3_REFERENCE = ("q3", "train_domains", "mni152-A", "image.nii.gz")
Q3_REFERENCE_MASK = ("q3", "train_domains", "mni152-A", "mask.nii.gz")

Values = npt.NDArray[np.float64]


def statistics(values: Values) -> dict[str, float]:
    """Mean, standard deviation and :data:`PERCENTILES` of ``values``."""
    stats = {"mean": float(values.mean()), "std": float(values.std())}
    for level, value in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True):
        stats[f"p{level:g}"] = float(value)
    return stats


def histogram_distance(reference: Values, values: Values) -> float:
    """Wasserstein-1 distance of ``values`` from ``reference`` (any sizes): mean quantile
    gap at :data:`LEVELS` levels over the reference's 1st-99th percentile range."""
    levels = (np.arange(LEVELS) + 0.5) / LEVELS
    gap = np.abs(np.quantile(reference, levels) - np.quantile(values, levels)).mean()
    low, high = np.percentile(reference, (1.0, 99.0))
    return float(gap / (high - low if high > low else 1.0))


def within_range(reference: Values, values: Values) -> float:
    """Fraction of ``values`` inside the reference's 1st-99th percentile range."""
    low, high = np.percentile(reference, (1.0, 99.0))
    return float(np.mean((values >= low) & (values <= high)))


def spread(samples: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Standard deviation and range over the samples of each statistic."""
    return {
        key: {
            "std": float(np.std([s[key] for s in samples])),
            "range": float(np.ptp([s[key] for s in samples])),
        }
        for key in samples[0]
    }


def masked(volume: object, mask_path: Path) -> Values:
    """The values of ``volume`` where the mask at ``mask_path`` is above 0."""
    mask = medi2i.read_volume(mask_path).numpy() > 0
    values = np.asarray(volume, dtype=np.float64)
    return values[mask]


def delivered(model: Any, volume: Any, domain: str | None, condition: Any) -> Values:
    """``volume`` of ``domain`` on the scale the model delivers that domain's outputs
    (CT in HU, MR on the domain's training scale): preprocessed, then postprocessed."""
    network = model.preprocess(volume, domain=domain, condition=condition)
    return np.asarray(model.postprocess(network, network, domain=domain, condition=condition))


def measure(
    model_dir: Path,
    *,
    input_path: Path,
    mask_path: Path,
    reference_path: Path,
    reference_mask_path: Path,
    samples: int,
    style_seed: int,
    direction: str = "b2a",
    settings: InferenceSettings | None = None,
) -> dict[str, object]:
    """The diversity report of ``samples`` styles of one input (see the module)."""
    model = medi2i.load_model(model_dir)
    settings = settings or InferenceSettings(device="cpu", progress=False)
    condition = model.parse_condition({"direction": direction})
    source, target = model.input_domain(condition), model.outputs(condition)[0].domain
    image = medi2i.read_volume(input_path)
    outputs = medi2i.predict_outputs(
        model,
        image,
        settings=settings,
        condition={"direction": direction, "styles": samples, "style_seed": style_seed},
    )
    target_values = masked(
        delivered(model, medi2i.read_volume(reference_path), target, condition),
        reference_mask_path,
    )
    source_values = masked(delivered(model, image, source, condition), mask_path)
    measured: list[dict[str, float]] = []
    for name in sorted(outputs):
        values = masked(outputs[name].numpy(), mask_path)
        measured.append(
            {
                **statistics(values),
                "histogram_distance": histogram_distance(target_values, values),
                "within_range": within_range(target_values, values),
            }
        )
    per_sample = [
        {"output": name, **row} for name, row in zip(sorted(outputs), measured, strict=True)
    ]
    return {
        "model": str(model_dir),
        "input": str(input_path),
        "reference": str(reference_path),
        "direction": direction,
        "source_domain": source,
        "target_domain": target,
        "samples": per_sample,
        "spread": spread(measured),
        "input_histogram_distance": histogram_distance(target_values, source_values),
        "reference_statistics": statistics(target_values),
    }


def table(report: Mapping[str, object]) -> str:
    """The per-sample rows as a Markdown table."""
    rows = report["samples"]
    assert isinstance(rows, list)
    keys = ["output", "mean", "std", "p5", "p50", "p95", "histogram_distance", "within_range"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [row[k] if k == "output" else f"{row[k]:.4g}" for k in keys]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="trained munit model folder")
    parser.add_argument("--work-dir", type=Path, default=Path("bench-work"))
    parser.add_argument("--input", type=Path, help="default: Q3's Colin27 under scanner B")
    parser.add_argument("--mask", type=Path, help="mask of --input (default: Q3's)")
    parser.add_argument("--reference", type=Path, help="target-domain volume (MNI152 under A)")
    parser.add_argument("--reference-mask", type=Path, help="mask of --reference")
    parser.add_argument("--samples", type=int, default=8, help="styles drawn (default 8)")
    parser.add_argument("--style-seed", type=int, default=0)
    parser.add_argument(
        "--direction", choices=("a2b", "b2a"), default="b2a", help="default b2a: Q3u's B → A"
    )
    parser.add_argument("--output", type=Path, help="write the JSON report here")
    args = parser.parse_args(argv)
    work = args.work_dir
    report = measure(
        args.model,
        input_path=args.input or work.joinpath(*Q3_INPUT),
        mask_path=args.mask or work.joinpath(*Q3_MASK),
        reference_path=args.reference or work.joinpath(*Q3_REFERENCE),
        reference_mask_path=args.reference_mask or work.joinpath(*Q3_REFERENCE_MASK),
        samples=args.samples,
        style_seed=args.style_seed,
        direction=args.direction,
    )
    text = json.dumps(report, indent=2)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    print(table(report))
    print(f"\ninput's own histogram distance: {report['input_histogram_distance']:.4g}")
    print("spread over samples:", json.dumps(report["spread"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
