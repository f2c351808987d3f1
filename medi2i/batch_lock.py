"""The lock that keeps two ``medi2i batch`` runs out of one output root
(:mod:`medi2i.batch`): an ``fcntl.flock`` on the manifest, shared by the ranks of one
``torchrun`` launch."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import IO

from medi2i.errors import OutputError


@contextmanager
def batch_lock(manifest: Path, output_root: Path, shard: tuple[int, int] | None) -> Iterator[None]:
    """Hold the batch's manifest locked for the block (``fcntl.flock``): a second batch
    writing the same output root at the same time is refused, not run beside the first.

    A batch of one process locks the manifest exclusively. The ranks of a ``torchrun``
    launch (``shard``) share the manifest on purpose, so each takes a shared lock on it
    and the locks of :func:`_lock_launch` beside it: another launch of another size or
    of the same ranks, or a batch of one process, is refused. A manifest this lock made
    and no study was recorded in is removed again, with the folder it made for it (the
    output root) when that is empty. On a file system without locks the batch runs unlocked.

    Raises:
        OutputError: Another batch holds the lock; the message names its process when
            the system says which.
    """
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no lock
        yield
        return
    made_folder, made_manifest = not manifest.parent.exists(), not manifest.exists()
    try:
        manifest.parent.mkdir(parents=True, exist_ok=True)
        handle = manifest.open("a", encoding="utf-8")
    except OSError:  # the first append says why the manifest cannot be written
        yield
        return
    with ExitStack() as held:
        held.enter_context(handle)
        _take_lock(handle, fcntl.LOCK_SH if shard else fcntl.LOCK_EX, output_root)
        if shard is not None:
            with suppress(OSError):  # a folder that takes no new file: the manifest's lock only
                _lock_launch(held, manifest, output_root, shard)
        try:
            yield
        finally:
            if made_manifest and shard is None:
                _remove_if_unused(manifest, manifest.parent if made_folder else None)


def _lock_launch(
    held: ExitStack, manifest: Path, output_root: Path, shard: tuple[int, int]
) -> None:
    """The locks of one rank of a ``torchrun`` launch of ``shard[1]`` processes: a shared
    one on ``.<manifest>.world<size>.lock``, taken first, then no launch of another size
    may hold its own (a launch of 3 beside one of 2 would translate studies twice; of two
    launches starting at once, one sees the other), and an exclusive one on
    ``.<manifest>.rank<N>.lock`` (the same rank of another launch)."""
    import fcntl

    rank, size = shard
    world = manifest.with_name(f".{manifest.name}.world{size}.lock")
    _take_lock(held.enter_context(world.open("a", encoding="utf-8")), fcntl.LOCK_SH, output_root)
    for other in sorted(manifest.parent.glob(f".{manifest.name}.world*.lock")):
        if other != world:
            with other.open("a", encoding="utf-8") as handle:
                _take_lock(handle, fcntl.LOCK_EX, output_root)  # released on close
    path = manifest.with_name(f".{manifest.name}.rank{rank}.lock")
    _take_lock(held.enter_context(path.open("a", encoding="utf-8")), fcntl.LOCK_EX, output_root)


def _take_lock(handle: IO[str], mode: int, output_root: Path) -> None:
    """Lock ``handle`` without waiting; refuse when another process holds it."""
    import fcntl

    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return  # a file system without locks (some NFS mounts: ENOLCK): run unlocked
        holder = _lock_holder(handle)
        by = f" (pid {holder})" if holder is not None else ""
        raise OutputError(
            f"another medi2i batch{by} is writing {output_root}; nothing was done: wait for "
            "it to finish, or give another output root"
        ) from None


def _lock_holder(handle: IO[str]) -> int | None:
    """The process holding a lock on ``handle``'s file, as Linux's ``/proc/locks`` says."""
    inode = os.fstat(handle.fileno()).st_ino
    try:
        lines = Path("/proc/locks").read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:  # "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF"
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
            continue  # a process waiting for a lock, or another kind
        pid, where = fields[4], fields[5].rsplit(":", 1)[-1]
        if where == str(inode) and pid.isdigit() and int(pid) not in (0, os.getpid()):
            return int(pid)
    return None


def _remove_if_unused(manifest: Path, made_folder: Path | None) -> None:
    """Remove an empty manifest (and the folder made for it, when empty)."""
    with suppress(OSError):
        if manifest.stat().st_size == 0:
            manifest.unlink()
            if made_folder is not None:
                made_folder.rmdir()  # only when empty
