"""The predict-time condition of evaluated cases, as the metrics, cards and report name it.

:func:`scored_condition` is what one case was predicted under (the method's condition
with its defaults and what its output records, a seed from the settings replaced by
``inference.seed``); :func:`shared_condition`, :func:`card_condition` and
:func:`condition_text` say it for all the evaluated cases.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medi2i.method import Method
    from medi2i.workflow.evaluation import EvaluatedCase

SETTINGS_SEED = "settings.seed"
"""What a method's output records for a seed taken from the prediction's settings (MUNIT's
``style_seed``); the records replace it by ``inference.seed``."""
VARIES = "differs by case (the run's metrics/metrics.json lists each case's)"
"""A card's value for a condition key whose value differs between the evaluated cases."""


def scored_condition(
    method: Method, condition: Mapping[str, object] | None, *, seed: int
) -> dict[str, object] | None:
    """The predict-time condition a case was predicted under, as the records say it.

    The method's condition model with its defaults (fields left at ``None`` out), then
    what the method's output records of it in a prediction's provenance (UNIT's ``from``
    and ``to`` domains, MUNIT's ``style_seed``), a :data:`SETTINGS_SEED` replaced by
    ``seed`` (``inference.seed``), so that a stochastic prediction names its seed.

    Args:
        method: The method that predicted.
        condition: The condition it was given (``method.condition`` with the case's own).
        seed: ``inference.seed``.

    Returns:
        The condition, JSON values by key (``{"direction": "b2a", "from": "B", ...}``),
        or ``None`` for a method without predict-time condition.
    """
    parsed = method.parse_condition(condition)
    record: dict[str, object] = parsed.model_dump(mode="json", exclude_none=True)
    outputs = method.outputs(parsed)
    if len(outputs) == 1:
        record.update(outputs[0].condition)
    resolved = {
        str(key): seed if value == SETTINGS_SEED else _json_value(value)
        for key, value in record.items()
    }
    return resolved or None


def _json_value(value: object) -> object:
    """``value`` as JSON reads it back (a path as text, a tuple as a list)."""
    return json.loads(json.dumps(value, default=str))


def shared_condition(records: Sequence[EvaluatedCase]) -> dict[str, object] | None:
    """The condition every case was predicted under; ``None`` when they differ or none
    was recorded."""
    conditions = [record.condition for record in records]
    first = conditions[0] if conditions else None
    return first if all(condition == first for condition in conditions) else None


def condition_text(condition: Mapping[str, object]) -> str:
    """``direction=b2a, from=B, to=A``: a condition in one line."""
    return ", ".join(f"{key}={_shown(value)}" for key, value in condition.items())


def _shown(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def card_condition(records: Sequence[EvaluatedCase]) -> dict[str, str | float | int | bool | None]:
    """The condition of the evaluated cases as a card's ``metrics_inference`` holds it:
    ``condition.<key>`` entries (a list or mapping as JSON text), a key whose value
    differs between cases as :data:`VARIES`; empty for a method without condition."""
    keys = list(dict.fromkeys(key for record in records for key in record.condition or {}))
    entries: dict[str, str | float | int | bool | None] = {}
    for key in keys:
        values = [(record.condition or {}).get(key) for record in records]
        value = values[0] if all(v == values[0] for v in values) else VARIES
        entries[f"condition.{key}"] = (
            value if value is None or isinstance(value, str | int | float) else json.dumps(value)
        )
    return entries
