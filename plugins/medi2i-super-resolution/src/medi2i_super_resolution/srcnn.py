"""SRCNN in 3D: a three-layer network that refines an interpolated volume.

Dong et al. (2014, 2016) first upsample the low-resolution image by bicubic
interpolation, then a network of three convolutions, *patch extraction*
(``f1 × f1``, ``n1`` filters, ReLU), *non-linear mapping* (``f2 × f2``, ``n2``, ReLU) and
*reconstruction* (``f3 × f3``, one output), maps it to the high-resolution image,
trained with the mean squared error. Here the convolutions are 3D (as in Pham et al.
2017 for brain MR) and the first stage is cubic B-spline interpolation onto the finer
grid (:mod:`medi2i_super_resolution.interpolation`).

Choices, each an option:

* Kernels 9-1-5 with 64 and 32 filters, the paper's base network. In 3D it costs about
  53 k multiply-adds per output voxel (9³·64 + 64·32 + 5³·32); the paper's better
  9-5-5 costs about 300 k, six times more, so it is an option, not the default.
* Residual learning (Kim et al. 2016): the network adds its output to the
  interpolated input, so it learns only the missing detail; it starts as plain
  interpolation because the reconstruction layer is initialised near zero (Gaussian,
  σ = 10⁻³, the paper's initialisation), while the first two layers use PyTorch's
  default initialisation so that gradients reach them from the first step.
* Adam with learning rate 10⁻⁴ (as later SRCNN reimplementations do), instead of
  the paper's SGD with 10⁻⁴ for the first two layers and 10⁻⁵ for the last.
* Padded ("same") convolutions with replicated borders, so that windows of the
  sliding window keep their size; the paper trained without padding.
* Intensities divided by the volume's mean absolute value (whole volume, in
  :meth:`Srcnn.preprocess`), so one network serves scanners with other units.

Training pairs lie on one grid: ``source`` is the degraded volume already
interpolated onto the high-resolution grid (by :class:`~.interpolation.Interpolation`
with this model's ``order`` and ``align``), ``target`` the high-resolution volume. At
predict time the input is interpolated onto the finer grid first, so a model applies to
thick-slice volumes directly; a volume already at ``target_spacing`` is used as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from medi2i import DataKind, Grid, InputError, PatchNetworkMethod, Task, Training, VolumeSpec
from medi2i_super_resolution.grids import (
    GridOptions,
    OutputGrid,
    check_trained_range,
    clipped,
    output_grid_for,
    slice_axis,
    with_condition,
)
from medi2i_super_resolution.interpolation import InterpolationOrder, interpolate_finer

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i import PredictContext, TrainerAPI

SCALE_KEY = "medi2i_super_resolution.intensity_scale"
"""Meta key of the preprocessed volume holding the mean absolute intensity it was divided by."""
RANGE_KEY = "medi2i_super_resolution.input_range"
"""Meta key of the preprocessed volume holding the raw input's minimum and maximum."""
RECONSTRUCTION_INIT_STD = 1e-3
"""Standard deviation of the reconstruction layer's initial weights (Dong et al. 2016)."""
MR = VolumeSpec(modality="MR", units="arbitrary", channels=1)


