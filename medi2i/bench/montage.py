"""Orthogonal-slice montages (PNG) that show what a benchmark table says.

Each row of a montage is one image (input, reference, a method's output) drawn as its
axial, coronal and sagittal slices through one point, optionally followed by the same
three slices of another map (e.g. the absolute error, in a "hot" colour scale). Slices
are drawn with millimetre-correct aspect, superior and anterior up, array x to the
right. Only Pillow is needed (a dependency of scikit-image), so no plotting library is
required.

:func:`write_result_montages` draws one montage per benchmark test case: the input,
the reference, then each contender's prediction beside its absolute error.

Example:
    >>> import numpy as np
    >>> volume = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    >>> row = MontageRow("noise", (Panel(volume, window=(0.0, 1.0)),))
    >>> save_montage([row], path="montage.png", spacing_mm=(1, 1, 1))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from medi2i.errors import GeometryError

if TYPE_CHECKING:
    from PIL.Image import Image

    from medi2i.bench.datasets import BenchCase, BenchDataset
    from medi2i.bench.harness import BenchResult

FloatArray = npt.NDArray[np.float32]
Colormap = Literal["gray", "hot"]

LABEL_WIDTH_PX = 150
GAP_PX = 4
TITLE_HEIGHT_PX = 22
BACKGROUND = (24, 24, 24)
TEXT_COLOUR = (235, 235, 235)


@dataclass(frozen=True)
class Panel:
    """One volume to draw as three orthogonal slices.

    Attributes:
        volume: 3D array ``(X, Y, Z)`` on the montage's grid.
        window: Values drawn black and white (or the ends of the colour scale).
        colormap: ``"gray"``, or ``"hot"`` for error maps (black → red → yellow → white).
    """

    volume: npt.NDArray[np.floating]
    window: tuple[float, float]
    colormap: Colormap = "gray"


@dataclass(frozen=True)
class MontageRow:
    """A labelled row: one or more panels side by side."""

    label: str
    panels: tuple[Panel, ...]


def save_montage(
    rows: Sequence[MontageRow],
    *,
    path: str | Path,
    spacing_mm: Sequence[float],
    centre: Sequence[int] | None = None,
    title: str = "",
    panel_mm_per_px: float | None = None,
    panel_px: int = 150,
) -> Path:
    """Draw rows of orthogonal slices and write them as one PNG (written atomically).

    Args:
        rows: The rows, top to bottom; every panel's volume has the same shape.
        path: Output ``.png`` file.
        spacing_mm: Voxel size of the volumes along each axis, in mm.
        centre: Voxel ``(x, y, z)`` the three slices pass through; the centre of the
            grid when ``None``.
        title: Text drawn above the rows.
        panel_mm_per_px: Scale; by default the longest side of the field of view is
            ``panel_px`` pixels.
        panel_px: See ``panel_mm_per_px``.

    Returns:
        The written path.
    """
    from PIL import Image, ImageDraw

    from medi2i.io import atomic_path

    shape = _common_shape(rows)
    point = tuple(n // 2 for n in shape) if centre is None else tuple(int(c) for c in centre)
    spacing = tuple(float(s) for s in spacing_mm)
    scale = panel_mm_per_px or max(n * s for n, s in zip(shape, spacing, strict=True)) / panel_px
    rendered = [[_views(panel, point, spacing, scale) for panel in row.panels] for row in rows]
    width = LABEL_WIDTH_PX + max(sum(_row_width(views) for views in row) for row in rendered)
    heights = [max(v.height for views in row for v in views) for row in rendered]
    canvas = Image.new(
        "RGB", (width, TITLE_HEIGHT_PX + sum(h + GAP_PX for h in heights)), BACKGROUND
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 4), title, fill=TEXT_COLOUR)
    top = TITLE_HEIGHT_PX
    for row, views_of_row, height in zip(rows, rendered, heights, strict=True):
        draw.text((6, top + height // 2 - 6), row.label, fill=TEXT_COLOUR)
        left = LABEL_WIDTH_PX
        for views in views_of_row:
            for view in views:
                canvas.paste(view, (left, top + (height - view.height) // 2))
                left += view.width + GAP_PX
            left += 2 * GAP_PX
        top += height + GAP_PX
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a 256-colour palette keeps a montage of noisy MR slices well under 300 KB
    palette = canvas.quantize(colors=256, dither=Image.Dither.NONE)
    with atomic_path(path) as tmp:
        palette.save(tmp, format="PNG", optimize=True)
    return path


def orthogonal_slices(
    volume: npt.ArrayLike, centre: Sequence[int]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Axial, coronal and sagittal slices through ``centre``, as displayed (rows = up).

    Axial: x across, y (anterior) up. Coronal: x across, z (superior) up. Sagittal:
    y across, z up.
    """
    data = np.asarray(volume, np.float32)
    x, y, z = (int(c) for c in centre)
    axial = data[:, :, z].T[::-1]
    coronal = data[:, y, :].T[::-1]
    sagittal = data[x, :, :].T[::-1]
    return axial, coronal, sagittal


