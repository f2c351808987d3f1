"""Loading workflow files: YAML with line numbers, ``--set`` overrides, validation.

Errors name the file, the line and the key path, so that a wrong type deep in the file
reads as ``workflow.yaml line 12: training.batch_size: Input should be a valid integer``.
PyYAML's composed nodes keep the position of every key; the loader records them before
constructing plain Python values and maps each pydantic error location back to a line.

Example:
    >>> path = "workflows/demo_paired_tiny.yaml"
    >>> workflow = load_workflow(path, overrides=["training.seed=3"])  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import json
import string
import typing
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import BaseModel, ValidationError

from medi2i.bounded_yaml import YAMLLimitError, load_yaml, read_yaml_text
from medi2i.errors import Medi2iError, OptionsError
from medi2i.method_spec import list_hint
from medi2i.workflow.overrides import apply_overrides
from medi2i.workflow.schema import Workflow

if TYPE_CHECKING:
    from medi2i.method import Method
    from medi2i.registry import Registry

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


def load_workflow(
    path: str | Path, *, overrides: Sequence[str] = (), registry: Registry | None = None
) -> Workflow:
    """Read, override and validate a workflow file.

    Relative paths in the file (and in overrides) are resolved against the file's
    folder; an empty ``output.name`` becomes the file's stem.

    Args:
        path: The workflow YAML file.
        overrides: ``"a.b=value"`` strings; values are parsed as YAML and applied
            before validation.
        registry: When given, also check the method: its id is registered (after
            loading the workflow's ``plugins`` into it), its options are valid and its
            training data kind matches ``data.kind``.

    Returns:
        The validated workflow.

    Raises:
        WorkflowError: The file is missing or invalid; the message lists every problem
            with its line.
    """
    path = Path(path)
    if path.is_dir():
        raise WorkflowError(f"workflow file {path} is a folder; give the workflow's YAML file")
    if not path.is_file():
        raise WorkflowError(f"workflow file {path} does not exist")
    data, lines = read_yaml_with_lines(read_yaml_text(path, error=WorkflowError), file=str(path))
    data, set_by = apply_overrides(data, overrides)
    source = SourceMap(file=str(path), lines=lines, overrides=set_by)
    try:
        workflow = Workflow.model_validate(data, context={"base": path.resolve().parent})
    except ValidationError as exc:
        problems = _pydantic_problems(exc, data, Workflow)
        if registry is not None:
            problems += _raw_options_problems(data, problems, registry=registry)
        raise WorkflowError(_describe(problems, source)) from None
    if workflow.output.name is None:
        output = workflow.output.model_copy(update={"name": _run_name(path)})
        workflow = workflow.model_copy(update={"output": output})
    problems = cross_section_problems(workflow) + data_card_problems(workflow, path)
    if registry is not None and not problems:
        problems = method_problems(workflow, registry=registry)
    if registry is not None and not problems:
        problems = _condition_problems(workflow, registry)
    if problems:
        raise WorkflowError(_describe(problems, source))
    workflow._overrides = tuple(overrides)  # the report lists them beside the description
    return workflow


def _condition_problems(workflow: Workflow, registry: Registry) -> list[Problem]:
    """``method.condition`` refused by the method (:func:`medi2i.workflow.checks.
    check_condition`), as a problem on its line."""
    from medi2i.registry import Registry
    from medi2i.workflow.checks import check_condition

    try:
        # method_problems added the workflow's plugins to the manager: a new registry
        # over it sees them (the given one listed its methods before)
        check_condition(workflow, Registry(registry.plugins))
    except WorkflowError as exc:
        message = str(exc).removeprefix("method.condition: ")
        return [(("method", "condition"), message)]
    return []


def _run_name(path: Path) -> str:
    """The default ``output.name``: the file's stem in the characters ``output.name``
    allows (ASCII letters, digits, ``._-``), accents dropped (``wf ü`` gives ``wf-u``),
    so that the resolved config, which records it, validates on a rerun."""
    stem = unicodedata.normalize("NFKD", path.name.split(".")[0])
    kept = "".join(c for c in stem if not unicodedata.combining(c))
    safe = "".join(c if c in _NAME_CHARACTERS else "-" for c in kept)
    return safe.lstrip("._-") or "run"


_NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._-")


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


def _pydantic_problems(exc: ValidationError, data: object, root: type[BaseModel]) -> list[Problem]:
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


def cross_section_problems(workflow: Workflow) -> list[Problem]:
    """Problems that involve more than one section of a valid workflow (and the
    folders it reads and writes: :mod:`medi2i.workflow.folder_checks`)."""
    from medi2i.workflow.folder_checks import folder_problems

    problems: list[Problem] = folder_problems(workflow)
    evaluation = workflow.evaluation
    if evaluation.enabled and evaluation.data is None and workflow.data.kind != "paired":
        problems.append(
            (
                ("evaluation",),
                f"{workflow.data.kind} data has no reference to evaluate against: add "
                "evaluation.data (paired) or set evaluation.enabled: false",
            )
        )
    return problems


DATA_CARDS = "data_cards"
"""The folder of data cards (``<name>.yaml``) that ``data.cards`` names, as ``medi2i
cards check`` reads it by default."""


def data_card_folders(path: Path) -> list[Path]:
    """Where the data cards of the workflow file ``path`` are looked for: a
    ``data_cards/`` folder beside it or in a folder above it (a project's workflows in a
    subfolder), and in the current folder (``medi2i cards check``'s default)."""
    places = [folder / DATA_CARDS for folder in path.resolve().parents]
    places.append(Path.cwd() / DATA_CARDS)
    return list(dict.fromkeys(place for place in places if place.is_dir()))


def data_card_problems(workflow: Workflow, path: Path) -> list[Problem]:
    """Each name of ``data.cards`` (and ``evaluation.data.cards``) that no data card
    folder (:func:`data_card_folders`) holds as ``<name>.yaml``: the run would write a
    model card naming a card that ``medi2i cards check`` then cannot find.

    Where no such folder exists the names are not checked: ``medi2i cards check
    --data-cards FOLDER`` may read the cards from any folder, and ``medi2i demo`` names
    the repository's card wherever it runs."""
    named: list[tuple[KeyPath, str]] = [
        (("data", "cards", index), name) for index, name in enumerate(workflow.data.cards)
    ]
    evaluation = workflow.evaluation.data
    if evaluation is not None:
        named += [
            (("evaluation", "data", "cards", index), name)
            for index, name in enumerate(evaluation.cards)
        ]
    if not named:
        return []
    folders = data_card_folders(path)
    if not folders:
        return []
    problems: list[Problem] = []
    for key, name in named:
        if any((folder / f"{name}.yaml").is_file() for folder in folders):
            continue
        where = f"no {name}.yaml in {', '.join(str(folder) for folder in folders)}"
        problems.append(
            (
                key,
                f"data card {name!r} not found: {where}; write the card there (medi2i "
                "cards check validates it) or remove the name",
            )
        )
    return problems


def method_problems(workflow: Workflow, *, registry: Registry) -> list[Problem]:
    """Check the method against the installed plugins (id, options, data kind)."""
    config = workflow.method
    try:
        # before a trained model is looked at too: its method may come from them
        registry = workflow_registry(workflow, registry=registry)
    except WorkflowError as exc:
        return [(("plugins",), str(exc))]
    if config.model is not None:
        if not config.model.exists():
            return [(("method", "model"), f"trained model {config.model} does not exist")]
        return []
    try:
        method_cls = registry.method(str(config.id))
    except Medi2iError as exc:
        return [(("method", "id"), str(exc))]
    if config.init_from is not None and not config.init_from.exists():
        return [(("method", "init_from"), f"trained model {config.init_from} does not exist")]
    try:
        method_cls.Options.model_validate(config.options)
    except ValidationError as exc:
        problems = _pydantic_problems(exc, config.options, method_cls.Options)
        return [(("method", "options", *path), message) for path, message in problems]
    if config.init_from is not None:
        problem = _init_from_problem(method_cls, config.options, config.init_from, registry)
        if problem is not None:
            return [(("method", "init_from"), problem)]
    trains_on = method_cls.data.value
    # a method fitted on target-domain volumes (Nyul) takes them from any data kind: a
    # paired case's target, the images of method.fit_domain in unpaired or multi-domain
    # data (the workflow guide's table)
    from medi2i.method import Training

    fitted_on_images = trains_on == "single-domain" and method_cls.training is Training.FIT
    if trains_on not in ("none", workflow.data.kind) and not fitted_on_images:
        message = f"method {config.id!r} trains on {trains_on} data, not {workflow.data.kind}"
        return [(("data", "kind"), message)]
    if workflow.adaptation is not None and not method_cls.adapts:
        message = (
            f"method {config.id!r} does not adapt to target data (methods that do: "
            "`medi2i methods --json`, adapts: true); remove the adaptation section"
        )
        return [(("adaptation",), message)]
    # fitted on the images of one domain (Nyul, z-score), not on the domain data itself
    on_images = trains_on in ("single-domain", "none") and method_cls.training is Training.FIT
    fits = on_images and config.model is None and config.fit
    if fits and workflow.data.kind in ("unpaired", "multi-domain") and config.fit_domain is None:
        message = (
            f"method {config.id!r} is fitted on the images of one domain of the "
            f"{workflow.data.kind} data: set method.fit_domain to the domain it maps onto"
        )
        return [(("method", "fit_domain"), message)]
    wants = method_cls(config.options).learns_from_unlabelled()
    given = workflow.data.unlabelled_data is not None
    if wants != given:
        message = (
            f"method {config.id!r} with these options learns from unlabelled target-domain "
            "inputs too; give them in data.unlabelled_data"
            if wants
            else f"method {config.id!r} with these options does not learn from unlabelled "
            "data; remove data.unlabelled_data"
        )
        return [(("data", "unlabelled_data") if given else ("data",), message)]
    return _metric_problems(workflow, registry=registry)


def _init_from_problem(
    method_cls: type[Method], options: Mapping[str, object], folder: Path, registry: Registry
) -> str | None:
    """Why the trained model at ``folder`` cannot start this method's training (another
    method, weights that do not fit the options, an unreadable model), or None; found
    here so that a refused fine-tuning leaves no run folder behind."""
    from medi2i.model_folder import load_model
    from medi2i.training.run import start_from

    try:
        start_from(method_cls(dict(options)), load_model(folder, registry=registry))
    except Medi2iError as exc:
        return str(exc).removeprefix("init_from: ")
    return None


def _raw_options_problems(
    data: object, found: Sequence[Problem], *, registry: Registry
) -> list[Problem]:
    """The method options' problems in a workflow that broke the schema elsewhere.

    Reported with the schema's problems, so that a file with a typo in ``training`` and
    one in ``method.options`` is fixed in one round, not two. Only when the ``method``
    and ``plugins`` sections themselves are valid and name a registered method; their
    own problems are the schema's to report.
    """
    if any(path[:1] in (("method",), ("plugins",)) for path, _ in found):
        return []
    if not isinstance(data, Mapping):
        return []
    method, plugins = data.get("method"), data.get("plugins", [])
    if not isinstance(method, Mapping) or method.get("model") is not None:
        return []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        return []
    from medi2i.plugins import add_installed_plugin
    from medi2i.registry import Registry

    try:
        added = False
        for name in plugins:
            added |= add_installed_plugin(registry.plugins, name)
        if added:
            registry = Registry(registry.plugins)
        method_cls = registry.method(str(method.get("id")))
    except Medi2iError:
        return []
    options = method.get("options", {})
    try:
        method_cls.Options.model_validate(options)
    except ValidationError as exc:
        problems = _pydantic_problems(exc, options, method_cls.Options)
        return [(("method", "options", *path), message) for path, message in problems]
    return []


def _metric_problems(workflow: Workflow, *, registry: Registry) -> list[Problem]:
    from medi2i.evaluation import select_metrics

    if not workflow.evaluation.enabled:
        return []
    try:
        select_metrics(",".join(workflow.evaluation.metrics), registry.metrics)
    except Medi2iError as exc:
        return [(("evaluation", "metrics"), str(exc))]
    return []


def workflow_registry(workflow: Workflow, *, registry: Registry) -> Registry:
    """``registry`` with the installed plugins the workflow names under ``plugins``.

    The names select installed plugins (entry points of group ``medi2i``, by entry-point
    or distribution name); nothing the workflow names is imported as a module, so a
    workflow file cannot bring code along. Returns a new registry over the same plugin
    manager when a plugin was added, since a registry lists each kind of contribution
    once, on first use.

    Raises:
        WorkflowError: A name is not an installed plugin (the message lists those that
            are), or the plugin cannot be loaded.
    """
    from medi2i.plugins import add_installed_plugin
    from medi2i.registry import Registry

    added = False
    for name in workflow.plugins:
        try:
            added |= add_installed_plugin(registry.plugins, name)
        except Medi2iError as exc:
            raise WorkflowError(str(exc)) from None
    return Registry(registry.plugins) if added else registry


def _describe(problems: Sequence[Problem], source: SourceMap) -> str:
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


# -- JSON Schema --------------------------------------------------------------------------


def workflow_json_schema() -> dict[str, object]:
    """The JSON Schema of workflow files, for editors (e.g. the YAML language server)."""
    schema: dict[str, object] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **Workflow.model_json_schema(mode="validation"),
    }
    schema["title"] = "medi2i workflow"
    return schema


def export_json_schema(path: str | Path) -> Path:
    """Write the workflow JSON Schema to ``path`` (parent folders are created).

    Returns:
        The path written.
    """
    from medi2i.io.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(workflow_json_schema(), indent=2) + "\n", encoding="utf-8")
    return path


def dump_workflow(workflow: Workflow) -> str:
    """The workflow as YAML with every default filled in (``config.resolved.yaml``)."""
    return yaml.safe_dump(workflow.model_dump(mode="json"), sort_keys=False)
