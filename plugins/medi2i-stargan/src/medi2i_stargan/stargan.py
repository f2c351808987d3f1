"""StarGAN in 3D (Choi, Choi, Kim, Ha, Kim and Choo, CVPR 2018).

One generator translates an image into any of the training data's domains, told which
by a one-hot code; one discriminator scores patches as real or generated (``D_src``) and
classifies their domain (``D_cls``). The losses, with the paper's weights as defaults:

- critic: ``-D_src(x) + D_src(G(x, c')) + λ_gp · GP`` (WGAN-GP, λ_gp = 10) plus
  ``λ_cls · CE(D_cls(x), c)`` on real patches of domain ``c`` (λ_cls = 1);
- generator, every ``critic_steps``-th step (n_critic = 5): ``-D_src(G(x, c'))`` plus
  ``λ_cls · CE(D_cls(G(x, c')), c')`` plus the reconstruction
  ``λ_rec · |x - G(G(x, c'), c)|₁`` (λ_rec = 10),

with ``c'`` a random domain other than ``c`` for each patch. Adam at 1e-4 with betas
(0.5, 0.999) for both, constant for the first half of the run and linearly to zero over
the second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, field_validator, model_validator

from medi2i import (
    DataKind,
    MRForeground,
    Options,
    OptionsError,
    PatchNetworkMethod,
    ScaledDomainIntensities,
    SpatialPlan,
    TargetDomain,
    TargetDomainOutputs,
    Task,
    Training,
    VolumeSpec,
    check_betas,
    check_percentiles,
    check_spacing,
)
from medi2i_stargan.networks import (
    GeneratorNorm,
    OutputActivation,
    StarDiscriminator,
    StarGenerator,
    gradient_penalty,
)

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i import MultiDomainBatch, PredictContext, TrainerAPI, TrainingStateValue

PAPER = (
    "Choi Y, Choi M, Kim M, Ha J-W, Kim S, Choo J. StarGAN: Unified generative "
    "adversarial networks for multi-domain image-to-image translation. In: Proceedings "
    "of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR), 2018, "
    "pp. 8789-8797. arXiv:1711.09020"
)
GENERATOR, CRITIC = "generator", "discriminator"
"""Names of the two training modules and their optimizers."""
GENERATOR_LOSSES = ("generator_adversarial", "generator_classification", "reconstruction")
"""Generator losses, logged at every step with the values of the latest generator update
(with ``identity`` when its weight is not 0)."""


class StarGANOptions(Options):
    """Options of :class:`StarGAN`, with the paper's defaults where 3D allows.

    Attributes:
        roi_size: Training patch size and sliding-window size in voxels (x, y, z); a
            multiple of ``2**discriminator_layers`` and of ``2**downsamplings``.
        generator_filters: Features of the generator's first layer (paper: 64; 3D: 16).
        residual_blocks: Residual blocks of the generator (paper: 6).
        downsamplings: Stride-2 stages of the generator (paper: 2).
        outer_kernel: Width of the generator's first and last convolution (paper: 7), odd.
        generator_norm: ``"instance"`` (the paper's) or ``"none"``: instance
            normalization discards each window's mean and contrast, which a
            harmonization must map; ``"none"`` keeps them.
        output_activation: The generator's last activation: ``"tanh"`` (the paper's) or
            ``"linear"`` (unbounded; with ``clip_intensities`` off).
        discriminator_filters: Features of the discriminator's first layer (paper: 64;
            3D: 16).
        discriminator_layers: Stride-2 layers of the discriminator (paper: 6 at 128²;
            3D: 4 at 32³, which leaves a 2³ map as the paper's 2² at 128²).
        learning_rate: Adam's learning rate of both networks (paper: 1e-4).
        betas: Adam's moment decay rates (paper: 0.5, 0.999).
        critic_steps: Discriminator updates per generator update (paper: n_critic = 5).
        gradient_penalty_weight: λ_gp (paper: 10).
        classification_weight: λ_cls (paper: 1).
        reconstruction_weight: λ_rec (paper: 10).
        identity_weight: Weight of ``|x - G(x, c)|₁``, the translation of a patch into
            its own domain (not in the paper; CycleGAN's identity loss). The
            reconstruction loss alone is met as well by a generator that inverts the
            contrast on the way out and back; this term rules that out. 0 turns it off.
        lr_schedule: ``"linear"`` (the paper's: constant for the first half of
            ``schedule_steps``, then linearly to zero) or ``"constant"``.
        schedule_steps: Steps the schedule spans; ``None``: the run's ``training.steps``.
        spacing: Voxel spacing in mm to resample every volume to (outputs come back on
            the input's grid), or ``None`` to keep each volume's own.
        percentiles: Foreground percentiles (0-100) of a non-CT volume mapped to -1 and
            +1; CT is mapped from [-1024, 3071] HU.
        foreground: Which voxels of an MR volume the percentiles are taken over:
            ``"body"``, the input's body (:func:`medi2i.body_mask`), so the air around
            the body does not move them; ``"above-mean"``, those brighter than the
            volume's mean, which move with the field of view (the rule of models saved
            before this option existed).
        body_contour: For a CT output from a non-CT input, set every voxel outside the
            input's body to air (-1000 HU; not in the paper).
        clip_intensities: Clip the scaled MR intensities to [-1, 1]. Off, tissue brighter
            than the training volumes' ``percentiles`` keeps its contrast.
        input_scale: How a predicted MR volume is scaled: ``"volume"`` by its own
            foreground percentiles, ``"domain"`` by its source domain's training scale
            (for scanners whose units are stable).
        source_code: Tell the generator the input's domain as well as the target's
            (not in the paper). Each domain scaled on its own, the same network value
            means another tissue on each scanner, and the generator otherwise has to
            guess the scanner from texture; with this on, a prediction must name its
            ``source_domain``.
    """

    roi_size: tuple[int, int, int] = (32, 32, 32)
    generator_filters: int = Field(default=16, ge=1)
    residual_blocks: int = Field(default=6, ge=0)
    downsamplings: int = Field(default=2, ge=0, le=4)
    outer_kernel: int = Field(default=7, ge=1)
    generator_norm: GeneratorNorm = "instance"
    output_activation: OutputActivation = "tanh"
    discriminator_filters: int = Field(default=16, ge=1)
    discriminator_layers: int = Field(default=4, ge=1, le=8)
    learning_rate: float = Field(default=1e-4, gt=0.0)
    betas: tuple[float, float] = (0.5, 0.999)
    critic_steps: int = Field(default=5, ge=1)
    gradient_penalty_weight: float = Field(default=10.0, ge=0.0)
    classification_weight: float = Field(default=1.0, ge=0.0)
    reconstruction_weight: float = Field(default=10.0, ge=0.0)
    identity_weight: float = Field(default=0.0, ge=0.0)
    lr_schedule: Literal["linear", "constant"] = "linear"
    schedule_steps: int | None = Field(default=None, ge=1)
    spacing: tuple[float, float, float] | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    foreground: MRForeground = "body"
    body_contour: bool = True
    clip_intensities: bool = True
    input_scale: Literal["volume", "domain"] = "volume"
    source_code: bool = False

    @field_validator("outer_kernel")
    @classmethod
    def _odd_kernel(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"outer_kernel must be odd (centred), got {value}")
        return value

    @field_validator("percentiles")
    @classmethod
    def _percentiles_ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        return check_percentiles(value)

    @field_validator("spacing")
    @classmethod
    def _positive_spacing(
        cls, value: tuple[float, float, float] | None
    ) -> tuple[float, float, float] | None:
        return check_spacing(value)

    @field_validator("betas")
    @classmethod
    def _decay_rates(cls, value: tuple[float, float]) -> tuple[float, float]:
        return check_betas(value)

    @model_validator(mode="after")
    def _window_fits_the_networks(self) -> StarGANOptions:
        multiple = 2 ** max(self.discriminator_layers, self.downsamplings)
        if min(self.roi_size) < 1 or any(size % multiple for size in self.roi_size):
            raise ValueError(
                f"roi_size {self.roi_size} must be a positive multiple of {multiple} in every "
                f"axis (2**discriminator_layers = {2**self.discriminator_layers}, "
                f"2**downsamplings = {2**self.downsamplings})"
            )
        return self

    def learning_rate_at(self, step: int, total_steps: int) -> float:
        """The learning rate of step ``step`` (0-based) of a run of ``total_steps``.

        Example:
            >>> options = StarGANOptions(schedule_steps=100)
            >>> [options.learning_rate_at(k, 7) for k in (0, 50, 75, 100)]
            [0.0001, 0.0001, 5e-05, 0.0]
        """
        if self.lr_schedule == "constant":
            return self.learning_rate
        steps = self.schedule_steps or total_steps
        half = steps // 2
        remaining = (steps - step) / max(1, steps - half)
        return self.learning_rate * min(1.0, max(0.0, remaining))


class StarGAN(
    TargetDomainOutputs,
    ScaledDomainIntensities,
    PatchNetworkMethod[StarGANOptions, TargetDomain],
):
    """StarGAN in 3D: one conditioned generator, one discriminator with a domain
    classifier, WGAN-GP + classification + reconstruction losses.

    Example:
        >>> from medi2i import DomainSpec
        >>> method = StarGAN({"roi_size": (16, 16, 16), "generator_filters": 4,
        ...                   "residual_blocks": 1, "discriminator_filters": 4,
        ...                   "discriminator_layers": 2})
        >>> method.use_domains([DomainSpec(name=n, modality="MR") for n in "ABC"])
        >>> [output.name for output in method.outputs(TargetDomain())]
        ['A', 'B', 'C']
    """

    id = "stargan"
    version = "0.1.0"
    paper = PAPER
    tasks = (Task.HARMONIZATION, Task.TRANSLATION)
    data = DataKind.MULTI_DOMAIN
    training = Training.GRADIENT
    input_spec = VolumeSpec()
    output_spec = VolumeSpec()
    default_roi_size: ClassVar[tuple[int, int, int]] = (32, 32, 32)
    Options: ClassVar[type[StarGANOptions]] = StarGANOptions

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self._discriminator: StarDiscriminator | None = None
        self._optimizers: list[torch.optim.Optimizer] = []
        self._generator_losses: dict[str, float] = dict.fromkeys(self._loss_names(), 0.0)

    def check_condition(self, condition: TargetDomain) -> None:
        """The target's and source's domains exist; with ``input_scale: domain`` the
        source must be named, since it decides the input's scaling."""
        super().check_condition(condition)
        if condition.source_domain is not None:
            return
        if self.options.input_scale == "domain":
            why = "scales an input by its domain's training scale (input_scale: domain)"
        elif self.options.source_code:
            why = "tells its generator the input's domain (source_code: true)"
        else:
            return
        raise OptionsError(
            f"method {self.id!r} {why}: name the input's domain, e.g. -c source_domain="
            f"{self.domain_names[-1]}"
        )

    def source_domain_used(self, condition: TargetDomain) -> bool:
        """Whether the condition's ``source_domain`` changes the prediction: it does when
        the generator is told it (``source_code``), when it picks the input's scale
        (``input_scale: domain``), or when it is a CT domain (an input in HU, scaled by
        the fixed HU scale). Otherwise an MR input is scaled by its own percentiles,
        whichever MR domain is named."""
        options = self.options
        if options.source_code or options.input_scale == "domain":
            return True
        return condition.source_domain is not None and self._is_hounsfield(condition.source_domain)

    def predict(
        self, image: MetaTensor, context: PredictContext[TargetDomain]
    ) -> torch.Tensor | Mapping[str, torch.Tensor]:
        """The prediction (see :class:`medi2i.TargetDomainOutputs`). A named
        ``source_domain`` is reported in the provenance's ``run`` entry as
        ``source_domain_used``: ``false`` when it changes nothing
        (:meth:`source_domain_used`). That is not a warning: the benchmarks and the
        workflows' case manifests name both scanners of every case, whatever the model."""
        if context.condition.source_domain is not None:
            context.facts["source_domain_used"] = self.source_domain_used(context.condition)
        result: torch.Tensor | Mapping[str, torch.Tensor] = super().predict(image, context)
        return result

    def _loss_names(self) -> tuple[str, ...]:
        identity = ("identity",) if self.options.identity_weight > 0.0 else ()
        return (*GENERATOR_LOSSES, *identity)

    # -- networks, sized from the domains ----------------------------------------------

    def build_network(self) -> torch.nn.Module:
        options = self.options
        return StarGenerator(
            domains=self.require_domains(),
            filters=options.generator_filters,
            downsamplings=options.downsamplings,
            residual_blocks=options.residual_blocks,
            norm=options.generator_norm,
            outer_kernel=options.outer_kernel,
            output_activation=options.output_activation,
            source_code=options.source_code,
        )

    @property
    def discriminator(self) -> StarDiscriminator:
        """``D_src`` and ``D_cls`` (training only; prediction never builds it)."""
        if self._discriminator is None:
            options = self.options
            self._discriminator = StarDiscriminator(
                domains=self.require_domains(),
                filters=options.discriminator_filters,
                layers=options.discriminator_layers,
                window=options.roi_size,
            )
        return self._discriminator

    def state_tensors(self) -> dict[str, torch.Tensor]:
        # the networks are sized by the domains: a method that has none has no weights yet
        return super().state_tensors() if self.domains else {}

    def spatial_plan(self) -> SpatialPlan:
        """RAS orientation (the networks see every domain's anatomy the same way round)
        and ``options.spacing`` when set."""
        return SpatialPlan(orientation="RAS", spacing=self.options.spacing)

    def forward(self, windows: torch.Tensor, condition: TargetDomain) -> torch.Tensor:
        target = self.target_labels(windows, condition)
        source = None
        if self.options.source_code:
            source = torch.full_like(target, self.domain_names.index(str(condition.source_domain)))
        output: torch.Tensor = self.network(windows, target, source)
        return output

    # -- training ----------------------------------------------------------------------

    def training_modules(self) -> dict[str, torch.nn.Module]:
        return {GENERATOR: self.network, CRITIC: self.discriminator}

    def configure_training(self, trainer: TrainerAPI) -> None:
        """One Adam per network, lr 1e-4 and betas (0.5, 0.999) by default."""
        self._optimizers = []
        for name in (GENERATOR, CRITIC):
            optimizer = torch.optim.Adam(
                trainer.modules[name].parameters(),
                lr=self.options.learning_rate,
                betas=self.options.betas,
            )
            trainer.add_optimizer(name, optimizer)
            self._optimizers.append(optimizer)

    def training_step(self, batch: MultiDomainBatch, trainer: TrainerAPI) -> dict[str, float]:
        """Update the discriminator; every ``critic_steps``-th step, the generator too."""
        options = self.options
        rate = options.learning_rate_at(trainer.step_index, trainer.total_steps)
        for optimizer in self._optimizers:
            for group in optimizer.param_groups:
                group["lr"] = rate
        real, labels = batch["image"], batch["domain"]
        generator, critic = trainer.modules[GENERATOR], trainer.modules[CRITIC]
        # a random other domain per patch (torch's generator is reseeded every step)
        shift = torch.randint(1, len(self.domains), labels.shape, device=labels.device)
        target = (labels + shift) % len(self.domains)

        with torch.no_grad(), trainer.autocast():
            fake = generator(real, target, labels)
        with trainer.autocast():
            real_scores, real_logits = critic(real)
            fake_scores, _ = critic(fake)
        wasserstein = fake_scores.float().mean() - real_scores.float().mean()
        classification = F.cross_entropy(real_logits.float(), labels)
        penalty = gradient_penalty(critic, real.float(), fake.float())
        loss = (
            wasserstein
            + options.gradient_penalty_weight * penalty
            + options.classification_weight * classification
        )
        trainer.backward(loss, CRITIC)
        trainer.step(CRITIC)
        losses = {
            "critic_wasserstein": float(wasserstein.detach()),
            "critic_classification": float(classification.detach()),
            "gradient_penalty": float(penalty.detach()),
        }
        if (trainer.step_index + 1) % options.critic_steps == 0:
            self._generator_losses = self._generator_step(real, labels, target, trainer)
        return {**losses, **self._generator_losses}

    def _generator_step(
        self,
        real: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor,
        trainer: TrainerAPI,
    ) -> dict[str, float]:
        options = self.options
        generator, critic = trainer.modules[GENERATOR], trainer.modules[CRITIC]
        with trainer.autocast():
            fake = generator(real, target, labels)
            scores, logits = critic(fake)
            back = generator(fake, labels, target)
        trainer.watch_generated("fake", fake, real)
        adversarial = -scores.float().mean()
        classification = F.cross_entropy(logits.float(), target)
        reconstruction = F.l1_loss(back.float(), real.float())
        loss = (
            adversarial
            + options.classification_weight * classification
            + options.reconstruction_weight * reconstruction
        )
        identity = torch.zeros(())
        if options.identity_weight > 0.0:
            with trainer.autocast():
                same = generator(real, labels, labels)
            identity = F.l1_loss(same.float(), real.float())
            loss = loss + options.identity_weight * identity
        trainer.backward(loss, GENERATOR)
        trainer.step(GENERATOR)
        values = [adversarial, classification, reconstruction]
        if options.identity_weight > 0.0:
            values.append(identity)
        names = self._loss_names()
        return {name: float(value.detach()) for name, value in zip(names, values, strict=True)}

    def training_state(self) -> dict[str, TrainingStateValue]:
        """The recorded domain scales and the latest generator losses (logged until the
        next generator update, so a resumed run logs the same)."""
        return {**super().training_state(), "generator_losses": dict(self._generator_losses)}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        super().load_training_state(state)
        losses = state.get("generator_losses", {})
        names = self._loss_names()
        self._generator_losses = {name: float(losses.get(name, 0.0)) for name in names}
