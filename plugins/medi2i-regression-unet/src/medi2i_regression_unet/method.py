"""The regression U-Net: MR in, synthetic CT in HU out, trained with an L1 loss.

The method follows nnU-Net's recipe for 3D full-resolution U-Nets, with the
segmentation loss replaced by a voxel-wise L1 loss on CT values:

* :meth:`RegressionUNet.preprocess` normalizes each MR volume as a whole (z-score over
  its foreground, as nnU-Net does for MR);
* :meth:`RegressionUNet.preprocess_target` maps training CT from HU to [-1, 1];
* the network, a residual 3D U-Net, runs through the core's sliding window with
  Gaussian blending (the core's default);
* :meth:`RegressionUNet.postprocess` maps its output back to HU, clipped to
  [-1024, 3071], and sets air outside the input's body (``body_contour``).

A network with running normalization statistics (``norm: batch``, or
``norm_statistics: training``) can be adapted to another scanner by AdaBN
(:mod:`medi2i.adabn`; Li et al. 2016) in two ways: ``medi2i adapt`` recomputes the
statistics on a set of the target scanner's MR volumes and writes a new model folder
(:meth:`RegressionUNet.adapt`), or ``-c statistics=input`` recomputes them on each input
volume before it is predicted, and the core restores the trained statistics afterwards,
so the volumes of a batch do not affect one another.

With ``domain_adversarial_weight > 0`` the network is trained by domain-adversarial
training (:mod:`medi2i_regression_unet.adversarial`; Ganin & Lempitsky 2015) on its
paired source-scanner data and unlabelled MR of the target scanner (the workflow's
``data.unlabelled_data``): a domain classifier on the encoder's feature statistics,
behind a gradient reversal layer, pushes the encoder towards features that do not show
the scanner.

Augmentation (flips, rotations, intensity) is the trainer's, set in the workflow's
``training.augmentation``; the patch size is ``roi_size`` unless the workflow sets one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
import torch.nn.functional as F
from monai.networks.nets.dynunet import DynUNet
from pydantic import BaseModel, ConfigDict, Field, field_validator

from medi2i import (
    HU_MAX,
    HU_MIN,
    DataKind,
    Medi2iError,
    ModelFormatError,
    MRForeground,
    MRNormalization,
    MRToCTIntensities,
    Options,
    OptionsError,
    PatchNetworkMethod,
    SpatialPlan,
    Task,
    Training,
    VolumeSpec,
    check_percentiles,
    check_spacing,
)
from medi2i_regression_unet.adversarial import (
    DomainClassifier,
    captured_outputs,
    encoder_stages,
    reversal_coefficient,
)
from medi2i_regression_unet.network import (
    NetworkNorm,
    ResidualUNet,
    Upsampling,
    expand_aliases,
    freeze_statistics,
    unique_state,
)
from medi2i_regression_unet.optimization import (
    DEFAULT_LEARNING_RATES,
    OptimizerName,
    Schedule,
    make_optimizer,
    scheduled_learning_rate,
    set_learning_rate,
)

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i import AdaptContext, PredictContext, TrainerAPI

NETWORK = "network"
"""Name of the network's training module and of its optimizer."""
DOMAIN_CLASSIFIER = "domain_classifier"
"""Name of the domain classifier's training module (domain-adversarial training)."""


