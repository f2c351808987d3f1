"""One slice montage per benchmark test case, drawn by the run reports' figure code.

:func:`write_result_montages` draws, with :func:`medi2i.report.figures.slice_montage`
(the montage of ``medi2i run`` reports), the input, the reference, then each
contender's prediction followed by its error inside the metric mask (prediction minus
reference, on a diverging scale centred on zero). Each prediction row is labelled with
the benchmark's first metric. Thick-slice inputs (Q2) are shown on the reference grid by
nearest neighbour, so that they appear as the slabs they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from medi2i.report.figures import MontageRow
    from medi2i_bench.datasets import BenchCase, BenchDataset
    from medi2i_bench.harness import BenchResult

CT_WINDOW_HU = (-1000.0, 1500.0)
"""Display window of CT rows (HU): air to dense bone."""
CT_ERROR_BOUND_HU = 500.0
"""CT error rows run from -500 to +500 HU."""
MR_WINDOW_PERCENTILE = 99.5
"""MR rows are shown from 0 to this percentile of the reference inside the mask."""
MR_ERROR_FRACTION = 0.25
"""MR error rows saturate at this fraction of the reference's display window."""
MONTAGE_DPI = 72
"""Pixels per inch of the montages (a row 187 pixels high): slices stay legible and a
montage of several contenders stays a few hundred kilobytes."""


def write_result_montages(
    result: BenchResult, dataset: BenchDataset, folder: Path, *, label: str
) -> list[Path]:
    """One montage per test case of ``dataset``: ``<task>_<label>_<case>.png`` in ``folder``."""
    from medi2i.report.figures import slice_montage

    written = []
    name = result.task[:2].upper() + result.task[2:]
    for case in dataset.test:
        written.append(
            slice_montage(
                _case_rows(result, case),
                affine=case.target.affine,
                path=folder / f"{result.task}_{label}_{case.name}.png",
                title=f"{name} {case.name}: input, reference, each prediction and its error",
                centre_mask=case.mask.array,
                # committed to the repository: kept small
                palette=True,
                dpi=MONTAGE_DPI,
            )
        )
    return written


def _case_rows(result: BenchResult, case: BenchCase) -> list[MontageRow]:
    from medi2i.report.figures import MontageRow

    target, inside = np.asarray(case.target.array, np.float64), case.mask.array > 0
    window, bound = _windows(result.task, target, inside)
    rows = [
        MontageRow("input", _input_on_reference_grid(case)),
        MontageRow("reference", target, window),
    ]
    metric, units, _ = result.metrics[0]
    for contender in result.contenders:
        prediction = np.asarray(result.predictions[(contender.name, case.name)], np.float64)
        score = result.scores[contender.name][case.name][metric]
        text = f"{contender.name}\n{metric} {score:.2f} {units}".rstrip()
        # only the mask is scored, so only the mask's errors are drawn
        error = (prediction - target) * inside
        rows += [
            MontageRow(text, prediction, window),
            MontageRow("error", error, (-bound, bound), difference=True),
        ]
    return rows


def _input_on_reference_grid(case: BenchCase) -> npt.NDArray[np.float64]:
    from medi2i import Grid
    from medi2i.resample import resample_to_grid

    source, target = case.source, case.target
    if source.array.shape == target.array.shape:
        return np.asarray(source.array, np.float64)
    x, y, z = target.array.shape
    shown = resample_to_grid(source.metatensor(), Grid((x, y, z), target.affine), mode="nearest")
    return np.asarray(shown[0].detach().cpu().numpy(), np.float64)


def _windows(
    task: str, reference: npt.NDArray[np.floating], inside: npt.NDArray[np.bool_]
) -> tuple[tuple[float, float], float]:
    """Display window of images and bound of error rows."""
    if task in ("q1", "q1x"):
        return CT_WINDOW_HU, CT_ERROR_BOUND_HU
    values = reference[inside] if inside.any() else reference
    high = float(np.percentile(values, MR_WINDOW_PERCENTILE)) or 1.0
    return (0.0, high), MR_ERROR_FRACTION * high
