"""The built-in subcommands: ``plugins``, ``methods``, ``predict`` and ``demo``.

Heavy modules (torch, MONAI) are imported inside the commands that need them, so
``medi2i --help`` and ``medi2i plugins`` start fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click
import yaml

from medi2i.bounded_yaml import load_yaml
from medi2i.cli.selection import selection_options, slice_tolerance
from medi2i.errors import OptionsError
from medi2i.plugins import PluginSet

if TYPE_CHECKING:
    from medi2i.dicom.reading.series_records import ScanResult
    from medi2i.dicom.reading.series_selection import SeriesSelector
    from medi2i.registry import Registry
    from medi2i.settings import InferenceSettings


def add_to(group: click.Group) -> None:
    """Add ``plugins``, ``methods``, ``predict`` and ``demo`` to ``group``."""
    for command in (plugins_command, methods_command, predict_command, demo_command):
        group.add_command(command)


def _registry(ctx: click.Context) -> Registry:
    from medi2i.registry import Registry

    plugins: PluginSet = ctx.find_root().obj
    return Registry(plugins)


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool) -> None:
    """List the loaded plugins (name, version, hooks) and those that failed."""
    plugins: PluginSet = ctx.find_root().obj
    if as_json:
        click.echo(
            json.dumps(
                {
                    "plugins": [info.__dict__ for info in plugins.infos],
                    "failures": [failure.__dict__ for failure in plugins.failures],
                },
                indent=2,
                default=list,
            )
        )
        return
    rows = [
        (info.name, info.version or ("built-in" if info.builtin else "?"), ", ".join(info.hooks))
        for info in plugins.infos
    ]
    _print_table(("plugin", "version", "hooks"), rows)
    for failure in plugins.failures:
        click.secho(f"failed: {failure.name} ({failure.stage}): {failure.error}", fg="yellow")


@click.command("methods")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with option schemas).")
@click.pass_context
def methods_command(ctx: click.Context, as_json: bool) -> None:
    """List the registered methods: id, tasks, training data, plugin."""
    registry = _registry(ctx)
    methods = registry.methods
    if as_json:
        described = [
            {**cls.describe().model_dump(mode="json"), "plugin": registry.method_owner(mid)}
            for mid, cls in sorted(methods.items())
        ]
        click.echo(json.dumps(described, indent=2))
        return
    rows = [
        (
            mid,
            ", ".join(t.value for t in cls.tasks),
            cls.data.value,
            registry.method_owner(mid),
            cls.summary(),
        )
        for mid, cls in sorted(methods.items())
    ]
    _print_table(("method", "tasks", "training data", "plugin", "summary"), rows)


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


def _key_values(pairs: tuple[str, ...], what: str) -> dict[str, object]:
    """``("a=1", "b=[1,2]")`` → ``{"a": 1, "b": [1, 2]}`` (values parsed as YAML)."""
    parsed: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise OptionsError(f"{what} {pair!r} must look like key=value")
        try:
            parsed[key.strip()] = load_yaml(value)[0]
        except yaml.YAMLError as exc:
            shown = pair if len(pair) <= 60 else pair[:57] + "..."
            raise OptionsError(f"{what} {shown!r}: the value is not valid YAML: {exc}") from None
    return parsed


def _roi(value: str | None) -> tuple[int, int, int] | None:
    if value is None:
        return None
    parts = value.replace("x", ",").split(",")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise OptionsError(f"--roi-size {value!r} must be one or three integers") from None
    if len(sizes) == 1:
        sizes *= 3
    if len(sizes) != 3 or min(sizes) < 1:
        raise OptionsError(f"--roi-size {value!r} must be one or three positive integers")
    return (sizes[0], sizes[1], sizes[2])


def _settings(
    roi_size: str | None,
    sw_batch_size: int,
    overlap: float,
    blend: str,
    device: str,
    amp: bool,
    progress: bool,
    nonfinite: str = "error",
    force_modality: bool = False,
) -> InferenceSettings:
    from pydantic import ValidationError

    from medi2i.settings import InferenceSettings

    try:
        return InferenceSettings(
            roi_size=_roi(roi_size),
            sw_batch_size=sw_batch_size,
            overlap=overlap,
            blend=blend,  # type: ignore[arg-type]
            device=device,
            amp=amp,
            progress=progress,
            nonfinite=nonfinite,  # type: ignore[arg-type]
            force_modality=force_modality,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise OptionsError(f"invalid inference settings: {problems}") from None


F = TypeVar("F", bound=Callable[..., object])


def inference_options(command: F) -> F:
    """Add the sliding-window and device options to a command."""
    options = [
        click.option(
            "--roi-size",
            help="Window size in voxels, e.g. 96 or 96,96,64 (default: the method's).",
        ),
        click.option("--sw-batch-size", default=4, show_default=True, help="Windows per batch."),
        click.option(
            "--overlap", default=0.25, show_default=True, help="Window overlap fraction [0, 1)."
        ),
        click.option(
            "--blend",
            type=click.Choice(["gaussian", "constant"]),
            default="gaussian",
            show_default=True,
            help="How overlapping windows are blended.",
        ),
        click.option(
            "--device",
            default="auto",
            show_default=True,
            help="auto (CUDA when present), cpu, cuda or cuda:N.",
        ),
        click.option(
            "--amp/--no-amp", default=True, show_default=True, help="Mixed precision on CUDA."
        ),
        click.option(
            "--progress/--no-progress", default=True, show_default=True, help="Progress bar."
        ),
        click.option(
            "--nonfinite",
            type=click.Choice(["error", "zero", "nearest"]),
            default="error",
            show_default=True,
            help="NaN or infinite input voxels: refuse the input, set them to 0, or use the "
            "nearest finite voxel's value.",
        ),
        click.option(
            "--force-modality",
            is_flag=True,
            help="Translate a DICOM series whose Modality is not the method's input modality.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def overwrite_option(command: F) -> F:
    """Add --overwrite: consent to replace an existing output."""
    return click.option(
        "--overwrite",
        is_flag=True,
        help="Replace existing outputs (atomically, only after the new output is complete). "
        "Without it an existing output is refused. An input is never replaced.",
    )(command)


def method_options(command: F) -> F:
    """Add --method, --model, --option and --condition to a command."""
    options = [
        click.option("--method", "method_id", help="Id of a method that needs no training."),
        click.option(
            "--model",
            type=click.Path(path_type=Path),
            help="Trained-model folder or zip (instead of --method).",
        ),
        click.option(
            "--option",
            "-o",
            "option_pairs",
            multiple=True,
            help="Method option key=value (repeat).",
        ),
        click.option(
            "--condition", "-c", "condition_pairs", multiple=True, help="Predict-time key=value."
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command("predict")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUTPUT", type=click.Path(path_type=Path))
@method_options
@click.option(
    "--format",
    "format_list",
    default="dicom",
    show_default=True,
    help="For a tree of DICOM studies: outputs per study, dicom, nifti or dicom,nifti.",
)
@selection_options
@overwrite_option
@inference_options
@click.pass_context
def predict_command(
    ctx: click.Context,
    /,
    input_path: Path,
    output_path: Path,
    method_id: str | None,
    model: Path | None,
    option_pairs: tuple[str, ...],
    condition_pairs: tuple[str, ...],
    format_list: str,
    selector: SeriesSelector | None,
    overwrite: bool,
    **inference: object,
) -> None:
    """Translate INPUT with a method or trained model into OUTPUT.

    INPUT is a volume file (NIfTI, NRRD, MHA), a DICOM series folder, or a tree of
    DICOM studies (then OUTPUT is a folder and every study is translated as by
    "medi2i batch"). In a folder of several series, the selection options pick one
    ("medi2i dicom ls" previews them). OUTPUT's suffix picks the format; no suffix
    writes a DICOM series (into a new or empty folder).
    The output keeps the input's grid (affine, spacing, orientation) unless the method
    changes resolution; a provenance sidecar is written next to it.

    Existing outputs: the same rule for every format. An existing output file, or a
    folder that is not empty, is refused unless --overwrite is given; then it is
    replaced atomically, only after the new output was written in full (a DICOM series
    replaces only a folder holding nothing but a .dcm series). An output that is the
    input, lies inside the input folder or holds the input is always refused.
    """
    from medi2i.prediction import predict

    scan = _dicom_scan(input_path, slice_tolerance(selector))
    if scan is not None and len(scan.studies) > 1:
        from medi2i.cli.batch_commands import translate_tree

        if output_path.suffix:
            raise OptionsError(
                f"{input_path} holds {len(scan.studies)} DICOM studies, which are written as "
                f"one output folder per study, but {output_path} names a file; give an "
                "output folder (no suffix), or the folder of one series as INPUT"
            )

        translate_tree(
            ctx,
            input_path,
            output_path,
            method_id=method_id,
            model=model,
            option_pairs=option_pairs,
            condition_pairs=condition_pairs,
            format_list=format_list,
            inference=inference,
            scan=scan,
            overwrite=overwrite,
            selector=selector,
        )
        return

    image = None
    if scan is not None and any(series.images for series in scan.series):
        from medi2i.dicom.reading.series_volume import read_scanned

        image = read_scanned(scan, selector)  # the scan above: headers are parsed once
    settings = _settings(**inference)  # type: ignore[arg-type]
    written = predict(
        input_path,
        output_path,
        method=method_id,
        model=model,
        options=_key_values(option_pairs, "--option") or None,
        settings=settings,
        condition=_key_values(condition_pairs, "--condition") or None,
        registry=_registry(ctx),
        image=image,
        overwrite=overwrite,
    )
    click.echo(f"wrote {written}")


def _dicom_scan(path: Path, tolerance_mm: float | None) -> ScanResult | None:
    """The header scan of a folder input (passed on, so a tree is scanned once)."""
    if not path.is_dir():
        return None
    from medi2i.dicom.reading.series_scan import scan_folder

    return scan_folder(path, slice_tolerance_mm=tolerance_mm)


@click.command("demo")
@click.option(
    "--output",
    "output_dir",
    type=click.Path(path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Folder for the demo's input, output and provenance.",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar.")
@click.pass_context
def demo_command(ctx: click.Context, output_dir: Path, progress: bool) -> None:
    """Run medi2i on its built-in demo volume (no data to bring)."""
    from medi2i.demo import run_demo

    for line in run_demo(output_dir, registry=_registry(ctx), progress=progress):
        click.echo(line)
