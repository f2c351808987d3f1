"""``medi2i dicom``: look into DICOM folders before reading them.

``medi2i dicom ls PATH`` scans a folder tree (headers only) and lists each study and
series: UIDs, modality, description, slice count, matrix, spacing, orientation, how far
the slice positions lie from the regular grid fitted to them ("grid fit mm", the largest
deviation) and any problem that keeps a series from being read as one volume. The selection options
preview which series a reader with the same rules would pick.

pydicom is imported only inside the command, so that ``medi2i --help`` stays fast.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from medi2i.cli.options import (
    command_registry,
    inference_options,
    inference_settings,
    json_option,
    key_values,
    method_options,
    picks_a_series,
    selection_options,
    slice_tolerance,
)
from medi2i.errors import InputError, OptionsError
from medi2i.text import one_line

if TYPE_CHECKING:
    from medi2i.dicom.node.dicom_node import NodeConfig
    from medi2i.dicom.node.send import Peer
    from medi2i.dicom.reading.file_records import SkippedFile
    from medi2i.dicom.reading.series_records import ScanResult, SeriesInfo
    from medi2i.dicom.reading.series_selection import SeriesSelector
    from medi2i.method import Method
    from medi2i.registry import Registry
    from medi2i.settings import InferenceSettings


def add_to(group: click.Group) -> None:
    """Add a new ``dicom`` command group to ``group``."""
    group.add_command(dicom_group())


def dicom_group() -> click.Group:
    """A new ``dicom`` group holding ``ls``, ``serve`` and ``send``."""
    return click.Group(
        "dicom",
        commands=[ls_command, serve_command, send_command],
        help="Inspect DICOM folders: studies, series and what keeps a series from being read.",
    )


@click.command("ls")
@click.argument("path", type=click.Path(path_type=Path))
@json_option()
@selection_options
def ls_command(
    path: Path,
    as_json: bool,
    selector: SeriesSelector | None,
) -> None:
    """List the studies and series under PATH (a folder tree or one file).

    With selection options, the series they pick is marked with '*'; when they pick
    none or several, the listing is followed by the reason and the exit status is 1.
    A series of several volumes (echoes, time points) is listed once per volume, which
    --volume N picks.
    """
    from medi2i.dicom.reading.series_scan import scan_folder
    from medi2i.dicom.reading.series_selection import select_series
    from medi2i.errors import Medi2iError

    result = scan_folder(path, slice_tolerance_mm=slice_tolerance(selector))
    if path.is_file() and not result.studies:
        raise _not_dicom_file(path, result)
    chosen: SeriesInfo | None = None
    failure: Medi2iError | None = None
    if selector is not None and picks_a_series(selector):
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


_VOLUME_SUFFIXES = {".nii": "NIfTI", ".nii.gz": "NIfTI", ".nrrd": "NRRD", ".nhdr": "NRRD"}
_VOLUME_SUFFIXES |= {".mha": "MetaImage", ".mhd": "MetaImage"}


def _not_dicom_file(path: Path, result: ScanResult) -> InputError:
    """The refusal of a single file that holds no DICOM series (a NIfTI volume, a
    damaged slice): a folder without DICOM is listed as empty, but a file named on its
    own was meant to be DICOM."""
    name = path.name.lower()
    kind = next((k for suffix, k in _VOLUME_SUFFIXES.items() if name.endswith(suffix)), None)
    if kind is not None:
        return InputError(
            f"{path} is a {kind} volume, not DICOM: `medi2i dicom ls` lists DICOM files and "
            "folders (medi2i reads the volume as it is, e.g. `medi2i predict`)"
        )
    reason = result.skipped[0].reason if result.skipped else "no DICOM series in it"
    return InputError(f"{path} holds no DICOM series: {reason}")


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
        "skipped": [
            {
                "path": str(item.path),
                "reason": item.reason,
                "damaged": item.damaged,
                "not_dicom": item.not_dicom,
                "broken_link": item.broken_link,
                "folder": item.folder,
                "hidden": item.hidden,
            }
            for item in result.skipped
        ],
        "selected": chosen.series_instance_uid if chosen is not None else None,
        "selected_volume": (
            chosen.volume.index if chosen is not None and chosen.volume is not None else None
        ),
    }


def _series_json(series: SeriesInfo) -> dict[str, object]:
    return {
        "series_instance_uid": series.series_instance_uid,
        "series_number": series.series_number,
        "modality": series.modality,
        "description": series.description,
        "volume": (
            {
                "index": series.volume.index,
                "count": series.volume.count,
                "tag": series.volume.tag,
                "value": series.volume.value,
                "label": series.volume.label,
            }
            if series.volume is not None
            else None
        ),
        "sop_class": series.sop_class_name,
        "frame_of_reference_uid": series.frame_of_reference_uid,
        "images": series.number_of_images,
        "rows": series.rows,
        "columns": series.columns,
        "pixel_spacing_mm": list(series.pixel_spacing) if series.pixel_spacing else None,
        "slice_spacing_mm": series.slice_spacing,
        "slice_position_residual_mm": (
            series.geometry.position_residual_mm if series.geometry is not None else None
        ),
        "orientation": series.plane,  # the listing adds a tilt: "axial (tilted 20 deg)"
        "orientation_label": series.orientation,
        "is_volume": series.is_volume,
        "problems": [str(problem) for problem in series.problems],
        "notes": list(series.notes),
        "folder": str(series.folder),
        "files": [str(path) for path in series.files],
    }


def _print_listing(result: ScanResult, chosen: SeriesInfo | None) -> None:
    if not result.studies:
        _say(f"no DICOM series under {result.root}")
    for study in result.studies:
        _say(
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
            "grid fit mm",
            "series UID",
        )
        _print_table(header, rows)
        numbers = Counter(series.series_number for series in study.series)
        for series in study.series:
            _print_remarks(series, shared_number=numbers[series.series_number] > 1)
        _say("")
    _print_skipped(result.skipped)


def _print_skipped(skipped: Sequence[SkippedFile]) -> None:
    """Folders that cannot be read first (they may hold whole studies), then damaged
    DICOM files (a lost slice, maybe), then links whose target does not exist, then
    DICOM files in no series, then the files
    that are not DICOM at all (a README, a JPEG), which are no fault, and last the
    hidden folders, which are not searched."""
    files = [item for item in skipped if not item.folder]
    groups = (
        (
            "folder(s) that cannot be read",
            [item for item in skipped if item.folder and not item.hidden],
        ),
        (
            "damaged DICOM file(s) skipped",
            [item for item in files if item.damaged and not item.broken_link],
        ),
        ("broken link(s) skipped", [item for item in files if item.broken_link]),
        (
            "file(s) skipped",
            [item for item in files if not item.damaged and not item.not_dicom],
        ),
        ("non-DICOM file(s) skipped", [item for item in files if item.not_dicom]),
        ("hidden folder(s) not searched", [item for item in skipped if item.hidden]),
    )
    for title, items in groups:
        if items:
            _say(f"{len(items)} {title}:")
        for item in items:
            _say(f"  {item.path}: {item.reason}")


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
        _described(series),
        str(series.number_of_images),
        matrix,
        spacing,
        series.orientation,
        f"{series.geometry.position_residual_mm:.3f}" if series.geometry is not None else "-",
        series.series_instance_uid,
    )


def _described(series: SeriesInfo) -> str:
    """The description, with the volume (``volume 2/3: echo 2 (TE 30 ms)``) for one of several."""
    if series.volume is None:
        return series.description or "-"
    volume = series.volume
    return f"{series.description}, volume {volume.index}/{volume.count}: {volume.label}".lstrip(
        ", "
    )


def _print_remarks(series: SeriesInfo, *, shared_number: bool = False) -> None:
    label = f"#{series.series_number}" if series.series_number is not None else "series"
    if shared_number:  # several series of the study have this number: tell them apart
        label += f" (UID {series.series_instance_uid})"
    if series.volume is not None:
        label += f" volume {series.volume.index}"
    for problem in series.problems:
        _say(f"  {label} problem: {problem}", fg="yellow")
    for note in series.notes:
        _say(f"  {label} note: {note}")


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        _say(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        )


def _say(line: str, **style: Any) -> None:
    """Print one line of the listing with its DICOM values and file names through
    :func:`medi2i.text.one_line`: a Series Description, Patient ID or file name holding
    a newline or a terminal escape cannot forge a line or rewrite the screen."""
    click.secho(one_line(line), **style)


@click.command("serve")
@method_options
@click.option("--ae-title", default="MEDI2I", show_default=True, help="The node's AE title.")
@click.option("--port", type=click.IntRange(0, 65535), default=11112, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface; then limit who may send with "
    "--allow-calling and --require-called-aet, and a firewall).",
)
@click.option(
    "--require-called-aet",
    is_flag=True,
    help="Refuse associations whose called AE title is not --ae-title.",
)
@click.option(
    "--allow-calling",
    "allow_calling",
    multiple=True,
    metavar="AET",
    help="Accept associations only from this calling AE title (repeat for several) [default: any].",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    help="Store each derived series in OUTPUT/<source series UID>/<method id>/.",
)
@click.option("--forward", help="Send each derived series to HOST:PORT:AET with C-STORE.")
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0.1, 86400.0),
    default=10.0,
    show_default=True,
    help="Seconds without a new instance after which a released series is complete.",
)
@click.option(
    "--work",
    type=click.Path(path_type=Path),
    help="Spool folder for received instances [default: a temporary folder].",
)
@click.option(
    "--manifest",
    type=click.Path(path_type=Path),
    help="Manifest (JSON Lines) [default: OUTPUT/manifest.jsonl, else in the spool].",
)
@click.option(
    "--deidentify",
    is_flag=True,
    help="De-identify the derived series (profile medi2i-basic-1, PS3.15 Basic Profile).",
)
@selection_options
@inference_options
@click.pass_context
def serve_command(
    ctx: click.Context,
    /,
    method_id: str | None,
    model: Path | None,
    option_pairs: tuple[str, ...],
    condition_pairs: tuple[str, ...],
    ae_title: str,
    port: int,
    host: str,
    require_called_aet: bool,
    allow_calling: tuple[str, ...],
    output: Path | None,
    forward: str | None,
    idle_timeout: float,
    work: Path | None,
    manifest: Path | None,
    selector: SeriesSelector | None,
    deidentify: bool,
    **inference: object,
) -> None:
    """Receive DICOM series (C-STORE SCP), translate each one, store and/or forward it.

    A series is complete when the associations that sent it were released normally and
    nothing arrived for --idle-timeout seconds; a series whose association was aborted
    is never translated. Answers C-ECHO. Stops on Ctrl-C or SIGTERM after the
    translation in progress and the series already received with a release; others
    are set aside in the spool. One line is printed per series.
    """
    from medi2i.dicom.node.send import check_ae_title, parse_peer
    from medi2i.prediction import load_method

    peer = parse_peer(forward) if forward else None
    if output is None and peer is None:
        raise OptionsError("give --output, --forward or both: where the derived series go")
    title = check_ae_title(ae_title, "--ae-title")
    calling = tuple(check_ae_title(name, "--allow-calling") for name in allow_calling)
    settings = inference_settings(**{**inference, "progress": False})  # type: ignore[arg-type]
    registry = command_registry(ctx)
    method = load_method(
        method=method_id,
        model=model,
        options=key_values(option_pairs, "--option") or None,
        registry=registry,
    )
    with _spool_folder(work) as spool_root:
        book = manifest or (output or spool_root) / "manifest.jsonl"
        _serve(
            method=method,
            settings=settings,
            config=_node_config(
                title,
                host,
                port,
                idle_timeout,
                require_called_aet=require_called_aet,
                allowed_calling=calling,
            ),
            spool_root=spool_root,
            manifest=book,
            output=output,
            peer=peer,
            selector=selector,
            deidentify=deidentify,
            condition=key_values(condition_pairs, "--condition") or None,
            registry=registry,
            model=model,
        )


def _node_config(
    title: str,
    host: str,
    port: int,
    idle_timeout: float,
    *,
    require_called_aet: bool,
    allowed_calling: tuple[str, ...],
) -> NodeConfig:
    from medi2i.dicom.node.dicom_node import NodeConfig

    return NodeConfig(
        ae_title=title,
        host=host,
        port=port,
        idle_timeout=idle_timeout,
        require_called_aet=require_called_aet,
        allowed_calling=allowed_calling,
    )


@contextmanager
def _spool_folder(work: Path | None) -> Iterator[Path]:
    """``work``, or a temporary spool removed at the end unless the node set series aside
    in it (not forwarded, not written, interrupted, come back through forwarding): then
    it is kept, and said so."""
    if work is not None:
        yield work
        return
    folder = Path(tempfile.mkdtemp(prefix="medi2i-spool-"))
    try:
        yield folder
    finally:
        kept = sorted(path.name for path in folder.iterdir() if _set_aside(path.name))
        if kept:
            click.echo(
                f"kept the temporary spool {folder}: it holds {len(kept)} series folder(s) "
                "the node set aside (see the lines above); delete it when done with them"
            )
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _set_aside(name: str) -> bool:
    """Whether ``name`` is a folder the node set aside in its spool
    (:data:`medi2i.dicom.node.spool.SET_ASIDE_KINDS`), which a temporary spool is kept
    for."""
    from medi2i.dicom.node.spool import SET_ASIDE_KINDS

    return name.startswith(tuple(f".{kind}-" for kind in SET_ASIDE_KINDS))


def _serve(
    *,
    method: Method,
    settings: InferenceSettings,
    config: NodeConfig,
    spool_root: Path,
    manifest: Path,
    output: Path | None,
    peer: Peer | None,
    selector: SeriesSelector | None,
    deidentify: bool,
    condition: dict[str, object] | None,
    registry: Registry,
    model: Path | None,
) -> None:
    from medi2i.dicom.node.dicom_node import DicomNode, check_node_output
    from medi2i.dicom.node.spool import Spool
    from medi2i.dicom.node.translation import SeriesTranslator

    check_node_output(output, spool=spool_root, manifest=manifest)
    translator = SeriesTranslator(
        method=method,
        settings=settings,
        manifest=manifest,
        work=spool_root,
        output=output,
        forward=peer,
        calling_ae_title=config.ae_title,
        selector=selector,
        condition=condition,
        deidentify=deidentify,
        registry=registry,
        model=model,
    )
    spool = Spool(spool_root, idle_timeout=config.idle_timeout)
    node = DicomNode(config, spool=spool, translator=translator, log=click.echo)
    stop = threading.Event()
    with _stop_on_signals(stop):
        try:
            node.serve(stop)
        except OSError as exc:
            raise OptionsError(
                f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}; "
                "choose another --port"
            ) from None
    click.echo(f"manifest: {manifest}")


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT and SIGTERM (only the main thread may install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.getsignal(number) for number in wanted}
    for number in wanted:
        signal.signal(number, lambda *_: stop.set())
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@click.command("send")
@click.argument("folder", type=click.Path(path_type=Path))
@click.argument("peer")
@click.option("--calling-aet", default="MEDI2I", show_default=True, help="Our AE title.")
@click.pass_context
def send_command(ctx: click.Context, folder: Path, peer: str, calling_aet: str) -> None:
    """Send every DICOM file under FOLDER to PEER (HOST:PORT:AET) with C-STORE.

    Prints how many files were sent, and the failures and skipped files by reason (a
    count and the first few names each); the exit status is 1 when any file failed (a
    file that cannot be read counts) or FOLDER holds no DICOM file. Files that are not
    DICOM instances are skipped. A peer that rejects the association, or a port where
    nothing listens, stops the send with one line giving the reason.
    """
    from medi2i.dicom.node.send import (
        check_ae_title,
        dicom_files_under,
        grouped,
        parse_peer,
        send_files,
    )

    target = parse_peer(peer)
    title = check_ae_title(calling_aet, "--calling-aet")
    report = send_files(dicom_files_under(folder), target, calling_ae_title=title)
    if not report.sent and not report.failed:
        skipped = one_line("; ".join(grouped(report.skipped, shown=2)))
        raise InputError(
            f"no DICOM files under {folder}" + (f" (skipped: {skipped})" if skipped else "")
        )
    if report.stopped is not None:
        stopped = one_line(report.stopped)
        click.secho(f"failed: {stopped}; nothing more was sent", fg="red", err=True)
    failed = [(path, why) for path, why in report.failed if why != report.stopped]
    for line in grouped(failed):
        click.secho(f"failed: {one_line(line)}", fg="red", err=True)
    for line in grouped(report.skipped):
        click.echo(f"skipped: {one_line(line)}", err=True)
    click.echo(one_line(report.summary()))
    if report.failed:
        ctx.exit(1)
