"""Training settings as a user writes them (the ``training:`` section of a workflow).

Integer settings refuse booleans (``steps: true`` is not one step).

This module imports no torch, so a workflow can be validated (and its JSON Schema
exported) without paying for a torch import.

Example:
    >>> config = TrainingConfig(steps=200, batch_size=4, patch_size=(32, 32, 32))
    >>> config.augmentation.flip_probability
    0.5
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medi2i.settings import NOT_A_BOOLEAN, Integer, Seed


class AugmentationConfig(BaseModel):
    """Random augmentation of training patches, drawn anew for every patch.

    Spatial augmentations (flips, 90° rotations, random rotations and zooms) are
    applied identically to every volume of a paired patch, so source and target stay
    aligned. Intensity augmentations (scale, shift, noise) touch only network inputs
    (``source`` for paired data, every image for unpaired and multi-domain data), never
    a ``target``, whose values (e.g. HU) are what the network must learn to produce.

    The defaults are label-preserving for any 3D medical volume: mirroring and
    in-plane quarter turns keep anatomy plausible, and the intensity changes are
    small next to the contrast between tissues.

    Attributes:
        enabled: Apply any augmentation at all.
        flip_probability: Probability of mirroring a patch along each axis in
            ``flip_axes`` (drawn per axis), in [0, 1].
        flip_axes: Array axes (0, 1, 2) that may be mirrored.
        rotate90_probability: Probability of a quarter, half or three-quarter turn in
            the plane of ``rotate90_axes``, in [0, 1]. Skipped when the patch is not
            square in that plane.
        rotate90_axes: The two array axes spanning the plane of rotation.
        affine_probability: Probability of a random rotation and zoom of a patch, in
            [0, 1] (nnU-Net uses 0.2; default 0, off). The patch is resampled from the
            whole volume around its centre (trilinear, the volume's edge values
            beyond its border), so no corners are left empty; a paired target is
            resampled on its own grid with the same transform.
        rotation_degrees: Largest rotation about each array axis (0, 1, 2), in
            degrees in [0, 180]; each angle is drawn uniformly in ±this. Rotations
            are in voxel coordinates: on anisotropic voxels rotate only about the
            coarse axis (e.g. ``[0, 0, 15]`` for thick axial slices).
        zoom_range: Range of the zoom factor (in [0.1, 10]), drawn uniformly and
            applied to all axes alike; above 1 the anatomy appears larger.
        intensity_probability: Probability of a random linear intensity change
            ``x · scale + shift · σ`` of the input, in [0, 1]; σ is the standard
            deviation of the whole preprocessed volume.
        intensity_scale: Range of the scale factor (unitless).
        intensity_shift: Range of the shift, in units of σ.
        noise_probability: Probability of adding Gaussian noise to the input, in [0, 1].
        noise_std: Standard deviation of that noise, in units of σ.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    enabled: bool = True
    flip_probability: float = Field(default=0.5, ge=0.0, le=1.0)
    flip_axes: tuple[Integer, ...] = (0, 1, 2)
    rotate90_probability: float = Field(default=0.5, ge=0.0, le=1.0)
    rotate90_axes: tuple[Integer, Integer] = (0, 1)
    affine_probability: float = Field(default=0.0, ge=0.0, le=1.0)
    rotation_degrees: tuple[float, float, float] = (15.0, 15.0, 15.0)
    zoom_range: tuple[float, float] = (0.85, 1.25)
    intensity_probability: float = Field(default=0.5, ge=0.0, le=1.0)
    intensity_scale: tuple[float, float] = (0.9, 1.1)
    intensity_shift: tuple[float, float] = (-0.1, 0.1)
    noise_probability: float = Field(default=0.15, ge=0.0, le=1.0)
    noise_std: float = Field(default=0.05, ge=0.0)

    @field_validator("flip_axes")
    @classmethod
    def _spatial_axes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(axis not in (0, 1, 2) for axis in value) or len(set(value)) != len(value):
            raise ValueError(f"flip_axes must be distinct array axes among 0, 1, 2, got {value}")
        return value

    @field_validator("rotate90_axes")
    @classmethod
    def _rotation_plane(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] == value[1] or any(axis not in (0, 1, 2) for axis in value):
            raise ValueError(f"rotate90_axes must be two different axes among 0, 1, 2: {value}")
        return value

    @field_validator("rotation_degrees")
    @classmethod
    def _rotation_range(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not 0.0 <= angle <= 180.0 for angle in value):
            raise ValueError(f"rotation_degrees must each lie in [0, 180], got {value}")
        return value

    @field_validator("intensity_scale", "intensity_shift", "zoom_range")
    @classmethod
    def _ordered_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"a range is (low, high) with low <= high, got {value}")
        return value

    @field_validator("intensity_scale")
    @classmethod
    def _positive_scale(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] <= 0.0:
            raise ValueError(f"intensity_scale factors must be > 0, got {value}")
        return value

    @field_validator("zoom_range")
    @classmethod
    def _positive_zoom(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] < 0.1 or value[1] > 10.0:
            raise ValueError(f"zoom_range factors must lie in [0.1, 10], got {value}")
        return value