class SrcnnOptions(GridOptions):
    """Options of :class:`Srcnn` (defaults: the base network of Dong et al. 2016).

    Attributes:
        kernel_sizes: ``(f1, f2, f3)``, edge of the cubic kernels of the three layers
            in voxels, odd.
        filters: ``(n1, n2)``, feature maps of the first two layers.
        residual: Add the network's output to its input (learn the missing detail).
        learning_rate: Adam's learning rate.
        order: Interpolation before the network: ``"bspline"`` (cubic) or ``"linear"``.
        roi_size: Sliding-window size in voxels, also the training patch size unless
            the trainer sets one (the paper trained on 33 × 33 sub-images).
        target_spacing: Output voxel size in mm (see
            :class:`~medi2i_super_resolution.grids.GridOptions`).
        scale: Output voxels per input voxel, instead of ``target_spacing``.
        coarsen: False (the default): an axis already finer than ``target_spacing``
            keeps its spacing, since the model's rule was fixed at training; the
            predict-time condition ``coarsen=true`` asks for the coarser grid.
        slice_factor: Output voxels per input voxel along the input's slice axis only,
            the factor the model is trained for: it refuses an output grid far from it.
        align: ``"edges"`` or ``"centres"``: which voxel positions the finer grid keeps.
        clip_margin: Clip the output to the input's range widened by this fraction;
            ``None`` keeps every value.
    """

    kernel_sizes: tuple[int, int, int] = (9, 1, 5)
    filters: tuple[int, int] = (64, 32)
    residual: bool = True
    learning_rate: float = Field(default=1e-4, gt=0.0)
    order: InterpolationOrder = "bspline"
    roi_size: tuple[int, int, int] = (32, 32, 32)

    @field_validator("kernel_sizes")
    @classmethod
    def _odd_kernels(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(k < 1 or k % 2 == 0 for k in value):
            raise ValueError(f"kernel sizes must be odd and positive, got {value}")
        return value

    @field_validator("filters", "roi_size")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if min(value) < 1:
            raise ValueError(f"must be positive, got {value}")
        return value


class SrcnnNetwork(torch.nn.Module):
    """Patch extraction, non-linear mapping and reconstruction, in 3D.

    Args:
        kernel_sizes: Kernel edge of each layer (odd).
        filters: Feature maps of the first two layers.
        residual: Return ``x + network(x)`` instead of ``network(x)``.
    """

    def __init__(
        self, *, kernel_sizes: tuple[int, int, int], filters: tuple[int, int], residual: bool
    ) -> None:
        super().__init__()
        widths = (1, filters[0], filters[1], 1)
        self.extraction, self.mapping, self.reconstruction = (
            torch.nn.Conv3d(
                widths[i],
                widths[i + 1],
                kernel_sizes[i],
                padding=kernel_sizes[i] // 2,
                padding_mode="replicate",
            )
            for i in range(3)
        )
        self.residual = residual
        with torch.no_grad():
            self.reconstruction.weight.normal_(0.0, RECONSTRUCTION_INIT_STD)
            self.reconstruction.bias.zero_()  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = F.relu(self.mapping(F.relu(self.extraction(x))))
        detail: torch.Tensor = self.reconstruction(features)
        return x + detail if self.residual else detail


class Srcnn(PatchNetworkMethod[SrcnnOptions, OutputGrid]):
    """SRCNN in 3D: interpolate onto the finer grid, then refine with a 3-layer CNN.

    Trained with the mean squared error on pairs of a degraded-then-interpolated
    volume (``source``) and the high-resolution volume (``target``) on the same grid.

    Example:
        >>> method = Srcnn({"scale": (1, 1, 4), "align": "centres"})
        >>> method.options.kernel_sizes, method.options.filters
        ((9, 1, 5), (64, 32))
    """

    id = "srcnn"
    version = "0.1.0"
    tasks = (Task.SUPER_RESOLUTION,)
    data = DataKind.PAIRED
    training = Training.GRADIENT
    input_spec = MR
    output_spec = MR
    records_training_spacing: ClassVar[bool] = False
    """Its training sources are already interpolated onto the fine grid, so their spacing
    says nothing of the thick slices it refines (:mod:`medi2i.training_spacing`)."""
    Options = SrcnnOptions
    Condition = OutputGrid
    paper = (
        "Dong C, Loy CC, He K, Tang X. Image super-resolution using deep convolutional "
        "networks. IEEE TPAMI 38(2):295-307, 2016 (ECCV 2014); in 3D for brain MR: Pham CH "
        "et al. Brain MRI super-resolution using deep 3D convolutional networks. ISBI 2017"
    )
    default_roi_size: ClassVar[tuple[int, int, int]] = (32, 32, 32)

    options: SrcnnOptions

    def build_network(self) -> torch.nn.Module:
        return SrcnnNetwork(
            kernel_sizes=self.options.kernel_sizes,
            filters=self.options.filters,
            residual=self.options.residual,
        )

    # -- prediction --------------------------------------------------------------------

    def output_grid(self, input_grid: Grid, condition: OutputGrid | None = None) -> Grid:
        """The finer grid of the options, or of the condition's rule; a model trained
        with a ``slice_factor`` refuses one far from that factor."""
        if self.options.slice_factor is not None:  # a model trained to refine slices
            slice_axis(input_grid, method_id=self.id)
        grid = output_grid_for(input_grid, with_condition(self.options, condition)).grid
        check_trained_range(self.id, self.options.slice_factor, input_grid, grid)
        return grid

    def preprocess(
        self, image: MetaTensor, *, domain: str | None = None, condition: object = None
    ) -> MetaTensor:
        """Divide by the whole volume's mean absolute intensity (kept in the meta, with
        the raw input's range for :meth:`postprocess`'s clipping)."""
        scale = intensity_scale(image)
        scaled = cast("MetaTensor", image.float() / scale)
        scaled.meta[SCALE_KEY] = scale
        scaled.meta[RANGE_KEY] = (float(image.min()), float(image.max()))
        return scaled

    def preprocess_target(self, target: MetaTensor) -> MetaTensor:
        """The training target divided by its own mean absolute intensity.

        The degradation (blur, slice sampling, interpolation) keeps the mean intensity,
        so source and target of a pair are divided by nearly the same number.
        """
        return cast("MetaTensor", target.float() / intensity_scale(target))

    def predict(self, image: MetaTensor, context: PredictContext[OutputGrid]) -> torch.Tensor:
        """Interpolate the whole volume onto the finer grid (of the options, or of the
        condition), then run the network on it."""
        from monai.data.meta_tensor import MetaTensor

        if image.shape[0] != 1:
            raise InputError(
                f"method {self.id!r} takes single-channel volumes, got {image.shape[0]}"
            )
        options = with_condition(self.options, context.condition)
        finer = interpolate_finer(image, options=options, order=self.options.order)
        refined = super().predict(finer, context)
        return MetaTensor(refined, affine=finer.affine)

    def postprocess(
        self,
        output: MetaTensor,
        image: MetaTensor,
        *,
        domain: str | None = None,
        condition: object = None,
    ) -> MetaTensor:
        """Multiply back by the intensity scale of the preprocessed input, and clip to
        the input's range widened by ``clip_margin``."""
        scale = image.meta.get(SCALE_KEY)
        if scale is None:
            raise InputError(
                f"method {self.id!r}: the volume given to postprocess was not preprocessed by "
                "this method (its intensity scale is missing); run it through medi2i.predict"
            )
        restored = output * float(scale)
        low, high = image.meta.get(RANGE_KEY, (float(restored.min()), float(restored.max())))
        return cast("MetaTensor", clipped(restored, low, high, self.options.clip_margin))

    # -- training ----------------------------------------------------------------------

    def configure_training(self, trainer: TrainerAPI) -> None:
        parameters = trainer.modules["network"].parameters()
        trainer.add_optimizer(
            "network", torch.optim.Adam(parameters, lr=self.options.learning_rate)
        )

    def training_step(
        self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
    ) -> dict[str, float]:
        """One Adam step on the mean squared error between refined source and target.

        Raises:
            InputError: Source and target patches differ in size (the source must be
                interpolated onto the target's grid beforehand).
        """
        source, target = batch["source"], batch["target"]
        if source.shape != target.shape:
            raise InputError(
                f"method {self.id!r} trains on source and target patches on one grid, got "
                f"{tuple(source.shape)} and {tuple(target.shape)}: interpolate the degraded "
                "volumes onto the high-resolution grid first (method 'interpolation')"
            )
        with trainer.autocast():
            refined = trainer.modules["network"](source)
        loss = F.mse_loss(refined.float(), target.float())
        trainer.backward(loss, "network")
        trainer.step("network")
        return {"mse": float(loss.detach())}


def intensity_scale(volume: torch.Tensor) -> float:
    """Mean absolute intensity of a whole volume (1 for an all-zero volume)."""
    scale = float(volume.detach().abs().double().mean())
    return scale if np.isfinite(scale) and scale > 0 else 1.0
