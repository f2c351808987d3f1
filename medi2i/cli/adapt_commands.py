"""``medi2i adapt``: adapt a trained model to target volumes (e.g. a new scanner's)."""

from __future__ import annotations

from pathlib import Path

import click

from medi2i.cli.options import (
    MAX_SEED,
    command_registry,
    device_option,
    nonfinite_option,
    progress_option,
)


def add_to(group: click.Group) -> None:
    """Add ``adapt`` to ``group``."""
    group.add_command(adapt_command)


# Only what adapting uses: the method sees whole preprocessed volumes and chooses its
# own windows (AdaBN tiles them at the model's window size), so the sliding-window and
# test-time options of predict would change nothing here.
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
@device_option()
@progress_option
@nonfinite_option
@click.option(
    "--force-modality",
    is_flag=True,
    help="Skip the modality checks of the volumes, as predict's --force-modality: use a "
    "DICOM series whose Modality is not the model's input modality, a NIfTI volume given "
    "as MR although 5 % or more of its voxels are at or below -500 (as a CT in HU's air), "
    "or one given as CT in HU without a voxel at or below -500.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0, max=MAX_SEED),
    default=0,
    show_default=True,
    help="Seed of anything random the adaptation does, 0 to 4294967295; recorded in "
    "the adapted model's card (when the source has one).",
)
@click.pass_context
def adapt_command(
    ctx: click.Context,
    /,
    model: Path,
    output: Path,
    volumes: tuple[Path, ...],
    domain: str | None,
    overwrite: bool,
    device: str,
    progress: bool,
    nonfinite: str,
    force_modality: bool,
    seed: int,
) -> None:
    """Adapt the model --model to VOLUMES (target-domain images) and save it as OUTPUT.

    For methods that adapt (``adapts`` in "medi2i methods --json"), e.g. AdaBN
    recomputing normalisation statistics on a new scanner's images (windows of the
    model's own size). OUTPUT is a new model folder whose medi2i-model.json names the
    source model, its weights' SHA-256 and each volume with its SHA-256; a source with
    a model card passes it on, with the adaptation recorded and the source's metrics
    left out. Predict with it as with any model. Each volume passes predict's input
    checks first: a volume plainly not of the model's input modality (a CT in HU for an
    MR model) is refused unless --force-modality, and one whose voxel spacing lies far
    from the model's training spacings is warned about.
    """
    from medi2i.adaptation import adapt_model
    from medi2i.settings import InferenceSettings

    settings = InferenceSettings(
        device=device,
        progress=progress,
        nonfinite=nonfinite,
        force_modality=force_modality,
        seed=seed,
    )
    written = adapt_model(
        model,
        list(volumes),
        output,
        registry=command_registry(ctx),
        settings=settings,
        seed=seed,
        overwrite=overwrite,
        domain=domain,
        command="medi2i adapt",
        force_modality=force_modality,
    )
    click.echo(f"wrote the adapted model {written}")
