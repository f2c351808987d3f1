"""Atomic output: write under a temporary name next to the destination, then rename.

A crash, an exception or a full disk while writing never leaves a half-written output
under the final name, and never destroys an existing output: the rename happens only
after the writer returned. The temporary name lives in the destination folder (a
rename across file systems is not atomic) and keeps the destination's suffix, because
format libraries choose the format and compression by it.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
    temporary = temporary_sibling(path)
    try:
        yield temporary
        _replace(temporary, path)
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
    folder = temporary_sibling(path.with_name(path.name + ".parts"))
    folder.mkdir()
    try:
        yield folder / path.name
        header_last = sorted(folder.iterdir(), key=lambda part: part.name == path.name)
        for part in header_last:
            os.replace(part, path.parent / part.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name next to ``path`` with the same suffix(es)."""
    stem, dot, suffix = path.name.partition(".")
    while True:
        candidate = path.with_name(f".{stem}.tmp-{secrets.token_hex(4)}{dot}{suffix}")
        if not candidate.exists():
            return candidate


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
