"""The checks a method class passes at registration (:meth:`Method.validate_class`).

Each refuses a plugin's mistake with a ``TypeError`` that names the method, so that it
shows when the plugin is loaded, not hours into a training or when a saved model is
read back.
"""

from __future__ import annotations

import inspect
import re
from enum import Enum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from medi2i.method_spec import DataKind, Options, Task, Training, VolumeSpec

if TYPE_CHECKING:
    from medi2i.method import Method

_ID = re.compile(r"^[a-z][a-z0-9]*(?:[-.][a-z0-9]+)*$")

_VERSION = re.compile(r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?")
"""A method version: ``MAJOR.MINOR.PATCH`` in digits, with an optional PEP 440 pre-release,
post-release or development suffix (``1.2.0rc1``, ``1.2.0.post1``, ``1.2.0.dev3``). A
saved model's version check compares the ``MAJOR.MINOR.PATCH`` part and ignores the
suffix (:func:`medi2i.model_checks.newer_release`); a version without that part would not
be compared at all, so a model from a newer release would load in silence."""

_KEYWORDS = {
    "preprocess": ("domain", "condition"),
    "postprocess": ("domain", "condition"),
}
"""Keyword arguments of plugin API 2 that these hooks must accept."""


def check_method_class(cls: type[Method[Any, Any]]) -> None:
    """Check the class attributes and hooks a registered method must have.

    Raises:
        TypeError: An attribute is missing or inconsistent, an abstract method (such as
            ``predict``) is not implemented, the ``version`` is not ``MAJOR.MINOR.PATCH``,
            a default of the ``Options`` or ``Condition`` model is refused by that model,
            a declared way of learning lacks its hooks, or a hook has the signature of
            plugin API 1 (``preprocess(image)``).
    """
    for attr in ("id", "tasks", "input_spec", "output_spec"):
        if not hasattr(cls, attr):
            raise TypeError(f"method class {cls.__qualname__} does not set {attr!r}")
    if not isinstance(cls.id, str):
        raise TypeError(
            f"method class {cls.__qualname__}: id = {cls.id!r} must be a string "
            "(lowercase, e.g. 'my-method')"
        )
    if not _ID.match(cls.id):
        raise TypeError(
            f"method id {cls.id!r} of {cls.__qualname__} must be lowercase letters, digits, "
            "'-' and '.', starting with a letter"
        )
    if not cls.tasks:
        raise TypeError(f"method {cls.id!r} declares no task")
    _require_declarations(cls)
    _require_version(cls)
    _check_training_hooks(cls)
    _check_models(cls)
    for kind, model in (("Options", cls.Options), ("Condition", cls.Condition)):
        _require_valid_defaults(cls.id, kind, model)
    _require_mixin_options(cls)
    _require_window_default(cls)
    for hook, keywords in _KEYWORDS.items():
        parameters = inspect.signature(getattr(cls, hook)).parameters
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        missing = [k for k in keywords if k not in parameters and not accepts_any]
        if missing:
            raise TypeError(
                f"method {cls.id!r}: {hook} must take the keyword arguments "
                f"{', '.join(missing)} (plugin API 2: "
                f"def {hook}(self, ..., *, domain=None, condition=None))"
            )
    _require_concrete(cls)  # last: a more specific refusal above says more


_DECLARED_ENUMS: tuple[tuple[str, type[Enum]], ...] = (("data", DataKind), ("training", Training))


def _require_declarations(cls: type[Method[Any, Any]]) -> None:
    """``tasks``, ``data``, ``training`` and the specs must be of their declared types:
    a plain string (``tasks = ("translation",)``) or a dict spec registered fine, then
    crashed ``medi2i methods`` for every method and ``medi2i predict`` for this one.
    They are refused rather than converted, as the ``Options`` model is: the class is
    what the plugin wrote, and what the guide shows (``Task.TRANSLATION``)."""
    tasks = cls.tasks
    if not isinstance(tasks, (tuple, list)) or not all(isinstance(t, Task) for t in tasks):
        raise TypeError(
            f"method {cls.id!r}: tasks = {tasks!r} must be a tuple of medi2i.Task members, "
            f"e.g. ({_enum_example(Task, tasks)},)"
        )
    for attr, enum in _DECLARED_ENUMS:
        value = getattr(cls, attr)
        if not isinstance(value, enum):
            raise TypeError(
                f"method {cls.id!r}: {attr} = {value!r} must be a medi2i.{enum.__name__} "
                f"member, e.g. {_enum_example(enum, value)}"
            )
    for attr in ("input_spec", "output_spec"):
        spec = getattr(cls, attr)
        if not isinstance(spec, VolumeSpec):
            raise TypeError(
                f"method {cls.id!r}: {attr} = {spec!r} must be a medi2i.VolumeSpec, "
                'e.g. VolumeSpec(modality="MR"), not a ' + type(spec).__name__
            )
    if not isinstance(cls.paper, str):
        raise TypeError(
            f"method {cls.id!r}: paper = {cls.paper!r} must be a string (the reference of "
            "the paper it implements, or '')"
        )


def _enum_example(enum: type[Enum], given: object) -> str:
    """``Enum.MEMBER`` for the member whose value a plain string ``given`` (or the first
    string in a tuple of them) spells, else for the enum's first member."""
    values = given if isinstance(given, (tuple, list)) else (given,)
    for value in values:
        for member in enum:
            if isinstance(value, str) and value.strip().lower() == member.value:
                return f"{enum.__name__}.{member.name}"
    return f"{enum.__name__}.{next(iter(enum)).name}"


def _require_concrete(cls: type[Method[Any, Any]]) -> None:
    """Every abstract method must be implemented: an abstract class registered fine and
    was listed, then crashed with a traceback when a command first built it."""
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        them = "it" if len(missing) == 1 else "them"
        raise TypeError(
            f"method {cls.id!r} does not implement the abstract method(s) "
            f"{', '.join(missing)}; define {them} in {cls.__qualname__}"
        )


def _require_version(cls: type[Method[Any, Any]]) -> None:
    """The version must be one the saved-model version check can compare (:data:`_VERSION`)."""
    version = cls.version
    if not (isinstance(version, str) and _VERSION.fullmatch(version)):
        raise TypeError(
            f"method {cls.id!r}: version {version!r} is not MAJOR.MINOR.PATCH (digits, e.g. "
            "'1.2.0', optionally with a suffix such as '1.2.0rc1'); saved models are checked "
            "against it, so give it that form"
        )


def _check_models(cls: type[Method[Any, Any]]) -> None:
    """The options must be a :class:`medi2i.Options` (which refuses unknown keys and NaN)
    and the condition a pydantic model that refuses unknown keys: a model that drops
    them would let ``-o gama=2`` run with the default and record it as if asked."""
    if not (isinstance(cls.Options, type) and issubclass(cls.Options, Options)):
        raise TypeError(
            f"method {cls.id!r}: its Options model "
            f"{getattr(cls.Options, '__qualname__', cls.Options)} must subclass medi2i.Options, "
            "which refuses unknown keys and NaN"
        )
    condition = cls.Condition
    if not (isinstance(condition, type) and issubclass(condition, BaseModel)):
        raise TypeError(f"method {cls.id!r}: its Condition must be a pydantic model")
    if condition.model_config.get("extra") != "forbid":
        raise TypeError(
            f"method {cls.id!r}: its Condition model {condition.__qualname__} must refuse "
            'unknown keys (model_config = ConfigDict(extra="forbid")), or a misspelt '
            "condition would be ignored"
        )


def _check_training_hooks(cls: type[Method[Any, Any]]) -> None:
    """A declared way of learning must come with the hooks that do it."""
    from medi2i.method import Method

    if cls.training is Training.FIT:
        _require_fit_hook(cls)
        return
    needed = {
        Training.GRADIENT: (("configure_training", "training_step"), "all of"),
    }.get(cls.training)
    if needed is None:
        return
    hooks, quantity = needed
    present = [hook for hook in hooks if getattr(cls, hook) is not getattr(Method, hook)]
    if (quantity == "all of" and len(present) < len(hooks)) or not present:
        lacking = (
            f"lacks {', '.join(hook for hook in hooks if hook not in present)} (it needs all "
            f"of {', '.join(hooks)})"
            if quantity == "all of"
            else f"implements none of {', '.join(hooks)} (it needs one)"
        )
        raise TypeError(
            f"method {cls.id!r} declares training = {cls.training.value!r} but {lacking}; "
            "implement it or declare the way it learns (Training.NONE, FIT or GRADIENT)"
        )


def _require_fit_hook(cls: type[Method[Any, Any]]) -> None:
    """A fitted method needs the hook its data kind is fitted through: ``fit_pairs`` on
    paired cases, ``fit_domains`` on the volumes of every domain of unpaired and
    multi-domain data, ``fit`` on volumes of one domain for the other kinds (the
    workflow's train stage and the benchmarks call only that one)."""
    from medi2i.method import Method

    hooks = {
        DataKind.PAIRED: ("fit_pairs", "whole paired cases"),
        DataKind.UNPAIRED: ("fit_domains", "the volumes of every domain, by domain"),
        DataKind.MULTI_DOMAIN: ("fit_domains", "the volumes of every domain, by domain"),
    }
    hook, how = hooks.get(cls.data, ("fit", "volumes of the target domain"))
    if getattr(cls, hook) is not getattr(Method, hook):
        return
    others = [
        name
        for name in ("fit", "fit_pairs", "fit_domains")
        if name != hook and getattr(cls, name) is not getattr(Method, name)
    ]
    raise TypeError(
        f"method {cls.id!r} declares training = 'fit' with data = {cls.data.value!r} but "
        f"does not implement {hook}, through which such a method is fitted (on {how})"
        + (f"; it implements {', '.join(others)}, for other data kinds" if others else "")
        + f": implement {hook}, or declare the data kind its hook is for"
    )


def _require_mixin_options(cls: type[Method[Any, Any]]) -> None:
    """A mixin (e.g. :class:`medi2i.MRToCTIntensities`) reads option fields of the
    method it is mixed into, named in its ``required_options``; without them the method
    failed at its first preprocess, after a workflow had validated and started."""
    fields = cls.Options.model_fields
    for base in cls.__mro__:
        needed = base.__dict__.get("required_options", ())
        missing = [name for name in needed if name not in fields]
        if missing:
            raise TypeError(
                f"method {cls.id!r} uses {base.__qualname__}, which reads the options "
                f"{', '.join(needed)}; its Options model {cls.Options.__qualname__} lacks "
                f"{', '.join(missing)} (add the fields, with defaults)"
            )


def _require_window_default(cls: type[Method[Any, Any]]) -> None:
    """A patch network's default ``roi_size`` must be a window (three positive whole
    numbers, or one): an ``int`` annotation with a tuple in mind crashed in the core."""
    from medi2i.errors import OptionsError
    from medi2i.patch_network import PatchNetworkMethod, window_triple

    field = cls.Options.model_fields.get("roi_size")
    if not issubclass(cls, PatchNetworkMethod) or field is None or field.is_required():
        return
    default = field.get_default(call_default_factory=True)
    if default is None:
        return
    try:
        window_triple(default, f"the default of option roi_size of method {cls.id!r}")
    except OptionsError as exc:
        raise TypeError(str(exc)) from None


def _require_valid_defaults(method_id: str, kind: str, model: type[BaseModel]) -> None:
    """Refuse an options or condition model whose own defaults it rejects.

    pydantic does not validate defaults, so ``steps: int = "ten"`` would pass every
    prediction with the default, be saved in a model folder, and only then be refused
    when that folder is loaded (after the training): the mistake is the plugin's, so it
    shows at registration.
    """
    defaults = {
        name: field.get_default(call_default_factory=True)
        for name, field in model.model_fields.items()
        if not field.is_required()
    }
    try:
        model.model_validate(defaults)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc'])} = "
            f"{defaults.get(str(error['loc'][0]))!r} ({error['msg']})"
            for error in exc.errors()
            if error["type"] != "missing" and error["loc"]
        ]
        if problems:
            finite = any(e["type"] == "finite_number" for e in exc.errors())
            raise TypeError(
                f"method {method_id!r}: the default of {kind} field {'; '.join(problems)}; "
                f"give {model.__qualname__} defaults that its fields accept"
                + (" (a finite number, not NaN or infinity)" if finite else "")
            ) from None
