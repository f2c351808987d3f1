"""A structure-preserving term for unpaired translation of medical images (not in the
papers; off by default).

Adversarial and cycle losses let a generator move anatomy, as long as the other
generator can move it back. Medical translation must not: a synthetic CT's edges lie
where the MR's edges lie. Intensities cannot be compared across modalities (bone is dark
in MR and bright in CT), but the *orientation* of edges can: the normalized gradient
field distance (Haber and Modersitzki, "Intensity gradient based registration and
fusion of multi-modal images", MICCAI 2006) is

    NGF(x, y) = mean over voxels of 1 - (∇x · ∇y)² / ((|∇x|² + ε²)(|∇y|² + ε²))

which is 0 where the two images' edges are parallel or anti-parallel (so contrast
inversion costs nothing) and 1 where one image has an edge and the other none or a
perpendicular one. ``ε`` (in network units, images in [-1, 1]) keeps noise in flat
regions from counting as edges.
"""

from __future__ import annotations

import torch

EPSILON = 0.02
"""Gradient magnitude below which a voxel counts as flat, in network units per voxel
(1 % of the [-1, 1] range)."""


def central_gradients(image: torch.Tensor) -> torch.Tensor:
    """Central differences along the three spatial axes of ``(N, C, X, Y, Z)`` images,
    on the interior voxels: ``(N, C, 3, X-2, Y-2, Z-2)``."""
    interior = (slice(None), slice(None), slice(1, -1), slice(1, -1), slice(1, -1))
    gradients = []
    for axis in (2, 3, 4):
        ahead = list(interior)
        behind = list(interior)
        ahead[axis] = slice(2, None)
        behind[axis] = slice(None, -2)
        gradients.append(0.5 * (image[tuple(ahead)] - image[tuple(behind)]))
    return torch.stack(gradients, dim=2)


def normalized_gradient_distance(
    first: torch.Tensor, second: torch.Tensor, *, epsilon: float = EPSILON
) -> torch.Tensor:
    """The NGF distance (module docstring) between two batches of 3D images, in [0, 1].

    Example:
        >>> x = torch.linspace(-1, 1, 8).expand(1, 1, 8, 8, 8)
        >>> float(normalized_gradient_distance(x, -x)) < 0.01
        True
    """
    grad_first = central_gradients(first.float())
    grad_second = central_gradients(second.float())
    dot = (grad_first * grad_second).sum(dim=2)
    norm_first = (grad_first**2).sum(dim=2) + epsilon**2
    norm_second = (grad_second**2).sum(dim=2) + epsilon**2
    return (1.0 - dot**2 / (norm_first * norm_second)).mean()
