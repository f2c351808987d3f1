"""Batch prediction over a tree of DICOM studies: one job per study, a manifest, resumable.

:func:`run_batch` scans ``root`` (headers only), picks one series per study with a
:class:`~medi2i.dicom.reading.series_selection.SeriesSelector` and, study by study,
reads it, runs the method and writes ``<output_root>/<study>/<method id>/`` (the derived
DICOM series, format ``"dicom"``), ``<method id>.nii.gz`` (format ``"nifti"``) and, when
a registry is given, ``<method id>.provenance.json``, written after the other outputs of
the study; its ``outputs`` lists those it describes, relative to the study's folder
(``["<method id>/", "<method id>.nii.gz"]``; only ``"<method id>/"`` when the NIfTI
could not be written). ``<study>`` is the study's folder
under ``root`` (``patient7/mri_2024``), so outputs mirror the input tree; a study lying
directly in ``root``, sharing its folder with another study, or in a folder inside
another study's named like its outputs (``x`` and ``x/<method id>``) or like the
manifest (``manifest.jsonl``) is named ``study-<10 hex digits>`` (a hash of its Study
Instance UID). Links to folders are followed; a study reached by several paths is
named by its real folder when that lies under ``root``, else by the first link path in
name order (:func:`~medi2i.study_discovery.study_keys`); a rerun keeps the folder an
earlier run wrote the same series to when the study's name changed (a link renamed or
removed: :func:`earlier_keys`). ``output_root`` is never
searched, however it is reached (a link in the tree to it). A folder the scan cannot
read is recorded ``failed`` under its path (it may hold studies: read permission, then
a rerun, translates them), a hidden folder (``.x``, not searched) and a broken link
outside the studies' folders ``skipped``. Only regular files are opened (a FIFO would
block the scan).

Formats are written independently: when one cannot be written (a grid the DICOM IODs
cannot store, say) the others still are and the study is ``partial``. Whether the
output grid can be written as DICOM (:func:`medi2i.dicom.writing.derived_series.slice_geometry`) is
checked after reading and before inference, so a study that can only fail does not
wait for the method; with ``dicom`` alone it fails there.

De-identification (``deidentify=True``): nothing written under the output root names
the source. The DICOM outputs follow :mod:`medi2i.dicom.writing.deidentify` with the batch's
salt file (:func:`medi2i.dicom.writing.deidentify.folder_deidentifier`), so pseudonyms are the
same in every run and shard of the batch and for every study of a patient. Study
folders are ``<Patient ID pseudonym>/<Study ID pseudonym>`` (``ANON-1F0C.../S83A2...``,
the values written into the series) instead of the input folder names; manifest
records have ``input`` ``null``, the pseudonymous Series Instance UID (the one the
outputs reference) and error messages with input paths, UIDs and patient identifiers
replaced by ``<input>``, ``<uid>`` and ``<patient>``, and file names, folder names and
series descriptions by neutral references (``slice 19 of series 1``; see
:mod:`medi2i.deidentified_messages`); the provenance sidecar has no
input path and the pseudonymous series UID. The way back to the source is written
only when asked for (``linkage=PATH``, outside the output and input roots): one JSON
line per study with its output folder, input folder, Patient ID and original UIDs.

The manifest (``<output_root>/manifest.jsonl`` by default;
:class:`~medi2i.batch_records.Manifest`) is JSON Lines, one record appended per event
and never rewritten; the last record of a study is its state::

    {"study": "patient7/mri_2024", "input": ".../patient7/mri_2024/t1",
     "series_uid": "1.2.3", "outputs": [".../patient7/mri_2024/pix2pix"],
     "status": "done", "error": null,
     "timings": {"read": 1.2, "predict": 30.5, "write": 0.8}, "time": "2025-01-31T...",
     "reason": null, "configuration": {"method": "pix2pix 1.0.0", "seed": 0, ...},
     "contents": {".../patient7/mri_2024/pix2pix": [40, 393216]}}

``status`` is ``started`` (written before the study runs), ``done``, ``partial`` (some
formats written, ``error`` says why the others were not), ``failed`` (with ``error``, a
message a user can act on) or ``skipped`` (with ``reason``: done by an earlier run,
:data:`~medi2i.batch_records.ALREADY_DONE`, which the summary counts as ``already
done``; no series of the study matches the selection, e.g. no MR series in an MR→CT
batch; the study holds only localizers (scouts); or ``dicom`` is the only format and
no DICOM image type fits the series, one neither CT nor MR through a method that keeps
the input's modality); ``timings`` are seconds per stage. Skipped studies do not make a
batch fail.

``outputs`` are absolute paths. ``configuration`` records what decided the outputs
besides the input (:func:`~medi2i.batch_records.batch_configuration`: method and
version, model, options, condition, seed, window settings, de-identification).

Resuming: an output root holds the results of one configuration. A rerun whose
configuration differs from that of a study with outputs in the manifest (another
method, model, options, condition, seed or window settings), or given a manifest whose
outputs lie outside its output root (another batch's), is refused before any work,
with one line saying what differs; give it another output root. A rerun skips a study
whose last record is ``done`` or ``skipped`` when it selects the same series and its
outputs, one per requested format, all exist and hold the number of files and bytes
recorded when they were written (``contents``, ``[files, bytes]`` by output; a
changed output is redone with a :class:`ChangedOutputWarning`). Anything else (left ``started`` by a
killed run, ``partial``, ``failed``, outputs missing) is redone: temporary files left in its output
folder are removed first, and every output is written atomically (temporary name, then
rename), so a redone study never mixes old and new files. An exception in one study is
recorded and the batch goes on; an interrupt (Ctrl-C, SIGTERM) stops it, leaves that
study ``started`` for the next run, and says how many studies the run finished.

One batch at a time: while a batch runs, its output root is locked (its
``.medi2i-batch.lock``, and the manifest; :func:`batch_lock`), so a second batch into the
same output root, whatever its manifest, is refused in one line instead of translating
every study a second time; so is a batch into a folder inside a running batch's root, or
one holding it.

Sharding and the engine: the studies run through
:func:`medi2i.sharded_prediction.predict_share`. With ``shard=(rank, world_size)``
(``torchrun``'s ``RANK`` and ``WORLD_SIZE``) a process takes every ``world_size``-th
study; ranks may share one manifest, since each record is a single small append (and
each rank locks ``.medi2i-batch.rank<N>.lock`` in the output root, so that a second
launch of the same ranks is refused). All
studies of a process run on one sliding-window engine, so a batch of windows lowered
after the device ran out of memory stays lowered for the studies that follow.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.batch_lock import batch_lock, refuse_running_batch
from medi2i.batch_records import (
    ALREADY_DONE,
    BatchReport,
    Manifest,
    Status,
    StudyRecord,
    batch_configuration,
    check_linkage,
    check_same_batch,
    output_contents,
)
from medi2i.batch_study import StudyRunner, failure_message
from medi2i.errors import OptionsError
from medi2i.settings import wants_progress
from medi2i.study_discovery import (
    StudyJob,
    discover_studies,
    hashed_key,
    keys_apart,
    pseudonymous_keys,
)

if TYPE_CHECKING:
    from medi2i.dicom.reading.series_records import ScanResult
    from medi2i.dicom.reading.series_selection import SeriesSelector
    from medi2i.engine import SlidingWindowEngine
    from medi2i.method import Method
    from medi2i.prediction import Condition
    from medi2i.registry import Registry
    from medi2i.settings import InferenceSettings

FORMATS = ("dicom", "nifti")
MANIFEST_NAME = "manifest.jsonl"


def run_batch(
    root: Path,
    output_root: Path,
    *,
    method: Method,
    settings: InferenceSettings,
    selector: SeriesSelector | None = None,
    formats: Sequence[str] = ("dicom",),
    manifest: Path | None = None,
    condition: Condition = None,
    deidentify: bool = False,
    registry: Registry | None = None,
    model: Path | None = None,
    shard: tuple[int, int] | None = None,
    scan: ScanResult | None = None,
    overwrite: bool = False,
    linkage: Path | None = None,
) -> BatchReport:
    """Predict every study under ``root`` into ``output_root``; see the module docstring.

    Args:
        root: A DICOM folder or a tree of studies (any depth, any file names).
        output_root: Where the outputs and, by default, the manifest go.
        method: A ready method (loaded from a model folder, or needing no training).
        settings: Sliding-window and device settings; ``settings.progress`` shows a bar
            over the studies (the per-window bar is off in batch mode). Under
            ``torchrun`` with several processes, device ``auto`` is the local rank's GPU.
        selector: Which series of each study to translate; by default the only one
            that can be a volume.
        formats: Any of ``"dicom"`` and ``"nifti"``.
        manifest: The manifest file; ``<output_root>/manifest.jsonl`` by default.
        condition: Predict-time condition for conditioned methods.
        deidentify: De-identify the DICOM outputs (:mod:`medi2i.dicom.writing.deidentify`) with
            the batch's salt file, and name no source under ``output_root`` (see the
            module docstring).
        registry: When given, a provenance sidecar is written per study.
        model: The trained-model folder ``method`` came from, for the provenance.
        shard: ``(rank, world_size)``: process only every ``world_size``-th study.
        scan: ``root``'s header scan when the caller already made it (scanned otherwise).
        overwrite: Write into a non-empty ``output_root`` that is not an earlier batch's
            (:func:`medi2i.io.destinations.check_batch_root`).
        linkage: With ``deidentify``, a JSON Lines file (appended to) that links each
            output study folder to its source; outside ``output_root`` and ``root``.

    Returns:
        The final record of every study this process handled.

    Raises:
        InputError: ``root`` does not exist or holds no DICOM study.
        DeviceError: The device is not available (raised before the first study that
            would run on it).
        OptionsError: An unknown format, an invalid shard, or ``linkage`` without
            ``deidentify``.
        OutputError: ``output_root`` lies inside ``root``, holds it, or holds other data;
            ``linkage`` lies inside either; ``manifest`` lies inside ``root`` or is a file
            that is not a manifest; a running batch writes ``output_root``, a folder
            holding it or one inside it.
    """
    from medi2i.dicom.writing.deidentify import folder_deidentifier
    from medi2i.io.destinations import check_batch_root, check_destination, condition_inputs

    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise OptionsError(f"output formats {list(formats)}: use one or both of dicom, nifti")
    manifest = manifest if manifest is not None else Path(output_root) / MANIFEST_NAME
    refuse_running_batch(Path(output_root), shard)  # before advice to pass --overwrite
    check_batch_root(
        Path(output_root),
        input_root=Path(root),
        overwrite=overwrite,
        manifest=manifest,
        other_inputs=condition_inputs(method.parse_condition(condition)),
    )
    # inputs are never written, not even appended to
    check_destination(manifest, inputs=[Path(root)], overwrite=True, folder=False)
    book = Manifest(manifest)  # a file that is not a manifest is refused before any work
    configuration = batch_configuration(
        method,
        model=model,
        condition=method.parse_condition(condition),
        settings=settings,
        deidentify=deidentify,
    )
    check_same_batch(book, configuration, Path(output_root))
    check_linkage(linkage, Path(output_root), Path(root), deidentify=deidentify)
    selector = _declared_modality(selector, method, force=settings.force_modality)
    with batch_lock(manifest, Path(output_root), shard):
        jobs = discover_studies(Path(root), selector, scan=scan, exclude=[Path(output_root)])
        deidentifier = folder_deidentifier(Path(output_root)) if deidentify else None
        if deidentifier is not None:
            jobs = pseudonymous_keys(jobs, deidentifier)
        else:  # a study in a folder named like the outputs of the study around it
            jobs = earlier_keys(keys_apart(jobs, output_file_names(method.id)), book)
        jobs = clear_of_manifest(jobs, manifest, Path(output_root))
        runner = StudyRunner(
            method=method,
            settings=settings.model_copy(update={"progress": False}),
            formats=tuple(name for name in FORMATS if name in formats),
            output_root=Path(output_root).absolute(),  # recorded outputs name it wherever run from
            input_root=Path(root),
            condition=condition,
            deidentifier=deidentifier,
            registry=registry,
            model=model,
            linkage=linkage,
            configuration=configuration,
        )
        return _run_jobs(
            jobs, runner, book, shard=shard, progress=settings.progress, named=Path(output_root)
        )


def _run_jobs(
    jobs: Sequence[StudyJob],
    runner: StudyRunner,
    book: Manifest,
    *,
    shard: tuple[int, int] | None,
    progress: bool | None,
    named: Path,
) -> BatchReport:
    """Run this process's share of ``jobs``; an interrupt says what the batch kept in the
    output root (``named`` as the user gave it)."""
    from medi2i.sharded_prediction import predict_share

    finished: list[StudyRecord] = []

    def process(job: StudyJob, engine: SlidingWindowEngine) -> StudyRecord:
        finished.append(_process(job, runner, book, engine))
        return finished[-1]

    try:
        records = predict_share(
            jobs,
            process,
            settings=runner.settings,
            shard=shard,
            skip=lambda job: _skipped(job, runner, book),
            label=lambda job: job.key,
            progress=wants_progress(progress),
            noun="studies",
        )
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: say what is kept, and how to go on
        message = interrupted_batch_message(finished, named, book.path)
        raise type(exc)(message) from None
    return BatchReport(manifest=book.path, records=tuple(records))


def interrupted_batch_message(
    finished: Sequence[StudyRecord], output_root: Path, manifest: Path
) -> str:
    """What an interrupted batch says: the studies it finished are kept (and recorded in
    the manifest), the one in progress kept nothing and is redone by a rerun.

    Example:
        >>> interrupted_batch_message([], Path("out"), Path("out/m.jsonl"))[:60]
        'Interrupted; out keeps 0 studies translated by this run (man'
    """
    done = sum(record.status in ("done", "partial") for record in finished)
    noun = "study" if done == 1 else "studies"
    return (
        f"Interrupted; {output_root} keeps {done} {noun} translated by this run (manifest "
        f"{manifest}); the study in progress kept no partial output: run the same batch "
        "again to finish it"
    )


def output_file_names(method_id: str) -> set[str]:
    """The names a study's outputs may have in its folder, whatever the formats."""
    return {method_id, f"{method_id}.nii.gz", f"{method_id}.provenance.json"}


