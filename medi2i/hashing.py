"""SHA-256 of whole files, read in blocks so that large files never sit in memory.

Example:
    >>> import hashlib, tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "a.bin"
    ...     _ = path.write_bytes(b"medi2i")
    ...     file_sha256(path) == hashlib.sha256(b"medi2i").hexdigest()
    True
"""

from __future__ import annotations

import hashlib
import os

BLOCK_BYTES = 1 << 20
"""Bytes read at a time (1 MiB)."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's content, as 64 lowercase hex digits.

    Args:
        path: The file to hash.

    Returns:
        The hex digest, as ``hashlib.sha256(content).hexdigest()`` gives it.

    Raises:
        OSError: The file cannot be opened or read (e.g. it does not exist, or is a
            folder).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()
