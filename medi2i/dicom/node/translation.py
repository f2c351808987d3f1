"""What a DICOM node does with a complete series: translate it, store it, forward it, record it.

A series taken from the spool (:mod:`medi2i.dicom.node.spool`) goes the way one study of
``medi2i batch`` goes: the folder is scanned (headers only), the series read with
:func:`medi2i.dicom.reading.series_volume.read_dicom_series`, translated with
:func:`medi2i.prediction.predict_tensor` and written as a derived series with
:func:`medi2i.dicom.writing.derived_series.write_derived_series` (atomically) to
``<output>/<source Series Instance UID>/<method id>/``, with a provenance sidecar next
to it, ``<method id>.provenance.json`` (:func:`medi2i.provenance.provenance`: method,
plugin, options, weights and the hash of the volume read, plus ``series_uid``,
``study_uid`` and ``calling_ae``; no input path, since the spooled files are removed;
with ``deidentify`` no UIDs or AE titles either). With ``deidentify`` nothing the node
writes or prints names the source, as in ``medi2i batch --deidentify``: the folder is
named by the series' pseudonym (``<output>/<pseudonym>/<method id>/``), the derived
series and the manifest carry the same salted pseudonyms, kept stable across runs by the
salt file of :func:`medi2i.dicom.writing.deidentify.folder_deidentifier` in ``output``
(in the spool when the node only forwards), and messages name UIDs by their pseudonyms
and no Series Description (:mod:`medi2i.dicom.node.naming`).

Not translated: a series of no image (a structured report, a presentation state), a
localizer (scout), a series of a modality the method does not take (an RT Dose given to
an MR→CT method) or of which the node could write no CT or MR series, and a series that
came back to the node through forwarding (its own output, a series derived from its own
output at any depth, or one medi2i derived with this node's method anywhere in its chain
of derivations: nodes forwarding to each other; :mod:`medi2i.dicom.node.lineage`) are
``skipped``; a series derived with other methods is translated (a chain of methods);
one whose instances belong to several studies (one Series Instance UID reused) is
``failed``, as ``medi2i predict`` refuses such a folder.

Warnings raised while a series is handled (pydicom's about a peer's odd values, say)
are not printed as Python warnings: they go to the series' record (``warnings``) and
its one log line.

A series received again later replaces its earlier derived series and sidecar (with new
Series and SOP Instance UIDs) only when it holds every instance the earlier one was made
from (:mod:`medi2i.dicom.node.history`); instances arriving later that are not a full
resend are ``failed`` and the earlier output is kept: their line says that the derived
series already made lacks them and is incomplete, and that the remedy is to send the
whole series again. A full resend's line and record say which derived series it
replaces (``replaces``). A series whose instances show it is incomplete (Images in
Acquisition above the number received, Instance Numbers that do not start at 1 or have
gaps: :mod:`medi2i.dicom.node.completeness`) is translated with a warning saying so.

With a forward peer the derived files are then sent with C-STORE
(:mod:`medi2i.dicom.node.send`); without ``output`` they are written to a hidden folder
in the spool and removed once sent. A derived series that was not sent in full is never
deleted: without ``output`` it is kept in a ``.unforwarded-<time>-<series>`` folder of
the spool, and the record names it and counts what the peer stored and refused.

The received instances are removed once the series is recorded, except when it
``failed`` (it could not be read as one volume, e.g. a slice is missing, or translated,
or its output or the manifest could not be written): then they are kept in a
``.failed-<time>-<series>`` folder of the spool (the log line says where), so nothing
acknowledged to the sender is lost. Such a line names slices by Instance Number (the
spooled files are named by SOP Instance UID) and asks for the whole series again.
Instances that are not a full resend of a translated series are kept the same way
(and the earlier output too: :mod:`medi2i.dicom.node.history`), and so are those of a
``discarded`` series (aborted and not sent again, or an instance of it refused), in a
``.discarded-<time>-<series>`` folder, and those of a series skipped because it came
back through forwarding (it may be another node's only output) in a
``.looped-<time>-<series>`` folder. Such folders stay until a person deletes them.
The manifest's records are described in :mod:`medi2i.dicom.node.records`.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.batch_study import failure_message, timed_stage
from medi2i.dicom.node.completeness import incompleteness_warnings
from medi2i.dicom.node.history import EarlierSeries, SeriesHistory, partial_resend_message
from medi2i.dicom.node.lineage import OWN_OUTPUT, loop_reason, read_lineage
from medi2i.dicom.node.messages import (
    collision_message,
    discard_reason,
    is_series_warning,
    node_message,
    warning_text,
)
from medi2i.dicom.node.naming import SourceNames
from medi2i.dicom.node.outcomes import Delivery, Outcome
from medi2i.dicom.node.records import SeriesRecord, SeriesStatus, append_record, describe
from medi2i.dicom.node.screening import pick_series, skip_reason
from medi2i.dicom.node.spool import set_aside
from medi2i.errors import InputError

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.dicom.node.send import Peer, SendReport
    from medi2i.dicom.node.spool import Leftover, TakenSeries
    from medi2i.dicom.reading.file_records import ImageHeader
    from medi2i.dicom.reading.series_records import SeriesInfo
    from medi2i.dicom.reading.series_selection import SeriesSelector
    from medi2i.dicom.writing.deidentify import Deidentifier
    from medi2i.engine import SlidingWindowEngine
    from medi2i.method import Method
    from medi2i.prediction import Condition
    from medi2i.registry import Registry
    from medi2i.settings import InferenceSettings

__all__ = ["STAGES", "SeriesRecord", "SeriesStatus", "SeriesTranslator", "describe"]

STAGES = ("receive", "read", "infer", "write", "send")


@dataclass(frozen=True)
class SeriesTranslator:
    """Translates complete series for a node; the same for every series it receives.

    Every series is predicted on one sliding-window engine, made for the first series
    that reaches inference and kept for the node's lifetime, so a batch of windows
    lowered after the device ran out of memory stays lowered for later series. Series
    are translated one at a time (the node has one worker thread).

    Attributes:
        method: A ready method.
        settings: Inference settings (progress off).
        manifest: The JSON Lines manifest.
        work: The spool folder (for derived series that are only forwarded).
        output: Where derived series are stored, or ``None`` to only forward.
        forward: The peer derived series are sent to, or ``None``.
        calling_ae_title: The node's own AE title, used when forwarding.
        selector: Translate only the series these rules match (modality, description,
            orientation, ...; for a series of several volumes, ``volume`` picks one);
            others are ``skipped``.
        condition: Predict-time condition.
        deidentify: De-identify the derived series.
        registry: The plugins ``method`` came from, for the provenance; the installed
            ones when ``None``.
        model: The trained-model folder ``method`` was loaded from, for the provenance.
    """

    method: Method
    settings: InferenceSettings
    manifest: Path
    work: Path
    output: Path | None = None
    forward: Peer | None = None
    calling_ae_title: str = "MEDI2I"
    selector: SeriesSelector | None = None
    condition: Condition = None
    deidentify: bool = False
    registry: Registry | None = None
    model: Path | str | None = None

    @cached_property
    def _deidentifier(self) -> Deidentifier | None:
        if not self.deidentify:
            return None
        from medi2i.dicom.writing.deidentify import folder_deidentifier

        return folder_deidentifier(self.output if self.output is not None else self.work)

    @cached_property
    def names(self) -> SourceNames:
        """How the node names source series in what it writes and prints."""
        return SourceNames(self._deidentifier)

    @cached_property
    def _history(self) -> SeriesHistory:
        root = self.output if self.output is not None else self.work
        return SeriesHistory(root, self.method.id)

    @cached_property
    def _engine(self) -> SlidingWindowEngine:
        from medi2i.engine import SlidingWindowEngine

        return SlidingWindowEngine(settings=self.settings)

    @cached_property
    def _registry(self) -> Registry:
        if self.registry is not None:
            return self.registry
        from medi2i.plugins import load_plugins
        from medi2i.registry import Registry

        return Registry(load_plugins())

    # -- one series, from the spool to the manifest -----------------------------------------

    def handle(self, taken: TakenSeries) -> SeriesRecord:
        """Translate (or discard) ``taken``, record it and remove its spooled files.

        Never raises for a failure of the series: a manifest that cannot be written is
        told in the returned record's ``note`` (the log line), and the received files of
        a series that failed to be written are kept (see the module docstring).

        Returns:
            The record as written (de-identified when the node de-identifies).
        """
        record = SeriesRecord(
            series_uid=taken.series_uid,
            instances=taken.instances,
            calling_ae=taken.calling_ae_titles,
            timings={"receive": taken.receive_seconds},
        )
        problems: list[str] = []
        if not taken.complete or taken.refused:
            discarded = replace(record, status="discarded", error=discard_reason(taken))
            outcome = Outcome(discarded, keep_input=True)
        else:
            self._append(record, (), problems)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                outcome = self._translate(taken, record)
            said = tuple(dict.fromkeys(warning_text(w) for w in caught if is_series_warning(w)))
            said = tuple(dict.fromkeys((*outcome.record.warnings, *said)))
            if said:
                outcome = replace(outcome, record=replace(outcome.record, warnings=said))
        final = outcome.record
        kept = outcome.keep_input or (bool(problems) and final.status == "failed")
        if kept:
            final = self._keep_input(taken, final, partial=outcome.partial)
        self._append(final, outcome.descriptions, problems)
        if problems and not kept and final.status == "failed":
            final, kept = self._keep_input(taken, final), True
        if not kept:
            taken.discard()
        if problems:
            final = replace(
                final, note=f"the manifest {self.manifest} could not be written ({problems[-1]})"
            )
        return self._scrubbed(final, outcome.descriptions)

    def record_interrupted(self, taken: TakenSeries, kept_in: Path | None) -> SeriesRecord:
        """Record a series the node stops with (not complete): where its files are kept.

        Returns:
            The record as written, with a ``note`` when the manifest could not be.
        """
        where = (
            f"its {taken.instances} received instance(s) are kept in {kept_in}: send the "
            "series again to translate it"
            if kept_in is not None
            else f"its instances could not be set aside and are left in {taken.folder}"
        )
        record = SeriesRecord(
            series_uid=taken.series_uid,
            instances=taken.instances,
            calling_ae=taken.calling_ae_titles,
            status="interrupted",
            error=f"the node stopped before the series was complete; {where}",
            timings={"receive": taken.receive_seconds},
        )
        return self._recorded(record)

    def record_abandoned(self, leftover: Leftover) -> SeriesRecord:
        """Record a series a killed node left in the spool, set aside untranslated.

        Returns:
            The record as written, with a ``note`` when the manifest could not be.
        """
        why = "its translation was interrupted" if leftover.kind == "taken" else "it may be partial"
        record = SeriesRecord(
            series_uid=leftover.series_uid,
            instances=leftover.instances,
            status="abandoned",
            error=(
                f"left by an earlier node that was killed; not translated ({why}); its "
                f"instances are kept in {leftover.moved_to}: send the series again to "
                "translate it, or delete the folder"
            ),
        )
        return self._recorded(record)

    def _recorded(self, record: SeriesRecord) -> SeriesRecord:
        """Append ``record`` to the manifest; returned scrubbed, with a ``note`` when the
        manifest could not be written."""
        problems: list[str] = []
        self._append(record, (), problems)
        if problems:
            record = replace(
                record, note=f"the manifest {self.manifest} could not be written ({problems[-1]})"
            )
        return self._scrubbed(record, ())

    def _append(
        self, record: SeriesRecord, descriptions: Sequence[str], problems: list[str]
    ) -> None:
        """Append ``record`` (scrubbed) to the manifest; a failure goes to ``problems``."""
        try:
            append_record(self.manifest, self._scrubbed(record, descriptions))
        except OSError as exc:
            problems.append(str(exc))

    def _keep_input(
        self, taken: TakenSeries, record: SeriesRecord, *, partial: bool = False
    ) -> SeriesRecord:
        """Set the received files of a failed, discarded or looped series aside; the
        record says where."""
        kinds = {"discarded": "discarded", "skipped": "looped"}
        kind = kinds.get(record.status, "failed")
        try:
            folder = set_aside(taken.folder, kind, self.names.uid(taken.series_uid))
        except OSError:
            folder = taken.folder
        if kind == "discarded" or partial:
            kept = (
                f"its {taken.instances} received instance(s) are kept in {folder} (delete "
                "the folder once the whole series was sent again)"
            )
        elif kind == "looped":
            kept = (
                f"its {taken.instances} received instance(s) are kept in {folder} (they may "
                "be another node's only output; delete the folder once they are not needed)"
            )
        else:
            kept = (
                f"its {taken.instances} received instance(s) are kept in {folder}: to "
                "translate them once the cause is fixed, send them to the node again "
                f"(medi2i dicom send {folder} HOST:PORT:AET)"
            )
        error = (record.error or "").replace(str(taken.folder), str(folder))
        return replace(record, error=f"{error}; {kept}")

    def _scrubbed(self, record: SeriesRecord, descriptions: Sequence[str]) -> SeriesRecord:
        """The record as written and printed: naming no source when de-identifying."""
        names = self.names
        if not names.hiding:
            return record

        def text(value: str | None) -> str | None:
            return None if value is None else names.text(value, descriptions=descriptions)

        return replace(
            record,
            series_uid=names.uid(record.series_uid),
            study_uid=names.optional_uid(record.study_uid),
            calling_ae=(),
            error=text(record.error),
            note=text(record.note),
            warnings=tuple(text(w) or "" for w in record.warnings),
        )

    def _translate(self, taken: TakenSeries, record: SeriesRecord) -> Outcome:
        timings = dict(record.timings)
        descriptions: tuple[str, ...] = ()
        found_images: list[ImageHeader] = []
        if self._history.produced(taken.series_uid):
            return Outcome(replace(record, status="skipped", error=OWN_OUTPUT), True)
        try:
            found = self._scanned(taken)
            found_images = [image for info in found for image in info.images]
            descriptions = tuple(info.description for info in found)
            record = replace(record, study_uid=found[0].study_instance_uid)
            looped = self._loop_reason(found_images)
            if looped is not None:  # kept: it may be another node's only output
                loop = replace(record, status="skipped", error=looped)
                return Outcome(loop, True, descriptions)
            skipped = skip_reason(
                found,
                self.method,
                self.condition,
                self.selector,
                force_modality=self.settings.force_modality,
            )
            if skipped is not None:
                skip = replace(record, status="skipped", error=skipped)
                return Outcome(skip, False, descriptions)
            series = pick_series(taken.series_uid, found, self.selector)
            made_from = frozenset(path.stem for path in series.files)
            name = self.names.uid(taken.series_uid)
            earlier = self._history.earlier_series(name)
            received = frozenset(map(self.names.uid, taken.received_uids()))
            if earlier is not None and not earlier.instances <= received:
                stored = self.output / name / self.method.id if self.output is not None else None
                error = partial_resend_message(
                    earlier, received, self._history.path(name), str(stored) if stored else None
                )
                failed = replace(record, status="failed", error=error)
                return Outcome(failed, True, descriptions, partial=True)
            record = replace(
                record,
                replaces=self._replaces(name, earlier),
                warnings=incompleteness_warnings(found_images),
            )
            delivery = self._run(taken, series, made_from, timings)
        except Exception as exc:  # one bad series must never stop the node
            error = node_message(failure_message(exc), taken, found_images)
            if taken.collisions:
                error = f"{collision_message(taken.collisions)}; {error}"
            failed = replace(record, status="failed", error=error, timings=timings)
            return Outcome(failed, True, descriptions)
        report = delivery.report
        status: SeriesStatus = "failed" if delivery.error is not None else "done"
        final = replace(
            record,
            status=status,
            outputs=delivery.outputs,
            forwarded_to=str(self.forward) if self.forward is not None else None,
            forwarded=(
                {"sent": len(report.sent), "failed": len(report.failed)}
                if report is not None
                else None
            ),
            error=delivery.error,
            timings=timings,
        )
        return Outcome(final, False, descriptions)

    def _replaces(self, name: str, earlier: EarlierSeries | None) -> str | None:
        """The earlier derived series a translation of ``name`` replaces, or ``None``."""
        if earlier is not None:
            return f"the derived series {earlier.describe()}"
        folder = self.output / name / self.method.id if self.output is not None else None
        if folder is not None and folder.is_dir():  # its note was deleted: time unknown
            return f"the derived series in {folder}"
        return None

    def _scanned(self, taken: TakenSeries) -> Sequence[SeriesInfo]:
        """The received files' series (one per volume of a series of several)."""
        from medi2i.dicom.reading.series_scan import scan_folder

        found = scan_folder(taken.folder, slice_tolerance_mm=self._tolerance).series
        if not found:
            raise InputError(f"series {taken.series_uid}: no image among the received files")
        return found

    def _loop_reason(self, images: Sequence[ImageHeader]) -> str | None:
        """Why a series that came back through forwarding is ``skipped``: derived from
        this node's own output, or with its method anywhere in its chain of derivations
        (:func:`medi2i.dicom.node.lineage.loop_reason`)."""
        if not images:
            return None
        lineage = read_lineage(images[0].path)
        return loop_reason(lineage, self.method.id, self._history.produced)

    @property
    def _tolerance(self) -> float | None:
        return self.selector.slice_tolerance_mm if self.selector is not None else None

    # -- translating, writing, forwarding ---------------------------------------------------

    def _run(
        self,
        taken: TakenSeries,
        series: SeriesInfo,
        made_from: frozenset[str],
        timings: dict[str, float],
    ) -> Delivery:
        from medi2i.dicom.reading.series_volume import read_dicom_series
        from medi2i.prediction import predict_tensor

        with timed_stage(timings, "read"):
            image = read_dicom_series(series)
        facts: dict[str, object] = {}
        with timed_stage(timings, "infer"):
            result = predict_tensor(
                self.method,
                image,
                settings=self.settings,
                condition=self.condition,
                engine=self._engine,
                run_facts=facts,
            )
        name = self.names.uid(series.series_instance_uid)
        scratch = None
        if self.output is not None:
            folder = self.output / name / self.method.id
        else:
            scratch = self.work / f".derived-{name}-{os.getpid()}"
            folder = scratch / self.method.id
        try:
            with timed_stage(timings, "write"):
                files = self._write(result, folder)
                self._remember_output(files)
                if scratch is None:
                    self._provenance(series, image, folder, taken.calling_ae_titles, facts)
                self._history.remember(
                    self.names.uid(taken.series_uid), map(self.names.uid, made_from)
                )
            report = self._forward(files, timings)
            if report is not None and not report.failed:
                self._history.note_sent(name, str(self.forward))
        except BaseException:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            raise
        return self._delivered(folder, scratch, report, len(files))

    def _delivered(
        self, folder: Path, scratch: Path | None, report: SendReport | None, count: int
    ) -> Delivery:
        """What became of the derived series in ``folder``; an unsent one is kept."""
        outputs = (str(folder),) if scratch is None else ()
        if report is None or not report.failed:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            return Delivery(outputs, report)
        assert self.forward is not None
        peer = self.forward
        error = f"forwarded {len(report.sent)} of {count} derived file(s) to {peer}: "
        error += report.failed[0][1]
        if scratch is not None:
            name = scratch.name.removeprefix(".derived-").rsplit("-", 1)[0]
            try:
                kept = set_aside(scratch, "unforwarded", name) / folder.name
            except OSError:
                kept = folder
            outputs = (str(kept),)
            error += f"; the derived series is kept in {kept}"
        else:
            kept = folder
            error += f"; the derived series is stored in {kept}"
        error += (
            f": send it again with 'medi2i dicom send {kept} {peer.host}:{peer.port}:"
            f"{peer.ae_title}'"
        )
        return Delivery(outputs, report, error)

    def _remember_output(self, files: Sequence[Path]) -> None:
        """Note the Series Instance UID of the derived series in ``files``, so that the
        node knows it again (see the module docstring)."""
        from pydicom import dcmread

        if files:
            header = dcmread(files[0], stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
            self._history.remember_output(str(header.get("SeriesInstanceUID", "")))

    def _write(self, result: MetaTensor, folder: Path) -> list[Path]:
        from medi2i.dicom.source import META_KEY, DicomSource
        from medi2i.dicom.writing.derived_series import write_derived_series
        from medi2i.dicom.writing.volume_writer import (
            METHOD_ID_KEY,
            OUTPUT_MODALITY_KEY,
            output_modality,
        )

        found = result.meta.get(META_KEY)
        source = found if isinstance(found, DicomSource) else None
        declared = {
            OUTPUT_MODALITY_KEY: self.method.output_spec.modality,
            METHOD_ID_KEY: self.method.id,  # the writer's message names the method
        }
        return write_derived_series(
            result,
            folder,
            source=source,
            modality=output_modality(declared, source, folder),
            method_id=self.method.id,
            method_version=self.method.version,
            deidentify=self.deidentify,
            deidentifier=self._deidentifier,
        )

    def _provenance(
        self,
        series: SeriesInfo,
        image: MetaTensor,
        folder: Path,
        calling_ae: tuple[str, ...],
        facts: dict[str, object],
    ) -> None:
        from medi2i.io.atomic import atomic_path
        from medi2i.provenance import provenance, run_record, without_source

        record = provenance(
            self.method,
            source=folder,  # a folder is never hashed as a file; the volume is
            model=self.model,
            settings=self.settings,
            registry=self._registry,
            image=image,
            condition=self.method.parse_condition(self.condition),
        )
        record["run"] = run_record(facts)  # the method's own report
        known = not self.deidentify
        record["input"] = without_source(record["input"], keep_uid=known)  # no spool path
        record["series_uid"] = series.series_instance_uid if known else None
        record["study_uid"] = series.study_instance_uid if known else None
        record["calling_ae"] = list(calling_ae) if known else None
        with atomic_path(folder.with_name(f"{self.method.id}.provenance.json")) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")

    def _forward(self, files: list[Path], timings: dict[str, float]) -> SendReport | None:
        if self.forward is None:
            return None
        from medi2i.dicom.node.send import send_files

        with timed_stage(timings, "send"):
            return send_files(files, self.forward, calling_ae_title=self.calling_ae_title)
