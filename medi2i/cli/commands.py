"""The built-in subcommands: ``plugins``, ``methods``, ``predict`` and ``demo``.

Heavy modules (torch, MONAI) are imported inside the commands that need them, so
``medi2i --help`` and ``medi2i plugins`` start fast.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from medi2i.cli.options import (
    OutputPath,
    command_registry,
    format_option,
    inference_options,
    inference_settings,
    json_option,
    key_values,
    method_options,
    overwrite_option,
    progress_option,
    selection_options,
    slice_tolerance,
)
from medi2i.errors import OptionsError

if TYPE_CHECKING:
    from medi2i.dicom.reading.series_records import ScanResult, StudyInfo
    from medi2i.dicom.reading.series_selection import SeriesSelector
    from medi2i.plugins import PluginFailure, PluginSet


def add_to(group: click.Group) -> None:
    """Add ``plugins``, ``methods``, ``predict`` and ``demo`` to ``group``."""
    for command in (plugins_command, methods_command, predict_command, demo_command):
        group.add_command(command)


@click.command("plugins")
@json_option()
@click.option(
    "--check",
    is_flag=True,
    help="Also run every plugin's register hooks (imports the method plugins, so slower) "
    "and list the failures they raise and the plugins that register nothing.",
)
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool, check: bool) -> None:
    """List the loaded plugins (name, version, plugin API, hooks) and those that failed.

    The first line gives the plugin API this medi2i supports; a plugin's "api" is the one
    it declares (MEDI2I_PLUGIN_API), "undeclared" when it declares none.

    The failures listed are those of importing and checking a plugin. A plugin's register
    hooks run when what they register is first needed; with --check this command runs
    them, so a register_methods that raises, or a method class that breaks the contract,
    is listed too and its plugin marked "failed" (a failed plugin contributes nothing),
    and so is a method id that two plugins register (neither is usable), and a plugin
    that contributes nothing it meant to: a hook function not marked @medi2i.hookimpl,
    no hook at all, or a register_methods hook that registers no method. With --check the
    exit status is 1 when anything failed, so it can gate a CI job. Without it such
    failures show in "medi2i methods" and the commands that use methods.
    """
    from medi2i.hookspecs import PLUGIN_API_VERSION
    from medi2i.plugins import contribution_problems

    registry = command_registry(ctx)
    clashes: dict[str, list[str]] = {}
    plugins = registry.plugins
    failures = list(plugins.failures)
    if check:
        methods = registry.methods  # runs the register hooks, which record their failures
        clashes = registry.method_clashes
        method_owners = {registry.method_owner(mid) for mid in methods}
        method_owners.update(owner for names in clashes.values() for owner in names)
        failures = [*plugins.failures, *contribution_problems(plugins, method_owners)]
    failed = {failure.name for failure in failures}
    clash_lines = [
        f"method {mid!r} is registered by {' and '.join(map(repr, owners))}; neither is "
        "usable: uninstall or disable one of them"
        for mid, owners in sorted(clashes.items())
    ]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "plugin_api": PLUGIN_API_VERSION,
                    "plugins": [
                        {
                            **info.__dict__,
                            "api": info.api_shown,
                            "failed": info.name in failed,
                        }
                        for info in plugins.infos
                    ],
                    "failures": [failure.__dict__ for failure in failures],
                    "method_clashes": clashes,
                },
                indent=2,
                default=list,
            )
        )
    else:
        _plugins_table(plugins, failures, PLUGIN_API_VERSION, clash_lines)
    if check and (failures or clashes):
        ctx.exit(1)


def _plugins_table(
    plugins: PluginSet, failures: list[PluginFailure], api: str, clash_lines: list[str]
) -> None:
    click.echo(f"plugin API: {api}")
    failed = {failure.name for failure in failures}
    rows = [
        (
            info.name + (" (failed)" if info.name in failed else ""),
            info.version or ("built-in" if info.builtin else "?"),
            info.api_shown,
            ", ".join(info.hooks),
        )
        for info in plugins.infos
    ]
    _print_table(("plugin", "version", "api", "hooks"), rows)
    for failure in failures:
        click.secho(f"failed: {failure.name} ({failure.stage}): {failure.error}", fg="yellow")
    for line in clash_lines:
        click.secho(f"clash: {line}", fg="yellow")


@click.command("methods")
@json_option("Print JSON (with option schemas).")
@click.pass_context
def methods_command(ctx: click.Context, as_json: bool) -> None:
    """List the registered methods: id, tasks, training data, plugin."""
    registry = command_registry(ctx)
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
    for mid, owners in sorted(registry.method_clashes.items()):
        click.secho(
            f"not usable: {mid!r} is registered by " + " and ".join(map(repr, owners)) + "; "
            "uninstall or disable one (MEDI2I_LOAD_PLUGINS selects which plugins load)",
            fg="yellow",
            err=True,
        )


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


@click.command("predict")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUTPUT", type=OutputPath())
@method_options
@format_option("For a tree of DICOM studies: outputs per study, dicom, nifti or dicom,nifti.")
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
    "medi2i batch", unless the selection options match series of one study only and
    --format is not given). In a folder of several series, the selection options pick
    one ("medi2i dicom ls" previews them). OUTPUT's suffix picks the format; no suffix
    writes a DICOM series (into a new or empty folder). --format is for a tree of
    studies: given for one, the tree is translated as by "medi2i batch" whatever number
    of studies the selection matches; given for one input (a file, or a folder of one
    study), it must agree with OUTPUT's name.
    The output keeps the input's grid (affine, spacing, orientation) unless the method
    changes resolution; a provenance sidecar is written next to it. A method with
    several named outputs (e.g. one per target domain or style) writes each as
    OUTPUT_<name> (before the suffix), each with its sidecar; the condition (-c) picks
    what it yields, e.g. -c direction=b2a for the other direction of a two-way model
    (cyclegan, unit) or -c target_domain=A for stargan.

    Existing outputs: the same rule for every format. An existing output file, or a
    folder that is not empty, is refused unless --overwrite is given; then it is
    replaced atomically, only after the new output was written in full (a DICOM series
    replaces only a folder holding nothing but a .dcm series). An output that is the
    input, lies inside the input folder or holds the input is always refused.
    """
    from medi2i.io.destinations import file_suffix
    from medi2i.prediction import predict_all

    scan = _dicom_scan(input_path, slice_tolerance(selector))
    # --format is for a tree: given for a tree of studies, the tree mode is used whatever
    # number of studies the selection matches, so the same call works on any such tree
    format_given = _given(ctx, "format_list")
    if scan is not None and (
        len(_studies_picked(scan, selector)) > 1 or (format_given and len(scan.studies) > 1)
    ):
        from medi2i.cli.batch_commands import translate_tree

        if file_suffix(output_path):
            one_study = (
                "leave --format out and give selection options (--modality, --description, "
                "--series-uid) that match series of one study"
                if format_given
                else "selection options (--modality, --description, --series-uid) that "
                "match series of one study"
            )
            raise OptionsError(
                f"{input_path} holds {len(scan.studies)} DICOM studies, which are written as "
                f"one output folder per study, but {output_path} names a file; give an "
                f"output folder (no suffix), the folder of one series as INPUT, or {one_study}"
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

    _require_format_of_output(ctx, format_list, input_path, output_path)
    image = None
    if scan is not None and any(series.images for series in scan.series):
        from medi2i.dicom.reading.series_volume import read_scanned

        image = read_scanned(scan, selector)  # the scan above: headers are parsed once
    settings = inference_settings(**inference)  # type: ignore[arg-type]
    written = predict_all(
        input_path,
        output_path,
        method=method_id,
        model=model,
        options=key_values(option_pairs, "--option") or None,
        settings=settings,
        condition=key_values(condition_pairs, "--condition") or None,
        registry=command_registry(ctx),
        image=image,
        overwrite=overwrite,
    )
    for name, path in written.items():
        click.echo(f"wrote {path}" + (f" (output {name!r})" if name else ""))


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the option ``name`` was given (not left at its default)."""
    return ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT


def _require_format_of_output(
    ctx: click.Context, format_list: str, input_path: Path, output_path: Path
) -> None:
    """Refuse a ``--format`` given for one input (a file, or a folder of one study's
    series) that OUTPUT's name does not write: there the name picks the format, and the
    option would otherwise be ignored."""
    from medi2i.cli.options import output_formats
    from medi2i.io.destinations import file_suffix

    if not _given(ctx, "format_list"):
        return
    formats = output_formats(format_list)
    suffix = file_suffix(output_path)
    nifti = output_path.name.lower().endswith((".nii", ".nii.gz"))
    written = "nifti" if nifti else (suffix or "dicom")
    if formats == (written,):
        return
    one_input = (
        f"--format applies to a tree of several DICOM studies, but {input_path} is "
        "translated as one input, whose output's name picks the format"
    )
    if len(formats) > 1:
        raise OptionsError(
            f"--format {format_list} asks for {len(formats)} formats ({' and '.join(formats)}), "
            f"which the single output of one input cannot give: {one_input} "
            f"({output_path} is {_format_named(written)}); leave --format out, or give a "
            "folder of several studies as INPUT and an output folder for a tree"
        )
    ending = next((e for e in (".nii.gz", ".nii") if output_path.name.lower().endswith(e)), suffix)
    stem = output_path.name[: len(output_path.name) - len(ending)] or "out"
    wanted = formats[0]
    renamed = output_path.with_name(stem + ".nii.gz" if wanted == "nifti" else stem)
    raise OptionsError(
        f"--format {format_list} disagrees with OUTPUT: {one_input}, and {output_path} is "
        f"{_format_named(written)}; name it e.g. {renamed} for "
        f"{_format_named(wanted)}, or leave --format out"
    )


def _format_named(written: str) -> str:
    """The words for what an output format writes."""
    if written == "nifti":
        return "NIfTI"
    return "a DICOM series (a folder)" if written == "dicom" else f"a {written} file"


def _studies_picked(scan: ScanResult, selector: SeriesSelector | None) -> list[StudyInfo]:
    """The studies of a scan that a selection can come from: all of them, unless the
    rules (a modality, a description, a UID...) match series of one study only; then
    that study, read as a single input (a file output is fine), or none."""
    from medi2i.dicom.reading.series_selection import matching_series

    rules = {} if selector is None else selector.model_dump(exclude_defaults=True)
    if not set(rules) - {"largest", "slice_tolerance_mm"}:
        return list(scan.studies)
    picked = [study for study in scan.studies if matching_series(study.series, selector)]
    return picked if len(picked) <= 1 else list(scan.studies)  # none: reading says why


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
@progress_option
@click.pass_context
def demo_command(ctx: click.Context, output_dir: Path, progress: bool) -> None:
    """Run the built-in MR → synthetic CT demo (no data to bring; a few minutes on a CPU).

    Writes five paired MR/CT head phantoms and a workflow for them under --output,
    trains a small regression U-Net for 300 steps, predicts the held-out phantom and
    writes a report (runs/mr-to-ct-demo/report.md) with metrics, montages and curves;
    then writes the held-out MR as a DICOM series, translates it into a synthetic CT
    DICOM series and a NIfTI copy, and scores them against the phantom's CT. Run it
    again to resume or reuse the trained model.
    """
    from medi2i.demo import run_demo

    for line in run_demo(output_dir, registry=command_registry(ctx), progress=progress):
        click.echo(line)
