"""Inference kernels for :class:`.diamondgan.DiamondGenerator`: the same function as its eager ``forward`` in
eval mode, computed faster on CPU (measured in ``bench/synthesize.py``).

What changes, and why each step is exact (up to float32 summation order, < 1e-5 on the tanh output of a
non-degenerate generator, tested in ``Testing/synthesis/test_diamond_infer.py``):

* **Instance norm as group norm with one channel per group.** ``InstanceNorm2d(C, affine=True)`` without
  running statistics (what the generator uses) is ``GroupNorm(C, C)`` with the same scale, offset and eps:
  both normalise each (sample, channel) plane by its own mean and biased variance. Torch's CPU instance norm
  reshapes to a ``(1, B*C, H, W)`` batch norm (~9x slower at 144x60x60 than the fused group-norm kernel).
* **Padding options** (:mod:`.diamond_padding`): zero-padded residual convs pass the padding to oneDNN (no
  padded copy); reflect-padded ones pad first as ``nn.Conv2d`` does; Keras-'same' strided convs and
  transposed convs use their modules' own pad / crop (the same arithmetic as the eager model).
* **In place** ReLU, residual add and tanh on tensors this forward created (no autograd: inference only).
* **The last 7x7 conv (1 or 3 output channels) as a 1x7 conv with one output channel per kernel row and
  output channel, plus 7 row-shifted sums** (:func:`_row_folded_conv`; oneDNN's direct kernel is slow for so
  few output channels: 41 -> 15 ms per 240x240 slice with 3, one thread).
* **The domain stream once per availability code and slice size.** Its input, the domain matrix, depends
  only on the code, the slice size and the model's encoding (:func:`.diamond_domain.domain_matrix`), and
  instance norm is per sample, so its output, and
  its share of the first decoder layer (a transposed conv is linear in its input channels:
  ``convT(cat(a, d), W) = convT(a, W[:C]) + convT(d, W[C:])``), are the same for every slice of a volume.
  They are cached in this object and recomputed when any parameter changes (the tensors' version counters).

* **Layouts per layer** (float32 on the CPU, not under autocast): the stride-2 convs run channels_last
  (oneDNN's NHWC kernel: 48 -> 72 channels at 242 -> 120, one thread, 25 -> 16.5 ms with the conversions),
  their padded input written channels_last by the same pass that applies the preceding ReLU
  (:func:`pad_into`); the first 7x7 conv's and the first transposed conv's outputs stay channels_last. Their
  norms then use :func:`_instance_norm_channels_last` (two-pass statistics: torch's channels_last norm
  kernels are one-pass and 4e-5 off float64 at 48x240x240, which is why channels_last end to end failed the
  1e-5 agreement before). The residual blocks stay NCHW: there oneDNN's blocked 3x3 kernel is as fast as
  its NHWC one (12.4 vs 13.1 ms per conv, reorders included) and NCHW's group norm is the cheaper.
  Whole slice, one thread: 332 -> 304 CPU ms with these and the last-conv change (interleaved rounds, a
  loaded machine).

Why not ``torch.jit.freeze``, prepacked oneDNN weights, bfloat16 by default: oneDNN's float32 3x3 conv
already runs near the core's GEMM peak in NCHW (~108 GFLOP/s/core vs sgemm ~85); prepacked
(``torch.utils.mkldnn``) weights measured no faster (the weight reorder is ~0.4 ms of 12.4); bfloat16
halves conv time but rounds activations to 8 bits of mantissa (agreement is measured and printed by the
bench, not assumed). See ``bench/synthesize.py`` and the README Benchmarks section.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import nn

from .diamond_padding import SameConv2d, SameConvTranspose2d
from .diamondgan import DiamondGenerator, ResidualBlock, apply_availability, domain_matrix


def _norm(m: nn.InstanceNorm2d, x: torch.Tensor, exact: bool = False) -> torch.Tensor:
    """Instance norm of ``x`` by the fused group-norm kernel (one group per channel); ``exact``: statistics
    and normalisation in float64 (for the once-per-volume domain stream, see :class:`DiamondInference`)."""
    if m.track_running_stats and not m.training:  # running statistics: not a per-sample norm
        return m(x)
    if not exact and x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return _instance_norm_channels_last(m, x)
    if exact:
        w = None if m.weight is None else m.weight.double()
        b = None if m.bias is None else m.bias.double()
        return F.group_norm(x.double(), x.shape[1], w, b, m.eps).to(x.dtype)
    return F.group_norm(x, x.shape[1], m.weight, m.bias, m.eps)


def _instance_norm_channels_last(m: nn.InstanceNorm2d, x: torch.Tensor) -> torch.Tensor:
    """Instance norm of a channels_last ``x`` (a channels_last result), two-pass: the mean, then the mean
    squared deviation from it (torch's channels_last group/batch norm kernels use one-pass sums of x and x^2:
    4e-5 off float64 at 48x240x240, above this module's 1e-5; two-pass 1e-6, as the NCHW kernel). Biased
    variance and ``eps`` as ``InstanceNorm2d``; the scale and offset folded into one multiply-add."""
    n, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view: channels_last is (n, h, w, c) in memory
    mean = rows.mean(1, keepdim=True)
    var = (rows - mean).square_().mean(1, keepdim=True)
    scale = torch.rsqrt(var + m.eps)
    if m.weight is not None:
        scale = scale * m.weight
    shift = -mean * scale
    if m.bias is not None:
        shift = shift + m.bias
    return torch.addcmul(shift, rows, scale).view(n, h, w, c).permute(0, 3, 1, 2)


def _row_folded_conv(xp: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Stride-1 convolution of the padded ``xp`` with few output channels (the generator's last 7x7 conv,
    1 or 3 of them): oneDNN's direct kernel runs so few output channels at ~20 GFLOP/s (3 channels, 48 ->
    246x246, one thread: 41 ms). Here each kernel row ``dy`` becomes an output channel of a ``1 x k`` conv,
    ``Z[(dy, o), r, c] = sum_{ci, dx} W[o, ci, dy, dx] x[ci, r, c + dx]`` (``k * O`` channels: oneDNN's
    kernel runs that near its GEMM speed), and the ``k`` row-shifted planes are summed,
    ``out[o, r] = sum_dy Z[(dy, o), r + dy]`` (whole rows: contiguous adds). 3 channels: 18.5 -> 15.0 ms
    against the banded GEMMs plus 49 shifted sums used before, 1 channel 9.0 -> 8.2 ms (CPU ms, one
    thread). At least float32 (also under autocast: the sums must not round to bfloat16)."""
    with torch.autocast(xp.device.type, enabled=False):
        if xp.dtype in (torch.bfloat16, torch.float16):
            xp = xp.float()
        o_ch, c_in, kh, kw = weight.shape
        h = xp.shape[-2] - kh + 1
        w_rows = weight.to(xp.dtype).permute(2, 0, 1, 3).reshape(kh * o_ch, c_in, 1, kw)  # (dy, o) channels
        z = F.conv2d(xp, w_rows)  # (n, kh * O, Hp, W)
        out = z[:, :o_ch, :h].clone()
        for dy in range(1, kh):
            out += z[:, dy * o_ch:(dy + 1) * o_ch, dy:dy + h]
        if bias is not None:
            out += bias.to(xp.dtype).view(1, -1, 1, 1)
    return out


def fast_cpu_float32(x: torch.Tensor) -> bool:
    """Whether ``x`` takes the channels_last float32 CPU kernels (not under autocast: bfloat16 keeps NCHW)."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")


def _conv_transpose(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    m: nn.ConvTranspose2d, keep_channels_last: bool = False) -> torch.Tensor:
    """``m``'s transposed conv with ``weight`` (Keras 'same' layers: the full one cropped, as
    :class:`.diamond_padding.SameConvTranspose2d`); on the CPU through channels_last and back (oneDNN's NHWC
    deconvolution: 36 -> 29 ms per slice for 72->48 channels at 120->240, one thread; the same numbers), or
    kept channels_last (``keep_channels_last`` and :func:`fast_cpu_float32`: for a channels_last norm and the
    next transposed conv, no transpose in between)."""
    cpu = x.device.type == "cpu"
    y = F.conv_transpose2d(x.contiguous(memory_format=torch.channels_last) if cpu else x, weight, bias, m.stride,
                           m.padding, m.output_padding, m.groups, m.dilation)
    if isinstance(m, SameConvTranspose2d):
        y = m.crop(y, (int(x.shape[-2]), int(x.shape[-1])))
    if keep_channels_last and fast_cpu_float32(y):
        return y.contiguous(memory_format=torch.channels_last)
    return y.contiguous()


def conv_pads(m: nn.Conv2d, x: torch.Tensor) -> tuple[tuple[int, int, int, int], str] | None:
    """The padding ``m`` applies to ``x`` before its convolution as ``((left, right, top, bottom), mode)``
    (``mode`` ``"zeros"`` or ``m``'s ``padding_mode``), or None when none is applied as a separate step
    (zero padding that oneDNN does itself, or none at all)."""
    if isinstance(m, SameConv2d):  # Keras 'same': zeros, the odd pixel after
        top, bottom = m._pads(int(x.shape[-2]), 0)
        left, right = m._pads(int(x.shape[-1]), 1)
        return ((left, right, top, bottom), "zeros") if top or bottom or left or right else None
    if m.padding_mode != "zeros" and any(m._reversed_padding_repeated_twice):
        left, right, top, bottom = m._reversed_padding_repeated_twice  # what nn.Conv2d pads (F.pad order)
        return (left, right, top, bottom), m.padding_mode
    return None


_SCRATCH = threading.local()
#: Padded scratch tensors kept per thread (one per shape, dtype, device and layout; the generator needs 3).
SCRATCH_PER_THREAD = 4


def _scratch(shape: tuple[int, ...], like: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """A tensor of ``shape`` (contents undefined) reused by this thread for every slice: the padded inputs
    are consumed by one conv and never returned, and a fresh 11 MB tensor per layer and slice costs page
    faults (~4-13 thousand minor faults and 8-25 ms of system time per 240x240 slice without reuse)."""
    cache = getattr(_SCRATCH, "tensors", None)
    if cache is None:
        cache = _SCRATCH.tensors = {}
    key = (shape, like.dtype, like.device, memory_format)
    t = cache.get(key)
    if t is None:
        if len(cache) >= SCRATCH_PER_THREAD:
            cache.clear()
        t = cache[key] = torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=memory_format)
    return t


def pad_into(x: torch.Tensor, pads: tuple[int, int, int, int], mode: str, relu: bool = False,
             memory_format: torch.memory_format = torch.contiguous_format, reuse: bool = False) -> torch.Tensor:
    """``F.pad(relu(x) if relu else x, pads, mode)`` in one pass over ``x``: the (ReLU'd) values are written
    straight into the interior of the padded tensor and only the border is filled (zeros, or reflected from
    the interior: the same values as ``F.pad``'s reflection, rows first, then full-height columns, which
    gives the corners); the result in ``memory_format``. ``x`` is not modified. ``reuse``: the result is this
    thread's scratch tensor of that shape (:func:`_scratch`), overwritten by the next such call. ReLU commutes with both paddings (relu(0) = 0, and reflection
    only copies values), so padding the ReLU'd map equals the ReLU of the padded one."""
    left, right, top, bottom = pads
    n, c, h, w = x.shape
    if mode not in ("zeros", "reflect") or (mode == "reflect" and (max(top, bottom) >= h or max(left, right) >= w)):
        y = F.pad(x, pads, mode="constant" if mode == "zeros" else mode).contiguous(memory_format=memory_format)
        return y.relu_() if relu else y
    shape = (n, c, h + top + bottom, w + left + right)
    buf = _scratch(shape, x, memory_format) if reuse else torch.empty(shape, dtype=x.dtype, device=x.device,
                                                                       memory_format=memory_format)
    inner = buf[:, :, top:top + h, left:left + w]
    if relu:
        torch.clamp_min(x, 0, out=inner)  # relu (torch.relu has no out=)
    else:
        inner.copy_(x)
    if mode == "zeros":
        buf[:, :, :top].zero_()
        buf[:, :, top + h:].zero_()
        buf[:, :, top:top + h, :left].zero_()
        buf[:, :, top:top + h, left + w:].zero_()
        return buf
    cols = slice(left, left + w)
    for i in range(top):  # padded row top-1-i reflects input row i+1
        buf[:, :, top - 1 - i, cols] = buf[:, :, top + 1 + i, cols]
    for i in range(bottom):  # padded row top+h+i reflects input row h-2-i
        buf[:, :, top + h + i, cols] = buf[:, :, top + h - 2 - i, cols]
    for j in range(left):  # columns over the full padded height (corners included)
        buf[..., left - 1 - j] = buf[..., left + 1 + j]
    for j in range(right):
        buf[..., left + w + j] = buf[..., left + w - 2 - j]
    return buf


def _conv(m: nn.Conv2d, x: torch.Tensor, relu_first: bool = False) -> torch.Tensor:
    """``m(relu(x) if relu_first else x)`` (``relu_first`` only for convs that pad as a separate step:
    the ReLU is applied while padding, see :func:`pad_into`)."""
    pads = conv_pads(m, x)
    strided_cl = m.stride != (1, 1) and fast_cpu_float32(x)
    fmt = torch.channels_last if strided_cl else torch.contiguous_format
    if pads is not None:
        x, padding = pad_into(x, *pads, relu=relu_first, memory_format=fmt, reuse=True), 0
    else:
        if relu_first:
            raise ValueError("relu_first needs a conv that pads as a separate step")
        padding = 0 if isinstance(m, SameConv2d) else m.padding
        x = x.contiguous(memory_format=fmt)
    if strided_cl:
        # the stride-2 convs: oneDNN's NHWC kernel (48 -> 72 channels at 242 -> 120, one thread, with the
        # padded copy written channels_last and the output kept so: 25 -> 16.5 ms per slice); the output
        # stays channels_last for its norm (:func:`_instance_norm_channels_last`) and the next layer
        return F.conv2d(x, m.weight, m.bias, m.stride, padding, m.dilation, m.groups)
    if m.out_channels <= 4 and m.kernel_size[0] >= 5 and m.stride == (1, 1) and m.dilation == (1, 1) \
            and m.groups == 1 and padding == 0:  # the generator's last layer (1 or 3 channels)
        return _row_folded_conv(x.contiguous(), m.weight, m.bias)
    if m.in_channels <= 4 and m.kernel_size[0] >= 5 and x.device.type == "cpu" and x.dtype == torch.float32:
        # the first 7x7 conv (few input channels): oneDNN's NHWC kernel, 20 -> 13.5 ms per 240x240 slice
        # (3 -> 48 channels, one thread, conversions included); its output stays channels_last (float32: the
        # two-pass channels_last norm, and the next stride-2 conv's padded copy reads it contiguously:
        # 324 -> 315 CPU ms per slice)
        y = F.conv2d(x.contiguous(memory_format=torch.channels_last), m.weight, m.bias, m.stride, padding,
                     m.dilation, m.groups)
        return y if fast_cpu_float32(y) else y.contiguous()  # float32: kept channels_last for its norm
    return F.conv2d(x, m.weight, m.bias, m.stride, padding, m.dilation, m.groups)


def run_layers(layers: nn.Sequential, x: torch.Tensor, exact_norm: bool = False) -> torch.Tensor:
    """``layers(x)`` for the module types of the generator, with the kernels above; ``x`` is not modified.
    ``exact_norm``: instance norms with float64 statistics. A ReLU followed by a conv that pads as a separate
    step is applied while padding (:func:`pad_into`: one pass instead of ReLU, fill and copy)."""
    fresh = False  # whether x is a tensor this function made (then in-place ops are safe)
    mods = list(layers)
    relu_pending = False
    for i, m in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            x, fresh, relu_pending = _conv(m, x, relu_pending), True, False
        elif isinstance(m, nn.ConvTranspose2d):
            x, fresh = _conv_transpose(x, m.weight, m.bias, m), True
        elif isinstance(m, nn.InstanceNorm2d):
            x, fresh = _norm(m, x, exact_norm), True
        elif isinstance(m, nn.ReLU):
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            if isinstance(nxt, nn.Conv2d) and conv_pads(nxt, x) is not None:
                relu_pending = True  # done by the next conv's padding
            else:
                x = x.relu_() if fresh else torch.relu(x)
        elif isinstance(m, nn.Tanh):
            x = x.tanh_() if fresh else torch.tanh(x)
        elif isinstance(m, ResidualBlock):
            x = x.contiguous()  # NCHW: oneDNN's 3x3 stride-1 kernel is fastest so (a channels_last strided conv
            # may come before)
            x, fresh = run_layers(m.body, x, exact_norm).add_(x), True
        else:
            x, fresh = m(x), True
    return x


#: Slices per pass through the network on the CPU: one slice's activations stay in cache better (CPU s per
#: 240x240 slice, one thread: 0.36 one at a time, 0.38 two, 0.40 four, 0.42 eight).
CPU_SLICES_PER_PASS = 1


class DiamondInference:
    """Callable ``(x, available) -> output`` equal to ``net(x, available)`` of an eval-mode
    :class:`DiamondGenerator` (same checks, same missing-channel fill), for inference (no gradients).

    One object serves a whole volume: the domain stream and its decoder share are computed once per
    distinct code and slice size and reused while the weights are unchanged.

    ``streams`` (CPU): a batch is split into that many near-equal parts run at once, each on one thread
    (:func:`neuroshift.segment.predict.cpu_streams`: no OpenMP barrier after every layer, and on a busy
    machine a descheduled thread delays only its part); default :func:`neuroshift.threads.cpu_streams`
    (the torch threads, or ``NEUROSHIFT_CPU_STREAMS``); 1: one batch over all threads. Each stream passes
    :data:`CPU_SLICES_PER_PASS` slices at a time. Samples are independent (instance norm is per sample), so
    the result does not depend on the split.
    """

    def __init__(self, net: DiamondGenerator, streams: int | None = None):
        if not isinstance(net, DiamondGenerator):
            raise TypeError(f"DiamondInference needs a DiamondGenerator, got {type(net).__name__}")
        self.net = net
        self.streams = streams
        self._cache: dict[tuple, torch.Tensor] = {}
        self._versions: tuple[int, ...] | None = None

    def _param_dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def _weights_version(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.net.parameters())

    @torch.no_grad()
    def _domain_share(self, code: torch.Tensor, spatial: tuple[int, int], device: torch.device,
                      dtype: torch.dtype) -> torch.Tensor:
        """The domain stream's contribution to the first decoder layer for one code: ``(1, C, 2H/4, 2W/4)``."""
        key = (tuple(int(v) for v in code.tolist()), spatial, tuple(self.net.options().values()), dtype, device)
        hit = self._cache.get(key)
        if hit is None:
            net = self.net
            with torch.autocast(device.type, enabled=False):  # once per volume: full precision
                dm = domain_matrix(code[None].to(device), spatial, net.domain_encoding).to(device, self._param_dtype())
                d = run_layers(net.domain_stream, dm, True)
                up = net.decoder[0]
                w_img = up.in_channels // 2  # the decoder takes cat(image features, domain features)
                hit = _conv_transpose(d, up.weight[w_img:], None, up, keep_channels_last=True)
            hit = hit.to(dtype)
            self._cache[key] = hit
        return hit

    def _image_path(self, x: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
        """Image stream, first decoder layer (image half + the cached domain half), rest of the decoder."""
        net = self.net
        a = run_layers(net.image_stream, x)
        up = net.decoder[0]
        y = _conv_transpose(a, up.weight[:a.shape[1]], up.bias, up, keep_channels_last=True)
        y += share
        return run_layers(net.decoder[1:], y)

    def _stream_count(self, x: torch.Tensor) -> int:
        if x.device.type != "cpu" or x.shape[0] < 2:
            return 1
        if self.streams is None:
            from ..threads import cpu_streams
            return min(int(x.shape[0]), cpu_streams())
        return max(1, min(int(x.shape[0]), int(self.streams)))

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        net = self.net
        if net.training:
            raise RuntimeError("DiamondInference runs eval-mode generators; call net.eval() first")
        available = net.check_inputs(x, available)
        version = self._weights_version()
        if version != self._versions:
            self._cache.clear()
            self._versions = version
        if net.code_width == net.in_channels:
            x = apply_availability(x, available)
        dev = x.device.type
        amp = torch.is_autocast_enabled(dev)
        amp_dtype = torch.get_autocast_dtype(dev)
        feat_dtype = amp_dtype if amp else x.dtype
        codes, inverse = torch.unique(available, dim=0, return_inverse=True)
        spatial = (int(x.shape[-2]), int(x.shape[-1]))
        share = torch.cat([self._domain_share(c, spatial, x.device, feat_dtype) for c in codes])
        if len(codes) > 1:
            share = share[inverse]
        n = self._stream_count(x)
        step = CPU_SLICES_PER_PASS if dev == "cpu" else x.shape[0]

        def work(sl: slice) -> torch.Tensor:  # grad and autocast modes are per thread: set them here
            with torch.no_grad(), torch.autocast(dev, dtype=amp_dtype, enabled=amp):
                ys = [self._image_path(x[i:min(i + step, sl.stop)],
                                       share if share.shape[0] == 1 else share[i:min(i + step, sl.stop)])
                      for i in range(sl.start, sl.stop, step)]
            return ys[0] if len(ys) == 1 else torch.cat(ys)

        if n == 1:
            return work(slice(0, x.shape[0]))
        from ..segment.predict import cpu_streams
        edges = [round(i * x.shape[0] / n) for i in range(n + 1)]
        parts = [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]
        return torch.cat(list(cpu_streams(n).map(work, parts)))


__all__ = ["DiamondInference", "conv_pads", "fast_cpu_float32", "pad_into", "run_layers"]
