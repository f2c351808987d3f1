"""The ``evaluate`` command: metrics of a prediction file against its reference file.

The command evaluates either files given as options, or, with a positional WORKFLOW,
the test cases of that workflow's trained model (:func:`evaluate_workflow`).
:func:`evaluate_files` holds the file logic for reuse.

NumPy, SciPy and MONAI are imported inside the functions, so ``medi2i --help`` stays fast.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from medi2i.cli.options import json_option, loaded_plugins, overrides_option, run_dir_option
from medi2i.errors import GeometryError, InputError, OptionsError

if TYPE_CHECKING:
    import numpy as np

    from medi2i.grid import Grid
    from medi2i.io.base import VolumeReader
    from medi2i.metrics import Metric


def add_to(group: click.Group) -> None:
    """Add the ``evaluate`` command to ``group``."""
    group.add_command(evaluate_command)


class _PresetHelpOption(click.Option):
    """An option whose help lists each preset's metrics from
    :data:`~medi2i.evaluation.metric_objects.METRIC_PRESETS` when the help is shown
    (imported then, so ``medi2i --help`` stays fast and the list cannot drift)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from medi2i.evaluation.metric_objects import describe_presets

        self.help = (
            f"Presets ({describe_presets()}) and/or registered metric names, comma-separated."
        )
        return super().get_help_record(ctx)


@click.command("evaluate")
@click.argument(
    "workflow_path", metavar="[WORKFLOW]", required=False, type=click.Path(path_type=Path)
)
@overrides_option("With WORKFLOW: override a workflow value (repeat).")
@run_dir_option("With WORKFLOW: the run folder to evaluate (default: the workflow's newest run).")
@click.option(
    "--prediction",
    "-p",
    "prediction_path",
    type=click.Path(path_type=Path),
    help="The image to evaluate (e.g. a synthetic CT).",
)
@click.option(
    "--reference",
    "-r",
    "reference_path",
    type=click.Path(path_type=Path),
    help="The ground truth on the same grid (e.g. the real CT).",
)
@click.option(
    "--mask",
    "-m",
    "mask_path",
    type=click.Path(path_type=Path),
    help="Evaluate the voxels where the mask is > 0 (default: all voxels).",
)
@click.option(
    "--metrics",
    "metrics_spec",
    cls=_PresetHelpOption,
    default="synthrad",
    show_default=True,
    help="Presets and/or registered metric names, comma-separated.",
)
@click.option(
    "--force-modality",
    is_flag=True,
    help="Compute metrics in HU (the synthrad preset, air_mae) even on a file with no "
    "voxel at or below -500, which is refused as not a CT in HU (an MR, a CT in [0, 1]).",
)
@json_option()
@click.pass_context
def evaluate_command(
    ctx: click.Context,
    workflow_path: Path | None,
    overrides: tuple[str, ...],
    run_dir: Path | None,
    prediction_path: Path | None,
    reference_path: Path | None,
    mask_path: Path | None,
    metrics_spec: str,
    force_modality: bool,
    as_json: bool,
) -> None:
    """Evaluate a workflow's test cases, or a prediction file against its reference.

    With WORKFLOW, the workflow's trained model predicts its evaluation cases and the
    run's metrics and report are rewritten. Otherwise --prediction and --reference are
    compared inside --mask: the files must share one grid (shape, and affine within
    1e-3 mm). The synthrad preset computes MAE, PSNR and MS-SSIM as the SynthRAD2025
    challenge does, and the MAE in the air outside the mask (reference below -900 HU,
    10 voxels or more from the mask; n/a without a mask, and the output says why). Its
    values are read in HU: a reference or prediction with no voxel at or below -500 (an
    MR, a CT in [0, 1]) is refused; score MR with --metrics mr, or pass
    --force-modality.
    """
    from medi2i.evaluation.metric_objects import select_metrics
    from medi2i.registry import Registry

    plugins = loaded_plugins(ctx)
    if workflow_path is not None:
        if prediction_path or reference_path or mask_path:
            raise OptionsError("give either a WORKFLOW or --prediction/--reference, not both")
        from medi2i.cli.workflow_commands import evaluate_workflow

        evaluate_workflow(workflow_path, plugins=plugins, overrides=overrides, run_dir=run_dir)
        return
    if prediction_path is None or reference_path is None:
        raise OptionsError("give a WORKFLOW, or both --prediction and --reference files")
    if run_dir is not None or overrides:
        given = "--run-dir" if run_dir is not None else "--set"
        raise OptionsError(
            f"{given} belongs to a WORKFLOW's evaluation; --prediction and --reference are "
            f"compared as they are, and nothing is written: leave {given} out"
        )
    registry = Registry(plugins)
    metrics = select_metrics(metrics_spec, registry.metrics)
    readers = list(registry.readers.values())
    values = evaluate_files(
        reference_path,
        prediction_path,
        mask_path,
        metrics,
        readers=readers,
        force_modality=force_modality,
    )
    notes = _missing_notes(values, mask_path)
    if as_json:
        _echo_json(prediction_path, reference_path, mask_path, metrics, values, notes)
    else:
        _echo_table(metrics, values, notes)


