"""The finer grid a super-resolution method delivers, and how it samples the input.

The output grid covers the input's field of view with more voxels along some axes. Its
axes are the input's, so every output voxel centre lies at input voxel index
``offset + step · j`` along each axis (``j`` the output index): resampling is separable.
Two conventions fix where the new voxels sit:

* ``"edges"`` (default, :meth:`medi2i.Grid.scaled`): the outer voxel *edges* stay where
  they were. A thick slice covers its whole slab, so its thin slices fill that slab:
  ×4 turns slice ``k`` into slices centred at ``k - 0.375, ..., k + 0.375``.
* ``"centres"``: the first and last voxel *centres* stay where they were (as MONAI's
  ``Spacing`` and most resampling tools keep the origin). A volume made by keeping
  every ``f``-th slice of a thin-slice volume with ``n`` slices, ``n - 1`` a multiple
  of ``f`` (as ``medi2i.synth.thick_slices`` and benchmark Q2 do), comes back exactly on
  the thin-slice grid.

Three rules say how fine the output is: ``target_spacing`` (mm, absolute),
``scale`` (voxels per input voxel along each array axis), or ``slice_factor``: the
input's *slice axis* gets that many times more voxels and the other axes stay as they
are. The slice axis is found from the geometry: the array axis with the largest voxel
spacing, which must be clearly the largest (at least :data:`SLICE_ANISOTROPY` times the
next). So a thick-slice scan keeps its in-plane resolution, whatever its spacing and
whichever array axis holds its slices. A model's options give its rule (none: 1 mm
where the input is coarser, its own spacing where finer); the predict-time condition
:class:`OutputGrid` can ask for another one. No rule makes an axis coarser than the
input's unless ``coarsen`` is true (the default of ``interpolation`` only, whose
options the user gives at predict time): a ``target_spacing`` coarser than the input
on an axis keeps the input's spacing there (a 1 mm model given 0.8 × 0.8 × 4 mm writes
0.8 × 0.8 × 1 mm, not 1 × 1 × 1 mm). Where the spacing written differs from the
``target_spacing`` asked by more than :data:`SPACING_NOTICE` (the nearest that fits the
field of view, or an axis kept), a :class:`GridWarning` says so.

Every method counts voxels by one rule (:func:`_axis`, rounding half up): whole voxels
across the field of view (``"edges"``) or between the first and last centres
(``"centres"``). The two lengths differ by one input voxel, so the same
``target_spacing`` can round to different spacings (1.3 mm on 12 slices of 4 mm: 37
voxels of 1.2973 mm over 48 mm, or 34 intervals of 1.29412 mm over 44 mm); a trained
model keeps the alignment it was trained with, and the warning names it.

No rule may ask for more voxels than :func:`voxel_limit` allows (512 times the input's,
at least 2**24, at most 2**30): such a grid is refused in one line before anything of
its size is allocated.

Example:
    >>> import numpy as np
    >>> from medi2i import Grid
    >>> fine = finer_grid(Grid((4, 4, 10), np.eye(4)), scale=(1, 1, 4), align="centres")
    >>> fine.grid.shape, fine.steps
    ((4, 4, 37), (1.0, 1.0, 0.25))
    >>> thick = Grid((10, 4, 4), np.diag([6.5, 0.78, 0.78, 1.0]))
    >>> finer_grid(thick, slice_factor=2).grid.spacing
    (3.25, 0.78, 0.78)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medi2i import Grid, Options, OptionsError

Alignment = Literal["edges", "centres"]
Triple = tuple[float, float, float]
SLICE_ANISOTROPY = 1.2
"""How much larger than every other axis's spacing the slice axis's must be."""
_RULES = ("target_spacing", "scale", "slice_factor")
DEFAULT_TARGET_SPACING: Triple = (1.0, 1.0, 1.0)
"""The output spacing (mm) of options that give no rule, on axes coarser than it."""
SPACING_NOTICE = 1e-3
"""How far (relative) the written spacing may differ from ``target_spacing`` unsaid."""
MAX_REFINEMENT = 512
"""How many times the input's voxels an output grid may hold (8 times along every axis,
or 512 times along one); beyond, it is refused (see :func:`voxel_limit`)."""
SMALL_OUTPUT_VOXELS = 2**24
"""Output voxels (64 MiB of float32) always allowed, however small the input."""
MAX_OUTPUT_VOXELS = 2**30
"""Output voxels never exceeded (4 GiB of float32 per channel, and the resampling holds
twice that in float64 besides), however large the input."""


class GridWarning(UserWarning):
    """The output grid's spacing is not the ``target_spacing`` asked for."""


