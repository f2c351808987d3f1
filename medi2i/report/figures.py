"""Report figures: orthogonal slice montages of a case and training curves, as PNG.

A montage shows one case in three orthogonal planes through the centre of its mask
(axial, coronal, sagittal), one row per image: input, output, reference and output
minus reference. Volumes are reoriented with their affine to the nearest RAS axes and
drawn with their true voxel aspect ratio, so an anisotropic grid does not look
squashed. The display follows the neurological convention, not the radiological one:
the patient's right is on the image's right (R on the right edge, L on the left) in
axial and coronal views, anterior is up in axial views (A at the top, P at the bottom),
superior up otherwise (S, I), and anterior on the right in sagittal views. Each panel
carries these letters at its edges (:data:`ORIENTATION_NOTE`), derived from the affine
of the volume as drawn.

matplotlib is imported inside the functions; figures are drawn with its object API
(no pyplot), so no display and no global backend state are involved.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from medi2i.errors import InputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

FloatArray = npt.NDArray[np.float64]
PLANES = ("axial", "coronal", "sagittal")
DPI = 110
ORIENTATION_NOTE = (
    "Neurological display: the patient's right is on the image's right; the letters at "
    "each slice's edges (R/L, A/P, S/I) give the patient directions."
)
"""The orientation convention of the montages, for a report's text."""
_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
_PLANE_AXES = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}
"""The displayed volume's axes along each plane's image (horizontal, vertical)."""


@dataclass(frozen=True)
class MontageRow:
    """One row of a montage: a volume and how to show it.

    Attributes:
        label: Row title, e.g. ``"input (MR)"``.
        values: The volume, ``(X, Y, Z)`` on the montage's grid.
        window: Display range ``(low, high)`` in the volume's units; the 1st to 99th
            percentile when ``None``.
        difference: Draw with a diverging colour map centred on zero.
    """

    label: str
    values: FloatArray
    window: tuple[float, float] | None = None
    difference: bool = False


def case_rows(
    *,
    source: FloatArray,
    output: FloatArray,
    reference: FloatArray | None,
    units: str = "",
    input_label: str = "input",
) -> list[MontageRow]:
    """The standard rows: input, output, reference and output minus reference.

    Output and reference share one window (the reference's 1st-99th percentile) so
    their grey levels compare; the difference is centred on zero.

    Args:
        source: The input volume.
        output: The prediction.
        reference: The ground truth, or ``None`` (no reference and no difference rows).
        units: Units of output and reference, e.g. ``"HU"``.
        input_label: Title of the input row, e.g. ``"input (MR)"``.
    """
    suffix = f" ({units})" if units else ""
    shared = _percentile_window(reference if reference is not None else output)
    rows = [MontageRow(input_label, source), MontageRow(f"output{suffix}", output, shared)]
    if reference is not None:
        difference = output - reference
        bound = float(np.percentile(np.abs(difference), 99.5)) or 1.0
        rows += [
            MontageRow(f"reference{suffix}", reference, shared),
            MontageRow(f"output - reference{suffix}", difference, (-bound, bound), True),
        ]
    return rows


def slice_montage(
    rows: Sequence[MontageRow],
    *,
    affine: npt.ArrayLike,
    path: str | Path,
    title: str = "",
    centre_mask: npt.ArrayLike | None = None,
    palette: bool = False,
    dpi: int = DPI,
) -> Path:
    """Draw rows of volumes in three orthogonal planes and save a PNG.

    Args:
        rows: The volumes, all of one shape, on the grid of ``affine``.
        affine: 4x4 voxel-to-world (RAS, mm) affine of that grid.
        path: The PNG to write (parent folders are created).
        title: Figure title.
        centre_mask: The planes cross at this mask's centre of mass (the grid centre
            when ``None`` or empty).
        palette: Store the PNG with a 256-colour palette: a third to a fifth of the
            size for montages of many noisy slices (e.g. committed benchmark figures),
            with grey levels and the colour maps' steps kept to 1/256.
        dpi: Pixels per inch of the PNG; a row is 2.6 inches high and 9 wide.

    Returns:
        The PNG path.
    """
    if not rows:
        raise InputError("a montage needs at least one volume")
    shape = rows[0].values.shape
    if any(row.values.shape != shape for row in rows) or len(shape) != 3:
        raise InputError(
            f"montage volumes must be 3D and of one shape, got {[r.values.shape for r in rows]}"
        )
    orientation = _ras_orientation(np.asarray(affine, np.float64))
    spacing = _ras_spacing(np.asarray(affine, np.float64), orientation)
    centre = _centre(centre_mask, shape, orientation)
    codes = _drawn_axis_codes(np.asarray(affine, np.float64), orientation, shape)
    figure = _figure(9.0, 2.6 * len(rows))
    axes = figure.subplots(len(rows), 3, squeeze=False)
    for row_axes, row in zip(axes, rows, strict=True):
        volume = _to_ras(row.values, orientation)
        window = row.window or _percentile_window(row.values)
        image: AxesImage | None = None
        for ax, plane in zip(row_axes, PLANES, strict=True):
            image = _draw_plane(ax, volume, plane, centre, spacing, window, row.difference)
            _draw_edge_letters(ax, edge_letters(codes, plane))
        row_axes[0].set_ylabel(row.label, fontsize=9)
        assert image is not None
        figure.colorbar(image, ax=list(row_axes), shrink=0.85, pad=0.01)
    for ax, plane in zip(axes[0], PLANES, strict=True):
        ax.set_title(plane, fontsize=9)
    if title:
        figure.suptitle(title, fontsize=11)
    return _save(figure, Path(path), palette=palette, dpi=dpi)


