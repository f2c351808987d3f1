"""Write a new plugin distribution from the templates in ``templates/``.

Templates are :class:`string.Template` files (``${name}`` placeholders, ``$$`` for a
literal dollar). ``templates/common`` holds what every kind shares; ``templates/<kind>``
holds the method module, its tests, a workflow and ``usage.md.part`` (the README's
train and predict section, substituted for ``${usage}``). A template's path under its
folder is the generated file's path, with ``__package__`` replaced by the package name
and the ``.tmpl`` suffix dropped.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal, get_args

from medi2i.errors import OptionsError

PluginKind = Literal["predict-only", "paired", "unpaired", "multi-domain"]
"""The kinds of method ``medi2i plugin new`` can start from."""

PLUGIN_KINDS: tuple[str, ...] = get_args(PluginKind)

PLUGIN_API = "2.0"
"""The plugin API the templates are written against (``MEDI2I_PLUGIN_API``)."""

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_PACKAGE_MARK = "__package__"
_TRAINABLE = ("paired", "unpaired", "multi-domain")

_TASKS = {
    "predict-only": "harmonization",
    "paired": "translation",
    "unpaired": "translation, harmonization",
    "multi-domain": "harmonization",
}

_SUMMARIES = {
    "predict-only": "Smooths a volume with a box filter run by sliding window",
    "paired": "Translates MR to synthetic CT, learned from aligned MR/CT pairs",
    "unpaired": "Translates between two domains both ways, learned from unpaired volumes",
    "multi-domain": "Translates a volume to any of several scanner domains",
}


@dataclass(frozen=True)
class PluginNames:
    """The names a plugin called ``name`` goes by.

    Attributes:
        name: Entry-point name and method id, e.g. ``"my-method"``.
        distribution: ``"medi2i-my-method"``.
        package: ``"medi2i_my_method"``.
        class_name: ``"MyMethod"``.
    """

    name: str
    distribution: str
    package: str
    class_name: str

    @classmethod
    def of(cls, name: str) -> PluginNames:
        """The names of plugin ``name``.

        Raises:
            OptionsError: ``name`` is not lowercase letters and digits in parts joined
                by ``-``, starting with a letter, or it starts with ``medi2i``.
        """
        if not _NAME.match(name):
            raise OptionsError(
                f"plugin name {name!r} is not a valid id: use lowercase letters and digits "
                "in parts joined by '-', starting with a letter (e.g. 'my-method')"
            )
        if name == "medi2i" or name.startswith("medi2i-"):
            raise OptionsError(
                f"plugin name {name!r}: give the plugin's own name without 'medi2i-' "
                "(the distribution is called medi2i-<name>)"
            )
        parts = name.split("-")
        return cls(
            name=name,
            distribution=f"medi2i-{name}",
            package="medi2i_" + "_".join(parts),
            class_name="".join(part.capitalize() for part in parts),
        )


def generate_plugin(name: str, kind: str, output: Path | None = None) -> Path:
    """Write a new plugin distribution for a method of ``kind``.

    Args:
        name: The plugin's name (entry point and method id), e.g. ``"my-method"``.
        kind: ``"predict-only"``, ``"paired"``, ``"unpaired"`` or ``"multi-domain"``.
        output: The folder to create; ``./medi2i-<name>`` when ``None``.

    Returns:
        The folder written.

    Raises:
        OptionsError: ``name`` or ``kind`` is invalid, or ``output`` exists.

    Example:
        >>> generate_plugin("my-method", "paired", tmp_path / "medi2i-my-method")  # doctest: +SKIP
        PosixPath('.../medi2i-my-method')
    """
    names = PluginNames.of(name)
    if kind not in PLUGIN_KINDS:
        raise OptionsError(f"unknown plugin kind {kind!r}; choose one of {', '.join(PLUGIN_KINDS)}")
    folder = Path(output) if output is not None else Path(names.distribution)
    if folder.exists():
        raise OptionsError(f"{folder} exists already; give a new folder with --output")
    files = render_plugin(names, kind)
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def render_plugin(names: PluginNames, kind: str) -> dict[str, str]:
    """The generated files by relative path (POSIX), without writing anything."""
    root = resources.files("medi2i.plugin_kit") / "templates"
    values = _values(names, kind)
    usage = (root / kind / "usage.md.part").read_text(encoding="utf-8")
    values["usage"] = string.Template(usage).substitute(values).strip()
    files: dict[str, str] = {}
    for folder in (root / "common", root / kind):
        for relative, template in _templates(folder, ""):
            target = relative.replace(_PACKAGE_MARK, names.package).removesuffix(".tmpl")
            files[target] = string.Template(template.read_text(encoding="utf-8")).substitute(values)
    return files


def _templates(folder: Traversable, prefix: str) -> list[tuple[str, Traversable]]:
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        relative = f"{prefix}{entry.name}"
        if entry.is_dir():
            found += _templates(entry, relative + "/")
        elif entry.name.endswith(".tmpl"):
            found.append((relative, entry))
    return found


def _values(names: PluginNames, kind: str) -> dict[str, str]:
    trainable = kind in _TRAINABLE
    return {
        "name": names.name,
        "distribution": names.distribution,
        "package": names.package,
        "class_name": names.class_name,
        "kind": kind,
        "summary": _SUMMARIES[kind],
        "task": _TASKS[kind],
        "plugin_api": PLUGIN_API,
        "training_data": kind if trainable else "none (nothing is learned)",
        "train_steps": (
            "medi2i run workflows/example.yaml   # trains, evaluates and writes a report"
            if trainable
            else "medi2i run workflows/example.yaml   # nothing to train: evaluates and reports"
        ),
    }
