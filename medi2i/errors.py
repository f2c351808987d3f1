"""The one exception hierarchy of medi2i.

Every error a user can cause (a missing file, a volume that is not 3D, an unknown
method, a broken plugin) is raised as a :class:`Medi2iError` subclass whose message
says what went wrong, where, and what to do. The command line prints that message
without a traceback (unless ``--debug``) and exits with a non-zero status.
"""

from __future__ import annotations


class Medi2iError(Exception):
    """Base class of all errors medi2i raises for the user to act on."""

    exit_code = 1


class InputError(Medi2iError):
    """An input file or folder is missing, unreadable or not what it should be."""


class GeometryError(InputError):
    """A volume's geometry (dimensions, affine, spacing) cannot be used."""


class OptionsError(Medi2iError):
    """Options or settings given by the user are invalid."""


class PluginError(Medi2iError):
    """A plugin failed to load or register, or two plugins clash."""


class UnknownMethodError(Medi2iError):
    """No registered method has the requested id."""


class ModelFormatError(Medi2iError):
    """A trained-model folder is missing files or has invalid contents."""


class DeviceError(Medi2iError):
    """The requested compute device is not available."""


class ExportError(Medi2iError):
    """A method cannot be exported, or its export does not reproduce it."""


class OutputError(Medi2iError):
    """An output cannot be written where asked, or would not be a valid result."""


class TrainingError(Medi2iError):
    """Training cannot go on: a loss or the weights stopped being finite numbers."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt by the command line (exit status 143, not the
    130 of Ctrl-C); caught wherever an interrupt is, so it cleans up the same way."""


_ALLOCATION_FAILURES = ("can't allocate memory", "cannot allocate memory", "failed to allocate")
"""Words of a failed allocation in a library's message (torch's CPU allocator and ITK raise
a ``RuntimeError``, not ``MemoryError``)."""


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed memory allocation: ``MemoryError`` (numpy, Python), an
    ``OSError`` with ``errno`` ENOMEM (a read into memory), or a ``RuntimeError`` whose
    message says an allocation failed (torch on the CPU, CUDA's out-of-memory error, ITK).

    Example:
        >>> out_of_memory(MemoryError()), out_of_memory(RuntimeError("shapes differ"))
        (True, False)
    """
    import errno

    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOMEM
    text = str(exc).lower()
    memory = "out of memory" in text or any(words in text for words in _ALLOCATION_FAILURES)
    return isinstance(exc, RuntimeError) and memory


def out_of_memory_reading(path: object, exc: BaseException) -> MemoryError:
    """The error of a read that failed for want of memory: not a damaged file, so not the
    reader's "corrupt" :class:`InputError` (the command line reports it in one line)."""
    return MemoryError(f"reading {path}: {type(exc).__name__}: {exc}")
