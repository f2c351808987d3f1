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
writes names the source, as in ``medi2i batch --deidentify``: the folder is named by the
series' pseudonym (``<output>/<pseudonym>/<method id>/``), the derived series and the
manifest carry the same salted pseudonyms, kept stable across runs by the salt file of
:func:`medi2i.dicom.writing.deidentify.folder_deidentifier` in ``output`` (in the spool
when the node only forwards), and error messages have the source's UIDs and spool paths
replaced. A series received again later
replaces its earlier derived series and sidecar. With a forward peer the derived files are then
sent with C-STORE (:mod:`medi2i.dicom.node.send`); without ``output`` they are written to a
hidden folder in the spool and removed once sent.

The manifest is JSON Lines like batch's, one record appended per event::

    {"series_uid": "1.2.3", "study_uid": "1.2", "instances": 200, "calling_ae": ["SCANNER"],
     "status": "done", "outputs": [".../1.2.3/pix2pix"], "forwarded_to": "PACS@host:104",
     "error": null, "timings": {"receive": 3.1, "read": 0.2, "infer": 5.0, "write": 0.7,
     "send": 1.2}, "time": "2025-01-31T..."}

``status`` is ``received`` (written before translating), ``done``, ``failed`` (with
``error``), ``skipped`` (not what the selection rules ask for) or ``discarded`` (its association
was aborted, or an instance of it was refused as damaged, and no retry came: nothing was
translated).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from medi2i.batch import failure_message, timed_stage
from medi2i.errors import InputError, OutputError

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.dicom.node.send import Peer
    from medi2i.dicom.node.spool import TakenSeries
    from medi2i.dicom.reading.series_records import SeriesInfo
    from medi2i.dicom.reading.series_selection import SeriesSelector
    from medi2i.dicom.writing.deidentify import Deidentifier
    from medi2i.engine import SlidingWindowEngine
    from medi2i.method import Method
    from medi2i.prediction import Condition
    from medi2i.registry import Registry
    from medi2i.settings import InferenceSettings

SeriesStatus = Literal["received", "done", "failed", "skipped", "discarded"]
STAGES = ("receive", "read", "infer", "write", "send")


@dataclass(frozen=True)
class SeriesRecord:
    """One manifest line: the state of one received series after an event."""

    series_uid: str
    instances: int
    calling_ae: tuple[str, ...] = ()
    study_uid: str | None = None
    status: SeriesStatus = "received"
    outputs: tuple[str, ...] = ()
    forwarded_to: str | None = None
    error: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    time: str = ""

    def to_json(self) -> str:
        """The record as one JSON line (no newline)."""
        raw = asdict(self)
        return json.dumps(
            {**raw, "calling_ae": list(self.calling_ae), "outputs": list(self.outputs)}
        )