def colourise(
    image: npt.ArrayLike, *, window: tuple[float, float], colormap: Colormap
) -> npt.NDArray[np.uint8]:
    """An ``(H, W, 3)`` uint8 image of ``image`` between the window's ends."""
    low, high = window
    level = np.clip((np.asarray(image, np.float32) - low) / max(high - low, 1e-12), 0.0, 1.0)
    if colormap == "gray":
        channels = [level, level, level]
    else:
        channels = [
            np.clip(3 * level, 0, 1),
            np.clip(3 * level - 1, 0, 1),
            np.clip(3 * level - 2, 0, 1),
        ]
    return np.asarray(np.stack(channels, axis=-1) * 255.0 + 0.5, np.uint8)


def _views(
    panel: Panel, centre: tuple[int, ...], spacing: tuple[float, ...], scale: float
) -> list[Image]:
    from PIL import Image

    # (mm per display column, mm per display row) of each view
    aspects = ((spacing[0], spacing[1]), (spacing[0], spacing[2]), (spacing[1], spacing[2]))
    views = []
    for image, (across, up) in zip(orthogonal_slices(panel.volume, centre), aspects, strict=True):
        rgb = Image.fromarray(colourise(image, window=panel.window, colormap=panel.colormap))
        size = (max(1, round(rgb.width * across / scale)), max(1, round(rgb.height * up / scale)))
        views.append(rgb.resize(size, Image.Resampling.BILINEAR))
    return views


def _row_width(views: Sequence[Image]) -> int:
    return sum(v.width + GAP_PX for v in views) + 2 * GAP_PX


def _common_shape(rows: Sequence[MontageRow]) -> tuple[int, int, int]:
    shapes = {tuple(np.shape(p.volume)) for row in rows for p in row.panels}
    if len(shapes) != 1:
        raise GeometryError(f"montage panels need one grid, got shapes {sorted(shapes)}")
    shape = shapes.pop()
    if len(shape) != 3:
        raise GeometryError(f"montage panels must be 3D, got shape {shape}")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


CT_WINDOW_HU = (-1000.0, 1500.0)
CT_ERROR_WINDOW_HU = (0.0, 500.0)
MR_WINDOW_PERCENTILE = 99.5
MR_ERROR_FRACTION = 0.25
"""MR error maps saturate at this fraction of the reference's display window."""


def write_result_montages(
    result: BenchResult, dataset: BenchDataset, folder: Path, *, label: str
) -> list[Path]:
    """One montage per test case: ``<task>_<label>_<case>.png`` in ``folder``.

    Rows: the input (thick slices shown on the 1 mm grid by nearest neighbour), the
    reference, then each contender's prediction and its absolute error inside the
    metric mask (hot scale), labelled with the contender's first metric.
    """
    written = []
    for case in dataset.test:
        rows = _case_rows(result, case)
        centre = _mask_centre(case.mask.array)
        path = folder / f"{result.task}_{label}_{case.name}.png"
        name = result.task[:2].upper() + result.task[2:]
        title = f"{name} {case.name}: input, reference, prediction | absolute error"
        written.append(
            save_montage(
                rows, path=path, spacing_mm=case.target.spacing_mm, centre=centre, title=title
            )
        )
    return written


def _case_rows(result: BenchResult, case: BenchCase) -> list[MontageRow]:
    from medi2i.grid import Grid
    from medi2i.resample import resample_to_grid

    target = case.target
    source = case.source
    if source.array.shape != target.array.shape:
        x, y, z = target.array.shape
        on_target = resample_to_grid(
            source.metatensor(), Grid((x, y, z), target.affine), mode="nearest"
        )
        shown = np.asarray(on_target[0].detach().cpu().numpy(), np.float32)
    else:
        shown = source.array
    window, error_window = _windows(result.task, target.array, case.mask.array)
    rows = [
        MontageRow("input", (Panel(shown, _mr_window(shown, None)),)),
        MontageRow("reference", (Panel(target.array, window),)),
    ]
    name, units, _ = result.metrics[0]
    label = name.replace("synthrad_", "")
    for contender in result.contenders:
        prediction = result.predictions[(contender.name, case.name)]
        score = result.scores[contender.name][case.name][name]
        text = f"{contender.name}\n{label} {score:.2f} {units}".rstrip()
        # only the mask is scored, so only the mask's errors are drawn
        error = np.abs(prediction - target.array) * (case.mask.array > 0)
        rows.append(
            MontageRow(text, (Panel(prediction, window), Panel(error, error_window, "hot")))
        )
    return rows


def _windows(
    task: str, reference: npt.NDArray[np.floating], mask: npt.NDArray[np.floating]
) -> tuple[tuple[float, float], tuple[float, float]]:
    if task == "q1":
        return CT_WINDOW_HU, CT_ERROR_WINDOW_HU
    window = _mr_window(reference, mask)
    return window, (0.0, MR_ERROR_FRACTION * window[1])


def _mr_window(
    image: npt.NDArray[np.floating], mask: npt.NDArray[np.floating] | None
) -> tuple[float, float]:
    values = image[mask > 0] if mask is not None else image
    return 0.0, float(np.percentile(values, MR_WINDOW_PERCENTILE)) or 1.0


def _mask_centre(mask: npt.NDArray[np.floating]) -> tuple[int, int, int]:
    from scipy import ndimage

    centre = ndimage.center_of_mass(np.asarray(mask) > 0)
    return (round(centre[0]), round(centre[1]), round(centre[2]))