class RegressionUNetOptions(Options):
    """Options of :class:`RegressionUNet`; defaults follow nnU-Net's 3D full-resolution
    configuration.

    Attributes:
        roi_size: Training patch size and sliding-window size in voxels (x, y, z).
            nnU-Net picks the largest patch that fits in GPU memory at batch size 2;
            every axis should be a multiple of ``2**(len(filters) - 1)`` (others work,
            padded).
        filters: Features of each U-Net stage, full resolution first; every stage after
            the first halves the resolution (at least 3 stages).
        residual: Residual encoder blocks (nnU-Net ResEnc) instead of plain ones.
        norm: ``"instance"`` normalization (nnU-Net's) or ``"batch"``. Instance
            normalization takes its statistics from each sliding window, so the output
            changes where window borders fall (tiling; see the quality benchmarks'
            window-dependence measurement); batch normalization uses the statistics
            gathered in training and normalizes every window alike.
        upsampling: ``"transposed"`` convolutions (nnU-Net); ``"icnr"``, the same
            transposed convolutions started as nearest-neighbour upsampling (Aitken et al.
            2017), so without a checkerboard at the start of training; or ``"resize"``:
            trilinear resizing then a 3-wide convolution, which cannot make the
            checkerboard pattern a transposed convolution of stride 2 can.
        norm_statistics: Which statistics instance normalization uses at prediction:
            ``"window"`` (nnU-Net) each sliding window's own, so the output depends on
            where the window borders fall; ``"training"`` running averages of those seen
            in training, the same for every window, so there are no window borders to
            see. With ``"training"`` the last ``frozen_statistics_steps`` training steps
            normalize with the averages too (frozen), so the network adapts to them
            before it is used that way.
        frozen_statistics_steps: Training steps at the end of the run (>= 0) with the
            normalization statistics frozen; only used with ``norm_statistics:
            training``.
        spacing: Voxel spacing in mm to resample every volume to before the network
            (nnU-Net uses the training set's median spacing), or ``None`` to keep each
            volume's own spacing.
        mr_normalization: ``"zscore"`` (nnU-Net's MR scheme: mean and standard
            deviation of the volume's foreground) or ``"percentile"`` (the foreground's
            ``mr_percentiles`` mapped to [-1, 1], clipped).
        mr_percentiles: Lower and upper percentile (0-100) of the ``"percentile"``
            scheme.
        mr_foreground: Which voxels the normalization's statistics come from:
            ``"body"``, the input's body (:func:`medi2i.body_mask`), so the air around
            the body does not move them; ``"above-mean"``, those brighter than the
            volume's mean, which move with the field of view (the rule of models saved
            before this option existed).
        optimizer: ``"sgd"`` with Nesterov momentum (nnU-Net), ``"adam"`` or ``"adamw"``.
        learning_rate: Initial learning rate, or ``None`` for the optimizer's default:
            1e-2 for SGD (nnU-Net), 2e-4 for Adam and AdamW.
        momentum: SGD momentum (0.99 in nnU-Net), in [0, 1).
        weight_decay: Weight decay (3e-5 in nnU-Net), >= 0.
        lr_schedule: ``"poly"`` (nnU-Net's polynomial decay) or ``"constant"``.
        schedule_steps: Number of training steps the polynomial decay spans; set it to
            the workflow's ``training.steps``.
        poly_exponent: Exponent of the polynomial decay (0.9 in nnU-Net).
        body_contour: Set every output voxel outside the input MR's body to air
            (-1024 HU), with the body found by :func:`medi2i.body_mask` on the raw input
            (not part of nnU-Net). Models saved before this option existed get it on.
        domain_adversarial_weight: Final gradient-reversal coefficient ``λ`` of
            domain-adversarial training (Ganin & Lempitsky 2015), reached by the paper's
            schedule ``2 / (1 + exp(-10 p)) - 1`` over ``schedule_steps``; 0 (the
            default) trains on the pairs alone. Above 0 the run needs unlabelled MR of
            the target domain (a workflow's ``data.unlabelled_data``): each step the
            source and unlabelled patches go through the network as one batch (so batch
            normalization sees both), the L1 loss is taken on the source patches and a
            domain classifier learns which patches are which.
        domain_classifier_width: Width of the domain classifier's two hidden layers.
    """

    roi_size: tuple[int, int, int] = (128, 128, 128)
    filters: tuple[int, ...] = (32, 64, 128, 256, 320, 320)
    residual: bool = True
    norm: NetworkNorm = "instance"
    upsampling: Upsampling = "transposed"
    norm_statistics: Literal["window", "training"] = "window"
    frozen_statistics_steps: int = Field(default=300, ge=0)
    spacing: tuple[float, float, float] | None = None
    mr_normalization: MRNormalization = "zscore"
    mr_percentiles: tuple[float, float] = (0.5, 99.5)
    mr_foreground: MRForeground = "body"
    optimizer: OptimizerName = "sgd"
    learning_rate: float | None = Field(default=None, gt=0.0)
    momentum: float = Field(default=0.99, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=3e-5, ge=0.0)
    lr_schedule: Schedule = "poly"
    schedule_steps: int = Field(default=1000, ge=1)
    poly_exponent: float = Field(default=0.9, gt=0.0)
    body_contour: bool = True
    domain_adversarial_weight: float = Field(default=0.0, ge=0.0)
    domain_classifier_width: int = Field(default=64, ge=1)

    @field_validator("roi_size")
    @classmethod
    def _positive_roi(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(value) < 1:
            raise ValueError(f"roi_size {value} must be positive in every axis")
        return value

    @field_validator("filters")
    @classmethod
    def _enough_stages(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) < 3 or min(value) < 1:
            raise ValueError(f"filters {value} needs at least 3 stages of >= 1 feature each")
        return value

    @field_validator("spacing")
    @classmethod
    def _positive_spacing(
        cls, value: tuple[float, float, float] | None
    ) -> tuple[float, float, float] | None:
        return check_spacing(value)

    @field_validator("mr_percentiles")
    @classmethod
    def _percentiles_ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        return check_percentiles(value)


class Statistics(BaseModel):
    """The predict-time condition of :class:`RegressionUNet`.

    Attributes:
        statistics: The normalization statistics the network predicts with:
            ``"trained"`` (those of the model: of its training data, or of the target
            data it was adapted to) or ``"input"`` (AdaBN on the input volume itself:
            recomputed from its windows before it is predicted, restored afterwards).
            ``"input"`` needs running statistics (``norm: batch`` or
            ``norm_statistics: training``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    statistics: Literal["trained", "input"] = "trained"


class RegressionUNet(MRToCTIntensities, PatchNetworkMethod[RegressionUNetOptions, Statistics]):
    """MR to synthetic CT with an nnU-Net-style residual 3D U-Net trained with L1 loss.

    Example:
        >>> method = RegressionUNet({"filters": (4, 8, 16), "roi_size": (16, 16, 16)})
        >>> sorted(method.training_modules())
        ['network']
    """

    id = "regression-unet"
    version = "0.1.0"
    tasks = (Task.TRANSLATION,)
    data = DataKind.PAIRED
    training = Training.GRADIENT
    input_spec = VolumeSpec(modality="MR", units="arbitrary")
    output_spec = VolumeSpec(modality="CT", units="HU", value_range=(HU_MIN, HU_MAX))
    paper = (
        "Isensee F, Jaeger PF, Kohl SAA, Petersen J, Maier-Hein KH. nnU-Net: a "
        "self-configuring method for deep learning-based biomedical image segmentation. "
        "Nature Methods 18, 203-211 (2021); adapted to regression with an L1 loss"
    )
    default_roi_size: ClassVar[tuple[int, int, int]] = (128, 128, 128)
    adapts: ClassVar[bool] = True
    restores_state: ClassVar[bool] = True  # after AdaBN on an input (statistics=input)

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self._optimizer: torch.optim.Optimizer | None = None
        self._classifier: DomainClassifier | None = None

    # -- AdaBN -------------------------------------------------------------------------

    def check_condition(self, condition: Statistics) -> None:
        if condition.statistics == "input":
            self._check_adaptable("-c statistics=input")

    def _check_adaptable(self, what: str) -> None:
        from medi2i import statistics_layers

        if not statistics_layers(self.network):
            raise OptionsError(
                f"{what} needs a network with running normalization statistics (AdaBN), but "
                f"this {self.id!r} model normalizes each window by its own (norm: "
                f"{self.options.norm}, norm_statistics: {self.options.norm_statistics}); "
                "train it with norm: batch or norm_statistics: training"
            )

    def export_refusal(self, condition: Statistics) -> str | None:
        """AdaBN on the input recomputes statistics per volume: not one window function."""
        if condition.statistics == "input":
            return (
                "statistics=input recomputes the normalization statistics on each input "
                "volume before its windows run; export the model's own statistics "
                "(statistics=trained) or an AdaBN-adapted model folder instead"
            )
        return None

    def predict(
        self, image: MetaTensor, context: PredictContext[Statistics]
    ) -> torch.Tensor | Mapping[str, torch.Tensor]:
        if context.condition.statistics == "input":
            from medi2i import adapt_statistics, tile_windows

            adapt_statistics(self.network, tile_windows(image.as_tensor(), self.roi_size()))
        return super().predict(image, context)

    def adapt(self, volumes: Sequence[MetaTensor], context: AdaptContext) -> None:
        """AdaBN on a target data set: every running normalization statistic becomes
        that of the target volumes' windows (non-overlapping, covering each volume, of
        the model's window size); the weights are unchanged.

        Raises:
            OptionsError: The network keeps no running statistics.
        """
        from medi2i import adapt_statistics, tile_windows

        self._check_adaptable("adapting")
        self.network.to(context.device)
        windows = (
            window
            for volume in volumes
            for window in tile_windows(volume.as_tensor(), self.roi_size())
        )
        count = adapt_statistics(self.network, windows)
        context.log.info("AdaBN: statistics of %d windows of %d volumes", count, len(volumes))

    def spatial_plan(self) -> SpatialPlan:
        """RAS orientation, so the network always sees anatomy the same way round, and
        ``options.spacing`` when set."""
        return SpatialPlan(orientation="RAS", spacing=self.options.spacing)

    def build_network(self) -> torch.nn.Module:
        return ResidualUNet(
            in_channels=self.input_spec.channels,
            out_channels=self.output_spec.channels,
            filters=self.options.filters,
            residual=self.options.residual,
            norm=self.options.norm,
            track_statistics=self.options.norm_statistics == "training",
            upsampling=self.options.upsampling,
        )

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The network's weights, each tensor once (see :func:`unique_state`)."""
        return {f"{NETWORK}.{k}": v for k, v in unique_state(self.network).items()}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_tensors` returned."""
        stored = {k.removeprefix(f"{NETWORK}."): v for k, v in tensors.items()}
        unexpected = sorted(set(stored) - set(unique_state(self.network)))
        if unexpected:
            raise ModelFormatError(
                f"weights do not fit method {self.id!r} with these options: unexpected "
                f"tensors {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
            )
        try:
            self.network.load_state_dict(expand_aliases(self.network, stored), strict=True)
        except RuntimeError as exc:
            raise ModelFormatError(
                f"weights do not fit method {self.id!r} with these options: {exc}"
            ) from exc

    # -- training ----------------------------------------------------------------------

    def learns_from_unlabelled(self) -> bool:
        """True with domain-adversarial training (``domain_adversarial_weight > 0``)."""
        return bool(self.options.domain_adversarial_weight > 0)

    def training_modules(self) -> dict[str, torch.nn.Module]:
        """The network, and the domain classifier with domain-adversarial training."""
        modules = super().training_modules()
        if self.learns_from_unlabelled():
            if self._classifier is None:
                self._classifier = DomainClassifier(
                    self.options.filters, hidden=self.options.domain_classifier_width
                )
            modules[DOMAIN_CLASSIFIER] = self._classifier
        return modules

    def configure_training(self, trainer: TrainerAPI) -> None:
        """Create the optimizer of ``options.optimizer`` over the network's parameters
        (and the domain classifier's, with domain-adversarial training: one optimizer,
        as the gradient reversal layer makes one loss train both)."""
        options = self.options
        parameters = [p for module in trainer.modules.values() for p in module.parameters()]
        self._optimizer = make_optimizer(
            parameters,
            name=options.optimizer,
            learning_rate=self.initial_learning_rate(),
            momentum=options.momentum,
            weight_decay=options.weight_decay,
        )
        trainer.add_optimizer(NETWORK, self._optimizer)

    def training_step(
        self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
    ) -> dict[str, float]:
        """One L1 step from ``batch["source"]`` (normalized MR patches) to
        ``batch["target"]`` (CT patches in [-1, 1]); with domain-adversarial training
        also the domain classifier's loss on ``batch["unlabelled"]`` and the sources.

        Returns:
            ``{"l1": ...}``, the mean absolute error in network units (× 2047.5 for HU);
            with domain-adversarial training also ``domain_bce`` (the classifier's
            binary cross-entropy; ln 2 = 0.693 when it cannot tell the domains apart),
            ``domain_accuracy`` and ``reversal`` (the coefficient of this step).
        """
        if self.learns_from_unlabelled():
            return self._adversarial_step(batch, trainer)
        self._schedule(trainer.step_index)
        network = trainer.modules[NETWORK]
        if self.options.norm_statistics == "training":
            network.train()
            if trainer.step_index >= trainer.total_steps - self.options.frozen_statistics_steps:
                freeze_statistics(network)
        with trainer.autocast():
            prediction = network(batch["source"])
        loss = F.l1_loss(prediction.float(), batch["target"].float())
        trainer.backward(loss, NETWORK)
        trainer.step(NETWORK)
        return {"l1": float(loss.detach())}

    def _adversarial_step(
        self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
    ) -> dict[str, float]:
        if "unlabelled" not in batch:
            raise OptionsError(
                f"method {self.id!r}: domain_adversarial_weight > 0 needs unlabelled "
                "target-domain inputs (data.unlabelled_data in a workflow)"
            )
        self._schedule(trainer.step_index)
        network = trainer.modules[NETWORK]
        classifier = trainer.modules[DOMAIN_CLASSIFIER]
        if self.options.norm_statistics == "training":
            network.train()
            if trainer.step_index >= trainer.total_steps - self.options.frozen_statistics_steps:
                freeze_statistics(network)
        sources, unlabelled = batch["source"], batch["unlabelled"]
        count = sources.shape[0]
        coefficient = reversal_coefficient(
            trainer.step_index,
            self.options.schedule_steps,
            self.options.domain_adversarial_weight,
        )
        with trainer.autocast(), captured_outputs(encoder_stages(self._unet())) as stages:
            prediction = network(torch.cat([sources, unlabelled]))
        l1 = F.l1_loss(prediction[:count].float(), batch["target"].float())
        logits = classifier(stages, coefficient=coefficient)
        labels = torch.cat([torch.zeros(count), torch.ones(unlabelled.shape[0])]).to(logits)
        domain = F.binary_cross_entropy_with_logits(logits, labels)
        trainer.backward(l1 + domain, NETWORK)
        trainer.step(NETWORK)
        accuracy = ((logits.detach() > 0).float() == labels).float().mean()
        return {
            "l1": float(l1.detach()),
            "domain_bce": float(domain.detach()),
            "domain_accuracy": float(accuracy),
            "reversal": coefficient,
        }

    def _unet(self) -> DynUNet:
        network = self.network
        assert isinstance(network, ResidualUNet)  # build_network makes one
        return network.unet

    def initial_learning_rate(self) -> float:
        """``options.learning_rate``, or the chosen optimizer's default."""
        chosen = self.options.learning_rate
        return chosen if chosen is not None else DEFAULT_LEARNING_RATES[self.options.optimizer]

    def _schedule(self, step: int) -> None:
        if self._optimizer is None:
            raise Medi2iError(
                f"method {self.id!r}: training_step was called before configure_training"
            )
        options = self.options
        rate = scheduled_learning_rate(
            self.initial_learning_rate(),
            schedule=options.lr_schedule,
            step=step,
            total_steps=options.schedule_steps,
            exponent=options.poly_exponent,
        )
        set_learning_rate(self._optimizer, rate)
