"""Scan a folder tree of DICOM files without reading pixel data; group studies and series.

Each file's header is read only up to the Pixel Data element, and only the elements the
scan needs are decoded (:mod:`medi2i.dicom.reading.header_parser`, with pydicom's ``dcmread`` for
the files it leaves out), so a folder of thousands of files takes well under a
millisecond per file. Where the pixel data starts is remembered, so that the volume
reader can fetch uncompressed pixels straight from the files without parsing headers
again. Files are grouped by Study and Series Instance UID and each series is checked
for what keeps it from being one volume (see :mod:`medi2i.dicom.reading.stack_geometry`): its
:attr:`SeriesInfo.problems` say why in words a user can act on.

A series that holds several volumes at the same slice positions (echoes, time points or
phases, b-values) is split into one :class:`SeriesInfo` per volume, each with its
:attr:`SeriesInfo.volume`: the first of Echo Numbers, Echo Time, Temporal Position
Identifier, Trigger Time, Acquisition Number and Diffusion b-value (0018,9087) whose
values part the slices into complete stacks of one size is the one that tells them
apart; for the frames of an enhanced multi-frame file, Stack ID, Temporal Position Index
and Effective Echo Time (read from each frame's functional groups) are tried after them.
Stacks (Stack ID) need not share positions: a file holding an axial and a coronal stack
is split when each stack is a volume on its own. A selector's ``volume`` then picks one
of them.

Files that are not DICOM, have no file meta information or cannot be parsed are listed
in :attr:`ScanResult.skipped` with the reason; nothing raises for one bad file. Symbolic
links to folders are followed (a folder reached twice, by a link back up the tree or two
links to one place, is searched once); a folder that cannot be read (permission denied)
and a hidden folder (its name starts with ``.``), which is not searched, are listed there
too (:attr:`~medi2i.dicom.reading.file_records.SkippedFile.folder`). Only regular files
are opened: a FIFO, socket or device (which could block the scan forever) is listed as
skipped with what it is, and a link whose target does not exist as a broken link
(:mod:`medi2i.dicom.reading.file_kinds`). Folders given as ``exclude`` (a batch's output
root) are never searched, however they are reached; each place the walk reaches one (a
link to it or into it) is listed there too (``excluded``), so that a batch says why.

Example:
    >>> result = scan_folder("export/")  # doctest: +SKIP
    >>> [(s.modality, s.description, s.number_of_images) for s in result.series]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.dicom.reading.file_kinds import broken_link, not_regular
from medi2i.dicom.reading.file_records import (
    VOLUME_TAGS,
    FileRecord,
    ImageHeader,
    SkippedFile,
    named,
    read_file_record,
)
from medi2i.dicom.reading.header_parser import InvalidValue, text
from medi2i.dicom.reading.series_records import ScanResult, SeriesInfo, StudyInfo, VolumeKey
from medi2i.errors import InputError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["scan_folder"]


def scan_folder(
    path: str | Path,
    *,
    slice_tolerance_mm: float | None = None,
    exclude: Sequence[Path] = (),
) -> ScanResult:
    """Scan a folder tree (or one file) for DICOM files and group them into series.

    Headers only: no pixel data is read. Symbolic links to files and folders are
    followed, each folder searched once however often it is reached. Hidden files are
    skipped; hidden folders are not searched but listed in :attr:`ScanResult.skipped`,
    as are folders that cannot be read.
    Messages (problems, notes, skip reasons) name files by their path relative to
    ``path`` (``t1/IM0020.dcm``), as
    :attr:`~medi2i.dicom.reading.file_records.ImageHeader.name` says.

    Args:
        path: A folder (searched recursively) or a single DICOM file.
        slice_tolerance_mm: How far (mm) a slice may lie from the regular grid fitted to
            its series' positions; by default 0.2 mm or 5 % of the slice spacing,
            whichever is larger, at most 25 % of it; a value given is not capped (see
            :mod:`medi2i.dicom.reading.stack_geometry`).
        exclude: Folders never searched, nor anything in them, whether reached by their
            path or through a link (compared by real path and by device and inode):
            a batch's output root, whose derived series are not inputs. Each link
            the walk follows to one of them, or into one, is listed in
            :attr:`ScanResult.skipped` (``excluded``).

    Returns:
        The studies with their series (see :class:`SeriesInfo`), and the files that
        were skipped with the reason.

    Raises:
        InputError: ``path`` does not exist or cannot be read.
    """
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root} does not exist; check the path and its spelling")
    records: list[FileRecord] = []
    skipped: list[SkippedFile] = []
    with warnings.catch_warnings():
        # invalid values are reported per file below; pydicom's warnings would repeat them
        warnings.simplefilter("ignore")
        aliases: dict[Path, list[Path]] = {}
        searched: list[Path] = []
        for file in _files_under(root, skipped, _Excluded(exclude), aliases, searched):
            record = named(read_file_record(file), _relative_name(file, root))
            if isinstance(record, SkippedFile):
                skipped.append(record)
            else:
                records.append(record)
        studies = _group(records, slice_tolerance_mm, root)
    return ScanResult(
        root=root,
        studies=studies,
        skipped=tuple(skipped),
        aliases={first: tuple(others) for first, others in aliases.items()},
        searched=tuple(searched),
    )


def _relative_name(file: Path, root: Path) -> str:
    """How messages name ``file``: its path relative to the scanned folder, so that
    ``IM0020.dcm`` of two studies, or a copy in a second folder, are told apart."""
    if file == root:
        return file.name
    return file.relative_to(root).as_posix()


def _files_under(
    root: Path,
    skipped: list[SkippedFile],
    excluded: _Excluded,
    aliases: dict[Path, list[Path]],
    searched: list[Path],
) -> Iterator[Path]:
    """The regular files under ``root`` in name order, following links to folders; the
    folders not searched (unreadable, hidden, excluded) and the files not opened
    (special files, broken links) are appended to ``skipped``, the folders searched to
    ``searched``; the other paths of a folder reached again are added to ``aliases``."""
    if not root.is_dir():
        unopened = _not_opened(root, root)
        if unopened is not None:
            skipped.append(unopened)
        else:
            yield root
        return
    seen: dict[tuple[int, int], Path] = {}
    for folder, subfolders, names in os.walk(
        root, followlinks=True, onerror=lambda exc: _unreadable(exc, root, skipped)
    ):
        if excluded.holds(Path(folder)):
            subfolders[:] = []
            skipped.append(excluded.skipped(Path(folder), root))
            continue
        if not _first_visit(Path(folder), seen, aliases):
            subfolders[:] = []  # a link back up the tree must not recurse forever
            continue
        searched.append(Path(folder))
        for name in sorted(name for name in subfolders if name.startswith(".")):
            skipped.append(_hidden(Path(folder) / name, root))
        # real folders before links, so that a folder linked from beside it is named
        # by its own path
        subfolders[:] = sorted(
            (name for name in subfolders if not name.startswith(".")),
            key=lambda name: (os.path.islink(os.path.join(folder, name)), name),
        )
        for name in sorted(names):
            if name.startswith("."):
                continue
            file = Path(folder) / name
            unopened = _not_opened(file, root)
            if unopened is not None:
                skipped.append(unopened)
            else:
                yield file


def _not_opened(file: Path, root: Path) -> SkippedFile | None:
    """The record of a file the scan does not open: a broken link (which may have been
    a slice, so ``damaged``) or a FIFO, socket or device (opening a FIFO blocks)."""
    name = _relative_name(file, root)
    broken = broken_link(file)
    if broken is not None:
        return SkippedFile(file, broken, damaged=True, name=name, broken_link=True)
    special = not_regular(file)
    if special is not None:
        return SkippedFile(file, special, not_dicom=True, name=name)
    return None


class _Excluded:
    """Folders a scan passes over, by real path and by device and inode."""

    def __init__(self, folders: Sequence[Path]) -> None:
        self.paths = [Path(os.path.realpath(folder)) for folder in folders]
        self.identities: dict[tuple[int, int], Path] = {}
        for folder, real in zip(folders, self.paths, strict=True):
            try:
                status = Path(folder).stat()
            except OSError:
                continue
            self.identities[(status.st_dev, status.st_ino)] = real

    def holds(self, folder: Path) -> bool:
        """Whether ``folder`` is one of the folders or lies inside one."""
        return self._match(folder) is not None

    def _match(self, folder: Path) -> tuple[Path, bool] | None:
        """The excluded folder that ``folder`` is or lies in, and whether it is that
        folder itself; ``None`` when it is none of them."""
        if not self.paths:
            return None
        real = Path(os.path.realpath(folder))
        for path in self.paths:
            if real == path or path in real.parents:
                return path, real == path
        try:
            status = folder.stat()
        except OSError:
            return None
        found = self.identities.get((status.st_dev, status.st_ino))
        return (found, True) if found is not None else None

    def skipped(self, folder: Path, root: Path) -> SkippedFile:
        """The note of an excluded ``folder`` the walk reached: it is not searched."""
        path, whole = self._match(folder) or (folder, True)
        what = f"the batch's output root {path}"
        if not whole:
            what = f"a folder in {what}"
        beneath = Path(os.path.realpath(root)) / os.path.relpath(folder, root)
        if Path(os.path.realpath(folder)) != beneath:  # reached through a link
            what = f"a link to {what}"
        return SkippedFile(
            folder,
            f"{what}, not searched: a batch never takes its own outputs for inputs",
            folder=True,
            excluded=True,
            name=_relative_name(folder, root),
        )


def _first_visit(
    folder: Path, seen: dict[tuple[int, int], Path], aliases: dict[Path, list[Path]]
) -> bool:
    """Whether ``folder`` (its device and inode, wherever links lead) is new to ``seen``;
    a folder seen before gets ``folder`` as one more of its ``aliases``."""
    try:
        status = folder.stat()
    except OSError:
        return True  # os.walk reports it through onerror when listing it fails
    identity = (status.st_dev, status.st_ino)
    if identity in seen:
        aliases.setdefault(seen[identity], []).append(folder)
        return False
    seen[identity] = folder
    return True


def _unreadable(exc: OSError, root: Path, skipped: list[SkippedFile]) -> None:
    """Record a folder that cannot be listed; the root itself is an error of its own."""
    folder = Path(exc.filename) if exc.filename else root
    why = exc.strerror or str(exc)
    if folder == root:
        raise InputError(
            f"{root} cannot be read: {why}; give yourself read permission to it (chmod u+rx) "
            "or point at another folder"
        ) from exc
    skipped.append(
        SkippedFile(
            folder, f"cannot be read: {why}", folder=True, name=_relative_name(folder, root)
        )
    )


def _hidden(folder: Path, root: Path) -> SkippedFile:
    return SkippedFile(
        folder,
        "hidden folder (its name starts with '.'), not searched; rename it without the "
        "leading '.' to include what it holds",
        folder=True,
        hidden=True,
        name=_relative_name(folder, root),
    )


def _group(
    records: list[FileRecord], tolerance_mm: float | None, root: Path
) -> tuple[StudyInfo, ...]:

    by_series: dict[tuple[str, str], list[FileRecord]] = {}
    for record in records:
        by_series.setdefault((record.study_uid, record.series_uid), []).append(record)
    by_study: dict[str, list[SeriesInfo]] = {}
    first_of_study: dict[str, Dataset] = {}
    for (study_uid, _), members in by_series.items():
        images = [image for record in members for image in record.images]
        not_images = [
            (record.path, record.not_image or "") for record in members if record.not_image
        ]
        infos = _series_volumes(
            members[0].dataset, study_uid, images, not_images, tolerance_mm=tolerance_mm
        )
        by_study.setdefault(study_uid, []).extend(replace(info, root=root) for info in infos)
        first_of_study.setdefault(study_uid, members[0].dataset)
    return tuple(
        _study(study_uid, first_of_study[study_uid], series)
        for study_uid, series in by_study.items()
    )


def _series_volumes(
    dataset: Dataset,
    study_uid: str,
    images: list[ImageHeader],
    not_images: list[tuple[Path, str]],
    *,
    tolerance_mm: float | None,
) -> list[SeriesInfo]:
    """The series as one :class:`SeriesInfo`, or one per volume when it holds several."""
    from medi2i.dicom.reading.slice_spacing import DUPLICATE_POSITIONS
    from medi2i.dicom.reading.stack_geometry import series_info

    whole = series_info(dataset, study_uid, images, not_images, tolerance_mm=tolerance_mm)
    duplicates = any(problem.text.startswith(DUPLICATE_POSITIONS) for problem in whole.problems)
    if not whole.problems:
        return [whole]
    for position, tag in enumerate(VOLUME_TAGS):
        # the stacks of an enhanced file lie apart (an axial and a coronal one); the
        # other tags part volumes at the same positions
        stacks = tag == "StackID"
        if not (duplicates or stacks):
            continue
        groups = _partition(whole.images, position, same_places=not stacks)
        if groups is None:
            continue
        volumes = [
            series_info(dataset, study_uid, members, not_images, tolerance_mm=tolerance_mm)
            for members in groups.values()
        ]
        if stacks and not all(volume.is_volume for volume in volumes):
            continue
        if any(
            problem.text.startswith(DUPLICATE_POSITIONS)
            for volume in volumes
            for problem in volume.problems
        ):
            continue
        return [
            replace(
                volume,
                notes=tuple(dict.fromkeys(whole.notes + volume.notes)),
                volume=VolumeKey(
                    index, len(groups), tag, value, _volume_label(tag, index, value, volume)
                ),
            )
            for index, (value, volume) in enumerate(zip(groups, volumes, strict=True), start=1)
        ]
    return [whole]


def _partition(
    images: tuple[ImageHeader, ...], position: int, *, same_places: bool = True
) -> dict[float, list[ImageHeader]] | None:
    """The images by their value of ``VOLUME_TAGS[position]``, in order of value, when
    that parts them into two or more stacks of one size and, with ``same_places``, of the
    same slice positions; else ``None``."""
    groups: dict[float, list[ImageHeader]] = {}
    for image in images:
        value = image.volume_tags[position] if len(image.volume_tags) > position else None
        if value is None:
            return None
        groups.setdefault(value, []).append(image)
    if len(groups) < 2:
        return None
    places = {
        frozenset(
            tuple(round(coordinate, 2) for coordinate in image.position or ()) for image in members
        )
        for members in groups.values()
    }
    if same_places and len(places) != 1:
        return None
    if same_places and len({len(members) for members in groups.values()}) != 1:
        return None
    return dict(sorted(groups.items()))


def _volume_label(tag: str, index: int, value: float, volume: SeriesInfo) -> str:
    if tag == "EchoNumbers":
        times = {image.volume_tags[1] for image in volume.images}
        time = times.pop() if len(times) == 1 else None
        return f"echo {value:g}" + (f" (TE {time:g} ms)" if time is not None else "")
    return {
        "EchoTime": f"echo {index} (TE {value:g} ms)",
        "TemporalPositionIdentifier": f"time point {value:g}",
        "TriggerTime": f"phase {index} (trigger time {value:g} ms)",
        "AcquisitionNumber": f"acquisition {value:g}",
        "StackID": f"stack {value:g} ({volume.orientation})",
        "TemporalPositionIndex": f"time point {value:g}",
        "EffectiveEchoTime": f"echo {index} (TE {value:g} ms)",
    }.get(tag, f"b = {value:g} s/mm2")


def _study(uid: str, dataset: Dataset, series: list[SeriesInfo]) -> StudyInfo:
    def order(info: SeriesInfo) -> tuple[int, str, int]:
        number = info.series_number if info.series_number is not None else 1 << 30
        return (number, info.description, info.volume.index if info.volume else 0)

    def value(keyword: str) -> str:
        try:
            return text(dataset, keyword)
        except InvalidValue:
            return ""

    return StudyInfo(
        study_instance_uid=uid,
        patient_id=value("PatientID"),
        patient_name=value("PatientName"),
        study_date=value("StudyDate"),
        description=value("StudyDescription"),
        series=tuple(sorted(series, key=order)),
    )
