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

import json
import string
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from medi2i.bounded_yaml import read_yaml_text
from medi2i.errors import Medi2iError
from medi2i.workflow.overrides import apply_overrides
from medi2i.workflow.problems import (
    KeyPath,
    Problem,
    SourceMap,
    WorkflowError,
    describe,
    pydantic_problems,
    read_yaml_with_lines,
)
from medi2i.workflow.schema import Workflow

if TYPE_CHECKING:
    from medi2i.method import Method
    from medi2i.registry import Registry

__all__ = [
    "DATA_CARDS",
    "WorkflowError",
    "cross_section_problems",
    "data_card_folders",
    "data_card_problems",
    "dump_workflow",
    "export_json_schema",
    "load_workflow",
    "method_problems",
    "workflow_json_schema",
    "workflow_registry",
]


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
        problems = pydantic_problems(exc, data, Workflow)
        if registry is not None:
            problems += _raw_options_problems(data, problems, registry=registry)
        raise WorkflowError(describe(problems, source)) from None
    if workflow.output.name is None:
        output = workflow.output.model_copy(update={"name": _run_name(path)})
        workflow = workflow.model_copy(update={"output": output})
    problems = cross_section_problems(workflow) + data_card_problems(workflow, path)
    if registry is not None and not problems:
        problems = method_problems(workflow, registry=registry)
    if registry is not None and not problems:
        problems = _condition_problems(workflow, registry)
    if problems:
        raise WorkflowError(describe(problems, source))
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
        problems = pydantic_problems(exc, config.options, method_cls.Options)
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
    from medi2i.training.init_from import start_from

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
        problems = pydantic_problems(exc, options, method_cls.Options)
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
