"""Atomic output: write under a temporary name next to the destination, then rename.

A crash, an exception or a full disk while writing never leaves a half-written output
under the final name, and never destroys an existing output: the rename happens only
after the writer returned. The temporary name lives in the destination folder (a
rename across file systems is not atomic) and keeps the destination's suffix, because
format libraries choose the format and compression by it.

A process killed outright (``kill -9``, power loss) cannot remove its temporary file.
The temporary name carries the writing process's id, ``.out.tmp-<pid>-<hex>.nii.gz``,
so the next atomic write into that folder removes what a process that no longer runs
left there (:func:`remove_stale_temporaries`), and never touches a write in progress.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medi2i.errors import OutputError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``.

    The temporary path does not exist yet: create it as a file or as a folder (a
    model folder, a DICOM series). Parent folders of ``path`` are created. When the
    block raises, the temporary file or folder is removed and ``path`` is untouched.

    Args:
        path: The final destination.

    Yields:
        A sibling of ``path`` named like ``.out.tmp-1a2b3c4d.nii.gz``.

    Example:
        >>> with atomic_path(Path("out") / "report.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    temporary = temporary_sibling(path)
    try:
        yield temporary
        _replace(temporary, path)
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

    Args:
        path: The final header path.

    Yields:
        ``<temporary folder>/<path.name>``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    folder = temporary_sibling(path.with_name(path.name + ".parts"))
    folder.mkdir()
    try:
        yield folder / path.name
        header_last = sorted(folder.iterdir(), key=lambda part: part.name == path.name)
        for part in header_last:
            os.replace(part, path.parent / part.name)
    except OSError as exc:
        raise _not_written(path, exc) from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _not_written(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    return OutputError(
        f"cannot write {path}: {reason}; nothing was written there (free disk space, or "
        "choose a folder you can write to)"
    )


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name next to ``path`` with the same suffix(es) and this process's id."""
    stem, dot, suffix = path.name.partition(".")
    while True:
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        candidate = path.with_name(f".{stem}.tmp-{token}{dot}{suffix}")
        if not candidate.exists():
            return candidate


_TEMPORARY = re.compile(r"^\..+?\.tmp-(?:(?P<pid>\d+)-)?[0-9a-z_]{6,}")
LEGACY_TEMPORARY_AGE_S = 3600.0
"""A temporary name without a process id (older medi2i) is stale after this many seconds."""


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one of medi2i's temporary names (``.out.tmp-...``)."""
    return _TEMPORARY.match(name) is not None


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files and folders that dead medi2i writers left in ``folder``.

    A name ``.<name>.tmp-<pid>-<hex>...`` is stale when no process ``<pid>`` runs on
    this machine; a name without a process id when it is older than
    :data:`LEGACY_TEMPORARY_AGE_S`. Nothing else is touched.

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
        if match is None or not _is_stale(entry, match.group("pid")):
            continue
        _remove(entry)
        removed.append(entry)
    return removed


def _is_stale(entry: Path, pid: str | None) -> bool:
    if pid is None:
        try:
            return time.time() - entry.lstat().st_mtime > LEGACY_TEMPORARY_AGE_S
        except OSError:
            return False
    return not _process_runs(int(pid))


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
    if temporary.is_dir() and not temporary.is_symlink():
        shutil.rmtree(temporary, ignore_errors=True)
    else:
        temporary.unlink(missing_ok=True)
