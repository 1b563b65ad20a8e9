"""synthDIR (Finck, Li et al., Front Neurosci 2022): pix2pix U-Net generator ``G(T1w, FLAIR) -> DIR`` with dropout
p = 0.3 before the last layer for Monte-Carlo sampling, and a conditional PatchGAN ``D(sources, DIR)``.

U-Net: ``depth`` down steps (4x4 stride-2 conv, instance norm, LeakyReLU 0.2), mirrored up steps (4x4
stride-2 transposed conv, instance norm, ReLU) with skip concatenation, then ``Dropout(p)`` and a 1x1 conv to
the output with tanh (range [-1, 1]). The first down step has no norm (pix2pix). Dropout sits only before the
last conv ("second-last layer" of the paper), so :func:`set_mc_dropout` turns sampling on without touching
any normalisation layer (instance norm here keeps no running statistics, and every norm layer stays in eval
mode anyway).

Why not MONAI ``UNet``/``BasicUNet``: their dropout applies in every block, not only before the last layer,
which is what the MC-sampling recipe specifies.
"""

from __future__ import annotations

import torch
from torch import nn


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int, norm: bool = True):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1)]
        if norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.InstanceNorm2d(cout, affine=True),
                                   nn.ReLU(inplace=True)]
        if dropout > 0:  # appended last: parameter names of packages without it are unchanged
            layers.append(nn.Dropout(float(dropout)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class UNetGenerator(nn.Module):
    """pix2pix U-Net; input ``(B, in_channels, H, W)`` with H, W divisible by ``2**depth``; output in [-1, 1].

    ``dropout`` (default 0.3, the paper's): before the last layer. ``decoder_dropout`` (default 0: off, the
    paper's network): an option that also drops out after every up block but the outermost (whose output already
    feeds the last-layer dropout), as pix2pix (Isola 2017) does in its inner decoder blocks. With dropout only
    before a 1x1 conv the MC SD of a voxel is a function of that voxel's feature magnitude (it follows the
    predicted intensity, not the error); decoder dropout makes the samples disagree where the decoder's
    spatial evidence is weak.
    """

    def __init__(self, in_channels: int = 2, out_channels: int = 1, base: int = 64, depth: int = 5,
                 dropout: float = 0.3, decoder_dropout: float = 0.0):
        super().__init__()
        for name, p in (("dropout", dropout), ("decoder_dropout", decoder_dropout)):
            if not 0.0 <= float(p) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        self.depth = int(depth)
        self.decoder_dropout = float(decoder_dropout)
        widths = [min(base * 2 ** i, base * 8) for i in range(self.depth)]
        self.downs = nn.ModuleList([_Down(in_channels if i == 0 else widths[i - 1], widths[i], norm=i > 0)
                                    for i in range(self.depth)])
        ups = []
        for i in reversed(range(self.depth)):
            cin = widths[i] if i == self.depth - 1 else widths[i] * 2
            cout = widths[i - 1] if i > 0 else base
            ups.append(_Up(cin, cout, self.decoder_dropout if i > 0 else 0.0))
        self.ups = nn.ModuleList(ups)
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Sequential(nn.Conv2d(base, out_channels, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_from(self.backbone(x))

    def head_from(self, features: torch.Tensor) -> torch.Tensor:
        """The last layer: ``tanh(conv1x1(dropout(features)))`` (the only stochastic part)."""
        return self.head(self.dropout(features))

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        """Every layer before the last-layer dropout: ``(B, base, H, W)`` features (deterministic in eval mode, and
        in MC mode too unless ``decoder_dropout`` > 0)."""
        m = 2 ** self.depth
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"H and W must be divisible by {m}, got {tuple(x.shape[-2:])}")
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()
        for up in self.ups:
            x = up(x)
            if skips:
                x = torch.cat([x, skips.pop()], 1)
        return x


class ConditionalPatchDiscriminator(nn.Module):
    """``D(sources, target)``: the PatchGAN of :mod:`.diamondgan` on the channel-wise concatenation, without the
    sigmoid (least-squares loss on raw scores, as LSGAN)."""

    def __init__(self, source_channels: int = 2, target_channels: int = 1, base: int = 64):
        super().__init__()
        from .diamondgan import PatchDiscriminator
        d = PatchDiscriminator(source_channels + target_channels, base)
        self.net = nn.Sequential(*list(d.net.children())[:-1])

    def forward(self, sources: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([sources, target], 1))


def set_mc_dropout(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Put ``model`` in eval mode, then (``enabled``) only its dropout layers back in train mode."""
    model.eval()
    if enabled:
        for m in model.modules():
            if isinstance(m, nn.Dropout | nn.Dropout2d | nn.Dropout3d):
                m.train()
    return model


@torch.no_grad()
def mc_sample(model: nn.Module, x: torch.Tensor, n_samples: int = 20, *,
              seed: int | None = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and voxel-wise standard deviation (population, ddof 0) of ``n_samples`` MC-dropout passes.

    The model's train/eval state is restored afterwards. ``seed`` seeds torch's global generator for the
    passes (same seed -> same output); ``None`` leaves it alone.

    For :class:`UNetGenerator` without decoder dropout the dropout sits only before the last layer, so the
    deterministic backbone runs once and only ``head_from`` (dropout + 1x1 conv + tanh) is sampled
    ``n_samples`` times: the same distribution as full passes (every norm layer is in eval mode either way) at a
    fraction of the cost. With ``decoder_dropout`` > 0 every sample is a full pass.
    """
    if int(n_samples) < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    was_training = {m: m.training for m in model.modules()}
    if seed is not None:
        torch.manual_seed(int(seed))
    set_mc_dropout(model, True)
    try:
        mean = None
        m2 = None
        fast = isinstance(model, UNetGenerator) and model.decoder_dropout == 0
        if fast:
            feats = model.backbone(x)
        for k in range(1, int(n_samples) + 1):  # Welford: exact zero variance when every pass agrees
            y = (model.head_from(feats) if fast else model(x)).double()
            if mean is None:
                mean, m2 = y.clone(), torch.zeros_like(y)
                continue
            delta = y - mean
            mean += delta / k
            m2 += delta * (y - mean)
        var = m2 / int(n_samples)
    finally:
        for m, state in was_training.items():
            m.train(state)
    return mean.to(x.dtype), var.sqrt().to(x.dtype)


__all__ = ["ConditionalPatchDiscriminator", "UNetGenerator", "mc_sample", "set_mc_dropout"]
