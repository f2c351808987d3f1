"""Tiny trainable methods and toy data, for tests of the trainer and as examples.

- :class:`TinyRegression`: a supervised patch network (three convolutions, L1 loss,
  Adam), the smallest method the trainer can train on paired data.
- :class:`TinyAdversarial`: a pix2pix-like pair of networks with one optimizer each,
  updated alternately (discriminator, then generator) through the trainer's API.
- :func:`write_paired_cases`: a paired data set whose target is a fixed linear function
  of the source (in HU), so that a network can learn it in a few dozen steps.

Its hook also registers the unpaired and multi-domain examples,
:class:`~medi2i.testing.cycle_example.ExampleCycle` and
:class:`~medi2i.testing.multi_domain_example.ExampleStar`.

They are not registered by default; a test registers this module as a plugin::

    registry = isolated_registry(trainable_examples)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from pydantic import BaseModel

from medi2i.hookspecs import hookimpl
from medi2i.intensity import HU_MAX, HU_MIN
from medi2i.method import (
    DataKind,
    Method,
    MethodClass,
    Options,
    Task,
    TrainerAPI,
    Training,
)
from medi2i.patch_network import PatchNetworkMethod
from medi2i.testing.example_methods import CT, MR

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.data.cases import CaseSet

TARGET_SLOPE = 2.0
"""Target HU per source intensity unit in :func:`write_paired_cases`."""
TARGET_OFFSET_HU = -1000.0
"""Target value (HU) of a zero source intensity in :func:`write_paired_cases`."""


class TinyOptions(Options):
    """Options of the tiny trainable methods.

    Attributes:
        roi_size: Window and default training patch size, in voxels.
        hidden: Feature channels of the hidden layers.
        learning_rate: Adam's learning rate.
        input_unit: Source intensity mapped to 1.0 by preprocessing.
        output_unit: Target value (HU) mapped to 1.0 for the network.
    """

    roi_size: tuple[int, int, int] = (16, 16, 16)
    hidden: int = 8
    learning_rate: float = 1e-2
    input_unit: float = 1000.0
    output_unit: float = 1000.0


class TinyRegression(PatchNetworkMethod):
    """A three-layer convolutional regression from MR to CT, trained with L1 and Adam."""

    id = "example-tiny-regression"
    tasks = (Task.TRANSLATION,)
    data = DataKind.PAIRED
    training = Training.GRADIENT
    input_spec = MR
    output_spec = CT
    Options = TinyOptions

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self.settings: TinyOptions = self.options

    def build_network(self) -> torch.nn.Module:
        return _convolutions(1, self.settings.hidden, 1)

    def preprocess(
        self, image: MetaTensor, *, domain: str | None = None, condition: object = None
    ) -> MetaTensor:
        return cast("MetaTensor", image / self.settings.input_unit)

    def preprocess_target(self, target: MetaTensor) -> MetaTensor:
        """HU to the network's range (the inverse of :meth:`postprocess`)."""
        return cast("MetaTensor", target / self.settings.output_unit)

    def postprocess(
        self,
        output: MetaTensor,
        image: MetaTensor,
        *,
        domain: str | None = None,
        condition: object = None,
    ) -> MetaTensor:
        # CT's stored range, as the output_spec declares it
        return cast("MetaTensor", (output * self.settings.output_unit).clamp(HU_MIN, HU_MAX))

    def configure_training(self, trainer: TrainerAPI) -> None:
        parameters = trainer.modules["network"].parameters()
        trainer.add_optimizer(
            "network", torch.optim.Adam(parameters, lr=self.settings.learning_rate)
        )

    def training_step(
        self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
    ) -> dict[str, float]:
        with trainer.autocast():
            prediction = trainer.modules["network"](batch["source"])
        loss = F.l1_loss(prediction.float(), batch["target"])
        trainer.backward(loss, "network")
        trainer.step("network")
        return {"l1": float(loss.detach())}


