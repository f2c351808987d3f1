"""The image pool of CycleGAN (Zhu et al. 2017, section 4), after Shrivastava et al. 2017.

The discriminators are updated on a history of generated images rather than on the
latest ones only, which damps the oscillation of the two players. The pool keeps up to
``size`` generated patches; once full, each new patch is, with probability one half,
swapped for a stored one chosen at random (the stored one goes to the discriminator), or
passed on as it is.

The pool is training state: a resumed run must start with the pool of the interrupted
run, or its discriminators see other patches and the run is no longer the same.
:meth:`ImagePool.state` and :meth:`ImagePool.load_state` serve
:meth:`medi2i.Method.training_state`. Public as ``medi2i.ImagePool`` for methods that
train adversarially (``cyclegan`` of ``medi2i-cyclegan``, ``example-cycle`` of
:mod:`medi2i.testing`). Draws come from torch's global generator, which the
trainer reseeds before every step, so they repeat on resume.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class ImagePool:
    """Up to ``size`` generated patches; each query mixes new and stored ones.

    Args:
        size: Patches kept (the paper: 50); 0 turns the pool off (queries return
            their input).

    Example:
        >>> pool = ImagePool(2)
        >>> pool.query(torch.zeros(3, 1, 4, 4, 4)).shape
        torch.Size([3, 1, 4, 4, 4])
        >>> len(pool)
        2
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"an image pool holds 0 or more patches, not {size}")
        self.size = size
        self.images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """The patches to show the discriminator for a batch ``images`` ``(N, C, ...)``
        (detached: the discriminator's update never reaches the generator)."""
        if self.size == 0:
            return images.detach()
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
        if len(images) > self.size:
            raise ValueError(
                f"the checkpoint's pool holds {len(images)} patches, more than pool_size "
                f"{self.size}; resume with the options of the run that wrote it"
            )
        self.images = [image.clone() for image in images]
