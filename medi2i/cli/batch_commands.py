"""The ``medi2i batch`` command: predict every DICOM study under a folder.

Heavy modules are imported inside the command, so ``medi2i --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from medi2i.cli.options import (
    OutputPath,
    command_registry,
    format_option,
    inference_options,
    inference_settings,
    key_values,
    method_options,
    output_formats,
    overwrite_option,
    selection_options,
)

if TYPE_CHECKING:
    from medi2i.dicom.reading.series_records import ScanResult
    from medi2i.dicom.reading.series_selection import SeriesSelector


def add_to(group: click.Group) -> None:
    """Add ``batch`` to ``group``."""
    group.add_command(batch_command)


@click.command("batch")
@click.argument("input_root", type=click.Path(path_type=Path))
@click.argument("output_root", type=click.Path(path_type=Path))
@method_options
@format_option("Outputs per study: dicom, nifti or dicom,nifti.")
@click.option(
    "--manifest",
    type=OutputPath(),
    help="Manifest file (JSON Lines) [default: OUTPUT_ROOT/manifest.jsonl].",
)
@click.option(
    "--deidentify",
    is_flag=True,
    help="De-identify the DICOM outputs (profile medi2i-basic-1, PS3.15 Basic Profile); "
    "output folders, manifest and provenance then name no source.",
)
@click.option(
    "--linkage-file",
    "linkage",
    type=OutputPath(dir_okay=False),
    help="With --deidentify: append each study's way back to its source (input folder, "
    "Patient ID, UIDs) to this JSON Lines file, outside OUTPUT_ROOT and INPUT_ROOT.",
)
@selection_options
@overwrite_option
@inference_options
@click.pass_context
def batch_command(
    ctx: click.Context,
    /,
    input_root: Path,
    output_root: Path,
    method_id: str | None,
    model: Path | None,
    option_pairs: tuple[str, ...],
    condition_pairs: tuple[str, ...],
    format_list: str,
    manifest: Path | None,
    selector: SeriesSelector | None,
    deidentify: bool,
    linkage: Path | None,
    overwrite: bool,
    **inference: object,
) -> None:
    """Translate every DICOM study under INPUT_ROOT into OUTPUT_ROOT.

    One series per study is translated: the only one that can be a volume, or the one
    --modality, --description, --orientation and --largest pick. Outputs mirror the
    input tree (with --deidentify, folders are patient and study pseudonyms). A
    manifest records each study (done, partial, failed, skipped, with timings). A study
    with no series of the selected modality, or only a localizer, is skipped; a folder
    that cannot be read is recorded failed, a hidden one (.x) and a broken link skipped;
    links to folders are followed (OUTPUT_ROOT is never searched: a link to it is
    recorded skipped), FIFOs and devices never opened. A rerun skips finished studies
    (counted as already done) and redoes interrupted ones, those missing a requested
    format and those whose
    outputs changed since (other file counts or sizes than recorded); a failed study
    never stops the batch, but the command exits with status 1 when any study failed or
    was written in part.

    OUTPUT_ROOT must be new, empty, or the root of an earlier batch (it holds its
    manifest), unless --overwrite is given; it may not lie inside INPUT_ROOT or hold it.
    An output root holds one configuration: a rerun with another method, model,
    options, condition, seed or window settings is refused (give another OUTPUT_ROOT),
    and so is a --manifest whose outputs lie outside OUTPUT_ROOT. A redone study's
    outputs are replaced atomically; finished studies are not touched. A second batch
    into an OUTPUT_ROOT that a running batch writes is refused, whatever its --manifest
    (ranks of one torchrun launch share it; the root's .medi2i-batch.lock is held), and
    so is a batch into a folder inside a running batch's root or holding it.

    Each study's folder gets a provenance sidecar, <method id>.provenance.json, once
    its other outputs are written; its "outputs" lists the ones it describes (the
    DICOM series folder only, when the NIfTI could not be written).
    """
    translate_tree(
        ctx,
        input_root,
        output_root,
        method_id=method_id,
        model=model,
        option_pairs=option_pairs,
        condition_pairs=condition_pairs,
        format_list=format_list,
        inference=inference,
        manifest=manifest,
        selector=selector,
        deidentify=deidentify,
        overwrite=overwrite,
        linkage=linkage,
    )


def translate_tree(
    ctx: click.Context,
    input_root: Path,
    output_root: Path,
    *,
    method_id: str | None,
    model: Path | None,
    option_pairs: tuple[str, ...],
    condition_pairs: tuple[str, ...],
    format_list: str,
    inference: dict[str, object],
    manifest: Path | None = None,
    selector: SeriesSelector | None = None,
    deidentify: bool = False,
    scan: ScanResult | None = None,
    overwrite: bool = False,
    linkage: Path | None = None,
) -> None:
    """Run the batch behind ``medi2i batch`` (and ``medi2i predict`` on a tree of studies);
    ``scan`` is the tree's header scan when the caller already made it."""
    from medi2i.batch import run_batch
    from medi2i.prediction import load_method
    from medi2i.sharded_prediction import shard_from_environment
    from medi2i.text import one_line

    registry = command_registry(ctx)
    settings = inference_settings(**inference)  # type: ignore[arg-type]
    method = load_method(
        method=method_id,
        model=model,
        options=key_values(option_pairs, "--option") or None,
        registry=registry,
    )
    report = run_batch(
        input_root,
        output_root,
        method=method,
        settings=settings,
        selector=selector,
        formats=output_formats(format_list),
        manifest=manifest,
        condition=key_values(condition_pairs, "--condition") or None,
        deidentify=deidentify,
        registry=registry,
        model=model,
        shard=shard_from_environment(),
        scan=scan,
        overwrite=overwrite,
        linkage=linkage,
    )
    # study folder names and errors quote file names and DICOM values: one line each
    for record in report.failed:
        line = one_line(f"{record.status}: {record.study}: {record.error}")
        click.secho(line, fg="red", err=True)
    click.echo(one_line(f"{report.summary()}; manifest: {report.manifest}"))
    if report.failed:
        ctx.exit(1)
