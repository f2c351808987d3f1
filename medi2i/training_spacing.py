"""The voxel spacings a model was trained on, and the warning when an input is far off.

A network learns at the resolution it is shown: a model trained on 2x2x5 mm volumes
that is given a 1 mm volume sees every structure 2-5 times larger than it ever saw, and
may write cerebrospinal fluid as air without any error. The trainer therefore records,
in the model folder's manifest (``training_spacing_mm``), the smallest and largest
voxel spacing of its training inputs along each array axis, *as the network saw them*:
after the method's spatial plan (a plan that resamples to a fixed spacing records that
spacing; a plan that reorients records the spacing along the reoriented axes).

At predict time an input's spacing, after the same spatial plan, is compared per array
axis with that range, widened by :data:`SPACING_TOLERANCE` each way; outside it,
prediction warns (:class:`SpacingWarning`). Per array axis, not sorted: a network is not
invariant to which axis is the thick one, and the spatial plan (its orientation, when it
has one) fixes which array axis is which for training and prediction alike.

A method that changes resolution (super-resolution: its output grid's spacing is not the
input's) is checked on the thick axis only: the largest spacing of an input against the
largest of the training inputs (the thick slices a model learned to refine), widened by
the same factor; a x4 model given 2 mm slices writes 0.5 mm slices and is worse than
interpolation, without any error. Only the methods whose network reads the input grid
record it: a method that interpolates before its network (SRCNN) trains on sources
already on the fine grid, whose spacing says nothing of the thick slices, so it sets
``records_training_spacing = False`` and its models are not checked.

Example:
    >>> spacing = TrainingSpacing(min=(2.0, 2.0, 5.0), max=(2.0, 2.0, 5.0))
    >>> spacing.outside((1.0, 1.0, 1.0))
    True
    >>> spacing.outside((2.5, 2.5, 5.0))
    False
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict

from medi2i.grid import Grid, SpatialPlan

if TYPE_CHECKING:
    from medi2i.data.cases import CaseSet
    from medi2i.method import Method
    from medi2i.method_spec import DomainSpec, VolumeSpec

Spacing = tuple[float, float, float]

SPACING_TOLERANCE = 1.5
"""How far (as a factor) an input's spacing may lie below the smallest or above the
largest training spacing of an axis before prediction warns."""
_RECORDED = "_medi2i_training_spacing"


class SpacingWarning(UserWarning):
    """An input's voxel spacing is far from the spacings its model was trained on."""