def _draw_plane(
    ax: Axes,
    volume: FloatArray,
    plane: str,
    centre: tuple[int, int, int],
    spacing: tuple[float, float, float],
    window: tuple[float, float],
    difference: bool,
) -> AxesImage:
    x, y, z = centre
    sx, sy, sz = spacing
    if plane == "axial":
        section, aspect = volume[:, :, z], sy / sx
    elif plane == "coronal":
        section, aspect = volume[:, y, :], sz / sx
    else:
        section, aspect = volume[x, :, :], sz / sy
    image = ax.imshow(
        section.T,
        origin="lower",
        cmap="RdBu_r" if difference else "gray",
        vmin=window[0],
        vmax=window[1],
        aspect=aspect,
        interpolation="nearest",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    return image


def edge_letters(codes: Sequence[str], plane: str) -> tuple[str, str, str, str]:
    """The patient directions at the left, right, bottom and top edges of a ``plane``
    image of a volume whose axes point to ``codes`` (e.g. ``("R", "A", "S")``), drawn
    as :func:`slice_montage` draws it (first axis horizontal, second up).

    Example:
        >>> edge_letters(("R", "A", "S"), "axial")
        ('L', 'R', 'P', 'A')
    """
    horizontal, vertical = (codes[axis] for axis in _PLANE_AXES[plane])
    return (_OPPOSITE[horizontal], horizontal, _OPPOSITE[vertical], vertical)


def _drawn_axis_codes(
    affine: FloatArray, orientation: npt.NDArray[np.float64], shape: tuple[int, ...]
) -> tuple[str, str, str]:
    """Where the axes of the reoriented volume point, from its affine (``R, A, S``)."""
    from nibabel.orientations import aff2axcodes, inv_ornt_aff

    drawn = affine @ inv_ornt_aff(orientation, shape)  # type: ignore[no-untyped-call]
    x, y, z = (str(code) for code in aff2axcodes(drawn))  # type: ignore[no-untyped-call]
    return (x, y, z)


def _draw_edge_letters(ax: Axes, letters: tuple[str, str, str, str]) -> None:
    left, right, bottom, top = letters
    style = {"transform": ax.transAxes, "color": "yellow", "fontsize": 7, "fontweight": "bold"}
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)  # type: ignore[arg-type]
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)  # type: ignore[arg-type]
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)  # type: ignore[arg-type]
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)  # type: ignore[arg-type]


def _percentile_window(values: FloatArray) -> tuple[float, float]:
    low, high = (float(v) for v in np.percentile(values, [1.0, 99.0]))
    return (low, high) if high > low else (low - 1.0, low + 1.0)


def _ras_orientation(affine: FloatArray) -> npt.NDArray[np.float64]:
    from nibabel.orientations import io_orientation

    return np.asarray(io_orientation(affine), np.float64)  # type: ignore[no-untyped-call]


def _to_ras(values: FloatArray, orientation: npt.NDArray[np.float64]) -> FloatArray:
    from nibabel.orientations import apply_orientation

    oriented = apply_orientation(np.asarray(values, np.float64), orientation)  # type: ignore[no-untyped-call]
    return np.asarray(oriented, np.float64)


