"""CycleGAN in 3D (Zhu, Park, Isola and Efros, ICCV 2017).

Two ResNet generators (a→b, b→a) and two PatchGAN discriminators, learned from unpaired
volumes with least-squares GAN losses, an L1 cycle loss (λ = 10), an optional identity
loss and an optional structure term; discriminators see an image pool of 50 earlier
generator outputs; Adam at 2e-4, constant for the first half of the run and decaying
linearly to zero over the second. See :mod:`medi2i_cyclegan.losses` for the formulas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import BaseModel, Field, model_validator

from medi2i import ImagePool, Medi2iError, TrainingStateValue
from medi2i_cyclegan.losses import (
    cycle_consistency,
    least_squares_discriminator,
    least_squares_gan,
)
from medi2i_cyclegan.resnet import (
    GeneratorNorm,
    Norm,
    OutputActivation,
    PatchGAN,
    ResNetGenerator,
    SpatialDims,
    smallest_patch,
)
from medi2i_cyclegan.structure import normalized_gradient_distance
from medi2i_cyclegan.two_way import TwoWayOptions, TwoWayTranslation

if TYPE_CHECKING:
    from collections.abc import Mapping

    from medi2i import TrainerAPI, UnpairedBatch

PAPER = (
    "Zhu J-Y, Park T, Isola P, Efros AA. Unpaired image-to-image translation using "
    "cycle-consistent adversarial networks. In: Proceedings of the IEEE International "
    "Conference on Computer Vision (ICCV), 2017, pp. 2223-2232. arXiv:1703.10593"
)


class CycleGANOptions(TwoWayOptions):
    """Options of :class:`CycleGAN`, with the paper's defaults where 3D allows.

    Attributes:
        generator_filters: Features of the generator's first layer (paper: 64; 3D: 16).
        residual_blocks: Residual blocks of the generator (paper: 9 at 256², 6 at 128²).
        downsamplings: Stride-2 stages of the generator (paper: 2); ``roi_size`` must be
            a multiple of ``2**downsamplings``.
        outer_kernel: Width of the generator's first and last convolution (paper: 7), odd;
            one width or one per axis, e.g. ``[7, 7, 3]`` on 2 × 2 × 5 mm voxels (about
            the same millimetres along every axis, and 2.3 times cheaper).
        discriminator_filters: Features of the PatchGAN's first layer (paper: 64; 3D: 16).
        discriminator_layers: PatchGAN stages after the first (paper: 3, the 70×70
            PatchGAN); ``roi_size`` must be at least ``3 · 2**layers``.
        norm: ``"instance"`` (the paper's) or ``"batch"``; see the README on tiling.
        generator_norm: The generators' normalization when not ``norm``: ``"none"``
            keeps each window's intensities (for harmonization); ``None``: ``norm``.
        output_activation: The generators' last activation: ``"tanh"`` (the paper's) or
            ``"linear"`` (unbounded; with ``clip_intensities`` off).
        cycle_weight: λ, the cycle loss's weight against each GAN loss (paper: 10).
        identity_weight: Weight of the identity loss as a fraction of λ (paper: 0.5 for
            painting↔photo, else 0; the reference code's default 0.5). Off by default:
            across modalities (MR↔CT) the identity map is not a good translation.
        structure_weight: Weight of the normalized-gradient-field distance between each
            input and its translation (:mod:`medi2i_cyclegan.structure`; not in the
            paper). 0 turns it off.
        pool_size: Generated patches kept per domain for the discriminators (paper: 50).
        lr_schedule: ``"linear"`` (the paper's: constant for the first half of
            ``schedule_steps``, then linearly to zero) or ``"constant"``.
        schedule_steps: Steps the schedule spans; ``None``: the run's ``training.steps``.
    """

    roi_size: tuple[int, int, int] = (64, 64, 64)
    generator_filters: int = Field(default=16, ge=1)
    residual_blocks: int = Field(default=6, ge=0)
    downsamplings: int = Field(default=2, ge=0, le=4)
    outer_kernel: int | tuple[int, int, int] = 7
    discriminator_filters: int = Field(default=16, ge=1)
    discriminator_layers: int = Field(default=3, ge=1)
    norm: Norm = "instance"
    generator_norm: GeneratorNorm | None = None
    output_activation: OutputActivation = "tanh"
    cycle_weight: float = Field(default=10.0, ge=0.0)
    identity_weight: float = Field(default=0.0, ge=0.0)
    structure_weight: float = Field(default=0.0, ge=0.0)
    pool_size: int = Field(default=50, ge=0)
    lr_schedule: Literal["linear", "constant"] = "linear"
    schedule_steps: int | None = Field(default=None, ge=1)

    def learning_rate_at(self, step: int, total_steps: int) -> float:
        """The learning rate of step ``step`` (0-based) of a run of ``total_steps``.

        Example:
            >>> options = CycleGANOptions(schedule_steps=100)
            >>> [options.learning_rate_at(k, 7) for k in (0, 50, 75, 100)]
            [0.0002, 0.0002, 0.0001, 0.0]
        """
        if self.lr_schedule == "constant":
            return self.learning_rate
        steps = self.schedule_steps or total_steps
        half = steps // 2
        remaining = (steps - step) / max(1, steps - half)
        return self.learning_rate * min(1.0, max(0.0, remaining))

    def convolved_axes(self) -> tuple[int, ...]:
        """Window sizes along the axes the networks convolve (all three in 3D)."""
        return self.roi_size

    def outer_kernels(self) -> tuple[int, int, int]:
        """``outer_kernel`` along each axis."""
        kernel = self.outer_kernel
        return (kernel, kernel, kernel) if isinstance(kernel, int) else kernel

    @model_validator(mode="after")
    def _window_fits_the_networks(self) -> CycleGANOptions:
        kernel = self.outer_kernels()
        if any(width < 1 or width % 2 == 0 for width in kernel):
            raise ValueError(f"outer_kernel must be odd and positive (centred), got {kernel}")
        axes = self.convolved_axes()
        multiple = 2**self.downsamplings
        if any(size % multiple for size in axes):
            raise ValueError(
                f"roi_size {self.roi_size} must be a multiple of 2**downsamplings = {multiple} "
                "in every axis"
            )
        needed = smallest_patch(self.discriminator_layers)
        if min(axes) < needed:
            raise ValueError(
                f"roi_size {self.roi_size} is too small for {self.discriminator_layers} "
                f"discriminator_layers (needs {needed} voxels per axis); lower them or enlarge "
                "the window"
            )
        if any(size <= width // 2 for size, width in zip(axes, kernel, strict=False)):
            raise ValueError(
                f"roi_size {self.roi_size} is too small for the reflection padding of "
                f"outer_kernel {self.outer_kernel}"
            )
        return self


class CycleGAN(TwoWayTranslation[CycleGANOptions]):
    """CycleGAN in 3D: two ResNet generators, two PatchGANs, LSGAN + λ·cycle loss.

    Example:
        >>> method = CycleGAN({"roi_size": (16, 16, 16), "generator_filters": 4,
        ...                    "residual_blocks": 1, "discriminator_filters": 4,
        ...                    "discriminator_layers": 2})
        >>> sorted(method.training_modules())
        ['discriminator_a', 'discriminator_b', 'generator_a2b', 'generator_b2a']
    """

    id = "cyclegan"
    version = "0.1.0"
    paper = PAPER
    Options: ClassVar[type[CycleGANOptions]] = CycleGANOptions

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self.pools = {key: ImagePool(self.options.pool_size) for key in ("a", "b")}
        self._optimizers: list[torch.optim.Optimizer] = []

    def build_generator(self) -> torch.nn.Module:
        return self.generator_network(in_channels=1, dims=3)

    def generator_network(self, *, in_channels: int, dims: SpatialDims) -> torch.nn.Module:
        """The paper's ResNet generator in ``dims`` dimensions (3, or 2 for 2.5D)."""
        options = self.options
        return ResNetGenerator(
            in_channels=in_channels,
            out_channels=1,
            filters=options.generator_filters,
            downsamplings=options.downsamplings,
            residual_blocks=options.residual_blocks,
            outer_kernel=options.outer_kernels()[:dims],
            norm=options.generator_norm or options.norm,
            dims=dims,
            output_activation=options.output_activation,
        )

    def build_discriminator(self) -> torch.nn.Module:
        return self.discriminator_network(in_channels=1, dims=3)

    def discriminator_network(self, *, in_channels: int, dims: SpatialDims) -> torch.nn.Module:
        """The paper's PatchGAN in ``dims`` dimensions (3, or 2 for 2.5D)."""
        options = self.options
        return PatchGAN(
            in_channels=in_channels,
            filters=options.discriminator_filters,
            layers=options.discriminator_layers,
            norm=options.norm,
            dims=dims,
        )

    # -- training ----------------------------------------------------------------------

    def configure_training(self, trainer: TrainerAPI) -> None:
        """One Adam for both generators, one for both discriminators (as the reference
        code), lr 2e-4 and betas (0.5, 0.999) by default."""
        self._optimizers = []
        for name, keys in (
            ("generators", ("generator_a2b", "generator_b2a")),
            ("discriminators", ("discriminator_a", "discriminator_b")),
        ):
            parameters = [p for key in keys for p in trainer.modules[key].parameters()]
            optimizer = torch.optim.Adam(
                parameters, lr=self.options.learning_rate, betas=self.options.betas
            )
            trainer.add_optimizer(name, optimizer)
            self._optimizers.append(optimizer)

    def training_step(self, batch: UnpairedBatch, trainer: TrainerAPI) -> dict[str, float]:
        """Update both generators, then both discriminators on pooled fakes."""
        options = self.options
        rate = options.learning_rate_at(trainer.step_index, trainer.total_steps)
        self.set_learning_rate(self._optimizers, rate)
        real_a, real_b = batch["a"], batch["b"]
        g_ab, g_ba = trainer.modules["generator_a2b"], trainer.modules["generator_b2a"]
        d_a, d_b = trainer.modules["discriminator_a"], trainer.modules["discriminator_b"]

        with trainer.autocast():
            fake_b, fake_a = g_ab(real_a), g_ba(real_b)
            back_a, back_b = g_ba(fake_b), g_ab(fake_a)
            gan = least_squares_gan(d_b(fake_b), real=True) + least_squares_gan(
                d_a(fake_a), real=True
            )
        trainer.watch_generated("fake_b", fake_b, real_b)
        trainer.watch_generated("fake_a", fake_a, real_a)
        cycle = cycle_consistency(back_a, real_a) + cycle_consistency(back_b, real_b)
        total = gan + options.cycle_weight * cycle
        losses = {"generator_gan": gan, "cycle": cycle}
        if options.identity_weight > 0.0:
            with trainer.autocast():
                same_b, same_a = g_ab(real_b), g_ba(real_a)
            identity = cycle_consistency(same_b, real_b) + cycle_consistency(same_a, real_a)
            total = total + options.identity_weight * options.cycle_weight * identity
            losses["identity"] = identity
        if options.structure_weight > 0.0:
            structure = normalized_gradient_distance(real_a, fake_b) + normalized_gradient_distance(
                real_b, fake_a
            )
            total = total + options.structure_weight * structure
            losses["structure"] = structure
        trainer.backward(total, "generators")
        trainer.step("generators")

        pooled_a, pooled_b = self.pools["a"].query(fake_a), self.pools["b"].query(fake_b)
        with trainer.autocast():
            loss_a = least_squares_discriminator(d_a(real_a), d_a(pooled_a))
            loss_b = least_squares_discriminator(d_b(real_b), d_b(pooled_b))
        trainer.backward(loss_a + loss_b, "discriminators")
        trainer.step("discriminators")
        losses.update(discriminator_a=loss_a, discriminator_b=loss_b)
        return {name: float(value.detach()) for name, value in losses.items()}

    def training_state(self) -> dict[str, TrainingStateValue]:
        """Both image pools (a resumed run must show its discriminators the same
        patches) and the recorded domain scales."""
        pools = {f"pool_{key}": pool.state() for key, pool in self.pools.items()}
        return {**super().training_state(), **pools}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        missing = sorted({f"pool_{key}" for key in self.pools} - set(state))
        if missing:
            raise Medi2iError(
                f"method {self.id!r}: the checkpoint has no {missing}; resume with the "
                "method and options that wrote it"
            )
        for key, pool in self.pools.items():
            pool.load_state(state[f"pool_{key}"])
        super().load_training_state(state)
