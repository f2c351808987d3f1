"""Q2 under other slice profiles: the committed super-resolution models against
interpolation when the thick slices were not made the way their training inputs were.

Q2 degrades Colin27 with a Gaussian slice profile (FWHM = slice spacing) and keeps every
4th (or 2nd) axial slice; the supervised models were trained on MNI152 degraded exactly
so. Real scanners have other profiles. This script keeps Q2's test volume, reference,
head mask, metrics and harness, and only changes how the thick slices are made:

- ``slab``: each thick slice is the mean over its whole slab (``step`` mm thick, centred
  on the kept slice; weights 1/2, 1, ..., 1, 1/2 over ``step + 1`` thin slices for an even
  step), a box profile as from averaging contiguous thin slices;
- ``point``: each thick slice is the thin slice at its position, unblurred
  (:func:`medi2i.synth.thick_slices` with ``fwhm_mm=0``);
- ``gaussian``: Q2's own profile (to check that Q2's rows are reproduced).

The kept slices are those of Q2 (every ``step``-th from the first), so every contender
writes onto the reference grid as in Q2. Nothing is tuned: the committed models are
scored once under each profile (0 configurations tried).

Run (a Q2 data cache is built on first use; ``MEDI2I_DATA_DIR`` must be set)::

    python benchmarks/quality/q2_slice_profiles.py --output benchmarks/quality/results

It writes ``q2_slice_profiles.{json,md}`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from medi2i_bench.cases import BenchCase
    from medi2i_bench.harness import BenchResult

MODELS = {
    4: ("edsr-q2-x4-1500-steps", "srgan-q2-x4-1000-steps", "srcnn"),
    2: ("edsr-q2-x2-1500-steps", "srcnn", "srcnn-x2"),
}
"""The committed super-resolution models (folders of ``benchmarks/quality/models``) scored
on each factor's cases: those trained for it (``srcnn`` for both, as in Q2)."""
PROFILES = ("slab", "point", "gaussian")
AXIS = 2


def slab_weights(step: int) -> np.ndarray:
    """Weights of the mean over a ``step``-voxel slab centred on a voxel (linear between
    voxel centres, so an even step gives half weights at both ends).

    Example:
        >>> slab_weights(4).tolist()
        [0.125, 0.25, 0.25, 0.25, 0.125]
    """
    if step % 2:
        return np.full(step, 1.0 / step)
    weights = np.ones(step + 1)
    weights[[0, -1]] = 0.5
    return weights / step


def profiled_case(case: BenchCase, step: int, profile: str) -> BenchCase:
    """``case`` (a Q2 test case) with its thick slices made under ``profile``."""
    from medi2i_bench.cases import BenchCase, Volume

    from medi2i.synth import thick_slices

    high = case.target
    spacing = high.spacing_mm[AXIS] * step
    if profile == "gaussian":
        thick = thick_slices(high.array, affine=high.affine, axis=AXIS, slice_spacing_mm=spacing)
    else:
        array = high.array
        if profile == "slab":
            array = ndimage.convolve1d(array, slab_weights(step), axis=AXIS, mode="nearest")
        thick = thick_slices(
            array, affine=high.affine, axis=AXIS, slice_spacing_mm=spacing, fwhm_mm=0.0
        )
    return BenchCase(f"{case.name}-{profile}", Volume(thick.data, thick.affine), high, case.mask)


def main(argv: list[str] | None = None) -> None:
    from medi2i_bench.baselines import baselines_for
    from medi2i_bench.contenders import method_contender
    from medi2i_bench.datasets import build_dataset
    from medi2i_bench.harness import evaluate

    from medi2i import InferenceSettings, Registry, load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", nargs="+", choices=PROFILES, default=["slab", "point"])
    parser.add_argument("--models", type=Path, default=Path(__file__).parent / "models")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)

    registry = Registry()
    dataset = build_dataset("q2", work_dir=args.work_dir)
    settings = InferenceSettings(progress=False, seed=0)
    parts = {}
    for step, names in MODELS.items():
        cases = [
            profiled_case(case, step, profile)
            for profile in args.profiles
            for case in dataset.test
            if case.name.endswith(f"-x{step}")
        ]
        contenders = [
            *baselines_for(dataset, registry=registry, settings=settings),
            *(
                method_contender(name, "model", load_model(args.models / name), dataset, settings)
                for name in names
            ),
        ]
        parts[step] = evaluate(dataset, contenders, cases=cases, log=print, registry=registry)
    write_results(parts, args.output)


def write_results(parts: dict[int, BenchResult], folder: Path) -> None:
    """``q2_slice_profiles.json`` (one harness result per factor) and ``.md``."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {f"x{step}": json.loads(result.to_json()) for step, result in parts.items()}
    (folder / "q2_slice_profiles.json").write_text(json.dumps(record, indent=2) + "\n")
    text = "\n\n".join(result.to_markdown() for result in parts.values())
    note = (
        "Q2's Colin27 test volume, reference and head mask; only the slice profile of the "
        "thick slices differs (slab: mean over the slab; point: the thin slice, unblurred; "
        "see benchmarks/quality/q2_slice_profiles.py). 0 configurations tried: the "
        "committed models scored once under each profile.\n"
    )
    (folder / "q2_slice_profiles.md").write_text(note + "\n" + text)
    print(text)


if __name__ == "__main__":
    main()