class TinyAdversarial(TinyRegression):
    """A pix2pix-like method: generator (L1 + least-squares adversarial loss) and a
    conditional patch discriminator, each with its own Adam, updated alternately."""

    id = "example-tiny-adversarial"
    adversarial_weight = 0.1

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self._discriminator: torch.nn.Module | None = None

    @property
    def discriminator(self) -> torch.nn.Module:
        """Scores (source, image) pairs patch-wise: high for real targets."""
        if self._discriminator is None:
            hidden = self.settings.hidden
            self._discriminator = torch.nn.Sequential(
                torch.nn.Conv3d(2, hidden, 3, stride=2, padding=1),
                torch.nn.LeakyReLU(0.2),
                torch.nn.Conv3d(hidden, 1, 3, padding=1),
            )
        return self._discriminator

    def training_modules(self) -> dict[str, torch.nn.Module]:
        return {"generator": self.network, "discriminator": self.discriminator}

    def configure_training(self, trainer: TrainerAPI) -> None:
        rate = self.settings.learning_rate
        for name in ("generator", "discriminator"):
            parameters = trainer.modules[name].parameters()
            trainer.add_optimizer(name, torch.optim.Adam(parameters, lr=rate, betas=(0.5, 0.999)))

    def training_step(
        self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
    ) -> dict[str, float]:
        source, target = batch["source"], batch["target"]
        generator, discriminator = trainer.modules["generator"], trainer.modules["discriminator"]
        with trainer.autocast():
            fake = generator(source).float()
            real_score = discriminator(torch.cat([source, target], dim=1)).float()
            fake_score = discriminator(torch.cat([source, fake.detach()], dim=1)).float()
        trainer.watch_generated("fake", fake, target)
        loss_d = 0.5 * (_least_squares(real_score, 1.0) + _least_squares(fake_score, 0.0))
        trainer.backward(loss_d, "discriminator")
        trainer.step("discriminator")
        with trainer.autocast():
            fooled = discriminator(torch.cat([source, fake], dim=1)).float()
        adversarial = _least_squares(fooled, 1.0)
        l1 = F.l1_loss(fake, target)
        loss_g = l1 + self.adversarial_weight * adversarial
        trainer.backward(loss_g, "generator")
        trainer.step("generator")
        return {
            "d": float(loss_d.detach()),
            "g_l1": float(l1.detach()),
            "g_adv": float(adversarial.detach()),
        }


def _convolutions(channels_in: int, hidden: int, channels_out: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv3d(channels_in, hidden, 3, padding=1),
        torch.nn.LeakyReLU(0.1),
        torch.nn.Conv3d(hidden, hidden, 3, padding=1),
        torch.nn.LeakyReLU(0.1),
        torch.nn.Conv3d(hidden, channels_out, 1),
    )


def _least_squares(scores: torch.Tensor, label: float) -> torch.Tensor:
    return ((scores - label) ** 2).mean()


def write_paired_cases(
    folder: Path,
    *,
    count: int = 3,
    shape: tuple[int, int, int] = (24, 24, 24),
    seed: int = 0,
    mask: bool = True,
) -> CaseSet:
    """Write a toy paired data set: source, target and mask NIfTI files per case.

    Sources are :func:`medi2i.testing.make_volume` blobs (about 100 to 1000); each target
    is ``TARGET_SLOPE · source + TARGET_OFFSET_HU`` in HU on the same oblique grid; the
    mask is ``source > 250``.

    Args:
        folder: Where to write ``<case>/{source,target,mask}.nii.gz``.
        count: Number of cases.
        shape: Volume size in voxels.
        seed: Seed of the first case's blobs (case ``i`` uses ``seed + i``).
        mask: Write masks.

    Returns:
        The cases, ``case-0``, ``case-1``, ...
    """
    from medi2i.data.cases import Case, CaseSet
    from medi2i.io import write_volume
    from medi2i.testing.volumes import make_volume

    cases = []
    for index in range(count):
        source = make_volume(shape, seed=seed + index)
        target = cast("MetaTensor", source * TARGET_SLOPE + TARGET_OFFSET_HU)
        images = {"source": source, "target": target}
        if mask:
            images["mask"] = cast("MetaTensor", (source > 250.0).float())
        paths = {
            role: write_volume(volume, folder / f"case-{index}" / f"{role}.nii.gz", overwrite=True)
            for role, volume in images.items()
        }
        cases.append(Case(id=f"case-{index}", images=paths))
    return CaseSet(kind=DataKind.PAIRED, cases=tuple(cases))


TRAINABLE_METHODS: tuple[type[Method], ...] = (TinyRegression, TinyAdversarial)
"""The paired examples of this module."""


@hookimpl
def register_methods(register: Callable[[MethodClass], None]) -> None:
    """Register the paired examples and the domain examples (:mod:`~medi2i.testing.
    cycle_example`, :mod:`~medi2i.testing.multi_domain_example`)."""
    from medi2i.testing.cycle_example import ExampleCycle
    from medi2i.testing.multi_domain_example import ExampleStar

    register(ExampleCycle)
    register(ExampleStar)
    for method in TRAINABLE_METHODS:
        register(method)
