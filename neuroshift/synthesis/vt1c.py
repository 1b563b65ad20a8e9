"""Virtual contrast-enhanced T1 (Ammari, Bone et al., paper 004): a 3D U-Net from (ADC, FLAIR, T1, low-dose T1c)
to the reference T1c, LeakyReLU 0.2, final sigmoid (output in [0, 1]), L2 loss; inputs 1-99 percentile clipped
and mapped to [0, 1]. The network is MONAI's ``BasicUNet`` (two 3x3x3 convs per level, instance norm,
max-pool down, transposed-conv up, skip concatenation) with ``act=LeakyReLU(0.2)`` and a sigmoid head, which
matches the paper's description (a V-Net-like U-Net; its exact widths are not published, so ``features`` is
a setting: the default is MONAI's, demo models use smaller ones).
"""

from __future__ import annotations

import torch
from torch import nn

#: Input channel order.
VT1C_INPUTS = ("adc", "flair", "t1", "low_dose")


class VirtualT1cNet(nn.Module):
    """``(B, 4, D, H, W)`` in [0, 1] -> ``(B, 1, D, H, W)`` in [0, 1]; spatial sizes divisible by 16."""

    def __init__(self, features: tuple[int, ...] = (32, 32, 64, 128, 256, 32), in_channels: int = 4):
        super().__init__()
        from monai.networks.nets import BasicUNet
        self.unet = BasicUNet(spatial_dims=3, in_channels=int(in_channels), out_channels=1,
                              features=tuple(int(f) for f in features),
                              act=("LeakyReLU", {"negative_slope": 0.2, "inplace": True}),
                              norm=("instance", {"affine": True}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, D, H, W), got {tuple(x.shape)}")
        return torch.sigmoid(self.unet(x))


__all__ = ["VT1C_INPUTS", "VirtualT1cNet"]
