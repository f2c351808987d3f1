"""Siemens mosaics: a whole stack held as tiles of one image.

A Siemens mosaic lays the slices of a stack out row by row in a square grid of tiles of
one image. :func:`mosaic_layout` works out the tiles and where each slice lies in space,
so that the scan can treat each tile as one slice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medi2i.dicom.reading.header_parser import InvalidValue, decimals, integer

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


@dataclass(frozen=True)
class MosaicLayout:
    """Where the slices of a Siemens mosaic lie: tiles of one image, and in space.

    Attributes:
        count: Slices in the mosaic (Number of Images in Mosaic).
        tiles: Tiles per side of the square grid they are laid out in, row by row.
        rows: Rows of one slice (tile).
        columns: Columns of one slice.
        positions: Image Position (Patient) of each slice's first pixel, LPS mm.
    """

    count: int
    tiles: int
    rows: int
    columns: int
    positions: tuple[tuple[float, ...], ...]


def mosaic_layout(dataset: Dataset) -> MosaicLayout | None:
    """The slices of a Siemens mosaic from its full header (private elements included).

    A mosaic stores a whole stack as tiles of one image, ``ceil(sqrt(count))`` per
    side, each ``Rows // tiles`` by ``Columns // tiles``. Its Image Position (Patient)
    is that of the first pixel of the whole tiled image, which lies outside the first
    slice: the first slice's position is moved along the rows and columns by half the
    difference between the mosaic's size and a tile's. The slices follow one another
    along the slice normal (from the CSA image header when it gives one, else row x
    column direction) by Spacing Between Slices (else Slice Thickness).

    Returns:
        The layout, or ``None`` when the number of slices is not given.

    Raises:
        InvalidValue: The mosaic's size, spacing or geometry do not fit together.
    """
    count, csa_normal = _mosaic_count_and_normal(dataset)
    if count is None:
        return None
    rows, columns = integer(dataset, "Rows") or 0, integer(dataset, "Columns") or 0
    tiles = math.ceil(math.sqrt(count))
    # a tile is a whole fraction of the image; what is left over on the right and at
    # the bottom is padding (a 256-pixel mosaic of 7x7 tiles of 36 pixels)
    if count < 1 or rows < tiles or columns < tiles:
        raise InvalidValue(
            "NumberOfImagesInMosaic", f"{count} slices do not tile a {columns}x{rows} image"
        )
    position = decimals(dataset, "ImagePositionPatient", 3)
    cosines = decimals(dataset, "ImageOrientationPatient", 6)
    spacing = decimals(dataset, "PixelSpacing", 2)
    step = decimals(dataset, "SpacingBetweenSlices", 1) or decimals(dataset, "SliceThickness", 1)
    if position is None or cosines is None or spacing is None or step is None:
        raise InvalidValue(
            "ImagePositionPatient",
            "a mosaic needs Image Position and Orientation (Patient), Pixel Spacing and "
            "Spacing Between Slices or Slice Thickness",
        )
    row, column = np.asarray(cosines[:3]), np.asarray(cosines[3:])
    normal = np.cross(row, column) if csa_normal is None else np.asarray(csa_normal)
    normal = normal / np.linalg.norm(normal)
    tile_rows, tile_columns = rows // tiles, columns // tiles
    # the centre of the mosaic is the centre of every slice; with padding (Rows not a
    # multiple of the tiles) the shift is taken from the fractional tile size, as
    # dcm2niix does
    first = (
        np.asarray(position)
        + row * spacing[1] * (columns - columns / tiles) / 2
        + column * spacing[0] * (rows - rows / tiles) / 2
    )
    positions = tuple(tuple(float(v) for v in first + k * step[0] * normal) for k in range(count))
    return MosaicLayout(count, tiles, tile_rows, tile_columns, positions)


def _mosaic_count_and_normal(
    dataset: Dataset,
) -> tuple[int | None, tuple[float, ...] | None]:
    """Number of Images in Mosaic, and the CSA header's slice normal when it has one."""
    count = None
    try:
        element = dataset.get_private_item(0x0019, 0x0A, "SIEMENS MR HEADER")
        count = int(element.value)
    except (KeyError, TypeError, ValueError):
        pass
    normal = None
    csa = _csa_image_header(dataset)
    if csa is not None:
        import warnings

        from nibabel.nicom import csareader

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            count = count or csareader.get_n_mosaic(csa)  # type: ignore[no-untyped-call]
            vector = csareader.get_slice_normal(csa)  # type: ignore[no-untyped-call]
        if vector is not None and len(vector) == 3:
            normal = tuple(float(v) for v in vector)
    return (int(count) if count else None), normal


def _csa_image_header(dataset: Dataset) -> dict[str, object] | None:
    """The Siemens CSA image header (0029,xx10), parsed by nibabel; ``None`` without one."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nibabel.nicom warns that it is experimental
            from nibabel.nicom import csareader

            header: dict[str, object] | None = csareader.get_csa_header(  # type: ignore[no-untyped-call]
                dataset, "image"
            )
    except Exception:  # a damaged or foreign private header: fall back to the public ones
        return None
    return header