def _one_rule_at_most(values: object, *, required: bool) -> None:
    given = [name for name in _RULES if getattr(values, name) is not None]
    if len(given) > 1 or (required and not given):
        raise ValueError("give exactly one of target_spacing (mm), scale and slice_factor")
    for name in given:
        value = getattr(values, name)
        if min(value if isinstance(value, tuple) else (value,)) <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
        if name != "target_spacing" and min(value if isinstance(value, tuple) else (value,)) < 1:
            raise ValueError(
                f"{name} must be at least 1 along every axis (super-resolution never "
                f"coarsens an axis), got {value}; to resample onto a coarser grid give "
                "target_spacing=[X,Y,Z] (mm)"
            )


class GridOptions(Options):
    """Where a super-resolution method puts its output: give ``target_spacing`` or ``scale``.

    Attributes:
        target_spacing: Output voxel size along each array axis, in mm. The number of
            voxels is rounded so that the field of view (``align="edges"``) or the
            span of the outer voxel centres (``"centres"``) is kept exactly, so the spacing
            is the nearest one that fits (exact when the input spacing is a multiple of
            it; a :class:`GridWarning` says so when it differs by more than 0.1 %). An
            input already at this spacing is left on its grid, so a model can be applied
            to volumes that were interpolated beforehand. An axis whose input voxels are
            already finer than it keeps its spacing (0.7 × 0.7 × 3 mm with
            ``[1, 1, 1]`` becomes 0.7 × 0.7 × 1 mm, not 1 × 1 × 1 mm) unless ``coarsen``
            is true. ``None`` with no other rule (the default) is
            :data:`DEFAULT_TARGET_SPACING`. Every rule's grid is refused beyond
            :func:`voxel_limit` voxels.
        scale: Output voxels per input voxel along each array axis (e.g. ``(1, 1, 4)``),
            instead of ``target_spacing``; at least 1 on every axis.
        slice_factor: Output voxels per input voxel along the input's slice axis (the
            axis of clearly largest spacing, found from the geometry), the other axes
            left as they are; instead of ``target_spacing``; at least 1. A learned model
            with this rule was trained for this factor, and refuses one far from it.
        align: ``"edges"`` keeps the outer voxel edges (the field of view, as
            :meth:`medi2i.Grid.scaled`); ``"centres"`` keeps the first and last voxel
            centres. See :mod:`medi2i_super_resolution.grids`.
        coarsen: Let ``target_spacing`` make an axis coarser than the input's (see
            :func:`medi2i_super_resolution.interpolation.resample_channel` for the
            anti-aliasing); by default such an axis keeps the input's spacing: a
            learned model's ``target_spacing`` was fixed at training and must not
            coarsen a later input unasked (``interpolation``, whose options the user
            gives at predict time, defaults to true).
        clip_margin: Clip the output to the input's intensity range widened by this
            fraction of it on each side (interpolation and networks can ring past the
            input's values, e.g. negative MR next to bright edges); ``None`` keeps
            every value.
    """

    target_spacing: tuple[float, float, float] | None = None
    scale: tuple[float, float, float] | None = None
    slice_factor: float | None = None
    align: Alignment = "edges"
    coarsen: bool = False
    clip_margin: float | None = Field(default=0.05, ge=0.0)

    @model_validator(mode="after")
    def _one_rule(self) -> GridOptions:
        _one_rule_at_most(self, required=False)
        return self


