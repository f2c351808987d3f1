"""Checks a trained-model folder passes before anything in it is trusted.

A model folder comes from elsewhere, so :func:`medi2i.model_folder.load_model` sizes
and dates it before it allocates or loads anything:

- Options may not make the method bigger than its weights: the method is first built on
  PyTorch's ``meta`` device (shapes only, no memory) and the tensors its
  :meth:`~medi2i.method.Method.state_tensors` declares must hold at most
  :data:`MAX_STATE_ELEMENTS` numbers (:func:`declared_shapes`), and match the shapes in
  the weights file's safetensors header, read without loading a tensor
  (:func:`safetensors_shapes`).
- Versions (:func:`check_versions`): a model made by a newer release series of its
  method or of medi2i is refused, with the version to install; a newer feature release
  only warns (:class:`ModelVersionWarning`). Versions are read as
  ``MAJOR.MINOR.PATCH``; the release series is ``MAJOR``, or ``0.MINOR`` while the major
  version is 0 (where, as in SemVer, every minor release may change the format), and the
  feature release is the next part (``MINOR``, or ``PATCH`` under 0). A version that is
  not of this form is not compared.

Saving checks the other way (:func:`checked_state`): fitted values a folder's JSON could
not keep and give back are refused before anything is written. A model whose method no
loaded plugin registers gets a message saying what to load or install
(:func:`unregistered_method_error`).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from medi2i.errors import Medi2iError, ModelFormatError, UnknownMethodError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from medi2i.method import DomainSpec, Method, MethodClass, StateValue
    from medi2i.registry import Registry

MAX_STATE_ELEMENTS = 2**31
"""Most numbers a model's method may declare in its tensors (8 GiB as float32)."""
MAX_HEADER_BYTES = 16 * 1024**2
"""Largest safetensors header read, in bytes."""


class ModelVersionWarning(UserWarning):
    """A model was made by a newer feature release of its method or of medi2i."""


def declared_shapes(
    where: str,
    method_cls: MethodClass,
    options: BaseModel,
    domains: Sequence[DomainSpec] = (),
) -> dict[str, tuple[int, ...]]:
    """Shapes of the tensors ``method_cls`` keeps with ``options`` (and ``domains``, for
    networks sized by their number of domains), found on the meta device (no memory is
    allocated); empty when the method cannot be built there."""
    import torch

    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            method = method_cls(options)
            if domains:
                method.use_domains(domains)
            tensors = method.state_tensors()
    except Medi2iError:
        raise
    except Exception:  # a method that needs real tensors to build is checked on load
        return {}
    shapes = {name: tuple(int(n) for n in tensor.shape) for name, tensor in tensors.items()}
    total = sum(math.prod(shape) for shape in shapes.values())
    if total > MAX_STATE_ELEMENTS:
        raise ModelFormatError(
            f"{where}: method {method_cls.id!r} with these options "
            f"({changed_options(options)}) would hold {total:,} numbers, more than the "
            f"{MAX_STATE_ELEMENTS:,} a model may; the options are damaged or not for this method"
        )
    return shapes


def changed_options(options: BaseModel) -> str:
    """``name=value`` of the options that differ from the defaults (all if unknown)."""
    values = options.model_dump(mode="json")
    try:
        defaults = type(options)().model_dump(mode="json")
    except ValidationError:
        defaults = {}
    changed = [name for name, value in values.items() if defaults.get(name, ...) != value]
    if not changed:
        return "the defaults"
    return ", ".join(f"{name}={_short(values[name])}" for name in changed)


