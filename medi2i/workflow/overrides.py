"""``--set key.path=value`` overrides of a workflow's settings (:func:`apply_overrides`).

A value is parsed as YAML; a list item is addressed by its index; a mapping given to a
section of the schema merges into it (``training={steps: 3}`` keeps the section's other
settings), while a free mapping (``method.options``, ``data.layout.folders``) is
replaced.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Sequence

import yaml
from pydantic import BaseModel

from medi2i.bounded_yaml import load_yaml
from medi2i.workflow.schema import Workflow

Key = str | int
KeyPath = tuple[Key, ...]


def _refusal(message: str) -> Exception:
    from medi2i.workflow.loader import WorkflowError  # the loader imports this module

    return WorkflowError(message)


def apply_overrides(data: object, overrides: Sequence[str]) -> tuple[object, dict[KeyPath, str]]:
    """Apply ``a.b=value`` overrides (value parsed as YAML) to a copy of ``data``.

    A list item is addressed by its index (``data.split.test.0=case1``); missing
    mappings along the way are created. A mapping given where the data has a mapping
    merges into it (``training={steps: 3}`` keeps the other training settings; see
    :func:`_merged`).

    Returns:
        The new data and, for each overridden key path, the override that set it.

    Raises:
        WorkflowError: An override is not ``key=value`` or its path runs through a value
            that is not a mapping or list.
    """
    result = json.loads(json.dumps(data, default=str))
    set_by: dict[KeyPath, str] = {}
    for override in overrides:
        path, value = _parse_override(override)
        _assign(result, path, value, override)
        for given in _key_paths(value, path):  # a merged section's keys are the --set's
            set_by[given] = override
    return result, set_by


def _key_paths(value: object, path: KeyPath) -> list[KeyPath]:
    """``path`` and, inside a mapping ``value``, the path of every key it gives."""
    paths = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _key_paths(item, (*path, str(key)))
    return paths


def _parse_override(override: str) -> tuple[KeyPath, object]:
    key, sep, text = override.partition("=")
    parts = tuple(part.strip() for part in key.split("."))
    if not sep or not all(parts):
        raise _refusal(f"--set {override!r} must look like section.key=value")
    try:
        value, _ = load_yaml(text)
    except yaml.YAMLError as exc:
        raise _refusal(f"--set {override!r}: {_yaml_value_problem(exc)}") from None
    return tuple(int(p) if p.isdigit() else p for p in parts), value


def _yaml_value_problem(exc: yaml.YAMLError) -> str:
    """One line for a ``--set`` value PyYAML refused, without its quoted source and
    caret lines (the value is one line the user just typed)."""
    problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else None
    mark = exc.problem_mark if isinstance(exc, yaml.MarkedYAMLError) else None
    if problem is None:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    where = f" at character {mark.column + 1}" if mark is not None else ""
    return (
        f"the value is not valid YAML ({problem}{where}); put text holding YAML's special "
        "characters ([ ] { } ! * & #) in quotes inside the value, e.g. key=\"['a[0-3]']\""
    )


def _assign(data: object, path: KeyPath, value: object, override: str) -> None:
    node = data
    for depth, key in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(node, dict):
            if last:
                node[str(key)] = _merged(node.get(str(key)), value, path)
            else:
                node = node.setdefault(str(key), {})
        elif isinstance(node, list) and isinstance(key, int) and key <= len(node):
            if key == len(node):
                node.append(value if last else {})
            elif last:
                node[key] = _merged(node[key], value, path)
            node = node[key]
        else:
            where = ".".join(str(k) for k in path[:depth]) or "the workflow"
            raise _refusal(f"--set {override!r}: {where} has no key {key!r} to set")


_IDENTITY_KEYS = ("type", "id", "model")
"""Keys that say what a mapping is, not how it is set up."""


def _merged(current: object, value: object, path: KeyPath) -> object:
    """``value`` merged into ``current`` where both are mappings and ``path`` is a
    section of the schema (``training``, ``data.split``): its keys replace those of
    ``current`` (recursively), the others are kept. A free mapping (``method.options``,
    ``data.layout.folders``) is a value and is replaced, as is a section given as
    ``{}`` or one naming another thing (a layout of another ``type``, a method of
    another ``id`` or a trained ``model``), whose old keys would not fit."""
    if not (isinstance(current, dict) and isinstance(value, dict)) or not value:
        return value
    if not _is_section(path):
        return value
    if any(key in value and value[key] != current.get(key) for key in _IDENTITY_KEYS):
        return value
    merged = dict(current)
    for key, item in value.items():
        merged[key] = _merged(current.get(key), item, (*path, key))
    return merged


def _is_section(path: KeyPath) -> bool:
    """Whether ``path`` leads to a pydantic model of the schema (not a free mapping)."""
    models: list[type[BaseModel]] = [Workflow]
    for key in path:
        fields = [m.model_fields[str(key)] for m in models if str(key) in m.model_fields]
        models = [m for field in fields for m in _models_of(field.annotation)]
        if not models:
            return False
    return True


def _models_of(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_of(arg)]