class OutputGrid(BaseModel):
    """The predict-time condition of a super-resolution method: another output grid
    than the model's options give, by one of the same three rules (none: the options').

    Attributes:
        target_spacing: Output voxel size in mm along each array axis.
        scale: Output voxels per input voxel along each array axis.
        slice_factor: Output voxels per input voxel along the input's slice axis only.
        coarsen: Let ``target_spacing`` make an axis coarser than the input's (a model's
            options cannot be changed at predict time; this can); ``None`` keeps the
            options'.

    Example:
        >>> OutputGrid(slice_factor=2).slice_factor
        2.0
    """

    # as Options: a NaN or infinite rule would reach the voxel count arithmetic
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    target_spacing: tuple[float, float, float] | None = None
    scale: tuple[float, float, float] | None = None
    slice_factor: float | None = None
    coarsen: bool | None = None

    @model_validator(mode="after")
    def _at_most_one_rule(self) -> OutputGrid:
        _one_rule_at_most(self, required=False)
        return self


def with_condition(options: GridOptions, condition: OutputGrid | None) -> GridOptions:
    """``options`` with the rule of ``condition`` when it gives one, and its ``coarsen``."""
    if condition is None:
        return options
    update: dict[str, Any] = {}
    if any(getattr(condition, name) is not None for name in _RULES):
        update = {name: getattr(condition, name) for name in _RULES}
    if condition.coarsen is not None:
        update["coarsen"] = condition.coarsen
    return options.model_copy(update=update) if update else options


def condition_rule(condition: OutputGrid | None) -> dict[str, Any]:
    """The grid rule a predict-time condition asks for (``{}``: none, keep the model's)."""
    if condition is None:
        return {}
    return {
        name: getattr(condition, name) for name in _RULES if getattr(condition, name) is not None
    }


def slice_axis(grid: Grid, *, method_id: str | None = None) -> int:
    """The array axis of ``grid`` whose voxel spacing is clearly the largest.

    Args:
        grid: The input's grid.
        method_id: The method that needs the axis whatever output grid is asked (a
            learned model that refines only a thick-slice axis); ``None`` for the
            ``slice_factor`` rule, which another rule can replace.

    Raises:
        OptionsError: No axis's spacing is :data:`SLICE_ANISOTROPY` times every other's;
            the message says what to ask for instead.
    """
    spacing = np.asarray(grid.spacing, dtype=np.float64)
    order = np.argsort(spacing)
    axis = int(order[-1])
    if spacing[axis] >= SLICE_ANISOTROPY * spacing[order[-2]]:
        return axis
    shown = " × ".join(f"{s:g}" for s in grid.spacing)
    if method_id is None:
        raise OptionsError(
            f"the input's voxels ({shown} mm) have no thick-slice axis (one at least "
            f"{SLICE_ANISOTROPY:g} times as thick as the others) for slice_factor to refine; "
            "ask for its output grid by target_spacing=[X,Y,Z] (mm) or scale=[X,Y,Z] instead"
        )
    raise OptionsError(
        f"method {method_id!r} refines only a thick-slice axis (one at least "
        f"{SLICE_ANISOTROPY:g} times as thick as the others), and the input's voxels "
        f"({shown} mm) have none, whatever output grid is asked; for such an input use "
        "--method interpolation -o 'target_spacing=[X,Y,Z]'"
    )


def axis_factors(source: Grid, output: Grid) -> Triple:
    """Output voxels per input voxel along each array axis (spacing ratios)."""
    a, b = source.spacing, output.spacing
    return (a[0] / b[0], a[1] / b[1], a[2] / b[2])


