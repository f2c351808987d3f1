"""The ``mask`` command: the body mask of a volume (:func:`medi2i.body_mask`) as a file.

MR→CT methods with ``body_contour`` on set their output to air outside this mask; the
command writes it for a user who wants to see it, or to use it (e.g. as the evaluation
mask of a case without one).

NumPy, SciPy and MONAI are imported inside the command, so ``medi2i --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from medi2i.cli.options import command_registry, overwrite_option
from medi2i.errors import OptionsError


def add_to(group: click.Group) -> None:
    """Add the ``mask`` command to ``group``."""
    group.add_command(mask_command)


@click.command("mask")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUTPUT", type=click.Path(path_type=Path))
@click.option(
    "--margin",
    "margin_voxels",
    type=click.FloatRange(min=0.0),
    default=2.0,
    show_default=True,
    help="Grow the filled body by this distance, in voxels.",
)
@overwrite_option
@click.pass_context
def mask_command(
    ctx: click.Context,
    /,
    input_path: Path,
    output_path: Path,
    margin_voxels: float,
    overwrite: bool,
) -> None:
    """Write the body (or head) mask of INPUT to OUTPUT: 1 in the body, 0 in the air.

    The mask is found from INPUT's intensities on its own grid, as MR→CT methods find
    it with their option body_contour: Otsu's threshold, the large connected
    components, holes filled in 3D and slice by slice, then a margin. INPUT is a volume
    file or a DICOM series folder; OUTPUT is a volume file (its suffix picks the
    format, e.g. mask.nii.gz) with INPUT's grid, stored as 8-bit integers. A method
    that resamples its input (a spacing option) finds the mask on its own grid, so the
    two can differ by a voxel at the skin.
    """
    import torch
    from monai.data.meta_tensor import MetaTensor

    from medi2i.body_contour import body_mask
    from medi2i.io import read_volume, write_volume, writer_for
    from medi2i.io.destinations import check_destination

    if not output_path.suffix:
        raise OptionsError(
            f"{output_path} has no suffix; the mask is written as a volume file, e.g. "
            f"{output_path.with_suffix('.nii.gz')}"
        )
    registry = command_registry(ctx)
    writers = list(registry.writers.values())
    writer_for(output_path, writers)
    check_destination(output_path, inputs=[input_path], overwrite=overwrite, folder=False)
    image = read_volume(input_path, readers=list(registry.readers.values()))
    inside = body_mask(image.detach().cpu().numpy(), margin_voxels=margin_voxels)
    mask = MetaTensor(torch.from_numpy(inside.astype("float32"))[None], affine=image.affine)
    mask.meta["medi2i.dtype"] = "uint8"
    written = write_volume(mask, output_path, writers=writers)
    share = 100.0 * float(inside.mean())
    click.echo(f"wrote {written} ({int(inside.sum())} voxels in the body, {share:.1f} %)")