def _short(value: object, width: int = 40) -> str:
    text = json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def safetensors_shapes(data: bytes, where: str) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header, without reading the tensors."""
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 < size <= min(len(data) - 8, MAX_HEADER_BYTES):
        raise ModelFormatError(f"{where} is not readable: not a safetensors file")
    try:
        header = json.loads(data[8 : 8 + size])
        return {
            name: tuple(int(n) for n in entry["shape"])
            for name, entry in header.items()
            if name != "__metadata__"
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ModelFormatError(f"{where} is not readable: bad safetensors header ({exc})") from None


def _release(version: str) -> tuple[int, int, int] | None:
    match = _VERSION.match(version)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def check_versions(
    path: Path,
    method_cls: MethodClass,
    registry: Registry,
    method_version: str,
    medi2i_version: str,
) -> None:
    """Refuse a model from a newer release series, warn on a newer feature release.

    Args:
        path: The model, for the messages.
        method_cls: The installed method class.
        registry: The installed plugins (to name the distribution to upgrade).
        method_version: The method version the model records.
        medi2i_version: The medi2i version the model records.

    Raises:
        ModelFormatError: A newer release series made the model.
    """
    from medi2i import __version__

    owner = registry.method_owner(method_cls.id)
    infos = {info.name: info for info in registry.plugins.infos}
    dist = infos[owner].distribution if owner in infos else None
    dist = dist or "medi2i"
    checks = [
        (f"method {method_cls.id!r}", method_version, method_cls.version, dist),
        ("medi2i", medi2i_version, __version__, "medi2i"),
    ]
    for what, recorded, installed, package in checks:
        newer = newer_release(recorded, installed)
        if newer == "series":
            raise ModelFormatError(
                f"{path}: made with {what} {recorded}, but {installed} is installed and "
                f"cannot read it; install a release of {package} with {what} {recorded} "
                f"or later (pip install -U {package})"
            )
        if newer == "feature":
            warnings.warn(
                f"{path}: made with {what} {recorded}, newer than the installed {installed}; "
                f"it may use what {installed} ignores: pip install -U {package}",
                ModelVersionWarning,
                stacklevel=3,
            )


def newer_release(recorded: str, installed: str) -> str | None:
    """``"series"`` or ``"feature"`` when ``recorded`` is newer than ``installed`` in that
    part, ``None`` when it is not newer there (or either is not ``MAJOR.MINOR[.PATCH]``)."""
    new, old = _release(recorded), _release(installed)
    if new is None or old is None:
        return None
    series = 2 if new[0] == 0 and old[0] == 0 else 1
    if new[:series] != old[:series]:
        return "series" if new[:series] > old[:series] else None
    return "feature" if new[: series + 1] > old[: series + 1] else None


def checked_state(method: Method) -> dict[str, StateValue]:
    """``method.state_values()``, refused with the key at fault when a value is not one
    the model folder's JSON keeps and gives back (a number, string or boolean, or a list
    of them; numbers finite).

    Raises:
        ModelFormatError: Naming the method, the key and what to keep instead.
    """
    values = method.state_values()
    for key, value in values.items():
        problem = _state_value_problem(value)
        if problem is not None:
            raise ModelFormatError(
                f"method {method.id!r}: state_values()[{key!r}] {problem}; fitted values "
                "are numbers, strings, booleans or lists of one of them, and numbers are "
                "finite (keep arrays in state_tensors(), and fit again a value that came "
                "out NaN)"
            )
    return values


def _state_value_problem(value: object) -> str | None:
    """What keeps ``value`` from being a :data:`StateValue` that loads back, or ``None``."""
    import math

    scalar = (bool, int, float, str)
    items = value if isinstance(value, list) else [value]
    if not isinstance(value, (list, *scalar)):
        return f"is a {type(value).__name__}"
    wrong = next((item for item in items if not isinstance(item, scalar)), None)
    if wrong is not None:
        return f"holds a {type(wrong).__name__}"
    if isinstance(value, list) and len({str if isinstance(i, str) else float for i in items}) > 1:
        return "mixes strings and numbers"
    if any(isinstance(item, float) and not math.isfinite(item) for item in items):
        return (
            "is not finite (NaN or infinite)"
            if not isinstance(value, list)
            else ("holds a value that is not finite (NaN or infinite)")
        )
    return None


def unregistered_method_error(
    path: Path, method_id: str, made_by: str | None, exc: UnknownMethodError
) -> UnknownMethodError:
    """What to do about a model (folder or export at ``path``) whose method ``method_id``
    no loaded plugin registers: load its installed plugin by name, or install the
    distribution ``made_by`` that provides it (``exc`` itself when that is unknown)."""
    if made_by is None:
        return exc
    if _installed(made_by):  # installed, but its plugin is not loaded here
        import os

        selected = os.environ.get("MEDI2I_LOAD_PLUGINS")
        why = (
            f"MEDI2I_LOAD_PLUGINS={selected!r} leaves it out"
            if selected is not None and made_by != "medi2i"  # medi2i's are opt-in
            else "it is not loaded by default"
        )
        # medi2i's own opt-in plugins are loaded by module; another distribution by name
        name = " or ".join(opt_in_plugins_of(method_id)) if made_by == "medi2i" else made_by
        return UnknownMethodError(
            f"{path} was made by method {method_id!r} of the distribution "
            f"{made_by!r}, which is installed but whose plugin is not loaded ({why}): "
            f"load it with `medi2i --plugin {name} ...` (in Python, "
            f"medi2i.plugins.add_installed_plugin; in a workflow, its plugins: key)"
        )
    return UnknownMethodError(
        f"{path} was made by method {method_id!r} of the distribution "
        f"{made_by!r}, which no installed plugin provides; install it (pip install "
        f"{made_by}, or pip install -e <its folder>). {exc}"
    )


def opt_in_plugins_of(method_id: str) -> list[str]:
    """The opt-in plugins shipped with medi2i (:data:`medi2i.plugins.OPT_IN_PLUGINS`)
    whose ``register_methods`` registers ``method_id``, found by calling that hook with a
    list's ``append`` (nothing is registered anywhere); all of them when none does, as
    a hint that cannot name the wrong one alone.

    Example:
        >>> opt_in_plugins_of("example-tiny-regression")
        ['medi2i.testing.trainable_examples']
    """
    import importlib

    from medi2i.plugins import OPT_IN_PLUGINS, plugin_output_to_stderr

    found = []
    for name in OPT_IN_PLUGINS:
        registered: list[object] = []
        try:
            with plugin_output_to_stderr():
                hook = getattr(importlib.import_module(name), "register_methods", None)
                if hook is not None:
                    hook(register=registered.append)
        except Exception:  # a hint only: a plugin that fails to say is not named
            continue
        if any(getattr(cls, "id", None) == method_id for cls in registered):
            found.append(name)
    return found or list(OPT_IN_PLUGINS)


def _installed(distribution: str) -> bool:
    """Whether a distribution of that name is installed."""
    import importlib.metadata

    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