@dataclass(frozen=True)
class LoadedVolume:
    """A volume read for evaluation: its file, ``(X, Y, Z)`` float64 values and RAS affine."""

    path: Path
    values: np.ndarray
    affine: np.ndarray

    @property
    def grid(self) -> Grid:
        """The voxel grid of ``values`` and ``affine``."""
        from medi2i.grid import Grid

        x, y, z = (int(n) for n in self.values.shape[-3:])
        return Grid((x, y, z), self.affine)


def evaluate_files(
    reference_path: Path,
    prediction_path: Path,
    mask_path: Path | None,
    metrics: Sequence[Metric],
    *,
    readers: Sequence[VolumeReader] | None = None,
    force_modality: bool = False,
) -> dict[str, float]:
    """Read a reference, a prediction and an optional mask, and compute ``metrics``
    (reference first, as every metric in medi2i).

    Args:
        reference_path: The ground truth.
        prediction_path: The image to evaluate.
        mask_path: Voxels where it is > 0 are evaluated; all voxels when ``None``.
        metrics: The metrics to compute.
        readers: Volume readers to use; the built-in ones when ``None``.
        force_modality: Compute metrics in HU on files that cannot be a CT in HU
            (:func:`medi2i.evaluation.hounsfield_checks.require_hounsfield`).

    Returns:
        Metric values by metric name.

    Raises:
        InputError: A file is missing or unreadable, or holds a NaN or infinite voxel,
            or metrics in HU are asked of a reference or prediction with no voxel at or
            below -500, unless ``force_modality``.
        GeometryError: The prediction or the mask is not on the reference's grid.
    """
    from medi2i.evaluation.metric_objects import evaluate_case

    reference = read_for_evaluation(reference_path, readers)
    prediction = read_for_evaluation(prediction_path, readers)
    require_same_grid(prediction, reference)
    mask = None if mask_path is None else read_for_evaluation(mask_path, readers)
    if mask is not None:
        require_same_grid(mask, reference)
        if not (mask.values > 0).any():
            raise GeometryError(
                f"{mask_path}: the mask selects no voxel (mask > 0 nowhere); check that it "
                "is the mask of this case, or leave --mask out to evaluate every voxel"
            )
    _require_ssim_fits(reference, metrics)
    if not force_modality:
        from medi2i.evaluation.hounsfield_checks import hounsfield_metric_names, require_hounsfield

        names = hounsfield_metric_names(metrics)
        for volume in (reference, prediction):
            require_hounsfield(volume.values, volume.path, names)
    try:
        return evaluate_case(
            reference.values, prediction.values, None if mask is None else mask.values, metrics
        )
    except InputError as exc:  # about the reference's values (e.g. constant in the mask)
        raise InputError(f"{reference_path}: {exc}") from exc


