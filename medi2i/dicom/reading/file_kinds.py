"""Telling the files a scan may open from those it must not: special files and broken links.

A folder tree can hold a FIFO (named pipe), a socket or a device, directly or through a
link (a link to ``/dev`` makes every device reachable). Opening a FIFO blocks until
something writes to it, so a scan that opened every name it found would hang forever;
reading a device may never end. Only regular files (after following links) are opened;
the others are listed as skipped with what they are, and a link whose target does not
exist is named as the broken link it is rather than as a damaged file.

Example:
    >>> not_regular(Path("/dev/null"))  # doctest: +SKIP
    'a character device, not a regular file; not read'
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["broken_link", "not_regular"]


def not_regular(path: Path) -> str | None:
    """Why ``path`` (links followed) is not opened: it is a FIFO, a socket or a device
    (:func:`medi2i.io.base.special_file_kind`); ``None`` for a regular file, a folder,
    or a path that cannot be looked at (opening it reports why)."""
    from medi2i.io.base import special_file_kind

    kind = special_file_kind(path)
    return None if kind is None else f"{kind}, not a regular file; not read"


def broken_link(path: Path) -> str | None:
    """Why ``path`` is skipped when it is a symbolic link whose target does not exist
    (a study on an unmounted drive, say); ``None`` otherwise."""
    if not path.is_symlink() or path.exists():
        return None
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return (
        f"a broken link to {target}: its target does not exist (an unmounted drive or a "
        "moved folder?); not read"
    )
