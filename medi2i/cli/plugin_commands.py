"""``medi2i plugin new``: start a plugin distribution from the plugin kit's templates."""

from __future__ import annotations

from pathlib import Path

import click

from medi2i.cli.options import command_registry

KINDS = ("predict-only", "paired", "unpaired", "multi-domain")
"""The kinds ``--kind`` accepts (:data:`medi2i.plugin_kit.PLUGIN_KINDS`, kept here so
that building the command line imports no template code)."""


def register(cli: click.Group) -> None:
    """Add the ``plugin`` group (with ``new``) to ``cli``."""
    cli.add_command(plugin_group)


@click.group("plugin")
def plugin_group() -> None:
    """Write new method plugins."""


@plugin_group.command("new")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    required=True,
    help="The method to start from: no training, paired, unpaired (two-way) or multi-domain.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder to create (default: ./medi2i-NAME); it must not exist.",
)
@click.pass_context
def plugin_new_command(ctx: click.Context, name: str, kind: str, output: Path | None) -> None:
    """Write a plugin distribution for a method called NAME (e.g. my-method).

    The folder holds pyproject.toml (entry point in group "medi2i"), the hook module,
    a small working method of KIND, a README with a model-card skeleton, tests running
    medi2i's contract checks, and workflows/example.yaml. NAME is the method's id, so
    a name an installed plugin already registers is refused: once installed, two
    plugins with one method id make that id unusable for both.
    """
    from medi2i.errors import OptionsError
    from medi2i.plugin_kit import generate_plugin
    from medi2i.plugin_kit.generator import PluginNames

    PluginNames.of(name)  # a malformed name is refused before the plugins are loaded
    registry = command_registry(ctx)
    if name in registry.methods or name in registry.method_clashes:
        owners = (
            [registry.method_owner(name)]
            if name in registry.methods
            else registry.method_clashes[name]
        )
        raise OptionsError(
            f"method id {name!r} is already registered by plugin "
            f"{' and '.join(map(repr, owners))}; two plugins with one id make it unusable "
            "for both: choose another name"
        )
    folder = generate_plugin(name, kind, output)
    # pip reads a bare name as a package to download: give it a path
    path = folder if folder.is_absolute() or folder.parts[0] in (".", "..") else f"./{folder}"
    click.echo(f"wrote {folder}")
    click.echo(f"next: pip install -e {path} && (cd {folder} && pytest)")
