"""A U-Net decoder's first convolution without materialising the upsampled input (CPU inference, oneDNN).

The decoder convolves ``cat([nearest-upsample x2 of x, skip])`` with a 3x3 kernel (``'same'``). Split by input
channels, that is ``conv(up(x), W_up) + conv(skip, W_skip)``. Each output pixel ``(2i + a, 2j + b)`` of the
first term sees only 2x2 distinct pixels of ``x``: along an axis, phase 0 reads rows ``i - 1, i`` with taps
``w0, w1 + w2`` and phase 1 reads rows ``i, i + 1`` with taps ``w0 + w1, w2`` (zero padding of ``up(x)`` is zero
padding of ``x``). So the first term is four 2x2 convolutions of ``x`` at low resolution, 16 taps against 36 of
the 3x3 convolution at full resolution (2.25x fewer multiply-adds for the ``x`` channels), interleaved into the
output; the skip term is then added by oneDNN's in-place "add" post-op with the bias and the ReLU fused.

Same function, different rounding: the folded taps are summed in float64 before the cast (float32 differs from
a float64 reference by less than the concatenation path does; tested). Measured per decoder level (batch of 4,
one thread, AMD EPYC): 1.28-1.39x faster in float32 and bfloat16 than upsample + concatenate + convolve.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .unet import center_crop  # unet imports this module lazily (no cycle at import time)


def fold_taps(weight: torch.Tensor, axis: int, phase: int) -> torch.Tensor:
    """3 taps along ``axis`` -> the 2 taps phase ``phase`` (0 or 1) of a nearest-upsampled input applies."""
    w0, w1, w2 = weight.unbind(axis)
    return torch.stack([w0, w1 + w2] if phase == 0 else [w0 + w1, w2], axis)


def phase_weights(weight: torch.Tensor, up_channels: int, dtype) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``([W_00, W_01, W_10, W_11], W_skip)`` of a 3x3 ``weight (out, up_channels + skip, 3, 3)``: the 2x2
    phase kernels of the upsampled channels (folded in float64) and the 3x3 kernel of the skip channels, in
    ``dtype``, channels-last."""
    up = weight[:, :up_channels].detach().double()
    phases = [fold_taps(fold_taps(up, 2, a), 3, b) for a in (0, 1) for b in (0, 1)]
    cl = torch.channels_last
    return ([p.to(dtype).contiguous(memory_format=cl) for p in phases],
            weight[:, up_channels:].detach().to(dtype).contiguous(memory_format=cl))


def up_conv_relu(x: torch.Tensor, skip: torch.Tensor, phases, w_skip: torch.Tensor, bias) -> torch.Tensor:
    """``relu(conv3x3(cat([up2(x), centre_crop(skip)])) + bias)`` for channels-last ``x (B, c, h, w)`` and
    ``skip`` (cropped to ``2h x 2w``), from :func:`phase_weights`' kernels; channels-last output."""
    conv = torch.ops.mkldnn._convolution_pointwise
    n, _, h, w = x.shape
    out = torch.empty((n, 2 * h, 2 * w, w_skip.shape[0]), dtype=x.dtype, device=x.device)
    phases_view = out.view(n, h, 2, w, 2, w_skip.shape[0])
    xp = F.pad(x, (1, 1, 1, 1))
    for k, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        p = conv(xp[:, :, a:a + h + 1, b:b + w + 1], phases[k], None, [0, 0], [1, 1], [1, 1], 1, "none", [], "")
        phases_view[:, :, a, :, b, :].copy_(p.permute(0, 2, 3, 1))
    out = out.permute(0, 3, 1, 2)
    return torch.ops.mkldnn._convolution_pointwise_.binary(
        out, center_crop(skip, (2 * h, 2 * w)), w_skip, bias, [1, 1], [1, 1], [1, 1], 1, "add", 1.0, "relu", [], "")


__all__ = ["fold_taps", "phase_weights", "up_conv_relu"]
