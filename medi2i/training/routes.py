"""How a method learns, and fitting whole-volume methods on their target-domain volumes.

:func:`training_route` reads the method's declared :class:`~medi2i.Training`;
:func:`fit_on` fits a :attr:`~medi2i.Training.FIT` method on volumes put in front of it
exactly as predict puts its input (working grid, whole-volume preprocessing).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from medi2i.errors import OptionsError

if TYPE_CHECKING:
    from medi2i.io.base import VolumeReader
    from medi2i.method import Method

TrainingRoute = Literal["gradient", "fit", "save"]
"""How the train stage handles a method: the trainer, ``fit`` on volumes, or neither."""


def training_route(method: Method, *, fit: bool = True) -> TrainingRoute:
    """How the train stage handles ``method``, from its declared ``training``.

    ``"gradient"`` for :attr:`~medi2i.Training.GRADIENT`; ``"fit"`` for
    :attr:`~medi2i.Training.FIT` when the method needs data (its data kind is not
    ``none``, e.g. Nyul) or ``fit`` is on (z-score onto a target's statistics);
    ``"save"`` for a method with nothing to learn.

    Raises:
        OptionsError: The method needs data but declares ``Training.NONE``.
    """
    from medi2i.method import DataKind, Training

    if method.training is Training.GRADIENT:
        return "gradient"
    if method.training is Training.FIT and (fit or method.data is not DataKind.NONE):
        return "fit"
    if method.data is DataKind.NONE:
        return "save"
    raise OptionsError(
        f"method {method.id!r} learns from {method.data.value} data but declares no way to "
        "learn (training = Training.NONE); declare Training.GRADIENT or Training.FIT"
    )


def fit_on(
    method: Method, paths: Sequence[Path], *, readers: Sequence[VolumeReader] | None = None
) -> None:
    """Fit ``method`` on the volumes at ``paths``, as predict would see them."""
    from medi2i.data.loading import read_prepared

    method.fit([read_prepared(path, method, readers=readers) for path in paths])
