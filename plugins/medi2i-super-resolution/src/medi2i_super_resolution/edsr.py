"""EDSR in 3D: residual blocks without batch normalization, upsampling inside the network.

Lim et al. (2017), "Enhanced deep residual networks for single image super-resolution"
(CVPR workshops): a first convolution, ``B`` residual blocks (convolution, ReLU,
convolution, the result multiplied by a residual scale and added to the block's input;
no batch normalization, which the authors found to remove range flexibility and cost
memory), a convolution closing the body with a long skip from the first, then an
upsampler (a convolution to ``f`` times the features and a sub-pixel shuffle, Shi et al.
2016) and a last convolution; trained with the L1 loss.

In 3D for thick-slice MR only the slice axis is refined: the shuffle moves ``f`` feature
groups into ``f`` sub-slices along it, so the network sees thick slices and writes thin
ones. The input's slice axis is found from its geometry
(:func:`~medi2i_super_resolution.grids.slice_axis`) and turned to the last array axis for
the network, then back; in-plane axes keep their voxels.

Where the thin slices sit: sub-slice ``s`` of thick slice ``i`` lies at ``i + s / f``
(thick-slice units), so every ``f``-th output slice lies on an input slice centre and
the output grid is the ``"centres"`` grid of
:mod:`~medi2i_super_resolution.grids`: ``(n - 1) f + 1`` slices from ``n``, as a thin-slice
volume with every ``f``-th slice kept comes back. The last input slice's further
``f - 1`` sub-slices fall outside that grid and are dropped; training targets on it are
padded by the last slice to ``n f`` slices (:meth:`Edsr.preprocess_target`).

One choice is not in the paper, an option: ``interpolation_skip`` adds the linear
interpolation of the input between slices to the network's output, so the network
learns the missing detail only (residual learning as in Kim et al. 2016, VDSR), which a
small network on a CPU budget learns much faster than the whole image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, cast

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, field_validator

from medi2i import (
    DataKind,
    Grid,
    InputError,
    Options,
    PatchNetworkMethod,
    Task,
    Training,
    VolumeSpec,
)
from medi2i_super_resolution.grids import (
    OutputGrid,
    check_trained_range,
    clipped,
    condition_rule,
    finer_grid,
    slice_axis,
)
from medi2i_super_resolution.srcnn import RANGE_KEY, SCALE_KEY, intensity_scale

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i import PredictContext, TrainerAPI

MR = VolumeSpec(modality="MR", units="arbitrary", channels=1)
TAIL_INIT_STD = 1e-3
"""Standard deviation of the last convolution's initial weights with the interpolation
skip, so that an untrained model is close to the interpolation."""


class SliceUpsamplingOptions(Options):
    """Options every slice-upsampling network method has (:class:`Edsr`, and SRGAN's
    generator in :mod:`~medi2i_super_resolution.srgan`).

    Attributes:
        factor: Thin slices per thick slice (2 to 8): the through-plane factor the
            network is built and trained for.
        features: Feature maps of every convolution.
        blocks: Residual blocks.
        interpolation_skip: Add the linear interpolation between slices to the output
            (not in the papers; the network then learns the missing detail only, and its
            last convolution starts near zero, so an untrained model interpolates).
        learning_rate: Adam's learning rate, constant (the papers' initial 1e-4; both
            papers then lower it in steps, which this does not).
        roi_size: Input window (and training patch) size in voxels, slice axis last.
        clip_margin: Clip the output to the input's range widened by this fraction of
            it; ``None`` keeps every value.
    """

    factor: int = Field(default=2, ge=2, le=8)
    features: int = Field(default=32, ge=1)
    blocks: int = Field(default=8, ge=0)
    interpolation_skip: bool = True
    learning_rate: float = Field(default=1e-4, gt=0.0)
    roi_size: tuple[int, int, int] = (32, 32, 16)
    clip_margin: float | None = Field(default=0.05, ge=0.0)

    @field_validator("roi_size")
    @classmethod
    def _positive(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(value) < 1:
            raise ValueError(f"must be positive, got {value}")
        return value


class EdsrOptions(SliceUpsamplingOptions):
    """Options of :class:`Edsr` (the paper's baseline EDSR has 64 features and 16 blocks;
    the defaults are smaller, for a CPU): those of :class:`SliceUpsamplingOptions` and

    Attributes:
        residual_scale: Factor on each block's residual before it is added (the paper
            uses 0.1 for its large model, 1 for the baseline).
    """

    residual_scale: float = Field(default=1.0, gt=0.0)


class ResidualBlock(torch.nn.Module):
    """Convolution, ReLU, convolution; the result scaled and added to the input."""

    def __init__(self, features: int, scale: float) -> None:
        super().__init__()
        self.first = torch.nn.Conv3d(features, features, 3, padding=1, padding_mode="replicate")
        self.second = torch.nn.Conv3d(features, features, 3, padding=1, padding_mode="replicate")
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual: torch.Tensor = self.second(F.relu(self.first(x)))
        return x + self.scale * residual


def shuffle_slices(features: torch.Tensor, factor: int) -> torch.Tensor:
    """Sub-pixel shuffle along the last axis: ``(B, C f, X, Y, Z)`` to
    ``(B, C, X, Y, Z f)``, feature group ``s`` becoming sub-slice ``s`` of every slice.

    Example:
        >>> x = torch.arange(8.0).reshape(1, 2, 1, 1, 4)  # 2 groups of 1 feature, 4 slices
        >>> shuffle_slices(x, 2)[0, 0, 0, 0].tolist()
        [0.0, 4.0, 1.0, 5.0, 2.0, 6.0, 3.0, 7.0]
    """
    batch, channels, x, y, z = features.shape
    grouped = features.reshape(batch, factor, channels // factor, x, y, z)
    return grouped.permute(0, 2, 3, 4, 5, 1).reshape(batch, channels // factor, x, y, z * factor)


def interpolate_slices(volume: torch.Tensor, factor: int) -> torch.Tensor:
    """Linear interpolation between slices along the last axis, sub-slice ``s`` of slice
    ``i`` at ``i + s / f`` (past the last slice its value is kept)."""
    following = torch.cat([volume[..., 1:], volume[..., -1:]], dim=-1)
    weights = torch.arange(factor, dtype=volume.dtype, device=volume.device) / factor
    mixed = volume[..., None] * (1 - weights) + following[..., None] * weights
    return mixed.flatten(-2)


class SliceUpsamplingNetwork(torch.nn.Module):
    """A network that refines the last (slice) axis inside itself: ``head`` to
    features, ``body`` added to them (the long skip), a convolution to ``factor`` times
    the features, the sub-pixel shuffle along the slice axis, ``after_shuffle`` and a
    last convolution to one channel; with ``skip`` the linear interpolation between
    slices is added to the output and the last convolution starts near zero, so that an
    untrained network interpolates. EDSR and SRGAN's generator differ in their head,
    body and ``after_shuffle`` only."""

    def __init__(
        self,
        *,
        factor: int,
        features: int,
        head: torch.nn.Module,
        body: torch.nn.Module,
        after_shuffle: torch.nn.Module,
        skip: bool,
    ) -> None:
        super().__init__()
        self.factor = factor
        self.skip = skip
        self.head = head
        self.body = body
        self.upsample = torch.nn.Conv3d(
            features, features * factor, 3, padding=1, padding_mode="replicate"
        )
        self.activation = after_shuffle
        self.tail = torch.nn.Conv3d(features, 1, 3, padding=1, padding_mode="replicate")
        if skip:  # start as the interpolation itself (as SRCNN's residual variant does)
            with torch.no_grad():
                self.tail.weight.normal_(0.0, TAIL_INIT_STD)
                self.tail.bias.zero_()  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head(x)
        features = head + self.body(head)
        thin = self.activation(shuffle_slices(self.upsample(features), self.factor))
        output: torch.Tensor = self.tail(thin)
        return output + interpolate_slices(x, self.factor) if self.skip else output


class EdsrNetwork(SliceUpsamplingNetwork):
    """EDSR in 3D with a slice-axis upsampler (see the module docstring).

    Example:
        >>> net = EdsrNetwork(factor=4, features=4, blocks=1, residual_scale=1.0, skip=True)
        >>> net(torch.zeros(1, 1, 6, 6, 3)).shape
        torch.Size([1, 1, 6, 6, 12])
    """

    def __init__(
        self, *, factor: int, features: int, blocks: int, residual_scale: float, skip: bool
    ) -> None:
        super().__init__(
            factor=factor,
            features=features,
            head=torch.nn.Conv3d(1, features, 3, padding=1, padding_mode="replicate"),
            body=torch.nn.Sequential(
                *(ResidualBlock(features, residual_scale) for _ in range(blocks)),
                torch.nn.Conv3d(features, features, 3, padding=1, padding_mode="replicate"),
            ),
            after_shuffle=torch.nn.Identity(),
            skip=skip,
        )


class Edsr(PatchNetworkMethod[EdsrOptions, OutputGrid]):
    """EDSR in 3D: thick slices in, ``factor`` times as many thin slices out.

    Example:
        >>> method = Edsr({"factor": 4, "features": 4, "blocks": 1})
        >>> method.output_scale
        (1.0, 1.0, 4.0)
    """

    id = "edsr"
    version = "0.1.0"
    tasks = (Task.SUPER_RESOLUTION,)
    data = DataKind.PAIRED
    training = Training.GRADIENT
    input_spec = MR
    output_spec = MR
    Options = EdsrOptions
    Condition = OutputGrid
    paper = (
        "Lim B, Son S, Kim H, Nah S, Lee KM. Enhanced deep residual networks for single "
        "image super-resolution. CVPR Workshops 2017; sub-pixel upsampling: Shi W et al. "
        "CVPR 2016"
    )
    default_roi_size: ClassVar[tuple[int, int, int]] = (32, 32, 16)
    output_origin = (0.0, 0.0, 0.0)  # sub-slice s of slice i at i + s / f (module docstring)

    options: EdsrOptions

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self.output_scale = (1.0, 1.0, float(self.options.factor))

    def build_network(self) -> torch.nn.Module:
        options = self.options
        return EdsrNetwork(
            factor=options.factor,
            features=options.features,
            blocks=options.blocks,
            residual_scale=options.residual_scale,
            skip=options.interpolation_skip,
        )

    # -- grids -------------------------------------------------------------------------

    def output_grid(self, input_grid: Grid, condition: OutputGrid | None = None) -> Grid:
        """The ``"centres"`` grid with the slice axis refined ``factor`` times, or the
        condition's grid when it is within the trained range (the network's output is
        then resampled onto it)."""
        slice_axis(input_grid, method_id=self.id)  # whatever the rule: it refines slices
        rule = condition_rule(condition) or {"slice_factor": float(self.options.factor)}
        grid = finer_grid(input_grid, align="centres", **rule).grid
        check_trained_range(self.id, float(self.options.factor), input_grid, grid)
        return grid

    def unflippable_axes(self) -> tuple[int, ...]:
        """The slice axis of training pairs (array axis 2): a flipped pair would put the
        target's thin slices ``factor - 1`` sub-slices off where the network writes them
        (sub-slice ``s`` of slice ``i`` at ``i + s / f``, not around ``i``)."""
        return (2,)

    # -- intensities -------------------------------------------------------------------

    def preprocess(
        self, image: MetaTensor, *, domain: str | None = None, condition: object = None
    ) -> MetaTensor:
        """Divide by the whole volume's mean absolute intensity (kept in the meta, with
        the input's range for the clipping in :meth:`postprocess`)."""
        scale = intensity_scale(image)
        scaled = cast("MetaTensor", image.float() / scale)
        scaled.meta[SCALE_KEY] = scale
        scaled.meta[RANGE_KEY] = (float(image.min()), float(image.max()))
        return scaled

    def preprocess_target(self, target: MetaTensor) -> MetaTensor:
        """The training target divided by its mean absolute intensity; a target on the
        ``"centres"`` grid (``(n - 1) f + 1`` slices along array axis 2, where training
        pairs keep their slices) is padded with its last slice to ``n f`` slices, the
        network's output size."""
        from monai.data.meta_tensor import MetaTensor

        factor = self.options.factor
        scaled = cast("MetaTensor", target.float() / intensity_scale(target))
        if scaled.shape[-1] % factor == 1:
            plain = scaled.as_tensor()
            tail = plain[..., -1:].expand(*plain.shape[:-1], factor - 1)
            return MetaTensor(torch.cat([plain, tail], dim=-1))
        return scaled

    def postprocess(
        self,
        output: MetaTensor,
        image: MetaTensor,
        *,
        domain: str | None = None,
        condition: object = None,
    ) -> MetaTensor:
        """Multiply back by the input's intensity scale and clip to its range widened by
        ``clip_margin``."""
        scale = image.meta.get(SCALE_KEY)
        if scale is None:
            raise InputError(
                f"method {self.id!r}: the volume given to postprocess was not preprocessed by "
                "this method (its intensity scale is missing); run it through medi2i.predict"
            )
        restored = output * float(scale)
        low, high = image.meta.get(RANGE_KEY, (float(restored.min()), float(restored.max())))
        return cast("MetaTensor", clipped(restored, low, high, self.options.clip_margin))

    # -- prediction --------------------------------------------------------------------

    def predict(self, image: MetaTensor, context: PredictContext[OutputGrid]) -> torch.Tensor:
        """Turn the slice axis last, run the network by sliding window, keep the
        ``"centres"`` grid's slices and turn the axes back."""
        from monai.data.meta_tensor import MetaTensor

        if image.shape[0] != 1:
            raise InputError(
                f"method {self.id!r} takes single-channel volumes, got {image.shape[0]}"
            )
        axis = slice_axis(Grid.of(image), method_id=self.id)
        order = [a for a in range(3) if a != axis] + [axis]
        turned = image.as_tensor().permute(0, *(1 + a for a in order)).contiguous()
        output = self.run_network(MetaTensor(turned), context, axes=(order[0], order[1], order[2]))
        factor = self.options.factor
        kept = output[..., : (turned.shape[-1] - 1) * factor + 1]
        back = kept.permute(0, *(1 + order.index(a) for a in range(3))).contiguous()
        fine = finer_grid(Grid.of(image), slice_factor=float(factor), align="centres").grid
        if tuple(back.shape[1:]) != fine.shape:
            raise InputError(
                f"method {self.id!r}: the output's shape {tuple(back.shape[1:])} is not the "
                f"finer grid's {fine.shape}; the input may be too thin along the slice axis"
            )
        return MetaTensor(back, affine=torch.from_numpy(fine.affine))

    # -- training ----------------------------------------------------------------------

    def configure_training(self, trainer: TrainerAPI) -> None:
        """Adam with the paper's betas (0.9, 0.999) and ``learning_rate``."""
        parameters = trainer.modules["network"].parameters()
        optimizer = torch.optim.Adam(parameters, lr=self.options.learning_rate, betas=(0.9, 0.999))
        trainer.add_optimizer("network", optimizer)

    def training_step(
        self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
    ) -> dict[str, float]:
        """One Adam step on the L1 loss between the network's thin slices and the target.

        Raises:
            InputError: The target patch is not the source patch with ``factor`` times
                as many slices (array axis 2).
        """
        source, target = checked_pair(self.id, batch, self.options.factor)
        with trainer.autocast():
            output = trainer.modules["network"](source)
        loss = F.l1_loss(output.float(), target.float())
        trainer.backward(loss, "network")
        trainer.step("network")
        return {"l1": float(loss.detach())}


def checked_pair(
    method_id: str, batch: Mapping[str, torch.Tensor], factor: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch's source and target, the target checked to be the source with
    ``factor`` times as many slices along array axis 2.

    Raises:
        InputError: It is not.
    """
    source, target = batch["source"], batch["target"]
    expected = (*source.shape[:-1], source.shape[-1] * factor)
    if tuple(target.shape) != expected:
        raise InputError(
            f"method {method_id!r} trains on thick-slice sources and targets with "
            f"{factor} times as many slices along array axis 2, got "
            f"{tuple(source.shape)} and {tuple(target.shape)}"
        )
    return source, target
