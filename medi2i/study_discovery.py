"""Finding the studies of a DICOM tree for ``medi2i batch``: one job per study.

:func:`discover_studies` scans a folder tree (headers only), picks one series per study
with a :class:`~medi2i.dicom.reading.series_selection.SeriesSelector` and names each
study's output folder after its folder under the root (:func:`study_keys`), or after the
patient and study pseudonyms when de-identifying (:func:`pseudonymous_keys`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.errors import InputError
from medi2i.text import one_line

if TYPE_CHECKING:
    from medi2i.dicom.reading.file_records import SkippedFile
    from medi2i.dicom.reading.series_records import ScanResult, SeriesInfo
    from medi2i.dicom.reading.series_selection import SeriesSelector
    from medi2i.dicom.writing.deidentify import Deidentifier


@dataclass(frozen=True)
class StudyJob:
    """One study to process.

    Attributes:
        key: Its output folder relative to the output root.
        study_uid: Study Instance UID.
        input: The selected series' folder (the study's folder when none was selected).
        series: The selected series, or ``None`` when selection failed.
        problem: Why no series could be selected (recorded as the failure, or as the
            reason for skipping).
        skip: No series of the study matches the selection rules at all (a study of
            another modality), or the study holds only localizers (scouts): skipped,
            not failed.
        patient_id: The study's Patient ID (for pseudonyms and the linkage file).
        patient_name: Its Patient's Name (kept out of de-identified error messages).
        study_series: Every series of the study, and
        skipped: the files the scan skipped in the study's folder: what a message about
            the study may name, which a de-identified batch replaces
            (:mod:`medi2i.deidentified_messages`).
        not_searched: The job is a folder the scan did not search, not a study:
            one that cannot be read (failed, ``problem`` says why) or a hidden one
            (``skip``); it is recorded, never run.
    """

    key: str
    study_uid: str
    input: Path
    series: SeriesInfo | None
    problem: str | None = None
    skip: bool = False
    patient_id: str = ""
    patient_name: str = ""
    study_series: tuple[SeriesInfo, ...] = field(default=(), repr=False)
    skipped: tuple[SkippedFile, ...] = field(default=(), repr=False)
    not_searched: bool = False

    @property
    def series_uid(self) -> str | None:
        """Series Instance UID of the selected series."""
        return self.series.series_instance_uid if self.series is not None else None


def discover_studies(
    root: Path,
    selector: SeriesSelector | None = None,
    *,
    scan: ScanResult | None = None,
    exclude: Sequence[Path] = (),
) -> list[StudyJob]:
    """Scan ``root`` (headers only, unless ``scan`` is given) and choose one series per study.

    Folders in ``exclude`` (the batch's output root) are never searched, however they
    are reached (a link in the tree to the output root): a ``scan`` that searched one is
    made again without it, so the batch never takes its own outputs for inputs. Each
    link that leads to one becomes a skipped job (``not_searched``) saying so, so that a
    rerun counts as many studies as the first run did, when the link was broken because
    the output root did not exist yet; one met as a plain folder inside a linked folder
    (a link to the folder that holds the output root) is left out unrecorded, as the
    first run, which found nothing there, did.

    A study where no readable series (or more than one) matches ``selector`` becomes a
    job with a ``problem``, recorded as failed when it runs; one where no series at all
    matches the rules (a CT-only study in an MR batch), or where the series that match
    are only localizers (scouts), is to be skipped (``skip``). Each folder the scan
    could not read becomes a job of its own (``not_searched``) that fails, and each
    hidden folder, and each broken link outside the studies' folders (a study on an
    unmounted drive, say), one that is skipped, so none is left out unsaid; a broken
    link beside a study's series fails it, as a damaged file does.

    Raises:
        InputError: ``root`` does not exist or cannot be read, or holds no DICOM study
            and no folder it could not read.
    """
    from medi2i.dicom.reading.series_scan import scan_folder
    from medi2i.dicom.reading.series_selection import select_series
    from medi2i.dicom.reading.series_volume import require_no_damaged_neighbours

    tolerance = selector.slice_tolerance_mm if selector is not None else None
    result = scan
    if result is None or _reaches(result, exclude):
        result = scan_folder(root, slice_tolerance_mm=tolerance, exclude=exclude)
    result = replace(result, skipped=tuple(i for i in result.skipped if not _passed_over(i)))
    unsearched = [item for item in result.skipped if item.folder]
    if not result.studies and all(item.hidden or item.excluded for item in unsearched):
        first = next((item for item in unsearched if item.hidden), None)
        hidden = f"; hidden folders are not searched: {first.label}" if first else ""
        raise InputError(
            f"{root}: no DICOM studies found ({len(result.skipped)} other file(s)); "
            f"point at the folder that holds the exported studies{hidden}"
        )
    folders = {
        study.study_instance_uid: _study_folder(study.series, root) for study in result.studies
    }
    keys = study_keys(folders, root, aliases=result.aliases)
    jobs = []
    for study in result.studies:
        uid = study.study_instance_uid
        job = StudyJob(
            keys[uid],
            uid,
            folders[uid],
            None,
            patient_id=study.patient_id,
            patient_name=study.patient_name,
            study_series=study.series,
            skipped=tuple(item for item in result.skipped if _holds(folders[uid], item.path)),
        )
        scouts = _only_localizers(study.series, selector)
        if scouts is not None:
            jobs.append(replace(job, problem=scouts, skip=True))
            continue
        try:
            series = select_series(study.series, selector)
        except InputError as exc:
            skip = selector is not None and not any(selector.matches(i) for i in study.series)
            jobs.append(replace(job, problem=str(exc), skip=skip))
            continue
        job = replace(job, input=series.folder, series=series)
        try:  # a damaged file beside it may be one of its slices, as predict says
            require_no_damaged_neighbours(series, result.skipped)
        except InputError as exc:
            problem = str(exc).removeprefix(f"{series.folder}: ")
            jobs.append(replace(job, series=None, problem=problem))
            continue
        jobs.append(job)
    broken = [
        item
        for item in result.skipped
        if item.broken_link and not any(_holds(folder, item.path) for folder in folders.values())
    ]
    return jobs + [_unsearched_job(item, root) for item in unsearched + broken]


def _passed_over(item: SkippedFile) -> bool:
    """Whether ``item`` is an excluded folder (the output root) the scan met as a plain
    folder, inside a folder that a link in the tree leads to (``in/up -> ..`` beside
    ``out``): it is left out unrecorded, as on a first run, when the root did not exist
    yet and nothing was there to note. A link that leads to the root itself is recorded
    (it was a broken link on the first run)."""
    return item.excluded and not os.path.islink(item.path)


def _reaches(scan: ScanResult, folders: Sequence[Path]) -> bool:
    """Whether ``scan`` searched one of ``folders`` or holds a file in one (by real
    path): an empty output root reached through a link counts, so that the rescan
    notes the link on the first run as on later ones."""
    if not folders:
        return False
    reals = [Path(os.path.realpath(folder)) for folder in folders]
    paths = [file for series in scan.series for file in series.files]
    paths += [item.path for item in scan.skipped]
    if any(any(real in Path(os.path.realpath(path)).parents for real in reals) for path in paths):
        return True
    searched = (Path(os.path.realpath(folder)) for folder in scan.searched)
    return any(any(real == path or real in path.parents for real in reals) for path in searched)


def _only_localizers(series: Sequence[SeriesInfo], selector: SeriesSelector | None) -> str | None:
    """Why a study is skipped when every series of images that ``selector`` could pick is
    a localizer (scout), which is never a volume; ``None`` otherwise."""
    candidates = [
        info for info in series if info.images and (selector is None or selector.matches(info))
    ]
    if not candidates or not all(info.is_localizer for info in candidates):
        return None
    listed = "; ".join(
        f"{info.modality or '?'} '{one_line(info.description)}' ({info.number_of_images} image(s))"
        for info in candidates[:3]
    )
    return (
        f"only a localizer/scout series ({listed}), images for planning and no volume to "
        "translate; export the study's image series too if it should be translated"
    )


def _unsearched_job(item: SkippedFile, root: Path) -> StudyJob:
    """The job of a folder the scan did not search: failed when it cannot be read,
    skipped when hidden, excluded (the output root) or a broken link; named by its path
    under ``root``."""
    key = Path(os.path.relpath(item.path, root)).as_posix()
    if item.broken_link:
        return StudyJob(
            key,
            "",
            item.path,
            None,
            problem=item.reason,
            skip=True,
            skipped=(item,),
            not_searched=True,
        )
    if item.hidden or item.excluded:
        problem = item.reason
    else:
        problem = (
            f"{item.reason}; it may hold studies, so give yourself read permission to it "
            f"(chmod -R u+rX) and run the batch again, or move it out of {root}"
        )
    return StudyJob(
        key,
        "",
        item.path,
        None,
        problem=problem,
        skip=item.hidden or item.excluded,
        skipped=(item,),
        not_searched=True,
    )


def _holds(folder: Path, path: Path) -> bool:
    return path == folder or folder in path.parents


def _study_folder(series: Sequence[SeriesInfo], root: Path) -> Path:
    folders = [str(info.folder) for info in series if info.files]
    return Path(os.path.commonpath(folders)) if folders else root


def study_keys(
    folders: Mapping[str, Path],
    root: Path,
    *,
    aliases: Mapping[Path, Sequence[Path]] | None = None,
) -> dict[str, str]:
    """Output folder names of studies: their folder under ``root``, or a hash name.

    A study folder reached by several paths (links, see
    :attr:`~medi2i.dicom.reading.series_records.ScanResult.aliases`) is named by its real
    path when that lies under ``root``, else by the first of the link paths in name
    order: the name does not depend on which path the scan took first, so renaming or
    adding a link beside the one that names it does not name the study anew.

    Args:
        folders: The folder holding each study's files, by Study Instance UID.
        root: The scanned root.
        aliases: The other paths of folders reached more than once, by the path the
            scan named them by.

    Returns:
        The output folder of each study relative to the output root, by UID.
    """
    base = root if root.is_dir() else root.parent
    relative = {uid: _canonical(folder, base, aliases or {}) for uid, folder in folders.items()}
    taken = [key for key in relative.values()]
    return {
        uid: key if key != "." and taken.count(key) == 1 else hashed_key(uid)
        for uid, key in relative.items()
    }


def _canonical(folder: Path, base: Path, aliases: Mapping[Path, Sequence[Path]]) -> str:
    """``folder``'s name under ``base``: its real path under ``base`` when it lies there,
    else the first (in name order) of the paths that reach it."""
    paths = {folder}
    for ancestor in (folder, *folder.parents):
        for other in aliases.get(ancestor, ()):
            paths.add(other / folder.relative_to(ancestor))
    real, real_base = Path(os.path.realpath(folder)), Path(os.path.realpath(base))
    if len(paths) > 1 and real_base in real.parents:
        return real.relative_to(real_base).as_posix()
    return min(Path(os.path.relpath(path, base)).as_posix() for path in paths)


def keys_apart(jobs: Sequence[StudyJob], names: Collection[str]) -> list[StudyJob]:
    """The jobs with every output folder outside the outputs of the other studies.

    A study's folder may lie inside another's (``x`` and ``x/sct``); when its path below
    that study passes through one of ``names`` (the files and folders a study's outputs
    are named, such as ``sct`` and ``sct.nii.gz``), its outputs would be written into
    the other study's, so it is named ``study-<10 hex digits>`` instead, as a study
    directly in the root is.

    Example:
        >>> studies = {"x": "1.2", "x/sct": "1.3"}
        >>> jobs = [StudyJob(key, uid, Path(key), None) for key, uid in studies.items()]
        >>> [job.key for job in keys_apart(jobs, {"sct", "sct.nii.gz"})]
        ['x', 'study-9c193c604a']
    """
    keys = {job.key for job in jobs}

    def inside_outputs(key: str) -> bool:
        parts = key.split("/")
        return any("/".join(parts[:i]) in keys and parts[i] in names for i in range(1, len(parts)))

    return [
        replace(job, key=hashed_key(job.study_uid)) if inside_outputs(job.key) else job
        for job in jobs
    ]


def hashed_key(study_uid: str) -> str:
    """The output folder ``study-<10 hex digits>`` of a study that cannot be named after
    its folder: a hash of its Study Instance UID."""
    return f"study-{hashlib.sha256(study_uid.encode()).hexdigest()[:10]}"


def pseudonymous_keys(jobs: Sequence[StudyJob], deidentifier: Deidentifier) -> list[StudyJob]:
    """The jobs with output folders ``<Patient ID pseudonym>/<Study ID pseudonym>``:
    the values the de-identified series carry, the same in every run of a batch."""

    def key(job: StudyJob) -> str:
        if job.not_searched:  # a folder, not a study: its name may be the patient's
            return hashed_key(job.key)
        return f"{deidentifier.patient_id(job.patient_id)}/{deidentifier.study_id(job.study_uid)}"

    return [replace(job, key=key(job)) for job in jobs]
