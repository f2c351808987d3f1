"""``medi2i dicom``: look into DICOM folders before reading them.

``medi2i dicom ls PATH`` scans a folder tree (headers only) and lists each study and
series: UIDs, modality, description, slice count, matrix, spacing, orientation and any
problem that keeps a series from being read as one volume. The selection options
preview which series a reader with the same rules would pick.

pydicom is imported only inside the command, so that ``medi2i --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from medi2i.dicom.scan import ScanResult, SeriesInfo
    from medi2i.dicom.select import SeriesSelector


def add_to(group: click.Group) -> None:
    """Add the ``dicom`` command group to ``group``."""
    group.add_command(dicom_group)


@click.group("dicom")
def dicom_group() -> None:
    """Inspect DICOM folders: studies, series and what keeps a series from being read."""


@dicom_group.command("ls")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--modality", help="Preview the selection: modality, e.g. CT or MR.")
@click.option("--description", help="Preview the selection: regex searched in the description.")
@click.option(
    "--orientation",
    type=click.Choice(["axial", "sagittal", "coronal", "oblique"]),
    help="Preview the selection: slice orientation.",
)
@click.option("--series-uid", help="Preview the selection: a Series Instance UID.")
@click.option("--largest", is_flag=True, help="Preview the selection: largest of several matches.")
def ls_command(
    path: Path,
    as_json: bool,
    modality: str | None,
    description: str | None,
    orientation: str | None,
    series_uid: str | None,
    largest: bool,
) -> None:
    """List the studies and series under PATH (a folder tree or one file).

    With selection options, the series they pick is marked with '*'; when they pick
    none or several, the listing is followed by the reason and the exit status is 1.
    """
    from medi2i.dicom.scan import scan_folder
    from medi2i.dicom.select import select_series
    from medi2i.errors import Medi2iError

    selector = _selector(modality, description, orientation, series_uid, largest)
    result = scan_folder(path)
    chosen: SeriesInfo | None = None
    failure: Medi2iError | None = None
    if selector is not None:
        try:
            chosen = select_series(result.series, selector)
        except Medi2iError as exc:  # printed after the listing, which shows the candidates
            failure = exc
    if as_json:
        click.echo(json.dumps(_scan_json(result, chosen), indent=2))
    else:
        _print_listing(result, chosen)
    if failure is not None:
        raise failure


def _selector(
    modality: str | None,
    description: str | None,
    orientation: str | None,
    series_uid: str | None,
    largest: bool,
) -> SeriesSelector | None:
    from pydantic import ValidationError

    from medi2i.dicom.select import SeriesSelector
    from medi2i.errors import OptionsError

    given = {
        "modality": modality,
        "description": description,
        "orientation": orientation,
        "series_uid": series_uid,
    }
    rules: dict[str, object] = {key: value for key, value in given.items() if value is not None}
    if largest:
        rules["largest"] = True
    if not rules:
        return None
    try:
        return SeriesSelector.model_validate(rules)
    except ValidationError as exc:
        problems = "; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise OptionsError(f"invalid series selection: {problems}") from None


def _scan_json(result: ScanResult, chosen: SeriesInfo | None = None) -> dict[str, object]:
    """The ``--json`` document: studies with their series, skipped files, the selection."""
    return {
        "path": str(result.root),
        "studies": [
            {
                "study_instance_uid": study.study_instance_uid,
                "patient_id": study.patient_id,
                "patient_name": study.patient_name,
                "study_date": study.study_date,
                "description": study.description,
                "series": [_series_json(series) for series in study.series],
            }
            for study in result.studies
        ],
        "skipped": [{"path": str(item.path), "reason": item.reason} for item in result.skipped],
        "selected": chosen.series_instance_uid if chosen is not None else None,
    }


def _series_json(series: SeriesInfo) -> dict[str, object]:
    return {
        "series_instance_uid": series.series_instance_uid,
        "series_number": series.series_number,
        "modality": series.modality,
        "description": series.description,
        "sop_class": series.sop_class_name,
        "frame_of_reference_uid": series.frame_of_reference_uid,
        "images": series.number_of_images,
        "rows": series.rows,
        "columns": series.columns,
        "pixel_spacing_mm": list(series.pixel_spacing) if series.pixel_spacing else None,
        "slice_spacing_mm": series.slice_spacing,
        "orientation": series.orientation,
        "is_volume": series.is_volume,
        "problems": [str(problem) for problem in series.problems],
        "notes": list(series.notes),
        "folder": str(series.folder),
        "files": [str(path) for path in series.files],
    }


def _print_listing(result: ScanResult, chosen: SeriesInfo | None) -> None:
    if not result.studies:
        click.echo(f"no DICOM series under {result.root}")
    for study in result.studies:
        click.secho(
            f"study {study.study_instance_uid}  patient {study.patient_id or '?'}  "
            f"date {study.study_date or '?'}  {study.description}".rstrip(),
            bold=True,
        )
        rows = [_series_row(series, series is chosen) for series in study.series]
        header = (
            "",
            "#",
            "modality",
            "description",
            "images",
            "matrix",
            "spacing mm",
            "orientation",
            "series UID",
        )
        _print_table(header, rows)
        for series in study.series:
            _print_remarks(series)
        click.echo()
    if result.skipped:
        click.echo(f"{len(result.skipped)} file(s) skipped:")
        for item in result.skipped:
            click.echo(f"  {item.path}: {item.reason}")


def _series_row(series: SeriesInfo, chosen: bool) -> tuple[str, ...]:
    matrix = f"{series.columns}x{series.rows}" if series.rows else "-"
    spacing = "-"
    if series.pixel_spacing:
        row, column = series.pixel_spacing
        depth = f"{series.slice_spacing:.4g}" if series.slice_spacing else "?"
        spacing = f"{column:.4g}x{row:.4g}x{depth}"
    return (
        "*" if chosen else "",
        str(series.series_number) if series.series_number is not None else "-",
        series.modality or "?",
        series.description or "-",
        str(series.number_of_images),
        matrix,
        spacing,
        series.orientation,
        series.series_instance_uid,
    )


def _print_remarks(series: SeriesInfo) -> None:
    label = f"#{series.series_number}" if series.series_number is not None else "series"
    for problem in series.problems:
        click.secho(f"  {label} problem: {problem}", fg="yellow")
    for note in series.notes:
        click.echo(f"  {label} note: {note}")


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        )
