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
