"""What is wrong with a workflow file, and where: YAML read with the line of every key,
pydantic's errors as ``(key path, message)`` problems, and their description naming the
file's line or the ``--set`` that gave each value (:mod:`medi2i.workflow.loader` loads
workflows with them)."""

from __future__ import annotations

import datetime
import json
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import yaml
from pydantic import BaseModel, ValidationError

from medi2i.bounded_yaml import YAMLLimitError, load_yaml
from medi2i.errors import OptionsError
from medi2i.method_spec import list_hint

Key = str | int
KeyPath = tuple[Key, ...]
Problem = tuple[KeyPath, str]


class WorkflowError(OptionsError):
    """A workflow file is not valid YAML, breaks the schema, or names what is not there."""


@dataclass(frozen=True)
class SourceMap:
    """Where the values of a workflow came from: a line of the file or a ``--set``.

    Attributes:
        file: The file name as the user gave it.
        lines: 1-based line of each key path found in the file.
        overrides: The ``--set`` argument that gave each overridden key path.
    """

    file: str
    lines: Mapping[KeyPath, int]
    overrides: Mapping[KeyPath, str]

    def locate(self, path: KeyPath) -> str:
        """``"workflow.yaml line 12"`` or ``"--set training.steps=x"`` for ``path``."""
        created = self._created_by(path)
        if created is not None:
            return f"--set {created}"
        for end in range(len(path), -1, -1):
            # a --set of the key or a key above it replaced what the file's lines held
            if path[:end] in self.overrides:
                return f"--set {self.overrides[path[:end]]}"
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if prefix in self.lines:
                return f"{self.file} line {self.lines[prefix]}"
        return self.file

    def _created_by(self, path: KeyPath) -> str | None:
        """The ``--set`` that made ``path`` when the file does not have it (``--set
        trainig.steps=5`` makes the unknown key ``trainig``, on no line of the file)."""
        if path in self.lines:
            return None
        for key, override in self.overrides.items():
            if key[: len(path)] == path:
                return override
        return None

    def order(self, path: KeyPath) -> tuple[int, int]:
        """Sort key putting problems in file order, overrides last."""
        if self._created_by(path) is not None:
            return (1, 0)
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if prefix in self.overrides:
                return (1, 0)
            if prefix in self.lines:
                return (0, self.lines[prefix])
        return (0, 0)


# -- YAML with positions ----------------------------------------------------------------


