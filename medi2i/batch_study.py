"""One study of ``medi2i batch`` (:mod:`medi2i.batch`): read, predict, write and record
it, and the helpers the DICOM node shares (failure messages, stage timings, leftovers of
an interrupted write)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.batch_records import StudyRecord
from medi2i.errors import InputError, Medi2iError
from medi2i.text import one_line

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.dicom.source import DicomSource
    from medi2i.dicom.writing.deidentify import Deidentifier
    from medi2i.engine import SlidingWindowEngine
    from medi2i.method import Method
    from medi2i.prediction import Condition
    from medi2i.registry import Registry
    from medi2i.settings import InferenceSettings
    from medi2i.study_discovery import StudyJob


@dataclass(frozen=True)
class StudyRunner:
    """Reads, predicts and writes one study; the same for every study of a batch."""

    method: Method
    settings: InferenceSettings
    formats: tuple[str, ...]
    output_root: Path
    input_root: Path
    condition: Condition
    deidentifier: Deidentifier | None
    registry: Registry | None
    model: Path | None
    linkage: Path | None
    configuration: dict[str, object]

    @property
    def output_names(self) -> set[str]:
        """The names of a study's outputs in its folder, one per format."""
        return {
            self.method.id if name == "dicom" else f"{self.method.id}.nii.gz"
            for name in self.formats
        }

    def started(self, job: StudyJob) -> StudyRecord:
        """The study's first record: naming the source only when not de-identifying."""
        if self.deidentifier is None:
            return StudyRecord(
                study=job.key,
                input=str(job.input),
                series_uid=job.series_uid,
                configuration=self.configuration,
            )
        uid = job.series_uid
        return StudyRecord(
            study=job.key,
            input=None,
            series_uid=self.deidentifier.uid(uid) if uid else None,
            configuration=self.configuration,
        )

    def scrub(self, job: StudyJob, message: str) -> str:
        """``message`` naming no source when de-identifying: files, folders, series
        descriptions, UIDs and patient identifiers become neutral references
        (:func:`medi2i.deidentified_messages.neutral_message`)."""
        if self.deidentifier is None:
            return message
        from medi2i.deidentified_messages import neutral_message

        return neutral_message(message, job, self.input_root)

    def link(self, job: StudyJob) -> None:
        """Append the study's way back to its source to the linkage file, if asked for."""
        if self.linkage is None or self.deidentifier is None:
            return
        line = {
            "study": job.key,
            "input": str(job.input),
            "patient_id": job.patient_id,
            "study_uid": job.study_uid,
            "series_uid": job.series_uid,
            "study_uid_pseudonym": self.deidentifier.uid(job.study_uid),
            "series_uid_pseudonym": self.started(job).series_uid,
        }
        self.linkage.parent.mkdir(parents=True, exist_ok=True)
        with self.linkage.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(line) + "\n")

    def run(
        self, job: StudyJob, timings: dict[str, float], engine: SlidingWindowEngine
    ) -> tuple[tuple[str, ...], list[str]]:
        """Outputs written, and what kept the other formats from being written; the
        prediction runs on ``engine``, the one of the whole batch. The study's folders
        that did not exist before are removed again when they end up empty (the study
        failed, or was interrupted while writing)."""
        folder = self.output_root / job.key
        remove_leftovers(folder)
        created = missing_folders(folder, self.output_root)
        try:
            return self._run(job, folder, timings, engine)
        finally:  # a failed or interrupted study leaves no empty folder of its own
            remove_empty_folders(created)

    def _run(
        self, job: StudyJob, folder: Path, timings: dict[str, float], engine: SlidingWindowEngine
    ) -> tuple[tuple[str, ...], list[str]]:
        from medi2i.dicom.reading.series_volume import read_dicom_series
        from medi2i.prediction import predict_tensor

        if job.series is None:
            raise InputError(f"{job.input}: {job.problem}")
        with timed_stage(timings, "read"):
            image = read_dicom_series(job.series)
        errors: list[str] = []
        formats = [name for name in self.formats if self._writable(image, folder, name, errors)]
        if not formats:
            return (), errors  # before inference: the study can only fail
        facts: dict[str, object] = {}
        with timed_stage(timings, "predict"):
            result = predict_tensor(
                self.method,
                image,
                settings=self.settings,
                condition=self.condition,
                engine=engine,
                run_facts=facts,
            )
        outputs: list[Path] = []
        with timed_stage(timings, "write"):
            for name in formats:
                try:  # each format on its own: one failing never loses another
                    outputs.append(self._write(result, folder, name))
                except Exception as exc:
                    errors.append(f"{name}: {failure_message(exc)}")
            if outputs:  # after every format, so it lists the outputs that were written
                try:
                    self._provenance(job, folder, image, facts, outputs)
                except Exception as exc:  # the outputs are written all the same
                    errors.append(f"provenance: {failure_message(exc)}")
        return tuple(str(path) for path in outputs), errors

    def _writable(self, image: MetaTensor, folder: Path, name: str, errors: list[str]) -> bool:
        """Whether format ``name`` can hold the output of ``image``, known before inference."""
        if name != "dicom":
            return True
        from medi2i.dicom.writing.volume_writer import DicomSeriesWriter
        from medi2i.grid import Grid

        series = folder / self.method.id
        try:
            DicomSeriesWriter().check(
                self.method.output_grid(
                    Grid.of(image), self.method.parse_condition(self.condition)
                ).affine,
                {**image.meta, **self._declared},
                series,
            )
        except Medi2iError as exc:
            errors.append(f"dicom: {exc}")
            return False
        return True

    @property
    def _declared(self) -> dict[str, object]:
        """What the DICOM writer reads of the method: its messages then name it."""
        from medi2i.dicom.writing.volume_writer import METHOD_ID_KEY, OUTPUT_MODALITY_KEY

        return {
            OUTPUT_MODALITY_KEY: self.method.output_spec.modality,
            METHOD_ID_KEY: self.method.id,
        }

    def no_dicom_type(self, job: StudyJob) -> str | None:
        """Why the study is skipped when DICOM is the only format asked for and no DICOM
        image type fits its output: the method keeps the input's modality and the series
        is neither CT nor MR (an RT Dose, a PET); ``None`` otherwise."""
        series = job.series
        if series is None or self.formats != ("dicom",):
            return None
        if self.method.output_spec.modality in ("CT", "MR") or series.modality in ("CT", "MR"):
            return None
        return (
            f"series {series.series_instance_uid} is {series.modality or 'of no modality'} "
            f"('{one_line(series.description)}'), not CT or MR, and {self.method.id!r} gives its "
            "output the input's modality, so no DICOM image type fits it; add --format nifti (or "
            "dicom,nifti) to translate it into a NIfTI file"
        )

    @staticmethod
    def _source(volume: MetaTensor) -> DicomSource | None:
        from medi2i.dicom.source import META_KEY, DicomSource

        found = volume.meta.get(META_KEY)
        return found if isinstance(found, DicomSource) else None

    def _write(self, result: MetaTensor, folder: Path, name: str) -> Path:
        if name == "nifti":
            from medi2i.io import write_volume

            # the study's own output: redone studies replace it (see the manifest)
            return write_volume(result, folder / f"{self.method.id}.nii.gz", overwrite=True)
        from medi2i.dicom.writing.derived_series import write_derived_series
        from medi2i.dicom.writing.volume_writer import output_modality

        series = folder / self.method.id
        source = self._source(result)
        write_derived_series(
            result,
            series,
            source=source,
            modality=output_modality(self._declared, source, series),
            method_id=self.method.id,
            method_version=self.method.version,
            deidentify=self.deidentifier is not None,
            deidentifier=self.deidentifier,
        )
        return series

    def _provenance(
        self,
        job: StudyJob,
        folder: Path,
        image: MetaTensor,
        facts: dict[str, object],
        outputs: list[Path],
    ) -> None:
        """Write ``<method id>.provenance.json``; its ``outputs`` names, relative to the
        study's folder, the outputs this run wrote (``"<method id>/"`` for the DICOM
        series, ``"<method id>.nii.gz"``), which it describes."""
        if self.registry is None:
            return
        from medi2i.io.atomic import atomic_path
        from medi2i.provenance import provenance, run_record, without_source

        record = provenance(
            self.method,
            source=job.input,
            model=self.model,
            settings=self.settings,
            registry=self.registry,
            image=image,
            condition=self.method.parse_condition(self.condition),
        )
        record["run"] = run_record(facts)  # the method's own report
        record["series_uid"] = self.started(job).series_uid
        record["outputs"] = [path.name + ("/" if path.is_dir() else "") for path in outputs]
        if self.deidentifier is not None:
            record["input"] = without_source(record["input"])
        with atomic_path(folder / f"{self.method.id}.provenance.json") as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")