TRAINED_RANGE = 1.5
"""How far (as a ratio) the asked slice-axis factor may lie from a model's trained one."""
IN_PLANE_RANGE = 1.25
"""How far from 1 the other axes' factors may lie for a model trained on slices."""


def check_trained_range(method_id: str, trained: float | None, source: Grid, output: Grid) -> None:
    """Refuse an output grid far from the slice factor ``trained`` a model was trained
    for (``None``: a model with an absolute rule, which says nothing of it).

    The asked factor along the input's slice axis must lie within
    [trained / :data:`TRAINED_RANGE`, trained × :data:`TRAINED_RANGE`], and the other
    axes' within [1 / :data:`IN_PLANE_RANGE`, :data:`IN_PLANE_RANGE`].

    Raises:
        OptionsError: The grid is outside that range; the message says what to do.
    """
    if trained is None:
        return
    axis = slice_axis(source, method_id=method_id)
    factors = axis_factors(source, output)
    low, high = trained / TRAINED_RANGE, trained * TRAINED_RANGE
    others = [f for i, f in enumerate(factors) if i != axis]
    if low <= factors[axis] <= high and all(
        1 / IN_PLANE_RANGE <= f <= IN_PLANE_RANGE for f in others
    ):
        return
    asked = " × ".join(f"{f:.3g}" for f in factors)
    raise OptionsError(
        f"method {method_id!r} was trained to refine the slice axis ×{trained:g} (in-plane "
        f"×1), but this output grid asks ×{asked} along the array axes (slice axis "
        f"{axis}); use a model trained for that factor, or method 'interpolation'"
    )


def clipped(output: Any, low: float, high: float, margin: float | None) -> Any:
    """``output`` clipped to ``[low, high]`` widened by ``margin`` of its width."""
    if margin is None:
        return output
    pad = margin * (high - low)
    return output.clamp(low - pad, high + pad)


@dataclass(frozen=True)
class FinerGrid:
    """An output grid and where its voxel centres fall in the input.

    Attributes:
        grid: The output grid.
        steps: Input voxels between neighbouring output voxels, per axis.
        offsets: Input voxel index of the first output voxel centre, per axis.
    """

    grid: Grid
    steps: Triple
    offsets: Triple

    def is_identity(self, shape: tuple[int, int, int]) -> bool:
        """Whether the output grid is the input grid of ``shape`` itself."""
        return self.grid.shape == shape and self.steps == (1.0, 1.0, 1.0) and not any(self.offsets)


def output_grid_for(grid: Grid, options: GridOptions, *, notice: bool = True) -> FinerGrid:
    """The output grid of ``options`` for an input on ``grid``; with no rule,
    :data:`DEFAULT_TARGET_SPACING` where it refines an axis (it never coarsens one). A
    ``target_spacing`` coarsens an axis only with ``options.coarsen``, and warns
    (:class:`GridWarning`) where the spacing written differs from it by more than
    :data:`SPACING_NOTICE` (unless ``notice`` is false: a second call for the same
    prediction, after :meth:`medi2i.Method.output_grid` has said it)."""
    if all(getattr(options, name) is None for name in _RULES):
        return finer_grid(
            grid, target_spacing=DEFAULT_TARGET_SPACING, align=options.align, coarsen=False
        )
    finer = finer_grid(
        grid,
        target_spacing=options.target_spacing,
        scale=options.scale,
        slice_factor=options.slice_factor,
        align=options.align,
        coarsen=options.coarsen,
    )
    if notice and options.target_spacing is not None:
        _notice_spacing(grid, finer.grid, options.target_spacing, options.align)
    return finer


FITS = {
    "edges": (
        "the nearest that fits the field of view in whole voxels (align: edges; align: "
        "centres fits whole voxels between the first and last voxel centres instead, and "
        "can give another spacing)"
    ),
    "centres": (
        "the nearest that fits whole voxels between the first and last voxel centres "
        "(align: centres, which a trained model keeps from its training; interpolation's "
        "default, align: edges, fits the field of view instead, and can give another spacing)"
    ),
}
"""Why the spacing written is not the one asked, by alignment: both round the voxel
count the same way (:func:`_nearest_whole`), over different lengths."""


