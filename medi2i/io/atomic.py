"""Atomic output: write under a temporary name next to the destination, then rename.

A crash, an exception or a full disk while writing never leaves a half-written output
under the final name, and never destroys an existing output: the rename happens only
after the writer returned. The temporary name lives in the destination folder (a
rename across file systems is not atomic) and keeps the destination's suffix, because
format libraries choose the format and compression by it.

Two more guarantees, for callers that ask: inside :func:`refusing_existing`, the final
rename refuses a destination that appeared while the output was written (two processes
writing one new output: one wins, the other gets an error, never a silent
replacement); and :func:`placed_with` puts a companion file (an output's provenance
sidecar) in place in the same step as the output, with Ctrl-C held off between the two
renames, so an interrupted ``--overwrite`` never leaves a new output beside an old
sidecar.

A process killed outright (``kill -9``, power loss) cannot remove its temporary file.
The temporary name carries a marker and the writing process's id,
``.out.medi2i-tmp-<pid>-<8 hex digits>.nii.gz``, so the next atomic write into that folder
removes what a process that no longer runs left there (:func:`remove_stale_temporaries`),
and never touches a write in progress. Only names of exactly that form are removed: a
user's ``.scan.tmp-backup.nii.gz`` is not medi2i's to delete, however old it is.

Inside :func:`recording_published`, every final path an atomic write puts in place is
recorded (the rename and the record happen with Ctrl-C and SIGTERM held off), so an
interrupted command can name what it completed instead of claiming nothing was kept.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medi2i.errors import OutputError


@dataclass(frozen=True)
class _Refusal:
    """How :func:`refusing_existing` refuses: whether an empty folder may be taken, and
    what the message tells the user to do."""

    empty_folders: bool
    remedy: str


_OVERWRITE_REMEDY = (
    "choose another output path, or pass --overwrite (overwrite=True in Python) to replace it"
)
_REFUSE_EXISTING: ContextVar[_Refusal | None] = ContextVar("medi2i_refuse_existing", default=None)
_COMPANION: ContextVar[tuple[Path, Path, Path] | None] = ContextVar(
    "medi2i_companion", default=None
)
_RECORDERS: list[dict[Path, None]] = []  # per process: every thread's writes count


@contextmanager
def recording_published() -> Iterator[dict[Path, None]]:
    """Record the final paths that atomic writes put in place while the block runs.

    Yields:
        An insertion-ordered dict whose keys are the paths placed so far (as the
        writers named them), filled in as writes complete.

    Example:
        >>> with recording_published() as placed:  # doctest: +SKIP
        ...     write_volume(volume, Path("out.nii.gz"))
        >>> list(placed)  # doctest: +SKIP
        [PosixPath('out.nii.gz'), PosixPath('out.provenance.json')]
    """
    placed: dict[Path, None] = {}
    _RECORDERS.append(placed)
    try:
        yield placed
    finally:  # by identity: two recorders holding the same paths are equal dicts
        del _RECORDERS[next(i for i, found in enumerate(_RECORDERS) if found is placed)]


def _record_published(*paths: Path) -> None:
    for recorder in list(_RECORDERS):
        for path in paths:
            recorder[Path(path)] = None


@contextmanager
def refusing_existing(
    *, empty_folders: bool = True, remedy: str = _OVERWRITE_REMEDY
) -> Iterator[None]:
    """Within the block, an atomic write whose destination exists at the moment of the
    final rename is refused (:class:`OutputError`) and its temporary removed: the
    destination was checked to be free before the work, and someone else (another
    process or thread) wrote it meanwhile.

    Args:
        empty_folders: Whether a folder written atomically may take the place of an
            empty folder (a DICOM series into a folder made for it); with ``False`` an
            empty folder is refused too, and the rename itself never replaces one
            where the system can say so (Linux ``renameat2`` with ``RENAME_NOREPLACE``).
        remedy: What the refusal tells the user to do.
    """
    token = _REFUSE_EXISTING.set(_Refusal(empty_folders=empty_folders, remedy=remedy))
    try:
        yield
    finally:
        _REFUSE_EXISTING.reset(token)


@contextmanager
def placed_with(temporary: Path, final: Path, *, output: Path) -> Iterator[None]:
    """Within the block, the atomic write of ``output`` also renames ``temporary`` to
    ``final`` right after its own rename, with Ctrl-C held off between the two: an
    output and its companion are replaced together."""
    token = _COMPANION.set((Path(temporary), Path(final), Path(output)))
    try:
        yield
    finally:
        _COMPANION.reset(token)


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM off for a few renames (main thread only; elsewhere
    Python delivers no signal), then deliver what arrived."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(number)
        if handler is None:  # installed outside Python: left alone, it cannot be restored
            continue
        previous[number] = handler
        signal.signal(number, lambda received, _frame: arrived.append(received))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for received in arrived:  # again, now to the handler that was in place
            signal.raise_signal(received)


def _place(temporary: Path, path: Path) -> None:
    """The final rename of an atomic write: refusing an existing destination inside
    :func:`refusing_existing`, and bringing a :func:`placed_with` companion along."""
    companion = _COMPANION.get()
    if companion is not None and companion[2] != path:
        companion = None  # another write than the output's
    # held off for the record too: an interrupt then never misses a path put in place
    with _interrupts_held():
        refusal = _REFUSE_EXISTING.get()
        if refusal is not None:
            _claim(temporary, path, refusal)
        else:
            _replace(temporary, path)
        _record_published(path)
        if companion is not None:
            os.replace(companion[0], companion[1])
            _record_published(companion[1])


def _claim(temporary: Path, path: Path, refusal: _Refusal) -> None:
    """Rename ``temporary`` to ``path`` only if nothing is there (an empty folder may
    take a folder when ``refusal`` allows it): a hard link, which fails on an existing
    name, for a file."""
    if temporary.is_dir():
        _require_still_free(temporary, path, refusal)
        try:
            if refusal.empty_folders:
                os.rename(temporary, path)  # fails over a folder that is no longer empty
            else:  # os.rename would replace an empty folder made since the check
                _rename_no_replace(temporary, path)
        except OSError:
            _require_still_free(temporary, path, refusal)
            raise
        return
    try:
        os.link(temporary, path)
    except FileExistsError:
        _require_still_free(temporary, path, refusal)
        raise
    except OSError:  # a file system without hard links
        try:
            _rename_no_replace(temporary, path)
        except OSError:
            _require_still_free(temporary, path, refusal)
            raise
        return
    temporary.unlink()


def _require_still_free(temporary: Path, path: Path, refusal: _Refusal) -> None:
    if not (path.exists() or path.is_symlink()):
        return
    if refusal.empty_folders and path.is_dir() and temporary.is_dir() and not any(path.iterdir()):
        return  # an empty folder may take a series
    raise OutputError(
        f"{path} appeared while this output was being made (another process or thread "
        f"wrote it); it was kept and this output was not written: {refusal.remedy}"
    )


_RENAME_NOREPLACE = 1  # linux/fs.h
_AT_FDCWD = -100


def _rename_no_replace(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, failing with ``FileExistsError`` when anything is
    at ``target``, an empty folder included: Linux's ``renameat2`` with
    ``RENAME_NOREPLACE`` where the C library and the file system have it; elsewhere a
    check just before a plain rename (which a name made in between can still lose to)."""
    renameat2 = _renameat2()
    if renameat2 is not None:
        names = os.fsencode(source), os.fsencode(target)
        if renameat2(_AT_FDCWD, names[0], _AT_FDCWD, names[1], _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(target))
    if target.exists() or target.is_symlink():
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    os.rename(source, target)