class TrainingConfig(BaseModel):
    """How the trainer runs a method's training steps.

    A *step* is one update of the method's optimizers; with gradient accumulation it
    spans ``accumulation_steps`` batches of ``batch_size`` patches each (per process
    under ``torchrun``). The batch of every step is a pure function of ``seed``, the
    step number and the process rank, so a resumed run repeats exactly the steps an
    uninterrupted one would have taken.

    Attributes:
        steps: Total number of training steps (optimizer updates), >= 1.
        batch_size: Patches per batch, per process, >= 1.
        patch_size: Patch size in voxels along each array axis of the working grid,
            or ``None`` for the method's own window size (its ``roi_size``), so that
            training sees patches of the size inference runs on. A volume smaller
            than the patch along an axis is padded to it at its far end by repeating
            its edge voxels (noted once per run in the log).
        patches_per_volume: Consecutive patches of a batch cut from the same volume
            (>= 1); more than one means fewer volumes to load per batch, which
            matters with ``cache: none``.
        accumulation_steps: Batches whose gradients are summed before each update
            (>= 1); the effective batch is ``batch_size × accumulation_steps`` patches.
        amp: Mixed precision (float16 autocast with gradient scaling); only takes
            effect on CUDA.
        max_nonfinite_steps: With AMP in effect, how many steps in a row may have a NaN
            or infinite loss (>= 0): the gradient scaler skips their updates and lowers
            its scale, so the weights stay intact. One more stops training with an error
            naming the step. Without AMP the first non-finite loss stops training, since
            its update has been applied. A diverged run never writes a model folder and
            keeps its last checkpoint with finite weights.
        device: ``"auto"`` (CUDA when available, the rank's own GPU under ``torchrun``,
            else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        deterministic: Ask cuDNN for deterministic algorithms (slower on GPU). Without
            it cuDNN times its algorithms for the fixed patch size and keeps the fastest,
            as nnU-Net does. On the CPU training is deterministic anyway.
        seed: Seed of initial weights, patch sampling and augmentation, 0 to
            2**32 - 1 (4294967295).
        checkpoint_every: Steps between checkpoints (>= 1); the last step is always
            checkpointed.
        validate_every: Steps between validations on whole volumes, or ``None`` to
            validate only after the last step (when validation data is given).
        keep_best: With validation data, also keep ``best-model/`` in the run folder:
            the model as it was at the validation with the lowest MAE, so the step to
            report can be chosen on validation without training again. Its
            ``metrics.json`` holds that validation's metrics and ``validation_step``.
        log_every: Steps between log records and progress-bar updates (>= 1).
        collapse_check: What happens when a GAN collapses (see
            :mod:`medi2i.training.health`): its discriminator losses all fall below
            1e-3, or a generator's output watched with ``trainer.watch_generated``
            varies less than 2 % as much as the real images, at every logged step for
            ``collapse_patience`` steps. ``"warn"`` (default) logs a warning and adds a
            ``health`` line to the history and the workflow report; ``"stop"`` ends
            the run with an error (no model folder, checkpoints kept); ``"off"``
            checks nothing. Methods without such losses or outputs are never flagged.
        collapse_patience: Steps a collapse symptom must last before it is reported
            (>= 0; seen at every logged step in between). Counted afresh on resume.
        cache: ``"memory"`` keeps every preprocessed training volume in memory after
            its first use; ``"none"`` reads and preprocesses a volume each time a patch
            is cut from it (for data sets larger than memory).
        num_workers: Background processes preparing batches (0: in the training
            process). Batches do not depend on it.
        foreground_threshold: Intensity of the raw input volume (its own units, e.g. HU
            for CT) above which a voxel is foreground when a case has no mask; ``None``
            for the volume's mean intensity. With a mask, foreground is ``mask > 0``.
        foreground_ratio: Fraction of patches centred on a foreground voxel, in [0, 1];
            the others are placed uniformly at random.
        augmentation: Random flips, rotations and intensity changes of the patches.
        tensorboard: Also write TensorBoard event files to ``<run>/logs/tensorboard``
            (needs the ``tensorboard`` package).
        progress: Show a progress bar with losses and the estimated time left; ``None``
            (the default) shows one when standard error is a terminal, none in a log.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    steps: Integer = Field(default=1000, ge=1)
    batch_size: Integer = Field(default=2, ge=1)
    patch_size: tuple[Integer, Integer, Integer] | None = None
    patches_per_volume: Integer = Field(default=1, ge=1)
    accumulation_steps: Integer = Field(default=1, ge=1)
    amp: bool = True
    max_nonfinite_steps: Integer = Field(default=3, ge=0)
    device: str = "auto"
    deterministic: bool = False
    seed: Seed = 0
    checkpoint_every: Integer = Field(default=500, ge=1)
    validate_every: Annotated[int, Field(ge=1), NOT_A_BOOLEAN] | None = None
    keep_best: bool = True
    log_every: Integer = Field(default=10, ge=1)
    collapse_check: Literal["warn", "stop", "off"] = "warn"
    collapse_patience: Integer = Field(default=500, ge=0)
    cache: Literal["memory", "none"] = "memory"
    num_workers: Integer = Field(default=0, ge=0)
    foreground_threshold: float | None = None
    foreground_ratio: float = Field(default=0.75, ge=0.0, le=1.0)
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    tensorboard: bool = False
    progress: bool | None = None

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        from medi2i.settings import check_device_name

        return check_device_name(value)

    @field_validator("patch_size")
    @classmethod
    def _positive_patch(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is not None and min(value) < 1:
            raise ValueError(f"every patch_size component must be >= 1 voxel, got {value}")
        return value

    @model_validator(mode="after")
    def _whole_volume_groups(self) -> TrainingConfig:
        if self.patches_per_volume > self.batch_size:
            raise ValueError(
                f"patches_per_volume ({self.patches_per_volume}) cannot exceed batch_size "
                f"({self.batch_size})"
            )
        return self


RESUME_INVARIANTS = (
    "batch_size",
    "patches_per_volume",
    "accumulation_steps",
    "amp",
    "seed",
    "foreground_threshold",
    "foreground_ratio",
    "augmentation",
)
"""Settings a resumed run must share with the run that wrote the checkpoint: they
decide which patches each step sees and how updates are computed (``patch_size`` is
compared after resolving ``None`` to the method's window)."""
