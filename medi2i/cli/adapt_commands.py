"""``medi2i adapt``: adapt a trained model to target volumes (e.g. a new scanner's)."""

from __future__ import annotations

from pathlib import Path

import click

from medi2i.cli.options import command_registry, inference_options, inference_settings


def add_to(group: click.Group) -> None:
    """Add ``adapt`` to ``group``."""
    group.add_command(adapt_command)


@click.command("adapt")
@click.option(
    "--model",
    required=True,
    type=click.Path(path_type=Path),
    help="The trained-model folder or zip to adapt (never changed).",
)
@click.argument("output", type=click.Path(path_type=Path))
@click.argument("volumes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--domain", help="The volumes' domain, for models trained on domains.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUTPUT model folder.")
@inference_options
@click.pass_context
def adapt_command(
    ctx: click.Context,
    /,
    model: Path,
    output: Path,
    volumes: tuple[Path, ...],
    domain: str | None,
    overwrite: bool,
    **inference: object,
) -> None:
    """Adapt the model --model to VOLUMES (target-domain images) and save it as OUTPUT.

    For methods that adapt (``adapts`` in "medi2i methods --json"), e.g. AdaBN
    recomputing normalisation statistics on a new scanner's images. OUTPUT is a new
    model folder whose medi2i-model.json names the source model, its weights' SHA-256
    and the volumes; predict with it as with any model. --seed seeds the adaptation.
    """
    from medi2i.adaptation import adapt_model

    settings = inference_settings(**inference)  # type: ignore[arg-type]
    written = adapt_model(
        model,
        list(volumes),
        output,
        registry=command_registry(ctx),
        settings=settings,
        seed=settings.seed,
        overwrite=overwrite,
        domain=domain,
    )
    click.echo(f"wrote the adapted model {written}")
