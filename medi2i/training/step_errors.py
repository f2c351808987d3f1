"""Errors raised by a method's own training code, told in one line that names the
method, the step and where in the method's code it was raised.

A plugin's ``training_step`` that raises (a ``ValueError``, a shape mismatch in its
loss) is a bug of the plugin, not of the run: the trainer reports it as a
:class:`TrainingStepError` chained to the original exception, whose traceback
``medi2i --debug`` shows.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from types import FrameType

from medi2i.errors import TrainingError
from medi2i.method import Method

_NOT_THE_METHODS = frozenset({"builtins", "abc", "typing", "medi2i"})
"""Top-level packages in a method's class hierarchy that are not the method's own code."""


class TrainingStepError(TrainingError):
    """A method's ``training_step`` raised an exception that is not a medi2i error; the
    exception is the ``__cause__``."""


def step_failure(method: Method, exc: BaseException, step: int) -> str:
    """One line on ``exc`` raised by ``method.training_step`` at ``step`` (counted from 1).

    Example:
        ``training_step of 'mine' raised ValueError at step 3: boom (in mine/method.py
        line 27)``
    """
    text = " ".join(str(exc).split())
    detail = f": {text}" if text else ""
    where = raised_in(method, exc)
    located = f" (in {where})" if where else ""
    return (
        f"training_step of {method.id!r} raised {type(exc).__name__} at step {step}"
        f"{detail}{located}"
    )


def raised_in(method: Method, exc: BaseException) -> str | None:
    """``package/module.py line N`` of the innermost traceback frame in the method's own
    code (the packages of its class hierarchy), else of the innermost frame; ``None``
    without a traceback."""
    frames = list(traceback.walk_tb(exc.__traceback__))
    if not frames:
        return None
    own = _own_packages(method)
    chosen = next(
        (pair for pair in reversed(frames) if _package(pair[0]) in own),
        frames[-1],
    )
    frame, line = chosen
    return f"{_shown_path(frame)} line {line}"


def _own_packages(method: Method) -> set[str]:
    """Top-level packages of the classes ``method`` is made of; medi2i's own only for a
    method that medi2i defines (its examples)."""
    packages = {cls.__module__.split(".")[0] for cls in type(method).__mro__}
    mine = type(method).__module__.split(".")[0]
    return (packages - _NOT_THE_METHODS) | {mine}


def _package(frame: FrameType) -> str:
    return str(frame.f_globals.get("__name__", "")).split(".")[0]


def _shown_path(frame: FrameType) -> str:
    """The frame's file from its top-level package on (``mine/method.py``), or its file
    name when the package is not in the path (a script)."""
    path = Path(frame.f_code.co_filename)
    package = _package(frame)
    parts = path.parts
    if package in parts[:-1]:
        start = len(parts) - 1 - parts[::-1].index(package)
        return "/".join(parts[start:])
    return path.name
