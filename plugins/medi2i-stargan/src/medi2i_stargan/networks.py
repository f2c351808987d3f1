"""StarGAN's networks in 3D (Choi et al. 2018, appendix: network architecture).

The generator, in the paper's notation for 128² images with ``n`` domains::

    c7s1-64 (input: image + n label maps), d128, d256, R256 ×6, u128, u64, c7s1-3

``c7s1-k``: a 7-wide convolution of k features, stride 1; ``dk``: a 4-wide convolution of
k features with stride 2; ``Rk``: a residual block of two 3-wide convolutions; ``uk``: a
4-wide transposed convolution with stride 2. Every convolution but the last is followed
by instance normalization (with a learned scale and shift) and ReLU; the last by tanh.
The target domain enters as ``n`` constant channels, its one-hot code spread over the
image (with ``source_code``, not in the paper, the input's own domain as ``n`` more).
Here every layer is 3D and the widths follow ``filters`` (the paper's 64).

The discriminator is a PatchGAN without normalization: ``layers`` 4-wide stride-2
convolutions with leaky ReLU (slope 0.01), doubling the features, then two heads on the
last feature map: ``D_src``, a 3-wide convolution to one real/fake score per patch, and
``D_cls``, a convolution as wide as that feature map to ``n`` domain logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

GeneratorNorm = Literal["instance", "none"]
OutputActivation = Literal["tanh", "linear"]


def _norm(kind: GeneratorNorm, channels: int) -> torch.nn.Module:
    # the paper's instance normalization keeps a learned scale and shift
    if kind == "none":
        return torch.nn.Identity()
    return torch.nn.InstanceNorm3d(channels, affine=True)


class _Residual(torch.nn.Module):
    """``Rk``: ``x + norm(conv(relu(norm(conv(x)))))``, 3-wide convolutions."""

    def __init__(self, channels: int, norm: GeneratorNorm = "instance") -> None:
        super().__init__()
        bias = norm == "none"  # instance normalization's shift makes a bias redundant
        self.body = torch.nn.Sequential(
            torch.nn.Conv3d(channels, channels, 3, padding=1, bias=bias),
            _norm(norm, channels),
            torch.nn.ReLU(),
            torch.nn.Conv3d(channels, channels, 3, padding=1, bias=bias),
            _norm(norm, channels),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = features + self.body(features)
        return result


class StarGenerator(torch.nn.Module):
    """One generator for every target domain (module docstring).

    Args:
        domains: Number of domains ``n`` (the label channels).
        filters: Features of the first layer (the paper's 64), doubled per downsampling.
        downsamplings: Stride-2 stages down and up (the paper's 2); windows must be
            multiples of ``2**downsamplings``.
        residual_blocks: Residual blocks at the lowest resolution (the paper's 6).
        norm: ``"instance"`` (the paper's) or ``"none"``, which keeps each window's
            intensities (instance normalization discards its mean and contrast).
        outer_kernel: Width of the first and last convolution (the paper's 7), odd.
        output_activation: ``"tanh"`` (the paper's) or ``"linear"`` (unbounded).
        source_code: Also take the input's own domain, as ``n`` more constant channels
            (not in the paper, whose generator is told the target alone).

    Example:
        >>> generator = StarGenerator(domains=3, filters=4, downsamplings=2,
        ...                           residual_blocks=1)
        >>> generator(torch.zeros(2, 1, 8, 8, 8), torch.tensor([0, 2])).shape
        torch.Size([2, 1, 8, 8, 8])
    """

    def __init__(
        self,
        *,
        domains: int,
        filters: int,
        downsamplings: int,
        residual_blocks: int,
        norm: GeneratorNorm = "instance",
        outer_kernel: int = 7,
        output_activation: OutputActivation = "tanh",
        source_code: bool = False,
    ) -> None:
        super().__init__()
        self.domains = domains
        self.source_code = source_code
        bias, pad = norm == "none", outer_kernel // 2
        codes = domains * (2 if source_code else 1)
        layers: list[torch.nn.Module] = [
            torch.nn.Conv3d(1 + codes, filters, outer_kernel, padding=pad, bias=bias),
            _norm(norm, filters),
            torch.nn.ReLU(),
        ]
        width = filters
        for _ in range(downsamplings):
            layers += [
                torch.nn.Conv3d(width, 2 * width, 4, stride=2, padding=1, bias=bias),
                _norm(norm, 2 * width),
                torch.nn.ReLU(),
            ]
            width *= 2
        layers += [_Residual(width, norm) for _ in range(residual_blocks)]
        for _ in range(downsamplings):
            layers += [
                torch.nn.ConvTranspose3d(width, width // 2, 4, stride=2, padding=1, bias=bias),
                _norm(norm, width // 2),
                torch.nn.ReLU(),
            ]
            width //= 2
        layers.append(torch.nn.Conv3d(width, 1, outer_kernel, padding=pad, bias=bias))
        if output_activation == "tanh":
            layers.append(torch.nn.Tanh())
        self.body = torch.nn.Sequential(*layers)

    def forward(
        self, image: torch.Tensor, target: torch.Tensor, source: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``image`` ``(N, 1, X, Y, Z)`` translated to the domains ``target`` ``(N,)``;
        ``source`` ``(N,)``, the images' own domains, when built with ``source_code``."""
        labels = [target]
        if self.source_code:
            if source is None:
                raise ValueError("this generator takes the source domains as well")
            labels.append(source)
        code = torch.cat([F.one_hot(label, self.domains) for label in labels], dim=1)
        maps = code.to(image.dtype)[:, :, None, None, None].expand(-1, -1, *image.shape[2:])
        output: torch.Tensor = self.body(torch.cat([image, maps], dim=1))
        return output


class StarDiscriminator(torch.nn.Module):
    """Real/fake scores per patch and domain logits (module docstring).

    Args:
        domains: Number of domains ``n``.
        filters: Features of the first layer (the paper's 64), doubled per layer.
        layers: Stride-2 layers (the paper's 6 for 128² images).
        window: The training patch size; the classification head spans the last
            feature map it gives (``window / 2**layers`` per axis). Larger inputs get
            their logits averaged over the positions the head fits in.

    Example:
        >>> critic = StarDiscriminator(domains=3, filters=4, layers=2, window=(8, 8, 8))
        >>> scores, logits = critic(torch.zeros(2, 1, 8, 8, 8))
        >>> tuple(scores.shape), tuple(logits.shape)
        ((2, 1, 2, 2, 2), (2, 3))
    """

    def __init__(self, *, domains: int, filters: int, layers: int, window: Sequence[int]) -> None:
        super().__init__()
        body: list[torch.nn.Module] = []
        width, channels = filters, 1
        for _ in range(layers):
            body += [
                torch.nn.Conv3d(channels, width, 4, stride=2, padding=1),
                torch.nn.LeakyReLU(0.01),
            ]
            channels, width = width, 2 * width
        self.body = torch.nn.Sequential(*body)
        self.head_size = tuple(int(size) // 2**layers for size in window)
        if min(self.head_size) < 1:
            raise ValueError(f"a window of {tuple(window)} is too small for {layers} layers")
        self.source = torch.nn.Conv3d(channels, 1, 3, padding=1, bias=False)
        self.classes = torch.nn.Conv3d(channels, domains, self.head_size, bias=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores ``(N, 1, ...)`` (higher: more real) and logits ``(N, n)``.

        Raises:
            ValueError: The image is smaller than the training window.
        """
        features = self.body(image)
        if any(int(n) < k for n, k in zip(features.shape[2:], self.head_size, strict=True)):
            raise ValueError(
                f"patches of {tuple(image.shape[2:])} voxels are smaller than the window the "
                "discriminator was built for"
            )
        logits = self.classes(features).mean(dim=(2, 3, 4))
        scores: torch.Tensor = self.source(features)
        return scores, logits


def gradient_penalty(
    critic: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """WGAN-GP's penalty (Gulrajani et al. 2017): ``(‖∇D(x̂)‖₂ - 1)²`` averaged over
    ``x̂``, random points on the lines between real and fake patches.

    Example:
        >>> critic = StarDiscriminator(domains=2, filters=2, layers=1, window=(4, 4, 4))
        >>> float(gradient_penalty(critic, torch.ones(2, 1, 4, 4, 4),
        ...                        torch.zeros(2, 1, 4, 4, 4))) >= 0.0
        True
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, 1, device=real.device, dtype=real.dtype)
    between = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    scores, _ = critic(between)
    (gradient,) = torch.autograd.grad(
        outputs=scores,
        inputs=between,
        grad_outputs=torch.ones_like(scores),
        create_graph=True,
    )
    norms = gradient.flatten(start_dim=1).norm(2, dim=1)
    penalty: torch.Tensor = ((norms - 1.0) ** 2).mean()
    return penalty
