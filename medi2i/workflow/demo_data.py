"""Tiny paired MR/CT cases in SynthRAD's layout, for the demo workflow and its tests.

Each case is a procedural head phantom (:func:`medi2i.synth.phantom.head_phantom`, one
seed per case) on a coarse grid, written as ``<folder>/<case>/{mr,ct,mask}.nii.gz``
exactly as SynthRAD ships its data, so the demo workflow reads it the way it would read
the challenge data.

Run it from the command line::

    python -m medi2i.workflow.demo_data workflows/data/paired-tiny
    python -m medi2i.workflow.demo_data --unpaired workflows/data/unpaired-tiny

The second writes the unpaired demo (:func:`write_unpaired_demo`): the MR of some
phantoms and the CT of others, never an aligned pair, plus paired validation and test
cases for scoring.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from medi2i.errors import InputError

DEMO_SHAPE = (24, 24, 24)
"""Voxels per case along each axis."""
DEMO_SPACING_MM = (7.0, 8.0, 7.0)
"""Voxel size in mm, coarse enough for the whole head to fit 24³ voxels."""


def write_demo_cases(
    folder: str | Path,
    *,
    count: int = 6,
    shape: tuple[int, int, int] = DEMO_SHAPE,
    spacing_mm: tuple[float, float, float] = DEMO_SPACING_MM,
    seed: int = 0,
) -> list[Path]:
    """Write ``count`` paired cases ``demo000``, ``demo001``, ... under ``folder``.

    Cases already there are kept (the phantoms are deterministic), so a rerun is cheap.

    Args:
        folder: The SynthRAD root to write into (created if missing).
        count: Number of cases.
        shape: Grid size per case, in voxels.
        spacing_mm: Voxel size, in mm.
        seed: Seed of the first case; case ``i`` uses ``seed + i``.

    Returns:
        The case folders.
    """
    if count < 1:
        raise InputError(f"count must be at least 1, got {count}")
    root = Path(folder)
    return [
        _write_case(
            root / f"demo{index:03d}", shape=shape, spacing_mm=spacing_mm, seed=seed + index
        )
        for index in range(count)
    ]


def _write_case(
    case: Path, *, shape: tuple[int, int, int], spacing_mm: tuple[float, float, float], seed: int
) -> Path:
    from medi2i.io import write_volume
    from medi2i.io.base import volume_from_array
    from medi2i.synth.phantom import head_phantom

    names = ("mr.nii.gz", "ct.nii.gz", "mask.nii.gz")
    if all((case / name).is_file() for name in names):
        return case
    phantom = head_phantom(shape=shape, spacing_mm=spacing_mm, seed=seed)
    arrays: tuple[np.ndarray, ...] = (
        phantom.mr.astype(np.float32),
        np.round(phantom.ct).astype(np.int16),  # CT is stored as integer HU, as scanners do
        phantom.head_mask.astype(np.uint8),
    )
    for name, values in zip(names, arrays, strict=True):
        volume = volume_from_array(values, phantom.affine, path=case / name)
        write_volume(volume, case / name, overwrite=True)  # the demo's own cache
    return case


UNPAIRED_SPLIT = {"mr": (0, 1, 2), "ct": (3, 4, 5), "validation": (6,), "test": (7,)}
"""Which demo phantom goes where in :func:`write_unpaired_demo`."""


def write_unpaired_demo(folder: str | Path) -> Path:
    """Write the unpaired MR↔CT demo data under ``folder`` (kept when already there).

    Layout (every volume a copy of a demo phantom's; no phantom is in two places)::

        cases/demo000 ... demo007/{mr,ct,mask}.nii.gz   the phantoms, SynthRAD layout
        mr/demo000..002.nii.gz        MR of three phantoms (domain ``mr``)
        ct/demo003..005.nii.gz        CT of three others (domain ``ct``)
        validation/{source,target,mask}/demo006.nii.gz   one aligned pair, to validate
        test/{source,target,mask}/demo007.nii.gz         one aligned pair, to score

    Returns:
        ``folder``.
    """
    import shutil

    root = Path(folder)
    count = 1 + max(index for group in UNPAIRED_SPLIT.values() for index in group)
    cases = write_demo_cases(root / "cases", count=count)

    def place(index: int, name: str, destination: Path) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        if not destination.is_file():
            shutil.copyfile(cases[index] / name, destination)

    for domain in ("mr", "ct"):
        for index in UNPAIRED_SPLIT[domain]:
            place(index, f"{domain}.nii.gz", root / domain / f"demo{index:03d}.nii.gz")
    for part in ("validation", "test"):
        for index in UNPAIRED_SPLIT[part]:
            for role, name in (("source", "mr"), ("target", "ct"), ("mask", "mask")):
                place(index, f"{name}.nii.gz", root / part / role / f"demo{index:03d}.nii.gz")
    return root


def main(argv: list[str] | None = None) -> int:
    """``python -m medi2i.workflow.demo_data [--unpaired] FOLDER [COUNT]``."""
    args = sys.argv[1:] if argv is None else argv
    unpaired = bool(args) and args[0] == "--unpaired"
    if unpaired:
        args = args[1:]
    options = [arg for arg in args if arg.startswith("-")]  # --help, or a typo
    if options or not 1 <= len(args) <= (1 if unpaired else 2):
        print(
            "usage: python -m medi2i.workflow.demo_data [--unpaired] FOLDER [COUNT]",
            file=sys.stderr,
        )
        return 2
    if unpaired:
        print(write_unpaired_demo(args[0]))
        return 0
    count = int(args[1]) if len(args) == 2 else 6
    for case in write_demo_cases(args[0], count=count):
        print(case)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
