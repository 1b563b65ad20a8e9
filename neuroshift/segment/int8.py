"""8-bit integer inference of :class:`~neuroshift.segment.unet.UNet2D` on CPUs with native int8 dot products.

Why: on a CPU the U-Net's convolutions run at the hardware's peak in float32 and bfloat16 alike (oneDNN);
the only way to fewer cycles per slice is cheaper arithmetic. ``avx512_vnni`` / ``amx_int8`` CPUs multiply
8-bit integers at twice the bfloat16 rate (measured on AMD EPYC, avx512_vnni: a 3x3 convolution of 32
channels at 180x180 takes 6.0 ms in int8 against 11.8 ms in bfloat16 and 23 ms in float32, one thread).

How (post-training static quantisation, calibrated on the scan being segmented; no training data needed):

* weights: symmetric int8 per output channel (scale = max |w| / 127), prepacked once per network
  (``torch.ops.onednn.qconv_prepack``); biases stay float32;
* activations: every convolution is followed by ReLU, so its output is stored as uint8 with zero point 0
  and a per-layer scale from a float32 pass over calibration slices of the same run
  (:func:`calibrated_int8_unet`: the largest value seen / 255; larger values saturate at 255);
  the two inputs of each decoder concatenation share one scale (the larger), so the concatenation is a copy;
* the first convolution (image channels in: a few percent of the arithmetic) stays float32, and its ReLU output is
  quantised (an 8-bit grid over the signed z-scored image alone flipped 12-40 mask pixels per real FLAIR with the
  bundled WMH models, a third to a half of what the whole int8 network flipped);
* every other convolution + ReLU is one oneDNN call (``torch.ops.onednn.qconv2d_pointwise``, uint8 in, uint8 out);
  2x2 max-pooling and nearest upsampling are exact on the integers; the 1x1 head returns float32 logits.

Accuracy is not assumed: the segmentation run re-runs slices in float32 and records the agreement
(:mod:`~neuroshift.segment.precision`), as for bfloat16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .unet import UNet2D, fused_inference, pad_to, upsample2_cat

def int8_available() -> bool:
    """True when torch has oneDNN's quantised convolution ops (``torch.ops.onednn.qconv2d_pointwise``)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qconv2d_pointwise")
                    and hasattr(torch.ops.onednn, "qconv_prepack"))
    except (AttributeError, RuntimeError):
        return False


class _QConv:
    """One convolution as int8 weights (per output channel) prepacked for oneDNN, with its float32 bias."""

    def __init__(self, conv: torch.nn.Conv2d, pad: tuple[int, int, int, int] | None):
        w = conv.weight.detach().float().contiguous()
        amax = w.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12)
        self.w_scale = (amax / 127.0).contiguous()
        w_int8 = torch.round(w / self.w_scale[:, None, None, None]).clamp_(-127, 127).to(torch.int8)
        self.w_zero = torch.zeros(w.shape[0], dtype=torch.long)
        self.bias = None if conv.bias is None else conv.bias.detach().float().contiguous()
        self.pad = pad  # explicit (left, right, top, bottom) for even kernels, else None
        self.padding = [0, 0] if pad is not None else [int(p) for p in conv.padding]
        self.packed = torch.ops.onednn.qconv_prepack(w_int8, self.w_scale, 1.0, 0, [1, 1], self.padding, [1, 1], 1,
                                                     None)

    def __call__(self, x: torch.Tensor, x_scale: float, out_scale: float | None) -> torch.Tensor:
        """uint8 ``x`` (zero point 0) -> ReLU output as uint8 at ``out_scale``; ``out_scale=None``: float32 logits,
        no ReLU (the head)."""
        if self.pad is not None:  # zero point 0: padding with 0 is padding with 0.0
            x = F.pad(x, self.pad)
        relu = out_scale is not None
        return torch.ops.onednn.qconv2d_pointwise(
            x, float(x_scale), 0, self.packed, self.w_scale, self.w_zero, self.bias, [1, 1], self.padding,
            [1, 1], 1, float(out_scale) if relu else 1.0, 0, None if relu else torch.float32,
            "relu" if relu else "none", [], "")