def earlier_keys(jobs: Sequence[StudyJob], book: Manifest) -> list[StudyJob]:
    """The jobs with the output folder an earlier run wrote the same series to, when the
    study is now named otherwise and nothing else is named that way: a study reached by
    links, one of which was renamed or removed, keeps its outputs instead of being
    translated again under a new name."""
    keys = {job.key for job in jobs}
    earlier: dict[str, str] = {}
    for key, record in book.latest.items():
        if record.status in ("done", "partial") and record.series_uid and key not in keys:
            earlier.setdefault(record.series_uid, key)

    def named(job: StudyJob) -> str:
        if job.key in book.latest or job.series_uid is None:
            return job.key
        return earlier.pop(job.series_uid, job.key)

    return [replace(job, key=named(job)) for job in jobs]


def clear_of_manifest(
    jobs: Sequence[StudyJob], manifest: Path, output_root: Path
) -> list[StudyJob]:
    """The jobs with no output folder at the manifest's path or below it: a study in a
    folder named ``manifest.jsonl`` is named ``study-<10 hex digits>`` instead, as other
    collisions are.

    Example:
        >>> jobs = [StudyJob("manifest.jsonl", "1.2", Path("in/manifest.jsonl"), None)]
        >>> [job.key for job in clear_of_manifest(jobs, Path("out/manifest.jsonl"), Path("out"))]
        ['study-77ac319bfe']
    """
    try:
        taken = manifest.absolute().relative_to(output_root.absolute()).parts
    except ValueError:
        return list(jobs)  # a manifest elsewhere is in no study's way

    def in_the_way(key: str) -> bool:
        return tuple(key.split("/"))[: len(taken)] == taken

    return [
        replace(job, key=hashed_key(job.study_uid or job.key)) if in_the_way(job.key) else job
        for job in jobs
    ]