def _renameat2() -> Any:
    """The C library's ``renameat2`` (glibc 2.28 and later), or ``None``."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):  # not glibc, or no C library by None
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``.

    The temporary path does not exist yet: create it as a file or as a folder (a
    model folder, a DICOM series). Parent folders of ``path`` are created. When the
    block raises, the temporary file or folder is removed and ``path`` is untouched.

    Args:
        path: The final destination.

    Yields:
        A sibling of ``path`` named like ``.out.medi2i-tmp-4242-1a2b3c4d.nii.gz``.

    Example:
        >>> with atomic_path(Path("out") / "report.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    path = Path(path)
    make_parent_folders(path)
    remove_stale_temporaries(path.parent)
    temporary = temporary_sibling(path)
    try:
        yield temporary
        if temporary.exists() or temporary.is_symlink():  # not already placed as a companion
            with_default_mode(temporary)
            _place(temporary, path)
    except OSError as exc:  # a full disk, a read-only folder: one line, nothing kept
        _remove(temporary)
        raise _not_written(path, exc) from exc
    except BaseException:
        _remove(temporary)
        raise


@contextmanager
def atomic_file_group(path: Path) -> Iterator[Path]:
    """Like :func:`atomic_path` for formats that write a header and a data file.

    ``.mhd`` and ``.nhdr`` headers name their data file (``out.raw``) relative to
    themselves, so both must be written under their final names. This yields
    ``path``'s name inside a temporary folder; on success every file written there is
    moved next to ``path``, the header last, so the header never points at missing data.
    A data file may replace an existing file only when that file is the data file of the
    header being replaced (an ``--overwrite`` of an earlier output): anything else of
    that name, another volume's data or the very input's, is refused and kept.

    Args:
        path: The final header path.

    Yields:
        ``<temporary folder>/<path.name>``.
    """
    path = Path(path)
    make_parent_folders(path)
    remove_stale_temporaries(path.parent)
    folder = temporary_sibling(path.with_name(path.name + ".parts"))
    folder.mkdir()
    try:
        yield folder / path.name
        header_last = sorted(folder.iterdir(), key=lambda part: part.name == path.name)
        for part in header_last:
            with_default_mode(part)
        for part in header_last[:-1]:
            _require_replaceable(path, path.parent / part.name)
        refusal = _REFUSE_EXISTING.get()
        if refusal is not None:
            _require_still_free(header_last[-1], path, refusal)
        for part in header_last[:-1]:
            os.replace(part, path.parent / part.name)
            _record_published(path.parent / part.name)
        _place(header_last[-1], path)
    except OSError as exc:
        raise _not_written(path, exc) from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _require_replaceable(header: Path, data: Path) -> None:
    """Refuse to put a data file over an existing file that ``header`` does not name."""
    if not (data.exists() or data.is_symlink()):
        return
    named = False
    try:
        with header.open("rb") as stream:
            text = stream.read(1 << 16).decode("latin-1")
        fields = re.findall(
            r"^\s*(?:ElementDataFile|data ?file)\s*[=:]\s*(.+?)\s*$", text, re.M | re.I
        )
        named = data.name in fields
    except OSError:
        pass
    if not named:
        raise OutputError(
            f"cannot write {header}: its data file {data} exists and is not the data file "
            f"of an earlier {header.name}, so writing would replace another file (perhaps "
            "the input's voxels); nothing was written. Choose another output name, or move "
            "that file"
        )


def with_default_mode(path: Path) -> None:
    """Give the file at ``path`` the mode a plain ``open()`` gives a new file: 0666 less
    the process's umask (0644 under the usual 022). Libraries that write through
    ``mkstemp`` (safetensors among them) leave their files 0600, which other users of a
    shared machine cannot read, unlike every other file medi2i writes beside them.
    Folders and links are left as they are."""
    if path.is_file() and not path.is_symlink():
        os.chmod(path, 0o666 & ~current_umask())


def current_umask() -> int:
    """The process's umask, read without changing it where Linux reports it
    (``/proc/self/status``); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_parent_folders(path: Path) -> None:
    """Create the folders ``path`` goes in.

    Raises:
        OutputError: A file stands where one of them would be, or they cannot be made
            (a read-only folder); the message names it.
    """
    blocking = next((parent for parent in Path(path).parents if parent.is_file()), None)
    if blocking is not None:
        raise OutputError(
            f"cannot write {path}: {blocking} is a file, not a folder; choose another output path"
        )
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _not_written(path, exc) from exc


