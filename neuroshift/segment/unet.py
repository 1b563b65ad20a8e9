"""The 2D U-Nets of dissertation 003, layer for layer as released, and a configurable family.

Layout of the released networks (hongweilibran/wmh_ibbmTum and claustrum_multi_view):

* ``depth`` poolings (4 as released, so 5 levels); two convolutions per level, each followed by ReLU;
  ``'same'`` padding; no batch norm, no dropout.
* 2x2 max-pooling (floor for odd sizes, like Keras ``MaxPooling2D``).
* Decoder: nearest-neighbour upsampling x2, concatenation ``[upsampled, skip]`` (in that channel
  order, which matters when importing weights), two 3x3 convolutions + ReLU.
* The second convolution of the deepest skip level (level 4 of 5) is 4x4. An even kernel with
  ``'same'`` padding pads 1 pixel before and 2 after (TensorFlow's rule; torch's ``padding='same'``
  does the same, see :func:`same_padding`).
* Sizes not divisible by ``2**depth``: the skip map is centre-cropped to the upsampled size (odd
  difference: the extra pixel comes off the bottom/right); the last decoder map is zero-padded back
  to the input size (extra pixel at the bottom/right) before the final 1x1 convolution.
* 1x1 convolution to one channel, sigmoid: the output is a probability map ``(B, 1, H, W)`` with
  the input's ``H, W``.

Released widths: claustrum encoder 32-64-96-128-256, decoder 128-96-64-32, all 3x3, one input
channel (2,494,529 parameters); WMH encoder 64-96-128-256-512, decoder 256-128-96-64, the first two
convolutions 5x5, FLAIR+T1 (8,742,209) or FLAIR only (8,740,609).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

#: Architecture name recorded in model package manifests.
ARCHITECTURE = "unet2d"

#: Keys accepted by :func:`build_unet` and stored in ``manifest["architecture"]["params"]``.
CONFIG_KEYS = ("in_channels", "encoder", "decoder", "first_kernel", "kernel", "bottleneck_kernel", "out_channels")

#: Named presets (the released networks and the small demo network).
PRESETS: dict[str, dict[str, Any]] = {
    "claustrum": dict(in_channels=1, encoder=(32, 64, 96, 128, 256), decoder=(128, 96, 64, 32),
                      first_kernel=3, kernel=3, bottleneck_kernel=4),
    "wmh": dict(in_channels=2, encoder=(64, 96, 128, 256, 512), decoder=(256, 128, 96, 64),
                first_kernel=5, kernel=3, bottleneck_kernel=4),
    # Same layout as the released networks at 1/8 of the claustrum widths: trains in minutes on a CPU.
    "demo": dict(in_channels=2, encoder=(8, 16, 24, 32, 64), decoder=(32, 24, 16, 8),
                 first_kernel=3, kernel=3, bottleneck_kernel=4),
}


def same_padding(kernel: int) -> tuple[int, int]:
    """Padding ``(before, after)`` of a ``'same'`` convolution (TensorFlow rule: the extra pixel after).

    3 -> (1, 1), 4 -> (1, 2), 5 -> (2, 2).
    """
    total = kernel - 1
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Stride-1 convolution with ``'same'`` padding; even kernels pad 1 less before than after.

    Odd kernels use the convolution's own symmetric padding; even kernels pad explicitly with
    :func:`same_padding` (what ``padding='same'`` does, without torch's warning and extra copy logic).
    The state-dict keys are those of :class:`torch.nn.Conv2d` (``weight``, ``bias``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int):
        before, after = same_padding(kernel)
        super().__init__(in_channels, out_channels, kernel, padding=before if before == after else 0)
        self._pad = None if before == after else (before, after, before, after)

    @property
    def explicit_pad(self) -> tuple[int, int, int, int] | None:
        """``(left, right, top, bottom)`` padding applied before the convolution (even kernels), else None."""
        return self._pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._pad is not None:
            x = F.pad(x, self._pad)
        return super().forward(x)

    def forward_relu_fused(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(self(x))`` as one oneDNN convolution with a ReLU post-op (CPU inference only, no autograd):
        the same convolution arithmetic (float32 within rounding), one pass less over the activations."""
        padding = list(self.padding)
        if self._pad is not None:
            x, padding = F.pad(x, self._pad), [0, 0]
        return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, padding, [1, 1], [1, 1], 1,
                                                       "relu", [], "")


