"""Batch-global Dice loss of the released training scripts.

``DL = (2 Σ p·g + s) / (Σ p + Σ g + s)`` with the sums over the whole batch (all images, channels
and pixels flattened together, not averaged per image), ``s = 1``; the loss is ``1 − DL``.
Check values: p = g = ones over 10 px -> DL = 1; both zero -> DL = 1; p = 0, g = 10 px -> DL = 1/11.
"""

from __future__ import annotations

import torch


def batch_dice_coefficient(p: torch.Tensor, g: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """``DL`` over the whole batch (a 0-dim tensor); ``p`` probabilities, ``g`` targets in [0, 1]."""
    if p.shape != g.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and target {tuple(g.shape)} differ in shape")
    p = p.reshape(-1).float()
    g = g.reshape(-1).to(p.dtype)
    intersection = (p * g).sum()
    return (2.0 * intersection + smooth) / (p.sum() + g.sum() + smooth)


def batch_dice_loss(p: torch.Tensor, g: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """``1 − DL`` (minimised in training); see :func:`batch_dice_coefficient`."""
    return 1.0 - batch_dice_coefficient(p, g, smooth)


class BatchDiceLoss(torch.nn.Module):
    """:func:`batch_dice_loss` as a module (``smooth`` = 1 as released)."""

    def __init__(self, smooth: float = 1.0):
        super().__init__()
        self.smooth = float(smooth)

    def forward(self, p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return batch_dice_loss(p, g, self.smooth)
