"""Inference settings: how the sliding window runs, independent of the method.

This module imports no torch, so the command line can read the defaults for its
options without paying for a torch import.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from medi2i.errors import OptionsError

NonFinitePolicy = Literal["error", "zero", "nearest"]
"""What to do with NaN or infinite input voxels: refuse the volume, set them to 0, or give
each the value of its nearest finite voxel (see :mod:`medi2i.voxel_checks`)."""


MAX_SEED = 2**32 - 1
"""The largest seed medi2i accepts wherever one is given (``--seed``, a workflow's
``training.seed``, ``inference.seed``, ``data.split.seed``, ``adaptation.seed``): every
consumer takes it, ``torch.manual_seed`` (up to 2**64 - 1) as well as NumPy's
generators and the legacy ``np.random.seed`` (up to 2**32 - 1) a method may pass
``context.seed`` to, with room for the offsets added per process and step."""


def _refuse_boolean(value: object) -> object:
    # pydantic reads true as 1 for an int, so `steps: true` would train for one step;
    # "2" and 2.0 it would take too: an integer setting is written as one, everywhere
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got the boolean {str(value).lower()}")
    if isinstance(value, (str, float)):
        shown = repr(value) if isinstance(value, str) else value
        raise ValueError(f"expected an integer (digits only, e.g. 200), got {shown}")
    return value


NOT_A_BOOLEAN = BeforeValidator(_refuse_boolean)
"""Refuses ``true``/``false`` for an integer, which pydantic would take as 1 and 0, and
text (``"2"``) or floats (``2.0``), which it would convert. In
``Annotated``, put it after a ``Field``'s bounds (``Annotated[int, Field(ge=1),
NOT_A_BOOLEAN]``): bounds after it stay out of the JSON Schema's minimum and maximum."""

Integer = Annotated[int, NOT_A_BOOLEAN]
"""An integer setting (bounds go on the field: ``Integer = Field(default=4, ge=1)``)."""

Seed = Annotated[int, Field(ge=0, le=MAX_SEED), NOT_A_BOOLEAN]
"""A seed: an integer from 0 to :data:`MAX_SEED`."""


_DEVICE_NAME = re.compile(r"auto|(cpu|cuda)(:\d+)?")


