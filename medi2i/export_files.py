"""Putting an export's file pair (the program and its JSON description) in place for
:func:`medi2i.export.export_program`: the target checked before the work, a pair
replaced only as a whole with ``--overwrite``, and what appeared meanwhile kept."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from medi2i.errors import OptionsError


def require_writable_target(path: Path) -> None:
    """Refuse an export to ``path`` before its work (which takes seconds to minutes)
    when its folder cannot be written: a file is made there and removed. A folder that
    does not exist yet is created at the end, as ``medi2i predict`` creates an output's
    folders; the nearest one that exists is tried instead.

    Raises:
        OutputError: The folder (or the nearest existing one above it) cannot be
            written to: read-only, full, not a folder; the message names it.
    """
    import tempfile

    from medi2i.errors import OutputError
    from medi2i.io.atomic import os_reason, write_remedy

    folder = next((p for p in Path(path).absolute().parents if p.exists()), Path("/"))
    try:
        handle, probe = tempfile.mkstemp(prefix=".medi2i-writable-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            f"cannot write {path}: {folder} is not writable ({os_reason(exc)}); nothing was "
            f"exported: {write_remedy(exc)}"
        ) from None


EXPORT_REMEDY = "choose another path, or move that one away, and export again"
"""What a placement refused because a file appeared meanwhile tells the user to do."""


def require_free(path: Path, sidecar: Path, *, overwrite: bool) -> None:
    """Refuse an existing export file or description (either alone) unless
    ``overwrite``; a folder at either path always (an export replaces files only).

    Raises:
        OptionsError: A file is there and ``overwrite`` is not set.
        OutputError: A folder is there.
    """
    from medi2i.io.destinations import check_destination

    check_destination(path, inputs=[], overwrite=True, folder=False)
    check_destination(sidecar, inputs=[], overwrite=True, sidecar_of=path)
    if overwrite:
        return
    for target in (path, sidecar):
        if target.exists() or target.is_symlink():
            raise OptionsError(
                f"{target} exists; choose another path, or pass --overwrite (overwrite=True "
                "in Python) to replace it"
            )


def replace_pair(
    path: Path, sidecar: Path, description: str, write: Callable[[Path], None]
) -> None:
    """Put the exported file and its description in place over what is there (``overwrite``):
    both are written in full under temporary names in their folder, then renamed one
    right after the other with Ctrl-C held off; a failure before that keeps the old
    pair (or the lone old description) as it was."""
    from medi2i.io.atomic import atomic_path, make_parent_folders, placed_with, temporary_sibling

    make_parent_folders(sidecar)
    staged = temporary_sibling(sidecar)
    try:
        staged.write_text(description, encoding="utf-8")
        with placed_with(staged, sidecar, output=path), atomic_path(path) as tmp:
            write(tmp)
    finally:
        with contextlib.suppress(OSError):  # gone already once put in place
            staged.unlink(missing_ok=True)


def place_pair(path: Path, sidecar: Path, description: str, write: Callable[[Path], None]) -> None:
    """Put the exported file and its description in place, both or neither, and never
    over a file that appeared at either path while the export ran (the paths were
    checked free before the work, which takes seconds): the staged files are removed,
    what appeared is kept, and :class:`~medi2i.errors.OutputError` says so."""
    from medi2i.io import atomic_path
    from medi2i.io.atomic import refusing_existing

    placed: os.stat_result | None = None
    try:
        # the description first, put in place only after the network
        with (
            refusing_existing(empty_folders=False, remedy=EXPORT_REMEDY),
            atomic_path(sidecar) as staged,
        ):
            staged.write_text(description, encoding="utf-8")
            with atomic_path(path) as tmp:
                write(tmp)
            placed = path.stat()
    except BaseException:
        if placed is not None:  # the network is in place, its description refused
            _remove_if_same(path, placed)
        raise


def _remove_if_same(path: Path, placed: os.stat_result) -> None:
    """Remove ``path`` if it is still the file this export placed there."""
    with contextlib.suppress(OSError):
        now = path.stat()
        if (now.st_dev, now.st_ino) == (placed.st_dev, placed.st_ino):
            path.unlink()
