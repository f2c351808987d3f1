"""The lock that keeps two ``medi2i batch`` runs out of one output root
(:mod:`medi2i.batch`): an ``fcntl.flock`` on ``<output root>/.medi2i-batch.lock``, whatever
the manifest, shared by the ranks of one ``torchrun`` launch; and a look at the roots of
running batches around it, so that no batch writes inside another's root or holds it."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import IO

from medi2i.errors import OutputError

LOCK_NAME = ".medi2i-batch.lock"
"""The lock file a batch holds in its output root (no output: never listed or counted)."""
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def is_lock_file(name: str) -> bool:
    """Whether ``name`` is one of the lock files a batch keeps in its output root
    (``.medi2i-batch.lock``, ``.medi2i-batch.rank<N>.lock``, ``.medi2i-batch.world<N>.lock``).

    Example:
        >>> is_lock_file(".medi2i-batch.rank3.lock"), is_lock_file("study1")
        (True, False)
    """
    return name.startswith(".medi2i-batch.") and name.endswith(".lock")


@contextmanager
def batch_lock(manifest: Path, output_root: Path, shard: tuple[int, int] | None) -> Iterator[None]:
    """Hold the batch's output root locked for the block (``fcntl.flock`` on
    ``<output_root>/.medi2i-batch.lock``, and on the manifest): a second batch writing the
    same root at the same time is refused, not run beside the first, whatever its
    ``--manifest``; so is one into a folder inside a running batch's root, or holding it.

    A batch of one process locks exclusively. The ranks of a ``torchrun`` launch
    (``shard``) share the root on purpose, so each takes a shared lock and the locks of
    :func:`_lock_launch` beside it: another launch of another size or of the same ranks,
    or a batch of one process, is refused. A batch of one process removes its lock file
    when it ends, and the manifest and the folders it made when no study was recorded
    (a lock left by a killed batch is let go by the system and blocks nothing). On a
    file system without locks the batch runs unlocked.

    Raises:
        OutputError: Another batch holds the lock, or writes a root inside this one or
            around it; the message names its process when the system says which.
    """
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no lock
        yield
        return
    made = [folder for folder in (manifest.parent, output_root) if not folder.exists()]
    made_manifest, mode = not manifest.exists(), fcntl.LOCK_SH if shard else fcntl.LOCK_EX
    root_lock: Path | None = None
    with ExitStack() as held:
        try:
            root_lock = _lock_root(held, output_root, mode)
            _lock_manifest(held, manifest, mode, output_root)
            if shard is not None:
                with suppress(OSError):  # a folder that takes no new file: the root's lock only
                    _lock_launch(held, output_root, shard)
            refuse_nested_batches(output_root)  # after the lock: of two at once, one sees the other
            yield
        finally:
            if shard is None:  # ranks leave their shared files: another rank may hold them
                _clean_up(root_lock, manifest if made_manifest else None, made)


def refuse_running_batch(output_root: Path, shard: tuple[int, int] | None) -> None:
    """Refuse, before anything is checked or made, a batch into ``output_root`` while a
    running batch writes it, a folder around it or one inside it (see :func:`batch_lock`,
    which takes the lock itself): its message comes first, not advice to overwrite.

    Raises:
        OutputError: Naming the running batch's process and root.
    """
    try:
        import fcntl
    except ImportError:
        return
    mode = fcntl.LOCK_SH if shard else fcntl.LOCK_EX  # the ranks of one launch share it
    by = _held_by(Path(os.path.realpath(output_root)) / LOCK_NAME, mode)
    if by is not None:
        raise _refusal(by, output_root)
    refuse_nested_batches(output_root)


def refuse_nested_batches(output_root: Path) -> None:
    """Refuse ``output_root`` when a running batch writes a folder that holds it (its lock
    file is tried without waiting) or a folder inside it (the batches this system's
    ``/proc`` shows).

    Raises:
        OutputError: Naming the running batch's process and root.
    """
    import fcntl

    real = Path(os.path.realpath(output_root))
    for folder in real.parents:
        by = _held_by(folder / LOCK_NAME, fcntl.LOCK_EX)
        if by is not None:
            raise _refusal(by, folder, f", which holds {output_root}", "an output root outside it")
    for pid, inner in _running_batch_roots():
        if inner != real and inner.is_relative_to(real):
            raise _refusal(
                f" (pid {pid})",
                inner,
                f", inside {output_root}",
                "an output root that does not hold it",
            )


def _lock_root(held: ExitStack, output_root: Path, mode: int) -> Path | None:
    """Lock ``<output_root>/.medi2i-batch.lock`` (made with the root when missing); its
    path, or ``None`` when the root takes no new file (the first write says why).

    A batch that ends removes its lock file while holding it: the lock is taken again
    when the file locked is no longer the one at that name."""
    try:
        output_root.mkdir(parents=True, exist_ok=True)
        path = output_root / LOCK_NAME
        for _ in range(3):
            handle = held.enter_context(path.open("a", encoding="utf-8"))
            _take_lock(handle, mode, output_root)
            if _is_at(handle, path):
                return path
            handle.close()
    except OSError:
        pass
    return None


def _lock_manifest(held: ExitStack, manifest: Path, mode: int, output_root: Path) -> None:
    """Lock the manifest too (made when missing): two batches never append to one."""
    try:
        manifest.parent.mkdir(parents=True, exist_ok=True)
        handle = held.enter_context(manifest.open("a", encoding="utf-8"))
    except OSError:  # the first append says why the manifest cannot be written
        return
    _take_lock(handle, mode, output_root)


def _lock_launch(held: ExitStack, output_root: Path, shard: tuple[int, int]) -> None:
    """The locks of one rank of a ``torchrun`` launch of ``shard[1]`` processes, in the
    output root: a shared one on ``.medi2i-batch.world<size>.lock``, taken first, then no
    launch of another size may hold its own (a launch of 3 beside one of 2 would translate
    studies twice; of two launches starting at once, one sees the other), and an
    exclusive one on ``.medi2i-batch.rank<N>.lock`` (the same rank of another launch)."""
    import fcntl

    rank, size = shard
    world = output_root / f".medi2i-batch.world{size}.lock"
    _take_lock(held.enter_context(world.open("a", encoding="utf-8")), fcntl.LOCK_SH, output_root)
    for other in sorted(output_root.glob(".medi2i-batch.world*.lock")):
        if other != world:
            with other.open("a", encoding="utf-8") as handle:
                _take_lock(handle, fcntl.LOCK_EX, output_root)  # released on close
    path = output_root / f".medi2i-batch.rank{rank}.lock"
    _take_lock(held.enter_context(path.open("a", encoding="utf-8")), fcntl.LOCK_EX, output_root)


def _take_lock(handle: IO[str], mode: int, output_root: Path) -> None:
    """Lock ``handle`` without waiting; refuse when another process holds it."""
    import fcntl

    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in _BUSY:
            return  # a file system without locks (some NFS mounts: ENOLCK): run unlocked
        raise _refusal(_holder_text(handle), output_root) from None


def _held_by(path: Path, mode: int) -> str | None:
    """Whether another process holds ``path`` locked against ``mode`` (tried without
    waiting, let go at once): `` (pid N)``, or ``""`` when the system does not say which;
    ``None`` when not held, missing, or on a file system without locks."""
    import fcntl

    try:
        with path.open("r", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
            except OSError as exc:
                return _holder_text(handle) if exc.errno in _BUSY else None
    except OSError:
        return None
    return None


def _refusal(
    by: str,
    root: Path,
    where: str = "",
    instead: str = "another output root",
) -> OutputError:
    """The one-line refusal: which batch (``by``) writes ``root``, and what to do."""
    return OutputError(
        f"another medi2i batch{by} is writing {root}{where}; nothing was done: wait for it "
        f"to finish, or give {instead}"
    )


def _holder_text(handle: IO[str]) -> str:
    holder = _lock_holder(handle)
    return f" (pid {holder})" if holder is not None else ""


def _proc_flocks() -> list[tuple[int, int]]:
    """The ``flock`` locks Linux's ``/proc/locks`` lists: (pid, inode) each, none
    waiting; empty where it cannot be read."""
    try:
        lines = Path("/proc/locks").read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    locks = []
    for line in lines:  # "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF"
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
            continue  # a process waiting for a lock, or another kind
        pid, inode = fields[4], fields[5].rsplit(":", 1)[-1]
        if pid.isdigit() and inode.isdigit():
            locks.append((int(pid), int(inode)))
    return locks


def _lock_holder(handle: IO[str]) -> int | None:
    """The process holding a lock on ``handle``'s file, as Linux's ``/proc/locks`` says."""
    status = os.fstat(handle.fileno())
    for pid, inode in _proc_flocks():
        if inode == status.st_ino and pid not in (0, os.getpid()):
            return pid
    return None


def _running_batch_roots() -> Iterator[tuple[int, Path]]:
    """The output roots of the batches other processes run on this system: the folders
    of the ``.medi2i-batch.lock`` files they hold locked (``/proc``, Linux; only the
    processes this user may look at)."""
    held: dict[int, set[int]] = {}
    for pid, inode in _proc_flocks():
        if pid not in (0, os.getpid()):
            held.setdefault(pid, set()).add(inode)
    for pid, inodes in held.items():
        with suppress(OSError):
            for entry in Path(f"/proc/{pid}/fd").iterdir():
                with suppress(OSError):
                    target = os.readlink(entry)  # " (deleted)" when removed: another name
                    if os.path.basename(target) == LOCK_NAME and entry.stat().st_ino in inodes:
                        yield pid, Path(target).parent


def _is_at(handle: IO[str], path: Path) -> bool:
    """Whether ``handle`` is the file at ``path`` (not one removed since it was opened)."""
    try:
        at, opened = path.stat(), os.fstat(handle.fileno())
    except OSError:
        return False
    return (at.st_dev, at.st_ino) == (opened.st_dev, opened.st_ino)


def _clean_up(root_lock: Path | None, made_manifest: Path | None, made: list[Path]) -> None:
    """Remove the lock file held (still held, so no other batch holds this one), an
    empty manifest this batch made, and the folders it made for them, when empty."""
    with suppress(OSError):
        if root_lock is not None:
            root_lock.unlink()
    with suppress(OSError):
        if made_manifest is not None and made_manifest.stat().st_size == 0:
            made_manifest.unlink()
    for folder in made:
        with suppress(OSError):
            folder.rmdir()  # only when empty