def _not_written(path: Path, exc: OSError) -> OutputError:
    reason = os_reason(exc)
    return OutputError(
        f"cannot write {path}: {reason}; nothing was written there ({write_remedy(exc)})"
    )


_REMEDIES = {
    errno.ENOSPC: "free disk space, or choose a folder you can write to",
    errno.EDQUOT: "free space within your disk quota, or choose a folder you can write to",
    errno.EROFS: "the file system is read-only: choose a folder on a writable one",
    errno.EACCES: "choose a folder you have write permission for",
    errno.EPERM: "choose a folder you have write permission for",
}


def write_remedy(exc: BaseException) -> str:
    """What to do about a failed write, by the system's error number (from ``exc`` or
    the error it wraps): a full disk, a read-only file system and a folder without
    write permission each need something else."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _REMEDIES:
            return _REMEDIES[seen.errno]
        seen = seen.__cause__ or seen.__context__
    return "free disk space, or choose a folder you can write to"


def os_reason(exc: BaseException) -> str:
    """The system's reason for a failed file operation (``"No space left on device"``),
    from ``exc`` or the error it wraps: a library that re-raises with its own text
    (pydicom puts a whole traceback in its message) keeps the original as the cause."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name next to ``path`` with the same suffix(es) and this process's id.

    The marker goes before the trailing suffixes of letters alone (``.nii.gz``, by which
    format libraries choose the format), so the rest of the name is kept whole:
    ``a_0.05.nii.gz`` is written as ``.a_0.05.medi2i-tmp-<pid>-<hex>.nii.gz`` and the
    folder ``a_0.05`` as ``.a_0.05.medi2i-tmp-<pid>-<hex>``.
    """
    parts = path.name.split(".")
    keep = len(parts)
    while keep > 1 and parts[keep - 1].isascii() and parts[keep - 1].isalpha():
        keep -= 1
    stem, suffix = ".".join(parts[:keep]), "".join(f".{part}" for part in parts[keep:])
    while True:
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        candidate = path.with_name(f".{stem}.{TEMPORARY_MARKER}-{token}{suffix}")
        if not candidate.exists():
            return candidate


TEMPORARY_MARKER = "medi2i-tmp"
_TEMPORARY = re.compile(
    r"^\..*\." + TEMPORARY_MARKER + r"-(?P<pid>[0-9]{1,10})-[0-9a-f]{8}(?:\.[^/]*)?$"
)


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one of medi2i's temporary names
    (``.out.medi2i-tmp-<pid>-<8 hex digits>...``, as :func:`temporary_sibling` makes them)."""
    return _TEMPORARY.match(name) is not None


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files and folders that dead medi2i writers left in ``folder``.

    A name of :func:`temporary_sibling`'s form is stale when no process ``<pid>`` runs
    on this machine. Nothing else is touched, whatever its name or age.

    Returns:
        What was removed.
    """
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return []
    removed = []
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or _process_runs(int(match.group("pid"))):
            continue
        _remove(entry)
        removed.append(entry)
    return removed


def _process_runs(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # it exists but is not ours, or the id cannot be asked about: keep it
    return True


def _replace(temporary: Path, path: Path) -> None:
    if not (temporary.is_dir() and path.is_dir()):
        os.replace(temporary, path)
        return
    # os.replace cannot put a folder over a non-empty one: move the old one aside
    # first, and bring it back if the swap fails
    backup = temporary_sibling(path)
    os.replace(path, backup)
    try:
        os.replace(temporary, path)
    except BaseException:
        os.replace(backup, path)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _remove(temporary: Path) -> None:
    """Remove a temporary file or folder, best effort: cleaning up must never hide the
    error that made the write fail (on a read-only file system even unlinking a file
    that was never made raises ``EROFS``, not ``ENOENT``)."""
    if temporary.is_dir() and not temporary.is_symlink():
        shutil.rmtree(temporary, ignore_errors=True)
        return
    with suppress(OSError):
        temporary.unlink(missing_ok=True)