def _declared_modality(
    selector: SeriesSelector | None, method: Method, *, force: bool
) -> SeriesSelector | None:
    """Pick the series of the method's input modality unless told otherwise: a CT
    study in a tree must not be run through an MR→CT model."""
    from medi2i.dicom.reading.series_selection import SeriesSelector

    declared = method.input_spec.modality
    if force or declared not in ("CT", "MR") or (selector and selector.modality):
        return selector
    return (selector or SeriesSelector()).model_copy(update={"modality": declared})


def _skipped(job: StudyJob, runner: StudyRunner, book: Manifest) -> StudyRecord | None:
    """The ``skipped`` record of a study with nothing to run, or ``None`` to run it."""
    started = runner.started(job)
    if job.not_searched and not job.skip:  # a folder that cannot be read: nothing to run
        error = runner.scrub(job, f"{job.input}: {job.problem}")
        return book.append(replace(started, status="failed", error=error))
    if job.skip:
        reason = runner.scrub(job, job.problem or "no series matches the selection")
        return book.append(replace(started, status="skipped", reason=reason))
    unwritable = runner.no_dicom_type(job)
    if unwritable is not None:
        return book.append(replace(started, status="skipped", reason=runner.scrub(job, unwritable)))
    previous = book.latest.get(job.key)
    if previous is None or not _finished(previous, started, runner.output_names):
        return None
    changed = _changed_output(previous)
    if changed is not None:
        warnings.warn(f"{changed}; study {job.key} is redone", ChangedOutputWarning, stacklevel=2)
        return None
    return book.append(
        replace(
            started,
            status="skipped",
            outputs=previous.outputs,
            reason=ALREADY_DONE,
            contents=previous.contents,
        )
    )