def check_device_name(name: str) -> str:
    """``name`` if it names a device medi2i runs on, as a setting is validated: before
    anything runs, so that ``device: gpu`` in a workflow is refused by ``medi2i
    validate``, not after training. Whether CUDA is there is checked when it is used.

    Raises:
        ValueError: Another name; the message lists the allowed ones.

    Example:
        >>> check_device_name("cuda:1")
        'cuda:1'
    """
    if not _DEVICE_NAME.fullmatch(name):
        raise ValueError(f"unknown device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return name


class InferenceSettings(BaseModel):
    """How the sliding-window engine runs a patch network.

    Attributes:
        roi_size: Window size in voxels along each array axis, or ``None`` for the
            method's own default (the size it was trained with).
        sw_batch_size: Windows run per forward pass (>= 1), or ``None`` (the default)
            for :func:`medi2i.engine.window_batch`'s choice: 4 on a GPU; on the CPU 4
            windows of up to 96³ voxels, fewer of larger ones (one of 128³), whose
            activations cost memory without running faster. Halved automatically when
            a GPU runs out of memory.
        overlap: Fraction of a window shared with its neighbour along each axis, in [0, 1).
        blend: How overlapping windows are averaged: ``"gaussian"`` weights window
            centres more than edges, ``"constant"`` weights all voxels equally.
        sigma_scale: Standard deviation of the Gaussian weights as a fraction of the
            window size (used when ``blend="gaussian"``).
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``.
        amp: Run the network in float16 autocast; only takes effect on CUDA.
        progress: Show a progress bar over the windows; ``None`` (the default) shows one
            when standard error is a terminal, none in a log or a pipe.
        nonfinite: What to do with NaN or infinite input voxels: ``"error"`` refuses the
            volume (naming how many and where), ``"zero"`` sets them to 0, ``"nearest"``
            gives each the value of the nearest finite voxel.
        force_modality: Translate a DICOM series whose Modality differs from the one
            the method declares for its input (e.g. a CT given to an MR→CT model);
            refused otherwise.
        seed: Seed of anything random a method does at predict time (a style code,
            fitting on the input), 0 to 2**32 - 1 (4294967295); recorded in the
            provenance, so an output can be made again.
        mirror_axes: Test-time mirroring, as nnU-Net predicts: each window is also
            predicted mirrored along every combination of these array axes (0, 1, 2)
            of the input volume (a method that reorders axes maps them), each output is
            mirrored back onto the unmirrored output's voxels, and all are averaged.
            ``(0,)`` costs two forward passes per window, ``(0, 1, 2)`` eight. Empty (default): off.
            Useful for networks trained with the same flips; a network that was not
            (e.g. left-right asymmetric anatomy without flip augmentation) can get
            worse, so choose it on validation data.
        reflect_padding: Voxels of mirror-image context added on each side of the
            input volume along each array axis (0, 1, 2): the method runs on the volume
            reflected about its first and last voxels (edge voxels not repeated, each
            width capped at the axis length minus one; the provenance's ``run`` records
            the widths used when a cap changed them) and its output is cropped back
            to the grid it gives for the volume itself (:mod:`medi2i.reflect_padding`).
            A network then meets tissue cut by the volume's edge with context instead
            of padding, and what a method computes from the whole volume (an MR→CT
            body mask, normalization statistics) sees the body continue across a cut
            face, e.g. a head cut at the midline. A method that changes resolution
            needs widths that are whole output voxels. One number is that width on every
            axis. ``(0, 0, 0)`` (default): off.
            Costs the padded volume's memory and time; choose it on validation data.

    Raises:
        medi2i.OptionsError: A value out of range or of the wrong type, or an unknown
            setting; the message names each problem.

    Example:
        >>> InferenceSettings(roi_size=(64, 64, 64), device="cpu").overlap
        0.25
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def __init__(self, **values: object) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in e['loc'])}: "
                f"{e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            raise OptionsError(f"invalid inference settings: {problems}") from None

    # only a direct call takes the __init__ above: marked as pydantic's own, it is not
    # called when a workflow validates its inference section, which reports the problems
    # with their lines in the file
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    roi_size: tuple[Integer, Integer, Integer] | None = None
    sw_batch_size: Integer | None = Field(default=None, ge=1)
    overlap: float = Field(default=0.25, ge=0.0, lt=1.0)
    blend: Literal["gaussian", "constant"] = "gaussian"
    sigma_scale: float = Field(default=0.125, gt=0.0)
    device: str = "auto"
    amp: bool = True
    progress: bool | None = None
    nonfinite: NonFinitePolicy = "error"
    force_modality: bool = False
    seed: Seed = 0
    mirror_axes: tuple[Integer, ...] = ()
    reflect_padding: tuple[Integer, Integer, Integer] = (0, 0, 0)

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        return check_device_name(value)

    @field_validator("mirror_axes")
    @classmethod
    def _spatial_axes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(axis not in (0, 1, 2) for axis in value) or len(set(value)) != len(value):
            raise ValueError(f"mirror_axes are distinct array axes 0, 1 or 2, got {value}")
        return tuple(sorted(value))

    @field_validator("reflect_padding", mode="before")
    @classmethod
    def _one_width_for_every_axis(cls, value: object) -> object:
        # one width means it on every axis, as --reflect-padding 32 does
        if isinstance(value, int) and not isinstance(value, bool):
            return (value, value, value)
        return value

    @field_validator("reflect_padding")
    @classmethod
    def _padding_widths(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(value) < 0:
            raise ValueError(f"every reflect_padding width must be >= 0 voxels, got {value}")
        return value

    @field_validator("roi_size")
    @classmethod
    def _positive_roi(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is not None and min(value) < 1:
            raise ValueError(f"every roi_size component must be >= 1 voxel, got {value}")
        return value


def stderr_is_terminal() -> bool:
    """Whether standard error is a terminal (where a progress bar redraws in place)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False


def wants_progress(progress: bool | None) -> bool:
    """A ``progress`` setting as asked: ``None`` means a bar when standard error is a
    terminal, so a log or a pipe gets no carriage-return bar lines."""
    return stderr_is_terminal() if progress is None else progress
