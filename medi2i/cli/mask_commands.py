"""The ``mask`` command: the body mask of a volume (:func:`medi2i.body_mask`) as a file.

MR→CT methods with ``body_contour`` on set their output to air outside this mask; the
command writes it for a user who wants to see it, or to use it (e.g. as the evaluation
mask of a case without one).

NumPy, SciPy and MONAI are imported inside the command, so ``medi2i --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from medi2i.cli.options import (
    OutputPath,
    command_registry,
    nonfinite_option,
    overwrite_option,
)
from medi2i.errors import OptionsError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from monai.data.meta_tensor import MetaTensor


MAX_MARGIN_VOXELS = 1000.0
"""The largest margin the command takes: wider than any volume's body needs."""


def _finite_margin(value: float) -> float:
    if value != value:  # NaN passes FloatRange's comparisons
        raise click.BadParameter("must be a number of voxels, not NaN")
    return value


def add_to(group: click.Group) -> None:
    """Add the ``mask`` command to ``group``."""
    group.add_command(mask_command)


@click.command("mask")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUTPUT", type=OutputPath())
@click.option(
    "--margin",
    "margin_voxels",
    type=click.FloatRange(min=0.0, max=MAX_MARGIN_VOXELS),
    default=2.0,
    show_default=True,
    callback=lambda _ctx, _param, value: _finite_margin(value),
    help=f"Grow the filled body by this distance, in voxels (0 to {MAX_MARGIN_VOXELS:g}).",
)
@nonfinite_option
@overwrite_option
@click.pass_context
def mask_command(
    ctx: click.Context,
    /,
    input_path: Path,
    output_path: Path,
    margin_voxels: float,
    nonfinite: str,
    overwrite: bool,
) -> None:
    """Write the body (or head) mask of INPUT to OUTPUT: 1 in the body, 0 in the air.

    The mask is found from INPUT's intensities on its own grid, as MR→CT methods find
    it with their option body_contour: Otsu's threshold, the large connected
    components, holes filled in 3D and slice by slice, then a margin. INPUT is a volume
    file or a DICOM series folder; OUTPUT is a volume file (its suffix picks the
    format, e.g. mask.nii.gz) with INPUT's grid, stored as 8-bit integers, and a
    provenance sidecar beside it named without the volume suffix (mask.nii.gz gets
    mask.provenance.json: input hash, margin, voxels in the body).
    A method that resamples its input (a spacing option) finds the mask on its own grid,
    so the two can differ by a voxel at the skin.

    An INPUT with no air around a body (cropped inside it) gets a mask that is all body,
    with a warning, and exit status 0; the sidecar's body.air_found is false then.
    """
    import torch
    from monai.data.meta_tensor import MetaTensor

    from medi2i.body_contour import body_mask
    from medi2i.errors import InputError
    from medi2i.io import read_volume, write_volume, writer_for
    from medi2i.io.base import require_not_special
    from medi2i.io.destinations import check_destination, file_suffix, require_own_name
    from medi2i.io.nifti import META_PREFIX as NIFTI_META
    from medi2i.output_records import check_sidecar_destination
    from medi2i.provenance import staged_sidecar
    from medi2i.voxel_checks import checked_input

    require_not_special(input_path)  # a FIFO would block the read for ever
    require_own_name(output_path)  # "." names no file, with or without a suffix
    if not file_suffix(output_path):
        raise OptionsError(
            f"{output_path} has no file suffix; the mask is written as a volume file, e.g. "
            f"{output_path.with_name(output_path.name + '.nii.gz')}"
        )
    registry = command_registry(ctx)
    writers = list(registry.writers.values())
    writer_for(output_path, writers)
    check_destination(output_path, inputs=[input_path], overwrite=overwrite, folder=False)
    check_sidecar_destination(output_path, [input_path], writers, overwrite=overwrite)
    image = read_volume(input_path, readers=list(registry.readers.values()))
    # what predict refuses, the mask refuses too: NaN, out-of-range, constant or empty
    image = checked_input(image, nonfinite)  # type: ignore[arg-type]
    try:
        inside = body_mask(image.detach().cpu().numpy(), margin_voxels=margin_voxels)
    except ValueError as exc:  # e.g. too few distinct intensities for Otsu's histogram
        raise InputError(
            f"{input_path}: cannot find a body in its intensities ({exc}); check that the "
            "right file or series was given"
        ) from None
    mask = MetaTensor(torch.from_numpy(inside.astype("float32"))[None], affine=image.affine)
    # the input's NIfTI codes and units, as predict keeps them (a sform-only file stays so)
    mask.meta.update({k: v for k, v in image.meta.items() if str(k).startswith(NIFTI_META)})
    mask.meta["medi2i.dtype"] = "uint8"
    no_air = bool(inside.all())
    record = mask_record(
        input_path, image, inside, margin_voxels=margin_voxels, output_path=output_path
    )
    with staged_sidecar(output_path, record):
        written = write_volume(mask, output_path, writers=writers, overwrite=overwrite)
    share = 100.0 * float(inside.mean())
    click.echo(f"wrote {written} ({int(inside.sum())} voxels in the body, {share:.1f} %)")
    if no_air:
        click.secho(f"Warning: {no_air_message(input_path)}", err=True, fg="yellow")


def no_air_message(input_path: Path) -> str:
    """The warning for a mask that is all body: the input shows no air around one."""
    return (
        f"{input_path} shows no air around a body (cropped inside it?), so the mask is all "
        "body (every voxel 1); check the input, or give an uncropped volume for a real mask"
    )


def mask_record(
    input_path: Path,
    image: MetaTensor,
    inside: npt.NDArray[np.bool_],
    *,
    margin_voxels: float,
    output_path: Path,
) -> dict[str, object]:
    """The mask's provenance sidecar: medi2i's version, how the mask was found (margin),
    the input's hash (as predict's sidecar records it), the body's size, with
    ``body.air_found`` false (and the warning) when the mask is all body, and the mask
    file's name (``output.file``, as predict records its output's), which tells whose
    record it is when two outputs share a sidecar name (``x.nii`` and ``x.nii.gz``)."""
    import platform
    from datetime import datetime, timezone

    from medi2i import __version__
    from medi2i.provenance import input_hash

    air_found = not bool(inside.all())
    return {
        "medi2i_version": __version__,
        "command": "mask",
        "method": {"id": "body_mask", "version": __version__},
        "options": {"margin_voxels": margin_voxels},
        "input": input_hash(input_path, image),
        "body": {
            "voxels": int(inside.sum()),
            "fraction": float(inside.mean()),
            "air_found": air_found,
            "warning": None if air_found else no_air_message(input_path),
        },
        "python": platform.python_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "output": {"name": "", "modality": "mask", "units": "label", "file": output_path.name},
    }