def failure_message(exc: Exception) -> str:
    """What a manifest records of a failure: a medi2i error's message as it is, anything
    else with its type, so an unexpected error is told apart from a user's mistake."""
    if isinstance(exc, Medi2iError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def timed_stage(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Record the seconds the block takes as ``timings[stage]`` (also when it raises)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(time.perf_counter() - start, 3)


def missing_folders(folder: Path, root: Path) -> list[Path]:
    """The folders from ``folder`` up to (not including) ``root`` that do not exist yet,
    deepest first: those a study's writes would create."""
    missing: list[Path] = []
    for path in (folder, *folder.parents):
        if path == root or path.exists() or path.is_symlink():
            break
        missing.append(path)
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that is an empty folder; stop at the
    first that holds anything, so nothing with content, nor a folder above it, goes."""
    for path in folders:
        if not path.is_dir() or path.is_symlink():
            continue
        try:
            path.rmdir()  # refuses a folder that is not empty (another process wrote there)
        except OSError:
            return


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove what an interrupted atomic write left in ``folder``; return what went.

    Only the hidden ``.<name>.medi2i-tmp-<pid>-<hex>...`` siblings made by
    :func:`medi2i.io.atomic.atomic_path` are touched.
    """
    if not folder.is_dir():
        return []
    from medi2i.io.atomic import is_temporary

    removed = [path for path in folder.iterdir() if is_temporary(path.name)]
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return removed