class ChangedOutputWarning(UserWarning):
    """An output of a finished study changed since the run that wrote it (a slice
    removed, a file cut short): the study is redone."""


def _changed_output(previous: StudyRecord) -> str | None:
    """What differs between an output and the ``[files, bytes]`` its record holds, or
    ``None`` (also for records written before outputs were measured)."""
    for output, recorded in (previous.contents or {}).items():
        found = output_contents(Path(output))
        if list(recorded) != found:
            return (
                f"{output} holds {found[0]} file(s) of {found[1]} bytes in all, but the "
                f"earlier run wrote {recorded[0]} of {recorded[1]}: it changed since"
            )
    return None


def _process(
    job: StudyJob, runner: StudyRunner, book: Manifest, engine: SlidingWindowEngine
) -> StudyRecord:
    started = runner.started(job)
    book.append(started)
    runner.link(job)
    timings: dict[str, float] = {}
    try:
        outputs, errors = runner.run(job, timings, engine)
    except Exception as exc:  # one bad study must never stop the batch
        error = runner.scrub(job, failure_message(exc))
        return book.append(replace(started, status="failed", error=error, timings=timings))
    contents = {output: output_contents(Path(output)) for output in outputs}
    if errors:
        status: Status = "partial" if outputs else "failed"
        error = runner.scrub(job, "; ".join(errors))
        return book.append(
            replace(
                started,
                status=status,
                outputs=outputs,
                error=error,
                timings=timings,
                contents=contents,
            )
        )
    return book.append(
        replace(started, status="done", outputs=outputs, timings=timings, contents=contents)
    )


def _finished(previous: StudyRecord, started: StudyRecord, names: set[str]) -> bool:
    """Whether ``previous`` holds this run's outputs (file names ``names``) of the study,
    made from the same series under the same configuration, all still there."""
    return (
        previous.status in ("done", "skipped")
        and previous.series_uid == started.series_uid
        and previous.configuration == started.configuration
        and names <= {Path(output).name for output in previous.outputs}
        and all(Path(output).exists() for output in previous.outputs)
    )
