"""Whether a method trained by gradient steps holds trained weights.

A network method made with ``Registry().method(ID)(options)`` predicts with the weights
it was initialised with: noise of the right shape, which nothing downstream can tell
from a result. The core marks a method instance as trained where it knows: a model
folder loaded with :func:`medi2i.load_model` (unless the folder was saved untrained), an
ONNX export, weights taken from another model (``method.init_from``), a resumed
checkpoint, and the end of training. Prediction with an unmarked method warns once per
instance (:class:`UntrainedWeightsWarning`); a model folder saved from one records
``"trained": false``, so the warning follows it.

Weights loaded by hand (``method.load_state_tensors(...)``) are not seen; after loading
them, :func:`mark_trained` says so.
"""

from __future__ import annotations

import warnings

from medi2i.method import Method, Training

_TRAINED = "_medi2i_trained"
_WARNED = "_medi2i_untrained_warned"


class UntrainedWeightsWarning(UserWarning):
    """A method trained by gradient steps predicts with the weights it was initialised
    with (it was neither trained nor loaded from a trained model)."""


def mark_trained(method: Method) -> None:
    """Record that ``method`` holds trained weights (e.g. after loading them by hand).

    Raises:
        OptionsError: ``method`` is not a method object.
    """
    if not isinstance(method, Method):
        from medi2i.errors import OptionsError
        from medi2i.text import described

        raise OptionsError(f"mark_trained takes a method object, not {described(method)}")
    setattr(method, _TRAINED, True)


def is_trained(method: Method) -> bool:
    """Whether ``method`` holds trained weights, as far as medi2i knows: always for a
    method that is not trained by gradient steps (it fits, or learns nothing)."""
    return method.training is not Training.GRADIENT or bool(getattr(method, _TRAINED, False))


def warn_if_untrained(method: Method) -> None:
    """Warn, once per method instance, that ``method`` predicts with initial weights."""
    if is_trained(method) or getattr(method, _WARNED, False):
        return
    setattr(method, _WARNED, True)
    warnings.warn(
        UntrainedWeightsWarning(
            f"method {method.id!r} has not been trained: its network predicts with the "
            "weights it was initialised with, so its output is noise; use a trained model "
            "(the model folder of a training run, medi2i.load_model(FOLDER) in Python). "
            "Weights loaded by hand: call medi2i.mark_trained(method) after loading them"
        ),
        stacklevel=3,
    )
