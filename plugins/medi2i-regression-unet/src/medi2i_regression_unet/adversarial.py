"""Domain-adversarial training (Ganin & Lempitsky 2015) for the regression U-Net.

Ganin and Lempitsky, "Unsupervised domain adaptation by backpropagation", ICML 2015
(and Ganin et al., "Domain-adversarial training of neural networks", JMLR 2016): a
domain classifier learns to tell the features of source-domain inputs (which have
targets) from those of target-domain inputs (which have none); between the features
and the classifier sits a gradient reversal layer, the identity going forward and a
multiplication by ``-λ`` going back, so that the same backward pass that trains the
classifier pushes the feature extractor towards features it cannot tell apart. ``λ``
grows from 0 to its final value as ``2 / (1 + exp(-10 p)) - 1`` over training progress
``p`` (the paper's schedule), so the untrained classifier's noise does not disturb the
first steps.

In a U-Net the decoder sees every encoder stage through the skip connections, not only
the bottleneck, so the classifier here looks at every encoder stage (as Kamnitsas et al.
2017 did for a segmentation network, with features from several depths): for each stage
the per-channel mean and standard deviation of its features over the patch, the
statistics a scanner's intensity style changes most, go through the reversal layer and
then a small multilayer perceptron (the paper's classifier is one too).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import torch
from monai.networks.nets.dynunet import DynUNet


class _Reversal(torch.autograd.Function):
    """Identity forward; the gradient times ``-coefficient`` backward."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return features.view_as(features)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coefficient * grads[0], None


def reverse_gradient(features: torch.Tensor, coefficient: float) -> torch.Tensor:
    """``features`` unchanged, with their gradient multiplied by ``-coefficient``.

    Example:
        >>> x = torch.ones(3, requires_grad=True)
        >>> reverse_gradient(x, 0.5).sum().backward()
        >>> x.grad.tolist()
        [-0.5, -0.5, -0.5]
    """
    reversed_: torch.Tensor = _Reversal.apply(features, coefficient)  # type: ignore[no-untyped-call]
    return reversed_


def reversal_coefficient(step: int, total_steps: int, weight: float) -> float:
    """``weight · (2 / (1 + exp(-10 p)) - 1)`` at progress ``p = step / total_steps``
    (capped at 1): 0 at the first step, ``0.987 · weight`` half way, ``weight`` after.

    Example:
        >>> reversal_coefficient(0, 100, 1.0)
        0.0
        >>> round(reversal_coefficient(100, 100, 2.0), 4)
        1.9999
    """
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return weight * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)


class DomainClassifier(torch.nn.Module):
    """Source (logit < 0) or target (logit > 0) from the feature statistics of several
    network stages.

    Args:
        stage_channels: Feature channels of each stage it looks at.
        hidden: Width of the two hidden layers.

    Example:
        >>> classifier = DomainClassifier([4, 8], hidden=16)
        >>> stages = [torch.zeros(3, 4, 8, 8, 8), torch.zeros(3, 8, 4, 4, 4)]
        >>> classifier(stages, coefficient=1.0).shape
        torch.Size([3])
    """

    def __init__(self, stage_channels: Sequence[int], *, hidden: int) -> None:
        super().__init__()
        width = 2 * sum(stage_channels)
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(width, hidden),
            torch.nn.LeakyReLU(0.2),
            torch.nn.Linear(hidden, hidden),
            torch.nn.LeakyReLU(0.2),
            torch.nn.Linear(hidden, 1),
        )

    def forward(self, stages: Sequence[torch.Tensor], *, coefficient: float) -> torch.Tensor:
        """One logit per sample from stage features ``(B, C_i, ...)``, with the
        gradient reversed (times ``-coefficient``) on its way back into them."""
        summaries = []
        for features in stages:
            flat = reverse_gradient(features.float(), coefficient).flatten(2)
            summaries += [flat.mean(dim=2), flat.std(dim=2)]
        logits: torch.Tensor = self.layers(torch.cat(summaries, dim=1))
        return logits[:, 0]


@contextmanager
def captured_outputs(modules: Sequence[torch.nn.Module]) -> Iterator[list[torch.Tensor]]:
    """The outputs of ``modules`` in the forward passes run inside the block, in call
    order (a forward hook on each, removed on leaving)."""
    outputs: list[torch.Tensor] = []

    def keep(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        outputs.append(output)

    handles = [module.register_forward_hook(keep) for module in modules]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def encoder_stages(unet: DynUNet) -> list[torch.nn.Module]:
    """The encoder stages of a MONAI ``DynUNet``: the input block, every downsampling
    block and the bottleneck, full resolution first."""
    downsamples = cast("torch.nn.ModuleList", unet.downsamples)
    stages = [cast("torch.nn.Module", unet.input_block), *downsamples]
    return [*stages, cast("torch.nn.Module", unet.bottleneck)]
