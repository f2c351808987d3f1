"""The ``export`` command: a trained network method's window function as a PyTorch
ExportedProgram (:func:`medi2i.export.export_program`).

Torch is imported inside the command, so ``medi2i --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from medi2i.cli.options import OutputPath, command_registry, key_values


def add_to(group: click.Group) -> None:
    """Add the ``export`` command to ``group``."""
    group.add_command(export_command)


@click.command("export")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("output", type=OutputPath())
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["torch-export", "onnx", "monai-bundle"]),
    default="torch-export",
    show_default=True,
    help="What to write: torch-export, a torch.export program (.pt2) of the network's "
    "function on a batch of windows (TorchScript is deprecated by PyTorch); onnx, the "
    "same function as ONNX (.onnx), checked in onnxruntime (pip install 'medi2i[onnx]'); "
    "monai-bundle, a MONAI bundle folder (configs/metadata.json, configs/inference.json, "
    "models/) that MONAI's bundle tools verify and run.",
)
@click.option(
    "--condition",
    "-c",
    "condition_pairs",
    multiple=True,
    help="Predict-time key=value the function is exported for (e.g. direction=b2a, "
    "target_domain=A); the method's default otherwise. Repeat.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing export (the file and its OUTPUT.json, either alone too, or "
    "a bundle folder medi2i exported that holds nothing else): the new one is written in "
    "full under a temporary name in the same folder, then put in its place; a failed "
    "export keeps the old one.",
)
@click.pass_context
def export_command(
    ctx: click.Context,
    /,
    model: Path,
    output: Path,
    export_format: str,
    condition_pairs: tuple[str, ...],
    overwrite: bool,
) -> None:
    """Export the trained model MODEL (folder or zip) to OUTPUT (e.g. model.pt2, or a
    bundle folder with --format monai-bundle).

    The file holds the network's function on a batch of preprocessed windows, for one
    condition, and runs with torch alone (torch.export.load(OUTPUT).module()); any batch
    size is accepted. OUTPUT.json beside it gives the
    window size, channels, output scale, method, options and condition, and what medi2i
    does around the function (reading, resampling, intensity normalization, blending,
    postprocessing). The export is checked against medi2i's own forward on random
    windows before it is kept. Methods that run no network by window have nothing to
    export and say so; so do MUNIT (styles) and AdaBN on the input (statistics=input).
    Existing files are refused unless --overwrite is given; an output inside the
    model folder, or one that is the model, is refused always. --overwrite replaces a
    bundle folder only when medi2i exported it and it holds nothing else (not a run's
    files made inside it, not another MONAI bundle, not a link). A bundle folder named
    like a file (bundle.onnx) is refused. Folders missing on OUTPUT's path are created (as
    medi2i predict creates an output's folders); a folder that cannot be written to is
    refused before the export runs.

    A MONAI bundle holds the same program as models/model.pt2, the model folder, and an
    inference config that runs MONAI's SlidingWindowInferer with medi2i's window
    settings; its run needs medi2i for the steps around the windows (docs/README.md in
    the bundle says how to verify and run it with python -m monai.bundle).
    """
    from medi2i.export import export_program
    from medi2i.model_folder import load_model

    if export_format == "torch-export" and output.suffix.lower() == ".onnx":
        raise click.UsageError(
            f"{output} names an ONNX file but --format is torch-export (a .pt2 program); "
            "pass --format onnx, or name the output .pt2"
        )
    expected = {"torch-export": ".pt2", "onnx": ".onnx"}.get(export_format)
    if expected is not None and output.suffix.lower() != expected:
        raise click.UsageError(
            f"{output}: --format {export_format} writes a {expected} file; name the output "
            f"{output.stem}{expected}"
        )
    if export_format != "monai-bundle":
        from medi2i.io.destinations import check_destination

        # an export written into the model folder would change the model it describes
        # (existing files: refused below unless --overwrite)
        check_destination(output, inputs=[model], overwrite=True)
        sidecar = output.with_name(output.name + ".json")
        check_destination(sidecar, inputs=[model], overwrite=True, sidecar_of=output)
    registry = command_registry(ctx)
    method = load_model(model, registry=registry)
    condition = key_values(condition_pairs, "--condition")
    if export_format == "monai-bundle":
        from medi2i.bundle_export import export_bundle

        folder = export_bundle(
            method,
            model,
            output,
            condition=condition or None,
            registry=registry,
            overwrite=overwrite,
        )
        click.echo(f"wrote the MONAI bundle {folder}")
        return
    result = export_program(
        method,
        output,
        condition=condition or None,
        onnx=export_format == "onnx",
        model=model,
        overwrite=overwrite,
    )
    click.echo(
        f"wrote {result.path} and {result.sidecar} ({export_format}; largest difference "
        f"from medi2i's forward on the check windows {result.max_difference:.2e})"
    )