def _notice_spacing(source: Grid, output: Grid, asked: Triple, align: Alignment) -> None:
    """Warn when ``output``'s spacing differs from ``asked`` by more than 0.1 %."""
    if any(n == 1 < m for n, m in zip(output.shape, source.shape, strict=True)):
        return  # a collapsed axis: the core refuses it in one line, with the extent
    got = output.spacing
    off = [abs(g - a) > SPACING_NOTICE * a for g, a in zip(got, asked, strict=True)]
    if not any(off):
        return
    kept = [
        o and abs(g - s) <= SPACING_NOTICE * s
        for o, g, s in zip(off, got, source.spacing, strict=True)
    ]
    why = (
        "axes finer than asked keep the input's spacing (to resample them coarser give "
        "-o coarsen=true to a method, -c coarsen=true to a model)"
        if any(kept)
        else FITS[align]
    )
    shown = " × ".join(f"{g:.6g}" for g in got)
    wanted = " × ".join(f"{a:g}" for a in asked)
    warnings.warn(
        GridWarning(f"output spacing {shown} mm, not the {wanted} mm asked: {why}"),
        stacklevel=3,
    )


def finer_grid(
    grid: Grid,
    *,
    target_spacing: Triple | None = None,
    scale: Triple | None = None,
    slice_factor: float | None = None,
    align: Alignment = "edges",
    coarsen: bool = True,
) -> FinerGrid:
    """The grid covering ``grid``'s field of view at ``target_spacing`` (mm), ``scale``
    or ``slice_factor`` (along :func:`slice_axis` only).

    Args:
        coarsen: Whether ``target_spacing`` may make an axis coarser than the input's;
            ``False`` keeps such an axis at the input's spacing.

    Raises:
        OptionsError: Not exactly one rule is given, ``scale`` or ``slice_factor`` is
            below 1, ``slice_factor`` is given for an input without a thick-slice axis,
            or the grid would hold more voxels than :func:`voxel_limit` allows (refused
            before anything of its size is allocated).
    """
    if sum(rule is not None for rule in (target_spacing, scale, slice_factor)) != 1:
        raise OptionsError("give exactly one of target_spacing (mm), scale and slice_factor")
    if min(scale or (slice_factor or 1.0,)) < 1:
        raise OptionsError(
            f"scale and slice_factor must be at least 1 (super-resolution never coarsens "
            f"an axis), got {scale if scale is not None else slice_factor}"
        )
    asked = _asked(target_spacing, scale, slice_factor)
    if slice_factor is not None:
        axis = slice_axis(grid)
        scale = (
            slice_factor if axis == 0 else 1.0,
            slice_factor if axis == 1 else 1.0,
            slice_factor if axis == 2 else 1.0,
        )
    if scale is None:
        assert target_spacing is not None
        ratios = [have / want for have, want in zip(grid.spacing, target_spacing, strict=True)]
        if not coarsen:  # a ratio a hair below 1 rounds to the input's count either way
            ratios = [max(1.0, ratio) for ratio in ratios]
        scale = (ratios[0], ratios[1], ratios[2])
    # refused before any voxel count that could not be allocated is even rounded
    if not all(
        math.isfinite(n * f) and n * f < 2.0**53 for n, f in zip(grid.shape, scale, strict=True)
    ):
        raise _too_large(grid, None, asked)
    axes = [_axis(n, f, align) for n, f in zip(grid.shape, scale, strict=True)]
    counts = tuple(count for count, _, _ in axes)
    if math.prod(counts) > voxel_limit(math.prod(grid.shape)):
        raise _too_large(grid, counts, asked)
    steps = np.array([step for _, step, _ in axes])
    offsets = np.array([offset for _, _, offset in axes])
    affine = grid.affine.copy()
    affine[:3, :3] = grid.affine[:3, :3] * steps[None, :]
    affine[:3, 3] = grid.affine[:3, 3] + grid.affine[:3, :3] @ offsets
    return FinerGrid(
        grid=Grid((counts[0], counts[1], counts[2]), affine),
        steps=(float(steps[0]), float(steps[1]), float(steps[2])),
        offsets=(float(offsets[0]), float(offsets[1]), float(offsets[2])),
    )


