"""Printing text that others control (a peer's Series Description, a file's name) safely.

A DICOM header, a file name or a folder name may hold a newline or a terminal escape
(``\\x1b[2J`` clears the screen). Printed raw, such text starts a line of its own in a
log or a terminal that reads like medi2i's (``sent 99 file(s)``), or rewrites what is on
the screen. Every line medi2i prints that may hold such text goes through
:func:`one_line`.

Example:
    >>> one_line("T1\\nERROR: forged")
    'T1\\\\nERROR: forged'
    >>> one_line("\\x1b[2Jclear")
    '\\\\x1b[2Jclear'
"""

from __future__ import annotations

__all__ = ["one_line"]


def one_line(text: str) -> str:
    """``text`` with its control and other unprintable characters escaped as ``repr``
    does (a newline becomes ``\\n``, an escape ``\\x1b``), so that it stays on one line
    and cannot move the cursor; printable text, spaces included, is unchanged."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char == " " else repr(char)[1:-1] for char in text)


def message_lines(text: str) -> str:
    """``text`` for a one-message printer (``Error: ...``): each line through
    :func:`one_line`, and every line after the first indented by two spaces.

    Some messages list one problem per line on purpose, so their line breaks are
    kept; the indent keeps any such line, and one forged by a newline in a file name
    or a DICOM value, from reading as a line of its own (``Error: ...``, ``sent 99
    file(s)``) at the start of the terminal line.

    Example:
        >>> print(message_lines("bad series 'T1\\nsent 99 file(s)'"))
        bad series 'T1
          sent 99 file(s)'
    """
    return "\n  ".join(one_line(line) for line in text.split("\n"))


def described(value: object) -> str:
    """What ``value`` is, for a message that must not paste its contents (an array of
    millions of voxels): its type, and its shape and dtype when it has them.

    Example:
        >>> import numpy as np
        >>> described(np.zeros((2, 3), np.float32))
        'a ndarray object of shape (2, 3), float32'
        >>> described(3)
        'a int object'
    """
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    facts = f" of shape {tuple(shape)}" if isinstance(shape, tuple | list) or shape else ""
    facts += f", {dtype}" if facts and dtype is not None else ""
    return f"a {type(value).__name__} object{facts}"