def read_yaml_with_lines(text: str, *, file: str) -> tuple[object, dict[KeyPath, int]]:
    """Parse YAML into plain values and the 1-based line of every key path.

    The limits of :mod:`medi2i.bounded_yaml` apply (size, aliases, expanded values).

    Raises:
        WorkflowError: The text is not YAML, breaks a limit, has a duplicated key, or is
            not a mapping.
    """
    try:
        data, node = load_yaml(text)
    except YAMLLimitError as exc:
        raise WorkflowError(f"{file}: refused: the YAML {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file} line {mark.line + 1}" if mark is not None else file
        raise WorkflowError(f"{where}: not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise WorkflowError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or node is None:
        raise WorkflowError(f"{file}: a workflow is a mapping of sections (data, method, ...)")
    lines: dict[KeyPath, int] = {(): 1}
    _record_lines(node, (), lines, file=file)
    return data, lines


def _record_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], *, file: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue  # merge keys and complex keys have no single position to report
            key = key_node.value
            if key in seen:
                line = key_node.start_mark.line + 1
                raise WorkflowError(f"{file} line {line}: key {key!r} appears twice")
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _record_lines(value_node, (*path, key), lines, file=file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _record_lines(item, (*path, index), lines, file=file)


# -- problems -----------------------------------------------------------------------------


def _field_default(root: type[BaseModel], loc: tuple[object, ...]) -> object:
    """The default of the field at ``loc`` under ``root`` (through nested models), or
    ``None`` where the path leaves the models (a list item, a mapping, a union)."""
    model: object = root
    default: object = None
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        default, model = field.get_default(call_default_factory=True), field.annotation
    return default


_NUMBER_ERRORS = frozenset(
    ["greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"]
)
"""Errors of a number that has the right type but not the right value."""


def pydantic_problems(exc: ValidationError, data: object, root: type[BaseModel]) -> list[Problem]:
    grouped: dict[KeyPath, list[str]] = {}
    errors = exc.errors(include_url=False)
    # a number refused for its range by a field that also takes a list (a split's
    # fraction or case ids): writing it as a list is no advice
    ranged = {_data_path(tuple(e["loc"]), data) for e in errors if e["type"] in _NUMBER_ERRORS}
    items = {_data_path(tuple(e["loc"]), data)[:-1] for e in errors}
    for error in errors:
        path = _data_path(tuple(error["loc"]), data)
        if _not_a_list_member(error) and path in items:
            continue  # a list refused item by item: not also as the union's number
        message = _error_message(error)
        if error["type"] == "extra_forbidden":
            message = _unknown_key_message(path, data, root)
        elif error["type"] == "missing" and isinstance(error["input"], list):
            # a fixed-length list one short: pydantic's "Field required" on a missing item,
            # whose index the key path cannot show, read as if the whole key were missing
            message = f"too few items ({len(error['input'])} given)"
        if path not in ranged:
            message += list_hint(error, _field_default(root, tuple(error["loc"])))
        grouped.setdefault(path, [])
        if message not in grouped[path]:
            grouped[path].append(message)
    return [(path, "; or ".join(messages)) for path, messages in grouped.items()]


def _not_a_list_member(error: Mapping[str, typing.Any]) -> bool:
    """A list refused by a union's number member (a split's fraction or case ids)."""
    return error["type"] in ("float_type", "int_type") and isinstance(error.get("input"), list)


def _error_message(error: Mapping[str, typing.Any]) -> str:
    """pydantic's message, reworded where it names Python rather than the YAML."""
    value = error.get("input")
    if error["type"] == "path_type":
        if value is None:
            return "expected a path, got null (leave the key out for its default)"
        return f"expected a path, got {json.dumps(value, default=str)}"
    if error["type"] in ("int_parsing", "int_from_float", "int_type"):
        return f"expected an integer (digits only, e.g. 200), got {json.dumps(value, default=str)}"
    if error["type"] == "string_type" and value is not None:
        return _quote_hint(value)
    return str(error["msg"]).removeprefix("Value error, ")


QUOTE_HINT = "quote it as written"
"""Part of the message of text that YAML read as a number, date or yes/no."""


def _quote_hint(value: object) -> str:
    """The message for text that YAML read as another type: a case id ``005`` read as
    the number 5, a run id ``2024-01-01`` read as a date."""
    if isinstance(value, bool):
        read, example = f"{str(value).lower()} (a yes/no)", f"'{str(value).lower()}'"
    elif isinstance(value, (int, float)):
        read, example = f"the number {value}", "'005'; unquoted, leading zeros are lost"
    elif isinstance(value, (datetime.date, datetime.time)):
        read, example = f"the date {value}", f"'{value}'"
    else:
        return f"expected text, got {json.dumps(value, default=str)}"
    return f"expected text, but YAML read {read}: {QUOTE_HINT} (e.g. {example})"


def _unknown_key_message(path: KeyPath, data: object, root: type[BaseModel]) -> str:
    allowed = _keys_of_model_at(path[:-1], data, root)
    if not allowed:
        return "unknown key"
    return f"unknown key (allowed here: {', '.join(allowed)})"


def _keys_of_model_at(path: KeyPath, data: object, root: type[BaseModel]) -> list[str]:
    """Field names of the model that ``path`` leads to from ``root`` (empty if unknown)."""
    model: object = root
    node = data
    for key in path:
        fields = getattr(model, "model_fields", None)
        if fields is None or key not in fields or not isinstance(node, dict):
            return []
        node = node.get(key)
        model = _model_in(fields[key].annotation, node)
    fields = getattr(model, "model_fields", None)
    return list(fields) if fields is not None else []


def _model_in(annotation: object, node: object) -> object:
    """The pydantic model of a field's annotation that validates ``node``."""
    candidates = [annotation, *typing.get_args(annotation)]
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    if len(models) <= 1:
        return models[0] if models else None
    tag = node.get("type") if isinstance(node, dict) else None
    for model in models:
        field = model.model_fields.get("type")
        if field is not None and tag in typing.get_args(field.annotation):
            return model
    return None


def _data_path(loc: tuple[Key, ...], data: object) -> KeyPath:
    """The key path of an error location, without pydantic's union-member tags."""
    path: list[Key] = []
    node = data
    for index, key in enumerate(loc):
        present = (isinstance(node, dict) and key in node) or (
            isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        )
        if present:
            path.append(key)
            node = node[key]  # type: ignore[index]
        elif index == len(loc) - 1 and isinstance(node, dict) and isinstance(key, str):
            path.append(key)  # a missing key: reported on its parent's line
    return tuple(path)


def describe(problems: Sequence[Problem], source: SourceMap) -> str:
    ordered = sorted(problems, key=lambda problem: source.order(problem[0]))
    lines = [
        f"{source.locate(path)}: {'.'.join(str(k) for k in path) or '(top level)'}: "
        + _quoted_on_command_line(message, source.overrides.get(path))
        for path, message in ordered
    ]
    return "\n".join(lines)


def _quoted_on_command_line(message: str, override: str | None) -> str:
    """``message``, with the ``--set`` to type when it says to quote the value that
    ``override`` gave: the shell removes quotes that are not inside its own."""
    if override is None or QUOTE_HINT not in message or "=" not in override:
        return message
    key, value = override.split("=", 1)
    return message[: message.rindex(")")] + f"; on the command line: --set \"{key}='{value}'\")"
