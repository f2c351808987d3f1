"""Reading the YAML files people write (workflows, cards) within fixed limits.

YAML aliases let a few hundred bytes stand for billions of values (the "billion laughs"
document): PyYAML composes the aliases as shared nodes, but everything that walks the
result afterwards (line numbers, validation, JSON) visits each value once per path to
it. These functions refuse such a document before anything walks it:

- a file larger than :data:`MAX_YAML_BYTES` is not read;
- a document with more than :data:`MAX_YAML_ALIASES` aliases is refused while it is
  parsed (hand-written workflows and cards need few, if any);
- a document whose values, with every alias expanded, number more than
  :data:`MAX_YAML_VALUES` is refused after composing and before constructing, and so is
  one that contains itself through an alias or nests deeper than Python can follow.

:func:`duplicate_key` finds a key written twice in one mapping, which PyYAML accepts
(keeping the last value without a word); callers refuse it with their own error.

Only PyYAML's safe loader is used: tags that would create Python objects are errors.

Example:
    >>> data, node = load_yaml("a: &x [1, 2]\\nb: *x\\n")
    >>> data
    {'a': [1, 2], 'b': [1, 2]}
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

MAX_YAML_BYTES = 1024 * 1024
"""Largest workflow or card file read, in bytes (the committed ones are a few kB)."""
MAX_YAML_ALIASES = 100
"""Most aliases (``*name``) one document may use."""
MAX_YAML_VALUES = 100_000
"""Most values (scalars, lists, mappings) one document may hold with aliases expanded."""

ErrorFactory = Callable[[str], Exception]


class YAMLLimitError(yaml.YAMLError):
    """A document breaks one of the limits (the message says which)."""


class _LimitedSafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader that stops at the alias budget while composing."""

    aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise YAMLLimitError(
                    f"uses more than {MAX_YAML_ALIASES} YAML aliases (*name); write the "
                    "values out instead"
                )
        return super().compose_node(parent, index)


def read_yaml_text(path: Path, *, error: ErrorFactory) -> str:
    """The text of ``path`` if it is at most :data:`MAX_YAML_BYTES` long.

    Raises:
        The exception ``error(message)`` makes, with a message naming the file.
    """
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise error(
            f"{path}: {size:,} bytes is more than the {MAX_YAML_BYTES:,} a workflow or card "
            "file may have; is this the right file?"
        )
    try:
        return decode_text(path.read_bytes())
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {unreadable_text(exc)}") from None


def decode_text(raw: bytes) -> str:
    """Text of a file the user wrote: UTF-8 (with or without the byte-order mark that
    spreadsheet programs put first), or UTF-16 with its byte-order mark (Windows
    editors' "Unicode").

    Raises:
        UnicodeDecodeError: Neither; :func:`unreadable_text` says so in words.
    """
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    return raw.decode("utf-8-sig")


def unreadable_text(exc: UnicodeDecodeError) -> str:
    """``"is not UTF-8 text (byte 0xe9 at position 12); save it as UTF-8"``."""
    bad = exc.object[exc.start : exc.start + 1].hex()
    return f"is not UTF-8 text (byte 0x{bad} at position {exc.start}); save it as UTF-8"


def load_yaml(text: str) -> tuple[object, yaml.Node | None]:
    """Parse one YAML document within the limits: its plain values and its node tree.

    Raises:
        YAMLLimitError: The text breaks a limit.
        yaml.YAMLError: The text is not YAML (with the position where it went wrong)
            or uses a tag the safe loader does not allow.
    """
    if len(text) > MAX_YAML_BYTES:
        raise YAMLLimitError(f"is {len(text):,} characters, more than {MAX_YAML_BYTES:,}")
    loader = _LimitedSafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _count_values(node, {}, set())
        return loader.construct_document(node), node
    except RecursionError:
        raise YAMLLimitError("nests deeper than can be read") from None
    finally:
        loader.dispose()


def _count_values(node: yaml.Node, counted: dict[int, int], open_nodes: set[int]) -> int:
    """Values under ``node`` with aliases expanded; shared nodes are counted once and
    multiplied, so a bomb is measured without being expanded."""
    key = id(node)
    if key in counted:
        return counted[key]
    if key in open_nodes:
        raise YAMLLimitError("contains itself through an alias")
    open_nodes.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_count_values(item, counted, open_nodes) for item in node.value)
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            total += _count_values(key_node, counted, open_nodes)
            total += _count_values(value_node, counted, open_nodes)
    if total > MAX_YAML_VALUES:
        raise YAMLLimitError(
            f"holds more than {MAX_YAML_VALUES:,} values once its aliases are expanded"
        )
    open_nodes.discard(key)
    counted[key] = total
    return total


def duplicate_key(node: yaml.Node | None) -> tuple[str, int] | None:
    """A key written twice in one mapping under ``node`` and the 1-based line of its
    second occurrence, or ``None`` when every mapping's keys differ.

    PyYAML keeps the last value of a repeated key without a word, so a card or workflow
    with ``kind:`` twice silently says what its last line says. Merge keys (``<<``) and
    non-scalar keys are skipped. Call it on a node :func:`load_yaml` returned (aliases
    within its limits; a node shared through aliases is walked once).

    Example:
        >>> duplicate_key(load_yaml("a: 1\\nb: {c: 2, c: 3}\\n")[1])
        ('c', 2)
    """
    if node is None:
        return None
    pending: list[yaml.Node] = [node]
    visited: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in visited:
            continue
        visited.add(id(current))
        if isinstance(current, yaml.SequenceNode):
            pending.extend(reversed(current.value))
        elif isinstance(current, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, _ in current.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                    if key_node.value in seen:
                        return key_node.value, key_node.start_mark.line + 1
                    seen.add(key_node.value)
            pending.extend(value for _, value in reversed(current.value))
    return None