class _Level(nn.Sequential):
    """Two ``'same'`` convolutions, each followed by ReLU."""

    def __init__(self, in_ch: int, out_ch: int, k1: int, k2: int):
        super().__init__()
        self.conv1 = SameConv2d(in_ch, out_ch, k1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = SameConv2d(out_ch, out_ch, k2)
        self.relu2 = nn.ReLU(inplace=True)

    def forward_fused(self, x: torch.Tensor, observe=None) -> torch.Tensor:
        """The level with each convolution + ReLU as one oneDNN call (see :func:`fused_inference`);
        ``observe`` (optional) is called with each ReLU output."""
        return self._second(self.conv1.forward_relu_fused(x), observe)

    def forward_observed(self, x: torch.Tensor, observe) -> torch.Tensor:
        """The plain (module by module) level, ``observe`` called with each ReLU output."""
        x = self.relu1(self.conv1(x))
        observe(x)
        x = self.relu2(self.conv2(x))
        observe(x)
        return x

    def _second(self, x: torch.Tensor, observe) -> torch.Tensor:
        if observe is not None:
            observe(x)
        x = self.conv2.forward_relu_fused(x)
        if observe is not None:
            observe(x)
        return x

    def forward_up_fused(self, x: torch.Tensor, skip: torch.Tensor, observe=None) -> torch.Tensor:
        """The decoder level on the coarser map ``x`` and its skip connection, without materialising the
        upsampled concatenation (:mod:`~neuroshift.segment.upconv`: four 2x2 phase convolutions at low
        resolution; fused CPU path only). The folded kernels are cached per convolution, dtype and channel split."""
        from .derived import derived
        from .upconv import phase_weights, up_conv_relu

        c_up = int(x.shape[1])
        phases, w_skip = derived(self.conv1, ("phase-kernels", x.dtype, c_up),
                                 lambda: phase_weights(self.conv1.weight, c_up, x.dtype))
        return self._second(up_conv_relu(x, skip, phases, w_skip, self.conv1.bias), observe)


def fused_inference(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True when :meth:`UNet2D.forward_logits` takes the fused CPU inference path.

    Conditions: no autograd (``torch.inference_mode`` / ``no_grad``), CPU, channels-last input of the
    weights' dtype (float32 or bfloat16), oneDNN present. The fused path computes the same network:
    convolution + ReLU as one oneDNN call (ReLU as a post-op), and each decoder's first convolution
    on the coarser map and the skip connection without building the upsampled concatenation
    (:mod:`~neuroshift.segment.upconv`); float32 outputs equal the unfused path's within float32 rounding
    (``Testing/segment/test_unet_fused.py``).
    """
    return (not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == weight.dtype
            and x.dtype in (torch.float32, torch.bfloat16) and x.is_contiguous(memory_format=torch.channels_last)
            and _MKLDNN_POINTWISE)


_MKLDNN_POINTWISE = bool(torch.backends.mkldnn.is_available()
                         and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


def upsample2_cat(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``cat([nearest-upsample x2 of x, centre_crop(skip)], dim=1)`` for channels-last tensors in one
    preallocated channels-last buffer (two strided copies instead of an upsample, a crop and a cat)."""
    b, c, h, w = x.shape
    cs = skip.shape[1]
    out = torch.empty((b, 2 * h, 2 * w, c + cs), dtype=x.dtype, device=x.device)
    out.view(b, h, 2, w, 2, c + cs)[..., :c].copy_(x.permute(0, 2, 3, 1)[:, :, None, :, None, :]
                                                  .expand(b, h, 2, w, 2, c))
    out[..., c:].copy_(center_crop(skip, (2 * h, 2 * w)).permute(0, 2, 3, 1))
    return out.permute(0, 3, 1, 2)


def center_crop(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Crop the last two axes of ``x`` to ``hw`` around the centre (odd difference: extra off bottom/right)."""
    dh, dw = x.shape[-2] - hw[0], x.shape[-1] - hw[1]
    if dh < 0 or dw < 0:
        raise ValueError(f"cannot crop {tuple(x.shape[-2:])} to the larger size {tuple(hw)}")
    if dh == 0 and dw == 0:
        return x
    top, left = dh // 2, dw // 2
    return x[..., top:top + hw[0], left:left + hw[1]]


def pad_to(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Zero-pad the last two axes of ``x`` to ``hw`` (odd difference: extra pixel at bottom/right)."""
    dh, dw = hw[0] - x.shape[-2], hw[1] - x.shape[-1]
    if dh < 0 or dw < 0:
        raise ValueError(f"cannot pad {tuple(x.shape[-2:])} to the smaller size {tuple(hw)}")
    if dh == 0 and dw == 0:
        return x
    return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


def _cat_channels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.cat([a, b], dim=1)``; for channels-last tensors as a cat along the last axis of the NHWC
    view, which is ~1.7x faster on the CPU than torch's channels-last cat (same values, channels-last out)."""
    if a.is_contiguous(memory_format=torch.channels_last) and not a.is_contiguous():
        return torch.cat([a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)], dim=3).permute(0, 3, 1, 2)
    return torch.cat([a, b], dim=1)


class UNet2D(nn.Module):
    """2D U-Net of the released layout (see the module docstring); output = sigmoid probabilities.

    Parameters
    ----------
    in_channels: number of input channels (their order is recorded in the model package).
    encoder: widths of the ``depth + 1`` encoder levels (the last is the bottom level).
    decoder: widths of the ``depth`` decoder levels, deepest first.
    first_kernel: kernel of the two convolutions of the first level (5 for WMH, 3 for claustrum).
    kernel: kernel of all other convolutions (3 as released).
    bottleneck_kernel: kernel of the second convolution of the deepest skip level (4 as released).
    out_channels: output channels (1 as released).
    """

    def __init__(self, in_channels: int = 1, encoder: Iterable[int] = (32, 64, 96, 128, 256),
                 decoder: Iterable[int] = (128, 96, 64, 32), first_kernel: int = 3, kernel: int = 3,
                 bottleneck_kernel: int = 4, out_channels: int = 1):
        super().__init__()
        encoder, decoder = tuple(int(w) for w in encoder), tuple(int(w) for w in decoder)
        if len(encoder) < 2 or len(decoder) != len(encoder) - 1:
            raise ValueError(f"need depth+1 encoder widths and depth decoder widths, got {encoder} and {decoder}")
        if min(encoder + decoder) < 1 or min(in_channels, out_channels, first_kernel, kernel, bottleneck_kernel) < 1:
            raise ValueError("channel counts, widths and kernel sizes must be positive")
        self._config = dict(in_channels=int(in_channels), encoder=list(encoder), decoder=list(decoder),
                            first_kernel=int(first_kernel), kernel=int(kernel),
                            bottleneck_kernel=int(bottleneck_kernel), out_channels=int(out_channels))
        depth = len(decoder)
        self.depth = depth
        self.encoder = nn.ModuleList()
        prev = int(in_channels)
        for level, width in enumerate(encoder):
            k1 = first_kernel if level == 0 else kernel
            k2 = first_kernel if level == 0 else (bottleneck_kernel if level == depth - 1 else kernel)
            self.encoder.append(_Level(prev, width, k1, k2))
            prev = width
        self.decoder = nn.ModuleList()
        for level, width in enumerate(decoder):
            skip = encoder[depth - 1 - level]
            self.decoder.append(_Level(prev + skip, width, kernel, kernel))
            prev = width
        self.head = nn.Conv2d(prev, int(out_channels), 1)

    # ----------------------------------------------------------------- config
    def config(self) -> dict[str, Any]:
        """The :func:`build_unet` configuration of this network (JSON-serialisable)."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self._config.items()}

    def conv_layers(self) -> list[nn.Conv2d]:
        """All convolutions in the order Keras creates them (encoder, bottom, decoder, 1x1 head)."""
        convs: list[nn.Conv2d] = []
        for level in list(self.encoder) + list(self.decoder):
            convs += [level.conv1, level.conv2]
        return convs + [self.head]

    # ---------------------------------------------------------------- forward
    def forward_logits(self, x: torch.Tensor, *, observe=None) -> torch.Tensor:
        """Pre-sigmoid output ``(B, out_channels, H, W)``. ``observe`` (optional): called with every convolution's
        ReLU output in :meth:`conv_layers` order (the head excluded), e.g. to calibrate int8 scales."""
        if x.ndim != 4:
            raise ValueError(f"expected input (B, C, H, W), got shape {tuple(x.shape)}")
        hw = (x.shape[-2], x.shape[-1])
        if min(hw) < 2 ** self.depth:
            raise ValueError(f"input slices of {hw[0]}x{hw[1]} pixels are smaller than the "
                             f"{2 ** self.depth} pixels that {self.depth} poolings need")
        fused = fused_inference(x, self.head.weight)
        skips = []
        for level, block in enumerate(self.encoder):
            if fused:
                x = block.forward_fused(x, observe)
            else:
                x = block(x) if observe is None else block.forward_observed(x, observe)
            if level < self.depth:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for block, skip in zip(self.decoder, reversed(skips)):
            if fused:
                x = block.forward_up_fused(x, skip, observe)
                continue
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = _cat_channels(x, center_crop(skip, (x.shape[-2], x.shape[-1])))
            x = block(x) if observe is None else block.forward_observed(x, observe)
        return self.head(pad_to(x, hw))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(B, out_channels, H, W)`` (sigmoid of :meth:`forward_logits`)."""
        return torch.sigmoid(self.forward_logits(x))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_unet(config: dict[str, Any] | str) -> UNet2D:
    """Build a :class:`UNet2D` from a config dict (keys :data:`CONFIG_KEYS`) or a preset name.

    A dict may name a preset under ``"preset"`` and override some of its keys, e.g.
    ``{"preset": "wmh", "in_channels": 1}`` (the FLAIR-only WMH network). Unknown keys are an error.
    """
    if isinstance(config, str):
        config = {"preset": config}
    config = dict(config)
    preset = config.pop("preset", None)
    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown U-Net preset '{preset}'; known: {', '.join(PRESETS)}")
        base = dict(PRESETS[preset])
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown U-Net config key(s) {unknown}; allowed: {', '.join(CONFIG_KEYS)}")
    base.update(config)
    return UNet2D(**base)


def claustrum_unet(in_channels: int = 1) -> UNet2D:
    """The released claustrum U-Net (1 channel: 2,494,529 parameters)."""
    return build_unet({"preset": "claustrum", "in_channels": in_channels})


def wmh_unet(in_channels: int = 2) -> UNet2D:
    """The released WMH U-Net: FLAIR+T1 (8,742,209 parameters) or FLAIR only (8,740,609)."""
    return build_unet({"preset": "wmh", "in_channels": in_channels})


def demo_unet(in_channels: int = 2) -> UNet2D:
    """A small network of the same layout for the phantom-trained demo model and for tests."""
    return build_unet({"preset": "demo", "in_channels": in_channels})