def _require_ssim_fits(reference: LoadedVolume, metrics: Sequence[Metric]) -> None:
    """Refuse SSIM on a volume thinner than its window, naming the file and the way out."""
    from medi2i.evaluation.image_metrics import SSIM_WINDOW

    shape = tuple(int(n) for n in reference.values.shape)
    names = [metric.name for metric in metrics]
    if "ssim" not in names or min(shape) >= SSIM_WINDOW:
        return
    others = ",".join(name for name in names if name != "ssim") or "psnr"
    raise GeometryError(
        f"{reference.path}: SSIM needs at least {SSIM_WINDOW} voxels along each axis (its "
        f"{SSIM_WINDOW}×{SSIM_WINDOW}×{SSIM_WINDOW} window), and this volume has "
        f"{' × '.join(map(str, shape))}; leave ssim out with --metrics {others}"
    )


def read_for_evaluation(path: Path, readers: Sequence[VolumeReader] | None = None) -> LoadedVolume:
    """Read a volume with :func:`medi2i.io.read_volume` as float64 values and its affine.

    Raises:
        InputError: The file is missing or unreadable, or holds a NaN or infinite voxel
            (every metric over it would be NaN, printed as if it were a score).
    """
    import numpy as np

    from medi2i.io import read_volume
    from medi2i.voxel_checks import require_finite_values

    volume = read_volume(path, readers=readers)
    values = np.asarray(volume.as_tensor().detach().cpu().numpy()[0], dtype=np.float64)
    require_finite_values(
        values, path, hint="metrics over it would be NaN; fix the file (or the prediction)"
    )
    affine = np.asarray(volume.affine.detach().cpu().numpy(), dtype=np.float64)
    return LoadedVolume(path, values, affine)


def require_same_grid(volume: LoadedVolume, reference: LoadedVolume) -> None:
    """Raise unless ``volume`` lies on the reference's grid (:func:`medi2i.grid.require_same_grid`).

    Raises:
        GeometryError: The shapes or the affines differ; the message names both files.
    """
    from medi2i.grid import require_same_grid as require_grid

    require_grid(
        volume.grid,
        reference.grid,
        what=str(volume.path),
        reference_name=str(reference.path),
        hint="resample it onto the reference grid first (metrics compare voxel by voxel)",
    )


def _missing_notes(values: dict[str, float], mask_path: Path | None) -> dict[str, str]:
    """Why a metric that could not be measured (NaN) has no value, where known."""
    from medi2i.evaluation.air import AIR_MAE_MISSING, AIR_MAE_NO_MASK

    # the Python API's reasons, word for word, so the CLI and medi2i.evaluation agree
    reasons = {"air_mae": AIR_MAE_MISSING if mask_path is not None else AIR_MAE_NO_MASK}
    return {
        name: reasons.get(name, "the metric is undefined here (e.g. an empty region)")
        for name, value in values.items()
        if math.isnan(value)
    }


def _echo_table(metrics: Sequence[Metric], values: dict[str, float], notes: dict[str, str]) -> None:
    # a metric that could not be measured (NaN, e.g. air_mae without air far enough
    # from the mask) reads n/a, as in the workflow's log and tables and the help, with
    # a note under the table saying why
    rows = [
        (m.name, "n/a" if math.isnan(values[m.name]) else f"{values[m.name]:.6g}", m.units)
        for m in metrics
    ]
    widths = [max(len(row[i]) for row in [("metric", "value", "units"), *rows]) for i in range(3)]
    for row in [("metric", "value", "units"), *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for name, reason in notes.items():
        click.echo(f"note: {name} is n/a: {reason}")


def _echo_json(
    prediction_path: Path,
    reference_path: Path,
    mask_path: Path | None,
    metrics: Sequence[Metric],
    values: dict[str, float],
    notes: dict[str, str],
) -> None:
    from medi2i.evaluation.tables import json_value

    document = {
        "prediction": str(prediction_path),
        "reference": str(reference_path),
        "mask": None if mask_path is None else str(mask_path),
        "metrics": {name: json_value(value) for name, value in values.items()},
        "units": {metric.name: metric.units for metric in metrics},
        "missing": notes,
    }
    click.echo(json.dumps(document, indent=2))