def _ras_spacing(
    affine: FloatArray, orientation: npt.NDArray[np.float64]
) -> tuple[float, float, float]:
    sizes = np.linalg.norm(affine[:3, :3], axis=0)
    ras = [1.0, 1.0, 1.0]
    for axis, (target, _) in enumerate(orientation):
        ras[int(target)] = float(sizes[axis])
    return (ras[0], ras[1], ras[2])


def _centre(
    mask: npt.ArrayLike | None,
    shape: tuple[int, ...],
    orientation: npt.NDArray[np.float64],
) -> tuple[int, int, int]:
    ras_shape = _to_ras(np.zeros(shape), orientation).shape
    inside = None if mask is None else _to_ras(np.asarray(mask, np.float64), orientation) > 0
    if inside is None or not inside.any():
        return (ras_shape[0] // 2, ras_shape[1] // 2, ras_shape[2] // 2)
    x, y, z = (round(float(c.mean())) for c in np.nonzero(inside))
    return (x, y, z)


# -- training curves --------------------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    """A logged quantity over training steps."""

    name: str
    steps: tuple[int, ...]
    values: tuple[float, ...]


def read_training_curves(path: str | Path) -> list[Curve]:
    """Losses (and validation metrics) by step from the trainer's JSON Lines log.

    Every record with a ``step`` contributes its numeric values: top-level numbers and
    those of nested mappings (``{"losses": {"l1": 0.3}}`` gives ``losses.l1``).
    Timing and bookkeeping fields are skipped.

    Returns:
        One curve per name, in the order the names first appear; empty when the file
        is missing.
    """
    path = Path(path)
    if not path.is_file():
        return []
    points: dict[str, tuple[list[int], list[float]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = _record(line)
        step = record.get("step") if record is not None else None
        if record is None or not isinstance(step, int):
            continue
        for name, value in _numbers(record):
            steps, values = points.setdefault(name, ([], []))
            steps.append(step)
            values.append(value)
    return [
        Curve(name, tuple(s), tuple(v))
        for name, (s, v) in points.items()
        if not (name.startswith("lr.") and len(set(v)) == 1)  # a constant rate says nothing
    ]


_NOT_CURVES = frozenset({"step", "epoch", "time", "elapsed", "seconds", "lr_step", "rank"})


def _record(line: str) -> dict[str, object] | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None  # a line cut short by a killed run
    return record if isinstance(record, dict) else None


def _numbers(record: Mapping[str, object], prefix: str = "") -> list[tuple[str, float]]:
    found = []
    for key, value in record.items():
        name = f"{prefix}{key}"
        if key in _NOT_CURVES or key.endswith(("_time", "_seconds", "_s")):
            continue
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and math.isfinite(value):
            found.append((name, float(value)))
        elif isinstance(value, Mapping):
            found += _numbers(value, f"{name}.")
    return found


def training_curves(curves: Sequence[Curve], *, path: str | Path, title: str = "") -> Path:
    """Plot curves against the training step, one panel per quantity, and save a PNG.

    Positive quantities spanning more than a factor of 20 get a logarithmic axis. Tick
    labels show whole values, never matplotlib's offset (``+1.24e2``), under which a
    change of 0.08 would fill a panel without saying how small it is.
    """
    from matplotlib.ticker import MaxNLocator

    if not curves:
        raise InputError("no training curves to plot (the training log has no records)")
    columns = min(3, len(curves))
    rows = math.ceil(len(curves) / columns)
    figure = _figure(3.6 * columns, 2.8 * rows)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax, curve in zip(axes.flat, curves, strict=False):
        ax.plot(curve.steps, curve.values, marker="." if len(curve.steps) < 30 else None)
        values = np.asarray(curve.values)
        ax.ticklabel_format(useOffset=False)  # before a log scale replaces the formatter
        if values.min() > 0 and values.max() / values.min() > 20:
            ax.set_yscale("log")
        ax.set_title(curve.name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(curves) :]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title, fontsize=11)
    return _save(figure, Path(path))


# -- output -----------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(figure: Figure, path: Path, *, palette: bool = False, dpi: int = DPI) -> Path:
    from medi2i.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        if palette:
            _save_with_palette(figure, tmp, dpi)
        else:
            figure.savefig(tmp, dpi=dpi, format="png")
    return path


def _save_with_palette(figure: Figure, path: Path, dpi: int) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format="png")
    buffer.seek(0)
    with Image.open(buffer) as drawn:
        reduced = drawn.convert("RGB").quantize(colors=256, dither=Image.Dither.NONE)
    reduced.save(path, format="PNG", optimize=True)
