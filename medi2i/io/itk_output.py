"""Keep what ITK prints off the terminal while medi2i reads a file through SimpleITK.

Besides its exceptions ITK reports two ways: warnings through its output window, which
SimpleITK's global warning display switch turns off, and MetaIO (its MetaImage library),
which writes to C++'s ``std::cerr`` whatever that switch says ("MetaImage: Read: Cannot
open data file"). Both would print raw text around medi2i's one-line message. While ITK
runs, :func:`quiet_itk` turns the switch off and points the process's standard error
(file descriptor 2) at a temporary file, so that a failed read can quote what ITK said.

Standard error belongs to the whole process: what another thread writes there during a
read lands in the same file and is not shown. Reads that overlap share one redirection
(the first to start sets it up, the last to end puts everything back).

Example:
    >>> with quiet_itk() as printed:  # doctest: +SKIP
    ...     reader.ReadImageInformation()
    ...     printed.text()
    ''
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

_LINES = 3  # lines of ITK's output quoted in a message


@dataclass
class _Redirection:
    """The state while ITK runs quietly; descriptors of -1 where nothing was redirected."""

    saved_stderr: int  # a copy of the real descriptor 2
    sink: int  # the temporary file, as descriptor 2 writes to it
    reader: int  # the same file with an offset of its own
    name: str
    warnings_shown: bool  # SimpleITK's switch before
    users: int = 0


_lock = threading.Lock()
_active: _Redirection | None = None


class ItkOutput:
    """What ITK printed to standard error since its :func:`quiet_itk` block began."""

    def __init__(self, redirection: _Redirection | None) -> None:
        self._redirection = redirection
        self._start = os.fstat(redirection.sink).st_size if redirection else 0

    def text(self) -> str:
        """The printed lines, stripped and joined with ``" / "`` (at most three)."""
        if self._redirection is None:
            return ""
        with _lock:
            os.lseek(self._redirection.reader, self._start, os.SEEK_SET)
            chunks = []
            while chunk := os.read(self._redirection.reader, 1 << 16):
                chunks.append(chunk)
        lines = [line.strip() for line in b"".join(chunks).decode(errors="replace").splitlines()]
        return " / ".join([line for line in lines if line][:_LINES])


@contextmanager
def quiet_itk() -> Iterator[ItkOutput]:
    """Run the block with ITK's warnings off and standard error kept (see the module).

    Where standard error cannot be redirected (descriptor 2 is closed), only the
    warnings are turned off and :meth:`ItkOutput.text` is empty.
    """
    redirection = _enter()
    try:
        yield ItkOutput(redirection)
    finally:
        _leave()


def _enter() -> _Redirection | None:
    global _active
    with _lock:
        if _active is None:
            _active = _redirect()
        _active.users += 1
        return _active if _active.sink >= 0 else None


def _leave() -> None:
    global _active
    with _lock:
        assert _active is not None
        _active.users -= 1
        if _active.users == 0:
            _restore(_active)
            _active = None


def _redirect() -> _Redirection:
    sitk = _simpleitk()
    shown = bool(sitk.ProcessObject_GetGlobalWarningDisplay())
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    _flush_stderr()  # what Python wrote before goes where it was meant to
    try:
        sink, name = tempfile.mkstemp(prefix="medi2i-itk-", suffix=".txt")
    except OSError:  # no temporary folder: ITK's output is not kept
        return _Redirection(-1, -1, -1, "", shown)
    reader = os.open(name, os.O_RDONLY)
    with suppress(OSError):  # gone even if the process is killed (not on Windows: later)
        os.unlink(name)
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to keep ITK's output off
        os.close(sink)
        os.close(reader)
        return _Redirection(-1, -1, -1, name, shown)
    os.dup2(sink, 2)
    return _Redirection(saved, sink, reader, name, shown)


def _restore(redirection: _Redirection) -> None:
    _flush_stderr()
    if redirection.sink >= 0:
        os.dup2(redirection.saved_stderr, 2)
        for descriptor in (redirection.saved_stderr, redirection.sink, redirection.reader):
            os.close(descriptor)
    if redirection.name:
        with suppress(OSError):
            os.unlink(redirection.name)
    _simpleitk().ProcessObject_SetGlobalWarningDisplay(redirection.warnings_shown)


def _flush_stderr() -> None:
    with suppress(AttributeError, OSError, ValueError):  # None, or closed
        sys.stderr.flush()


def _simpleitk() -> Any:
    import SimpleITK

    return SimpleITK
