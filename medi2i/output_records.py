"""The records around a prediction's output files: the grid an output was written on,
for its provenance record; where a named output goes (``OUT_{name}``); and whether the
provenance sidecar of an output may be written where it goes, without replacing a file
of the user's or the record of another existing output.

Used by :mod:`medi2i.prediction`, which re-exports the public names, and by the
``medi2i mask`` command.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.errors import OptionsError, OutputError
from medi2i.grid import Grid
from medi2i.provenance import is_provenance_record, sidecar_path

if TYPE_CHECKING:
    from medi2i.io.base import VolumeWriter


def grid_record(source: Grid, output: Grid) -> dict[str, object]:
    """The output's grid for its provenance record: ``shape`` (voxels), ``spacing_mm``
    and ``scale`` (output voxels per input voxel along each array axis: input spacing
    over output spacing, 1 where the method kept the grid).

    Example:
        >>> import numpy as np
        >>> thick = Grid((4, 4, 10), np.diag([1.0, 1.0, 4.0, 1.0]))
        >>> grid_record(thick, Grid((4, 4, 37), np.diag([1.0, 1.0, 1.0, 1.0])))["scale"]
        [1.0, 1.0, 4.0]
    """
    return {
        "shape": list(output.shape),
        "spacing_mm": [round(s, 6) for s in output.spacing],
        "scale": [round(a / b, 6) for a, b in zip(source.spacing, output.spacing, strict=True)],
    }


def check_sidecar_destination(
    path: Path, inputs: Sequence[Path], writers: Sequence[VolumeWriter], *, overwrite: bool
) -> None:
    """Refuse to write the provenance of ``path`` where it may not go. An earlier
    provenance record of medi2i's own (its image was deleted, or this is an
    ``overwrite``) is replaced; a file of the user's under that name is not, nor, without
    ``overwrite``, the record of another existing output that shares it (``x.nii`` and
    ``x.nii.gz``, ``sct/`` and ``sct.nii.gz``). ``medi2i mask`` refuses the same.

    Raises:
        OutputError: The sidecar is another output's record, or a file of the user's.
    """
    from medi2i.io.destinations import check_destination, settled_path

    path = settled_path(path)  # "missing/../x.nii": the x.provenance.json it will replace
    sidecar = sidecar_path(path)
    suffixes = [suffix for writer in writers for suffix in writer.suffixes]
    owner = _other_output_of(sidecar, path, suffixes)
    if owner is not None and not overwrite:
        raise OutputError(
            f"{sidecar}, where the provenance of {path} is written, is the provenance "
            f"of the existing output {owner}; give {path} another name (e.g. "
            f"{_renamed(path)}), or pass --overwrite to replace that record"
        )
    replaceable = overwrite or is_provenance_record(sidecar)
    check_destination(sidecar, inputs=list(inputs), overwrite=replaceable, sidecar_of=path)


def _other_output_of(sidecar: Path, path: Path, suffixes: Sequence[str]) -> Path | None:
    """An existing output other than ``path`` whose provenance is ``sidecar`` (a DICOM
    series folder or a volume file of the same stem), when ``sidecar`` is medi2i's."""
    if not is_provenance_record(sidecar):
        return None
    named = _recorded_file(sidecar)
    if named is not None:  # the record says whose it is
        other = sidecar.with_name(named)
        mine = named == path.name or not (other.exists() or other.is_symlink())
        return None if mine else other
    stem = sidecar.name.removesuffix(".provenance.json")
    candidates = [sidecar.with_name(stem + suffix) for suffix in ("", *suffixes)]
    return next(
        (
            other
            for other in candidates
            if other.name != path.name and (other.exists() or other.is_symlink())
        ),
        None,
    )


def _recorded_file(sidecar: Path) -> str | None:
    """The output file name a provenance record gives (records written before they named
    it give none)."""
    try:
        output = json.loads(sidecar.read_text(encoding="utf-8")).get("output")
    except (OSError, ValueError, AttributeError):
        return None
    named = output.get("file") if isinstance(output, dict) else None
    return named if isinstance(named, str) and named and "/" not in named else None


def _renamed(path: Path) -> Path:
    stem = sidecar_path(path).name.removesuffix(".provenance.json")
    return path.with_name(stem + "-2" + path.name[len(stem) :])


def named_output_path(output: Path, name: str) -> Path:
    """Where the output called ``name`` goes: ``output`` itself for the unnamed one,
    else ``OUT_{name}`` (``sct.nii.gz`` → ``sct_style-2.nii.gz``; a DICOM folder
    ``out`` → ``out_style-2``).

    Raises:
        OptionsError: ``name`` is not letters, digits, ``-`` and ``_``.
    """
    if not name:
        return output
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise OptionsError(
            f"output name {name!r} must be letters, digits, '-' and '_' (it becomes part "
            "of a file name); fix the method's outputs"
        )
    from medi2i.io.destinations import file_suffix

    text = output.name
    for suffix in (".nii.gz", file_suffix(output)):
        if suffix and text.endswith(suffix):
            return output.with_name(f"{text[: -len(suffix)]}_{name}{suffix}")
    return output.with_name(f"{text}_{name}")
