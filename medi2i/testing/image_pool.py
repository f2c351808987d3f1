"""A history of generated images for discriminator updates (Shrivastava et al. 2017).

CycleGAN (Zhu et al. 2017) updates its discriminators on a pool of earlier generator
outputs rather than only the latest ones, which damps oscillation. The pool is training
state: a resumed run must start with the pool the interrupted run had, or its
discriminators see other images and the run is no longer the same. Hence
:meth:`ImagePool.state` and :meth:`ImagePool.load_state`, for
:meth:`medi2i.Method.training_state`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class ImagePool:
    """Up to ``size`` generated patches; each query mixes new and stored ones.

    While the pool fills, every new patch is stored and returned. Once full, each new
    patch is, with probability one half, swapped for a random stored one (which is
    returned instead) or returned as it is. Draws use torch's global generator, which
    the trainer reseeds before every step, so they repeat on resume.

    Args:
        size: Patches kept (0 turns the pool off: queries return their input).

    Example:
        >>> pool = ImagePool(2)
        >>> pool.query(torch.zeros(3, 1, 4, 4, 4)).shape
        torch.Size([3, 1, 4, 4, 4])
        >>> len(pool.state())
        2
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """The patches to show the discriminator for a batch ``images`` ``(N, C, ...)``."""
        if self.size == 0:
            return images
        chosen = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                chosen.append(image)
            elif float(torch.rand(())) < 0.5:
                index = int(torch.randint(len(self.images), ()))
                chosen.append(self.images[index].to(image.device))
                self.images[index] = image.clone()
            else:
                chosen.append(image)
        return torch.stack(chosen)

    def state(self) -> list[torch.Tensor]:
        """The stored patches, on the CPU (for a checkpoint)."""
        return [image.detach().cpu().clone() for image in self.images]

    def load_state(self, images: Sequence[torch.Tensor]) -> None:
        """Restore what :meth:`state` returned."""
        self.images = [image.clone() for image in images]
