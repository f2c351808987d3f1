"""``method.init_from``: a training that starts from a trained model of the same method
instead of random weights."""

from __future__ import annotations

from medi2i.errors import ModelFormatError, OptionsError
from medi2i.method import Method
from medi2i.trained_state import is_trained, mark_trained

INIT_REASON_CHARS = 400
"""How much of torch's list of mismatched weights an init_from refusal quotes."""


def start_from(method: Method, source: Method) -> None:
    """Give ``method`` the weights and fitted values of the trained ``source`` of the
    same method (before its trainer is made, so a resumed checkpoint still wins)."""
    if source.id != method.id:
        raise OptionsError(
            f"init_from is a model of method {source.id!r}; it cannot start the training of "
            f"{method.id!r} (fine-tune a model of the same method)"
        )
    try:
        method.load_state_values(source.state_values())
        method.load_state_tensors(source.state_tensors())
        if is_trained(source):
            mark_trained(method)
    except ModelFormatError as exc:
        reason = " ".join(str(exc).split())
        if len(reason) > INIT_REASON_CHARS:
            reason = reason[:INIT_REASON_CHARS] + " ..."
        raise OptionsError(
            f"init_from: the trained model's weights do not fit method {method.id!r} with "
            f"these options (give the architecture options the model was trained with): "
            f"{reason}"
        ) from None