def append_record(manifest: Path, record: SeriesRecord) -> SeriesRecord:
    """Stamp ``record`` with the time and append it to ``manifest`` as one flushed line."""
    stamped = replace(record, time=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with manifest.open("a", encoding="utf-8") as stream:
        stream.write(stamped.to_json() + "\n")
        stream.flush()
        os.fsync(stream.fileno())
    return stamped


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

    def _name(self, uid: str | None) -> str | None:
        """``uid``, or its pseudonym when de-identifying."""
        if uid is None or self._deidentifier is None:
            return uid
        return self._deidentifier.uid(uid)

    def _scrubbed(
        self, record: SeriesRecord, taken: TakenSeries, study: str | None
    ) -> SeriesRecord:
        """The record as written: no source UID, AE title or spool path when de-identifying."""
        if self._deidentifier is None:
            return record
        error = record.error
        if error is not None:
            for original in (taken.series_uid, study):
                if original:
                    error = error.replace(original, "<uid>")
            error = error.replace(str(self.work), "<spool>")
        return replace(
            record,
            series_uid=self._name(taken.series_uid) or "",
            study_uid=self._name(study),
            calling_ae=(),
            error=error,
        )

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

    def handle(self, taken: TakenSeries) -> SeriesRecord:
        """Translate (or discard) ``taken``, record it and remove its spooled files."""
        record = SeriesRecord(
            series_uid=taken.series_uid,
            instances=taken.instances,
            calling_ae=taken.calling_ae_titles,
            timings={"receive": taken.receive_seconds},
        )
        try:
            if not taken.complete or taken.refused:
                why = (
                    f"{len(taken.refused)} instance(s) of it were refused as damaged and "
                    f"not sent again (SOP Instance {taken.refused[0]})"
                    if taken.refused
                    else "the association was aborted and the series was not sent again"
                )
                discarded = replace(
                    record, status="discarded", error=f"{why}; nothing was translated"
                )
                return append_record(self.manifest, self._scrubbed(discarded, taken, None))
            append_record(self.manifest, self._scrubbed(record, taken, None))
            final = self._translate(taken, record)
            return append_record(self.manifest, self._scrubbed(final, taken, final.study_uid))
        finally:
            taken.discard()

    def _translate(self, taken: TakenSeries, record: SeriesRecord) -> SeriesRecord:
        timings = dict(record.timings)
        try:
            found = self._scanned(taken)
            record = replace(record, study_uid=found[0].study_instance_uid)
            if self.selector is not None and not any(map(self.selector.matches, found)):
                return replace(
                    record,
                    status="skipped",
                    error=f"not selected ({found[0].modality or '?'} "
                    f"'{found[0].description}'; the node translates {self._wanted()})",
                )
            outputs, forwarded = self._run(self._pick(taken, found), timings, record.calling_ae)
        except Exception as exc:  # one bad series must never stop the node
            return replace(record, status="failed", error=failure_message(exc), timings=timings)
        return replace(
            record, status="done", outputs=outputs, forwarded_to=forwarded, timings=timings
        )

    def _scanned(self, taken: TakenSeries) -> Sequence[SeriesInfo]:
        """The received files' series (one per volume of a series of several)."""
        from medi2i.dicom.reading.series_scan import scan_folder

        found = scan_folder(taken.folder, slice_tolerance_mm=self._tolerance).series
        if not found:
            raise InputError(f"series {taken.series_uid}: no image among the received files")
        return found

    def _pick(self, taken: TakenSeries, found: Sequence[SeriesInfo]) -> SeriesInfo:
        from medi2i.dicom.reading.series_selection import select_series

        if len({info.series_instance_uid for info in found}) != 1:
            raise InputError(
                f"series {taken.series_uid}: the received files form {len(found)} series, "
                "not one; nothing was translated"
            )
        return select_series(found, self.selector)

    @property
    def _tolerance(self) -> float | None:
        return self.selector.slice_tolerance_mm if self.selector is not None else None

    def _wanted(self) -> str:
        assert self.selector is not None
        rules = self.selector.model_dump(exclude_defaults=True, exclude={"slice_tolerance_mm"})
        return ", ".join(f"{key}={value}" for key, value in rules.items())

    def _run(
        self, series: SeriesInfo, timings: dict[str, float], calling_ae: tuple[str, ...]
    ) -> tuple[tuple[str, ...], str | None]:
        from medi2i.dicom.reading.series_volume import read_dicom_series
        from medi2i.prediction import predict_tensor
        from medi2i.voxel_checks import COLLAPSED_HINT, require_varying_output

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
        require_varying_output(  # a constant volume is a collapse, never a result
            result.as_tensor().detach().cpu().numpy(),
            f"the output of {self.method.id!r} for series {self._name(series.series_instance_uid)}",
            hint=COLLAPSED_HINT,
        )
        scratch = None
        if self.output is not None:
            folder = self.output / str(self._name(series.series_instance_uid)) / self.method.id
        else:
            scratch = self.work / f".derived-{series.series_instance_uid}-{os.getpid()}"
            folder = scratch / self.method.id
        try:
            with timed_stage(timings, "write"):
                files = self._write(result, folder)
                if scratch is None:
                    self._provenance(series, image, folder, calling_ae, facts)
            forwarded = self._forward(files, timings)
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        return ((str(folder),) if scratch is None else ()), forwarded

    def _write(self, result: MetaTensor, folder: Path) -> list[Path]:
        from medi2i.dicom.source import META_KEY, DicomSource
        from medi2i.dicom.writing.derived_series import write_derived_series
        from medi2i.dicom.writing.volume_writer import OUTPUT_MODALITY_KEY, output_modality

        found = result.meta.get(META_KEY)
        source = found if isinstance(found, DicomSource) else None
        declared = {OUTPUT_MODALITY_KEY: self.method.output_spec.modality}
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
        from medi2i.provenance import provenance, run_record

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
        found = record["input"]
        if isinstance(found, dict):
            record["input"] = {**found, "path": None}
        known = not self.deidentify
        record["series_uid"] = series.series_instance_uid if known else None
        record["study_uid"] = series.study_instance_uid if known else None
        record["calling_ae"] = list(calling_ae) if known else None
        with atomic_path(folder.with_name(f"{self.method.id}.provenance.json")) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")

    def _forward(self, files: list[Path], timings: dict[str, float]) -> str | None:
        if self.forward is None:
            return None
        from medi2i.dicom.node.send import send_files

        with timed_stage(timings, "send"):
            report = send_files(files, self.forward, calling_ae_title=self.calling_ae_title)
        if report.failed:
            first = report.failed[0][1]
            raise OutputError(
                f"forwarded {len(report.sent)} of {len(files)} derived file(s) to "
                f"{self.forward}: {first}"
            )
        return str(self.forward)


def describe(record: SeriesRecord) -> str:
    """The node's one log line for a series."""
    head = f"series {record.series_uid}: received {record.instances} instance(s)"
    if record.calling_ae:
        head += f" from {', '.join(record.calling_ae)}"
    if record.status == "done":
        seconds = sum(record.timings.get(stage, 0.0) for stage in ("read", "infer", "write"))
        parts = [f"translated in {seconds:.1f} s"]
        if record.outputs:
            parts.append(f"stored to {record.outputs[0]}")
        if record.forwarded_to:
            parts.append(f"sent to {record.forwarded_to}")
        return f"{head}; {'; '.join(parts)}"
    return f"{head}; {record.status}: {record.error}"


LogLine = Callable[[str], None]
