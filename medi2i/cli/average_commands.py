"""The ``average-weights`` command: one trained model from the mean of several models'
weights (:func:`medi2i.model_averaging.average_models`)."""

from __future__ import annotations

from pathlib import Path

import click

from medi2i.cli.options import command_registry, overwrite_option


def add_to(group: click.Group) -> None:
    """Add the ``average-weights`` command to ``group``."""
    group.add_command(average_weights_command)


@click.command("average-weights")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="The new trained-model folder.",
)
@click.option(
    "--weight",
    "weights",
    multiple=True,
    type=click.FloatRange(min=0.0),
    help="Weight of each model, in the order given (repeat once per model; normalised "
    "to sum to 1) [default: equal].",
)
@overwrite_option
@click.pass_context
def average_weights_command(
    ctx: click.Context,
    /,
    models: tuple[Path, ...],
    output: Path,
    weights: tuple[float, ...],
    overwrite: bool,
) -> None:
    """Average the weights of the trained MODELS (two or more folders or zips of one
    method and architecture) into a new model folder --output.

    Checkpoint averaging: models of one training run (e.g. its best-model/ and model/)
    or fine-tunings of one model often predict better averaged than alone; models
    trained from different random starts do not. The new model's card names the models
    and carries no metrics: score it on validation data (medi2i evaluate, medi2i bench
    run --model) before you use it. Fitted values (intensity statistics, domains) must
    be equal in all models; options are the first model's, and a warning names
    any option another model was trained with differently.
    """
    from medi2i.model_averaging import average_models

    folder = average_models(
        models,
        output,
        weights=weights or None,
        registry=command_registry(ctx),
        overwrite=overwrite,
    )
    click.echo(f"wrote {folder} (the mean of {len(models)} models' weights)")
