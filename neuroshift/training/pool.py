"""A history pool of generated images for GAN discriminators (Shrivastava et al. 2017, reference
``Shrivastava2017``; CycleGAN's ``ImagePool``).

The discriminator is shown a mix of the newest generated images and older ones, which damps the
oscillation between generator and discriminator. :meth:`ImagePool.query` takes a batch ``(B, ...)`` and
returns a batch of the same shape: while the pool holds fewer than ``size`` images every new image is
stored and returned itself; once full, each new image is, with probability ``swap_prob`` (0.5), swapped
for a random stored one (the stored one is returned, the new one takes its place), else returned
itself. All draws come from the pool's own seeded generator, whose state is saved with
:meth:`state_dict` so that a resumed run continues the same sequence.
"""

from __future__ import annotations

from typing import Any

import torch


class ImagePool:
    """History of up to ``size`` generated images (``size`` 0: a pass-through).

    Raises:
        ValueError: a negative size or a swap probability outside [0, 1].
    """

    def __init__(self, size: int = 50, *, swap_prob: float = 0.5, seed: int = 0):
        if int(size) < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        if not 0.0 <= float(swap_prob) <= 1.0:
            raise ValueError(f"swap_prob must be in [0, 1], got {swap_prob}")
        self.size = int(size)
        self.swap_prob = float(swap_prob)
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.images)

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        """A batch for the discriminator, the same shape as ``batch`` (the stored copies are detached)."""
        if self.size == 0:
            return batch
        out = []
        for image in batch:
            image = image.detach().unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand((), generator=self.generator)) < self.swap_prob:
                i = int(torch.randint(0, self.size, (), generator=self.generator))
                out.append(self.images[i].clone().to(image.device))
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        """Stored images (on the CPU) and the generator state, for checkpoints."""
        return {"images": [im.cpu() for im in self.images], "generator": self.generator.get_state(),
                "size": self.size, "swap_prob": self.swap_prob}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (same pool size).

        Raises:
            ValueError: the saved pool has another size.
        """
        if int(state["size"]) != self.size:
            raise ValueError(f"pool of size {self.size} cannot load a pool of size {state['size']}")
        self.images = [im.clone() for im in state["images"]]
        self.generator.set_state(state["generator"])
        self.swap_prob = float(state["swap_prob"])


__all__ = ["ImagePool"]