def voxel_limit(input_voxels: int) -> int:
    """The most voxels an output grid may hold for an input of ``input_voxels``:
    :data:`MAX_REFINEMENT` times the input's, or :data:`SMALL_OUTPUT_VOXELS` if more,
    and never more than :data:`MAX_OUTPUT_VOXELS`. A larger grid is almost always a
    typo (a spacing in metres, ``1e-4`` for ``1``) and would only run out of memory.

    Example:
        >>> voxel_limit(128 * 128 * 40) == 512 * 128 * 128 * 40
        True
        >>> voxel_limit(10) == 2**24, voxel_limit(512 * 512 * 400) == 2**30
        (True, True)
    """
    return min(MAX_OUTPUT_VOXELS, max(SMALL_OUTPUT_VOXELS, MAX_REFINEMENT * input_voxels))


def _too_large(grid: Grid, counts: tuple[int, ...] | None, asked: str) -> OptionsError:
    """The one-line refusal of an output grid beyond :func:`voxel_limit`."""
    have = math.prod(grid.shape)
    shape = " × ".join(str(n) for n in grid.shape)
    if counts is None:
        would = "more voxels than can be counted"
    else:
        total = math.prod(counts)
        would = (
            f"{' × '.join(str(n) for n in counts)} = {total:.3g} voxels, {total / have:.3g} "
            "times the input's"
        )
    return OptionsError(
        f"the output grid asked ({asked}) would be {would} ({shape} = {have} voxels, "
        f"{' × '.join(f'{s:g}' for s in grid.spacing)} mm); super-resolution writes at most "
        f"{voxel_limit(have):.3g} voxels for this input ({MAX_REFINEMENT} times its voxels, "
        "or 2**24 if more, never more than 2**30): "
        "ask for a coarser target_spacing (mm) or a smaller scale or slice_factor"
    )


def _asked(target_spacing: Triple | None, scale: Triple | None, slice_factor: float | None) -> str:
    if target_spacing is not None:
        return "target_spacing " + " × ".join(f"{s:g}" for s in target_spacing) + " mm"
    if scale is not None:
        return "scale " + " × ".join(f"{s:g}" for s in scale)
    return f"slice_factor {slice_factor:g}"


def _axis(count: int, factor: float, align: Alignment) -> tuple[int, float, float]:
    """``(output voxels, step, offset)`` along one axis of ``count`` input voxels."""
    if align == "centres" and count > 1:
        # whole numbers of output voxels between the first and the last centre
        intervals = max(1, _nearest_whole((count - 1) * factor))
        return intervals + 1, (count - 1) / intervals, 0.0
    if align == "centres":
        return 1, 1.0, 0.0
    # whole numbers of output voxels across the field of view; edges stay put
    voxels = max(1, _nearest_whole(count * factor))
    step = count / voxels
    return voxels, step, -0.5 + 0.5 * step


def _nearest_whole(value: float) -> int:
    """``value`` rounded half up, a half within float noise counted as a half: Python's
    ``round`` rounds a half to even, and a factor computed from spacings in metres or in
    millimetres lands a hair either side of it, so the same volume got 38 or 39 slices.

    Example:
        >>> _nearest_whole(38.5), _nearest_whole(38.5 - 1e-12), _nearest_whole(38.49)
        (39, 39, 38)
    """
    return math.floor(value + 0.5 + 1e-9 * max(1.0, abs(value)))