def max_pool2_u8(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pooling (floor for odd sizes) of a channels-last uint8 tensor (torch's max_pool2d has no
    uint8 CPU kernel): two element-wise maxima over strided views, channels-last out."""
    h, w = (x.shape[-2] // 2) * 2, (x.shape[-1] // 2) * 2
    v = x.permute(0, 2, 3, 1)[:, :h, :w]
    rows = torch.maximum(v[:, 0::2], v[:, 1::2])
    return torch.maximum(rows[:, :, 0::2], rows[:, :, 1::2]).permute(0, 3, 1, 2)


class Int8Weights:
    """A :class:`UNet2D`'s convolutions quantised and prepacked (shared by every calibrated run of the network)."""

    def __init__(self, net: UNet2D):
        self.net = net
        self.depth = net.depth
        convs = net.conv_layers()  # the first stays float32 (Int8UNet.first_level_input)
        self.convs = [None] + [_QConv(c, getattr(c, "explicit_pad", None)) for c in convs[1:]]


class Int8UNet:
    """A calibrated int8 forward pass: :class:`Int8Weights` plus the activation scales of one scan
    (:func:`calibrated_int8_unet`); read-only once built, so concurrent streams may share it."""

    def __init__(self, weights: Int8Weights, out_scale: list):
        self.weights, self.out_scale = weights, out_scale

    def info(self) -> dict:
        """Calibration record for run information (uint8 activation scale of each convolution but the head)."""
        return {"activation_scales": [round(s, 8) for s in self.out_scale[:-1]]}

    def first_level_input(self, x: torch.Tensor) -> torch.Tensor:
        """The first convolution + ReLU in float32 (oneDNN, channels-last), its output quantised to uint8."""
        conv = self.weights.net.encoder[0].conv1
        x = x.float().contiguous(memory_format=torch.channels_last)
        y = conv.forward_relu_fused(x) if fused_inference(x, conv.weight) else torch.relu(conv(x))
        return torch.clamp_(y.mul_(1.0 / self.out_scale[0]).round_(), max=255).to(torch.uint8)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 logits ``(B, 1, H, W)`` of float input slices ``(B, C, H, W)``."""
        depth = self.weights.depth
        hw = (x.shape[-2], x.shape[-1])
        q, scale = self.first_level_input(x), self.out_scale[0]
        convs, scales = iter(self.weights.convs[1:]), iter(self.out_scale[1:])
        skips = []

        def conv_relu(q, scale):
            out = next(scales)
            return next(convs)(q, scale, out), out

        for lv in range(depth + 1):
            if lv:
                q, scale = conv_relu(q, scale)
            q, scale = conv_relu(q, scale)
            if lv < depth:
                skips.append(q)
                q = max_pool2_u8(q)
        for skip in reversed(skips):
            q, scale = conv_relu(*conv_relu(upsample2_cat(q, skip), scale))
        return next(convs)(pad_to(q, hw), scale, None)


def calibrated_int8_unet(weights: Int8Weights, slices: torch.Tensor, calibration_net: UNet2D | None = None
                         ) -> Int8UNet:
    """Activation scales from a pass of the network over ``slices`` ``(N, C, H, W)`` (the scan's own): each
    convolution's largest output / 255 (the two inputs of a decoder concatenation share the larger).
    ``calibration_net``: the network that makes the pass (default ``weights.net`` in float32; a bfloat16 copy of
    it takes half the time), ``slices`` are cast to its dtype."""
    net = weights.net if calibration_net is None else calibration_net
    amax = _conv_output_maxima(net, slices.to(net.head.weight.dtype))
    depth, n_enc = weights.depth, 2 * (weights.depth + 1)
    for d in range(depth):  # decoder level d concatenates [previous output, encoder level depth-1-d's output]
        prev = n_enc - 1 if d == 0 else n_enc + 2 * (d - 1) + 1
        skip = 2 * (depth - 1 - d) + 1
        amax[prev] = amax[skip] = max(amax[prev], amax[skip])
    return Int8UNet(weights, [max(a, 1e-8) / 255.0 for a in amax[:-1]] + [None])


def _conv_output_maxima(net: UNet2D, slices: torch.Tensor) -> list[float]:
    """Largest ReLU output of every convolution but the head (forward order) on ``slices``, float32, through the
    network's own (fused, channels-last) inference path; the head's entry is 0 (its output stays float32)."""
    maxima: list[float] = []
    with torch.inference_mode():
        for i in range(0, slices.shape[0], 4):
            seen: list[float] = []
            net.forward_logits(slices[i:i + 4].contiguous(memory_format=torch.channels_last),
                               observe=lambda y: seen.append(float(y.amax())))
            maxima = [max(a, b) for a, b in zip(maxima, seen)] if maxima else seen
    return maxima + [0.0]


def int8_weights(net: UNet2D) -> Int8Weights:
    """The :class:`Int8Weights` of ``net`` (quantised once per network, renewed when its weights change:
    :mod:`.derived`)."""
    from .derived import derived

    return derived(net, "int8-weights", lambda: Int8Weights(net))


__all__ = ["Int8UNet", "Int8Weights", "calibrated_int8_unet", "int8_available", "int8_weights",
           "max_pool2_u8"]
