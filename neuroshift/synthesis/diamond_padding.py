"""DiamondGAN's padding options: the released (Keras) behaviour and the one of packages that predate it.

[R] = hongweilibran/DiamondGAN, commit ``22a69c399812882093206632ff8f8c5f172f5037``, ``train.py`` (the same
layer functions are repeated in ``test.py``); read, not copied. What [R] does, layer by layer:

* ``c7s1`` (first layer of each stream, and the last layer): ``ReflectionPadding2D((3, 3))`` then a 7x7
  ``'valid'`` conv (train.py:319-322, 242-243, 351-353; the layer is ``tf.pad(..., 'REFLECT')``, train.py:857-868).
  Ours has always been the same (``padding=3, padding_mode="reflect"``); no option.
* ``Rk`` residual blocks: two 3x3 stride-1 ``Conv2D(padding='same')`` (train.py:257, 261): ZERO padding of 1
  on every side. Option ``residual_padding``: ``"zero"`` (released) or ``"reflect"`` (ours before the option).
* ``dk`` downsampling: 3x3 stride-2 ``Conv2D(padding='same')`` (train.py:249). TensorFlow's ``'same'`` pads
  ``total = max((ceil(n / s) - 1) s + k - n, 0)`` zeros, ``total // 2`` before and the rest after: for the
  even sizes this network sees (H, W divisible by 4) that is 0 before and 1 after (bottom/right only), so
  output pixel ``i`` reads input rows ``2i .. 2i + 2``. Torch ``padding=1`` pads 1 on both sides (rows
  ``2i - 1 .. 2i + 1``): a half-pixel shift. Option ``resample_padding``: ``"keras_same"`` (released) or
  ``"symmetric"`` (ours before).
* ``uk`` upsampling: 3x3 stride-2 ``Conv2DTranspose(padding='same')`` (train.py:274), output ``2n``: the
  transpose of the 'same' conv above, i.e. the full transposed conv (``(n - 1) 2 + 3 = 2n + 1``) cropped to
  its first ``2n`` rows/columns. Torch ``padding=1, output_padding=1`` crops the first row instead (the
  other half-pixel shift). Same option ``resample_padding`` (down and up belong together: both are how a
  stride-2 layer aligns its grid).
* The PatchGAN discriminator (train.py:235, 306): 4x4 stride-2 ``'same'`` convs pad 1 / 1 at even sizes
  (= torch ``padding=1``; ceil size at odd ones), and its last 4x4 stride-1 ``'same'`` conv pads 1 before,
  2 after (output the input's size; torch ``padding=1`` gives one pixel less). Option ``padding`` of
  :class:`.diamondgan.PatchDiscriminator`.

Parameter counts do not depend on any option (7,218,987 / 2,766,529), nor do parameter names: a state dict
loads into every combination. Checked against TensorFlow-Keras 3.15 layer by layer (max difference 2.4e-7,
``/tmp/tfenv``) when written; the tests check the index rules literally (``Testing/synthesis/
test_diamond_padding.py``).

Packages written before the options record neither and load as :data:`LEGACY_OPTIONS` (reflect / symmetric:
exactly their previous outputs); new models default to the released behaviour.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Option values; the first of each is the released behaviour and the default of new models.
RESIDUAL_PADDINGS = ("zero", "reflect")
RESAMPLE_PADDINGS = ("keras_same", "symmetric")
#: What packages that predate the options used (their manifests record none).
LEGACY_OPTIONS = {"residual_padding": "reflect", "resample_padding": "symmetric"}


def check_option(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """``value`` if allowed, else ValueError naming the option."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``padding='same'`` for one axis: (before, after) zeros; output ``ceil(size / stride)``."""
    out = -(-int(size) // int(stride))
    total = max((out - 1) * int(stride) + int(kernel) - int(size), 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``Conv2d`` with TensorFlow/Keras ``padding='same'`` (zeros, the odd pixel after: bottom/right)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` zero-padded as 'same' needs (a copy only when it pads). A strided conv also gets unread zeros
        at the end up to a multiple of the stride (same output: oneDNN is faster on the even 242 than on the
        241 rows of a 240-row slice, 48 -> 72 channels, one thread: 28.6 -> 24.2 ms float32, 19 -> 13 bf16)."""
        top, bottom = self._pads(x.shape[-2], 0)
        left, right = self._pads(x.shape[-1], 1)
        return F.pad(x, (left, right, top, bottom)) if top or bottom or left or right else x

    def _pads(self, size: int, axis: int) -> tuple[int, int]:
        k, s = self.kernel_size[axis], self.stride[axis]
        before, after = same_pads(size, k, s)
        padded = size + before + after
        extra = (-padded) % s
        if extra and (padded + extra - k) // s == (padded - k) // s:  # the extra zeros are never read
            after += extra
        return before, after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.weight, self.bias, self.stride)


class SameConvTranspose2d(nn.ConvTranspose2d):
    """``ConvTranspose2d`` with Keras ``padding='same'``: output ``stride * n``, the full transposed conv
    cropped by the 'same' conv's before-padding of that output size (0 for 3x3 stride 2).

    The full conv is computed with ``output_padding = stride - 1`` (one more zero row/column at the end,
    cropped away): oneDNN runs the even-sized ``2n + 2`` output ~2.5x faster than the odd ``2n + 1`` one
    (72 -> 48 channels at 120 -> 240, one thread: 10.5 vs 26 ms float32; the bfloat16 gap is larger)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 2):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         output_padding=stride - 1)

    def crop(self, y: torch.Tensor, in_size: tuple[int, int]) -> torch.Tensor:
        """The 'same' window of the full transposed-conv output ``y`` of an ``in_size`` input (a view)."""
        (h, w), (sh, sw) = in_size, self.stride
        top = same_pads(h * sh, self.kernel_size[0], sh)[0]
        left = same_pads(w * sw, self.kernel_size[1], sw)[0]
        return y[..., top:top + h * sh, left:left + w * sw]

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        y = F.conv_transpose2d(x, self.weight, self.bias, self.stride, 0, self.output_padding)
        return self.crop(y, (int(x.shape[-2]), int(x.shape[-1])))


__all__ = ["LEGACY_OPTIONS", "RESAMPLE_PADDINGS", "RESIDUAL_PADDINGS", "SameConv2d", "SameConvTranspose2d",
           "check_option", "same_pads"]