class TrainingSpacing(BaseModel):
    """The range of voxel spacings (mm, per array axis, after the spatial plan) of a
    model's training inputs: ``training_spacing_mm`` in its manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: Spacing
    max: Spacing

    def outside(self, spacing: Spacing) -> bool:
        """Whether ``spacing`` lies outside ``[min / 1.5, max * 1.5]`` along any axis."""
        return any(
            s < low / SPACING_TOLERANCE or s > high * SPACING_TOLERANCE
            for s, low, high in zip(spacing, self.min, self.max, strict=True)
        )

    @classmethod
    def spanning(cls, spacings: Iterable[Spacing]) -> TrainingSpacing | None:
        """The range of ``spacings`` (``None`` when there are none)."""
        listed = list(spacings)
        if not listed:
            return None
        axes = list(zip(*listed, strict=True))
        # to 1e-6 mm: float32 headers make 0.9 mm 0.8999999841 mm
        low = [round(min(axis), 6) for axis in axes]
        high = [round(max(axis), 6) for axis in axes]
        return cls(min=(low[0], low[1], low[2]), max=(high[0], high[1], high[2]))


def planned_spacing(grid: Grid, plan: SpatialPlan) -> Spacing:
    """The voxel spacing (mm, per array axis) of a volume on ``grid`` once ``plan`` has
    put it on the working grid, without touching its voxels."""
    if plan.spacing is not None:
        return (float(plan.spacing[0]), float(plan.spacing[1]), float(plan.spacing[2]))
    if plan.orientation is None:
        return grid.spacing
    import torch
    from monai.data.meta_tensor import MetaTensor

    from medi2i.resample import apply_spatial_plan

    # one voxel through the real reorientation: the axes end up exactly as predict's
    voxel = MetaTensor(torch.zeros(1, 1, 1, 1), affine=torch.as_tensor(grid.affine))
    return Grid.of(apply_spatial_plan(voxel, plan)).spacing


def training_spacing_of(method: Method, *case_sets: CaseSet | None) -> TrainingSpacing | None:
    """The spacing range of the network inputs of ``case_sets`` (the source of paired
    cases, the image otherwise) on ``method``'s working grid.

    Read from the files' headers where the reader can (NIfTI); a volume whose header
    tells no grid (a DICOM series) is read whole. Nothing is read when the plan
    resamples to a fixed spacing; ``None`` for a method whose class sets
    ``records_training_spacing = False`` (its network inputs are not on its inputs' grid).
    """
    from medi2i.data.cases import IMAGE, SOURCE

    if not getattr(method, "records_training_spacing", True):
        return None
    plan = method.spatial_plan()
    if plan.spacing is not None:
        fixed = (float(plan.spacing[0]), float(plan.spacing[1]), float(plan.spacing[2]))
        return TrainingSpacing(min=fixed, max=fixed)
    spacings = []
    for cases in case_sets:
        for case in cases.cases if cases is not None else ():
            path = case.images.get(SOURCE, case.images.get(IMAGE))
            if path is not None:
                spacings.append(planned_spacing(_grid(Path(path)), plan))
    return TrainingSpacing.spanning(spacings)


def _grid(path: Path) -> Grid:
    from medi2i.io import read_grid, read_volume

    return read_grid(path) or Grid.of(read_volume(path))


def record_training_spacing(method: Method, spacing: TrainingSpacing | None) -> None:
    """Remember on ``method`` the training spacings of the model it was loaded from, so
    that prediction can check inputs against them and a saved copy keeps them."""
    setattr(method, _RECORDED, spacing)


def recorded_training_spacing(method: Method) -> TrainingSpacing | None:
    """The training spacings :func:`record_training_spacing` gave ``method``, if any."""
    recorded = getattr(method, _RECORDED, None)
    return recorded if isinstance(recorded, TrainingSpacing) else None


def merged_training_spacing(methods: Iterable[Method]) -> TrainingSpacing | None:
    """The range spanning the recorded training spacings of ``methods`` (models averaged
    into one); ``None`` unless every one of them records some."""
    ranges = [recorded_training_spacing(method) for method in methods]
    known = [spacing for spacing in ranges if spacing is not None]
    if len(known) < len(ranges):
        return None
    return TrainingSpacing.spanning(s for spacing in known for s in (spacing.min, spacing.max))


def check_input_spacing(
    method: Method,
    grid: Grid,
    output: Grid,
    where: str,
    *,
    condition: BaseModel | Mapping[str, object] | None = None,
) -> dict[str, object] | None:
    """Warn (:class:`SpacingWarning`) when an input on ``grid`` lies, after the spatial
    plan, outside the training spacings of ``method``'s model; for a method that changes
    resolution (its ``output`` grid's spacing is not ``grid``'s), on the thick axis only
    (:func:`check_thick_spacing`). The warning names the silent failure it risks:
    tissue written as air for a model writing CT from MR (under ``condition``, the
    default one when ``None``), intensities or structures of the wrong size otherwise.

    Returns:
        What was compared, for the provenance, when it lies outside; else ``None`` (also
        for a method without recorded training spacings).
    """
    trained = recorded_training_spacing(method)
    if trained is None:
        return None
    if not np.allclose(output.spacing, grid.spacing, rtol=1e-4):
        return check_thick_spacing(method, trained, grid, output, where)
    spacing = planned_spacing(grid, method.spatial_plan())
    if not trained.outside(spacing):
        return None
    shown, low, high = (_mm(s) for s in (spacing, trained.min, trained.max))
    span = low if low == high else f"{low} to {high}"
    failure = _silent_failure(method, condition)
    warnings.warn(
        SpacingWarning(
            f"{where}: its voxel spacing {shown} mm (per array axis, on the model's working "
            f"grid) lies far outside the spacings the model {method.id!r} was trained on "
            f"({span} mm), so its output may be wrong without any error ({failure}); "
            "resample the input to the training spacing (e.g. with the "
            "method's spacing option, if it has one), or use a model trained at this "
            "resolution"
        ),
        stacklevel=3,
    )
    return {
        "input": list(spacing),
        "trained_min": list(trained.min),
        "trained_max": list(trained.max),
    }


def check_thick_spacing(
    method: Method, trained: TrainingSpacing, grid: Grid, output: Grid, where: str
) -> dict[str, object] | None:
    """Warn (:class:`SpacingWarning`) when the largest spacing of an input on ``grid``
    (its slice spacing, for super-resolution) lies outside the largest spacings of the
    training inputs, ``[max(trained.min) / 1.5, max(trained.max) * 1.5]`` (mm).

    Returns:
        What was compared (mm), for the provenance, when it lies outside; else ``None``.
    """
    thick = max(planned_spacing(grid, method.spatial_plan()))
    low, high = max(trained.min), max(trained.max)
    if low / SPACING_TOLERANCE <= thick <= high * SPACING_TOLERANCE:
        return None
    span = f"{low:.3g}" if low == high else f"{low:.3g} to {high:.3g}"
    warnings.warn(
        SpacingWarning(
            f"{where}: its slices are {thick:.3g} mm apart, far from the {span} mm slices "
            f"the model {method.id!r} was trained to refine (it accepts "
            f"{low / SPACING_TOLERANCE:.3g} to {high * SPACING_TOLERANCE:.3g} mm without "
            f"this warning); it writes {_mm(output.spacing)} mm voxels and may be worse "
            "than interpolation without any error; use a model trained for this slice "
            "spacing, or --method interpolation"
        ),
        stacklevel=4,
    )
    return {"input_mm": thick, "trained_min_mm": low, "trained_max_mm": high}


def _silent_failure(method: Method, condition: BaseModel | Mapping[str, object] | None) -> str:
    """How a model's output goes wrong, without an error, on an input far from its
    training spacing: an MR→CT model may write tissue as air (its outputs hold air
    around the body); any other one may give intensities or structures unlike those it
    was trained on."""
    if writes_ct_from_mr(method, condition):
        return "tissue written as air"
    return "e.g. intensities or structures of another size than trained on"


def writes_ct_from_mr(method: Method, condition: BaseModel | Mapping[str, object] | None) -> bool:
    """Whether ``method`` writes a CT in HU from an input that is not one under
    ``condition`` (its default condition when ``None``); from its class's input and output
    specs when the condition does not parse (a model without its domains)."""
    from medi2i.prediction_checks import expected_input

    try:
        parsed = method.parse_condition(condition)
        _, hounsfield_input = expected_input(method, method.input_domain(parsed))
        outputs = method.outputs(parsed)
    except Exception:  # only the wording of a warning depends on it
        spec = method.input_spec
        return _hounsfield(method.output_spec) and not _hounsfield(spec)
    specs: list[VolumeSpec | DomainSpec] = [
        method.domain(output.domain) if output.domain in method.domain_names else output.spec
        for output in outputs
    ]
    return not hounsfield_input and any(_hounsfield(spec) for spec in specs)


def _hounsfield(spec: VolumeSpec | DomainSpec) -> bool:
    """Whether images of ``spec`` are CT values in HU (modality CT or units HU)."""
    return spec.modality == "CT" or spec.units == "HU"


def _mm(spacing: Spacing) -> str:
    return "x".join(f"{s:.3g}" for s in spacing)
