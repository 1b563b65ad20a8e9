"""DiamondGAN (Li, Paetzold et al., MICCAI 2019): one generator for every non-empty subset of the source
contrasts, told which are present by an availability code.

Generator (the released layout, [R] = authors' code, read not copied): two encoder streams, one for the images
and one for the availability ("domain") matrix, each ``c7s1-48 -> d72 -> d144 -> 9 residual blocks of 144``;
the streams are concatenated (288 channels) and decoded ``u72 -> u48 -> c7s1-out -> tanh``. Every conv has a
bias and is followed by an instance norm with scale and offset (Keras-contrib ``InstanceNormalization``, here
``InstanceNorm2d(affine=True)``), except the last. With 3 image channels, a 1-channel domain matrix and 3
output channels (``[R]`` stores slices as 3-channel images) it has exactly **7,218,987** parameters
(4,974,315 with 6 blocks); the domain stream's unused upsampling branch of [R]'s model definition is left out,
as its ``train.py`` does.

Padding (:mod:`.diamond_padding`, options recorded per model): [R]'s residual blocks zero-pad (Keras
``'same'``) and its stride-2 convs / transposed convs use Keras ``'same'`` (the odd pixel padded after, at
bottom/right), the defaults of new models (``residual_padding="zero"``, ``resample_padding="keras_same"``);
packages written before the options reflected in the residual blocks and padded stride-2 layers
symmetrically (torch style) and load that way. The 7x7 layers reflect-pad 3 in both (as [R]).

Discriminator: PatchGAN ``C64 (no norm) - C128 - C256 - C512`` (4x4 kernels, stride 2, LeakyReLU 0.2,
instance norm with scale/offset after layers 2-4) and a 4x4 stride-1 conv to one channel with a sigmoid:
**2,766,529** parameters with 3 input channels, **2,764,481** with 1.

Why not MONAI: MONAI has no CycleGAN-style ResNet generator nor a PatchGAN with this layout
(``monai.networks.nets.PatchDiscriminator`` differs in norm placement and parameter count), so the layers are
plain torch; the counts are the check that they match the definition.

Availability: ``c in {0,1}^n`` per sample. Missing channels are replaced by the fill value -1 ([R]) inside
:meth:`DiamondGenerator.forward`, so a channel with ``c_i = 0`` cannot change the output. The domain stream
reads a 1-channel domain matrix built from the code by :mod:`.diamond_domain`, in one of two encodings, the
model's ``domain_encoding``: ``"patterns"`` (default; [R]'s released 0/1 lattice per subset, reproduced bit
for bit) or ``"constant"`` (one value per subset, spatially replicated: the encoding of packages trained
before the option, e.g. ``dir-demo`` 0.1.0).

Why it matters (measured for issue 11, tested in ``Testing/synthesis/test_diamond_infer.py`` and
``test_diamond_domain.py``): a spatially constant matrix through a reflection-padded conv is constant per
channel, and instance norm maps a constant plane to its offset, so in exact arithmetic the domain stream's
output is the same for every code: with ``"constant"`` the code reaches the output only through the -1 fill
of the image stream. In float32 the first norm leaves ~1e-5 of rounding (``x - mean`` times
``1/sqrt(eps)``); with the init offsets (0) every later norm again sees a near-constant map and scales that
rounding to unit variance, so an untrained constant-encoded generator's output is a function of summation
order (with either padding: the map after the first norm is ~0, so zero padding adds no variation; float32
vs float64 eager differ by 1.0 with the released padding, 1.3 with the legacy one, 64x64, base 16). [R]'s spatially varying patterns give a different domain-stream output per subset (as released).
:mod:`.diamond_infer` computes the domain stream with float64 norm statistics once per code and volume.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from .diamond_domain import ENCODINGS, check_encoding, domain_matrix
from .diamond_padding import (RESAMPLE_PADDINGS, RESIDUAL_PADDINGS, SameConv2d, SameConvTranspose2d,
                              check_option)

#: Value written into missing input channels ([R]).
MISSING_FILL = -1.0
#: Source contrast order of the released model.
SOURCES = ("flair", "t1", "t2")


def all_subsets(n: int = 3) -> list[tuple[int, ...]]:
    """Every non-empty availability code of ``n`` sources (2^n - 1 of them), ordered by size then index."""
    if int(n) < 1:
        raise ValueError(f"need at least one source, got n={n}")
    codes = [c for c in itertools.product((0, 1), repeat=int(n)) if any(c)]
    return sorted(codes, key=lambda c: (sum(c), [-v for v in c]))


def availability_tensor(codes, batch: int | None = None) -> torch.Tensor:
    """``(B, n)`` float tensor from a code tuple (repeated ``batch`` times) or a list of codes."""
    t = torch.as_tensor(codes, dtype=torch.float32)
    if t.ndim == 1:
        t = t.unsqueeze(0).expand(int(batch or 1), -1)
    if not torch.all((t == 0) | (t == 1)):
        raise ValueError("availability codes must be 0 or 1")
    if torch.any(t.sum(1) == 0):
        raise ValueError("at least one source must be available")
    return t


def apply_availability(x: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
    """``x`` with every channel whose code is 0 replaced by :data:`MISSING_FILL`."""
    mask = available.to(x.dtype).view(available.shape[0], available.shape[1], *([1] * (x.ndim - 2)))
    return x * mask + MISSING_FILL * (1 - mask)


def _conv_in_relu(cin: int, cout: int, k: int, stride: int = 1, resample: str = "symmetric") -> list[nn.Module]:
    if k == 7:  # c7s1: reflection padding 3 and a 'valid' conv, as [R] (train.py:319-322)
        conv: nn.Module = nn.Conv2d(cin, cout, k, padding=3, padding_mode="reflect")
    elif resample == "keras_same":  # dk ([R] train.py:249)
        conv = SameConv2d(cin, cout, k, stride)
    else:
        conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)
    return [conv, nn.InstanceNorm2d(cout, affine=True), nn.ReLU(inplace=True)]


def _up(cin: int, cout: int, resample: str) -> nn.Module:
    """uk: 3x3 stride-2 transposed conv doubling the size ([R] train.py:274)."""
    if resample == "keras_same":
        return SameConvTranspose2d(cin, cout, 3, 2)
    return nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)


class ResidualBlock(nn.Module):
    """Two 3x3 convs with instance norm, ``x + F(x)``; ``padding`` ``"zero"`` (as released: Keras ``'same'``,
    [R] train.py:257, 261) or ``"reflect"`` (packages that predate the option)."""

    def __init__(self, channels: int, padding: str = "zero"):
        super().__init__()
        mode = {"zero": "zeros", "reflect": "reflect"}[padding]
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode=mode),
            nn.InstanceNorm2d(channels, affine=True), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode=mode),
            nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _widths(base: int) -> tuple[int, int, int]:
    """Encoder widths ``(c7s1, d, d)``: the released ``48 -> 72 -> 144`` for ``base`` 48 (ratios 1 : 1.5 : 3)."""
    b = int(base)
    if b < 2 or b % 2:
        raise ValueError(f"base width must be an even number >= 2, got {base}")
    return b, 3 * b // 2, 3 * b


def _encoder(cin: int, n_blocks: int, base: int = 48, residual: str = "zero",
             resample: str = "keras_same") -> nn.Sequential:
    w0, w1, w2 = _widths(base)
    layers = (_conv_in_relu(cin, w0, 7) + _conv_in_relu(w0, w1, 3, 2, resample)
              + _conv_in_relu(w1, w2, 3, 2, resample))
    layers += [ResidualBlock(w2, residual) for _ in range(n_blocks)]
    return nn.Sequential(*layers)


class DiamondGenerator(nn.Module):
    """Two-stream generator ``G(x, c)``; input ``(B, in_channels, H, W)`` in [-1, 1] with H, W divisible by 4,
    availability ``(B, in_channels)`` of 0/1; output ``(B, out_channels, H, W)`` in [-1, 1] (tanh).

    ``n_blocks=9, in_channels=3, out_channels=3`` is the released layout (7,218,987 parameters). ``G2`` of the
    cycle (target -> sources) is the same class built with ``in_channels=1, out_channels=3, code_width=3``: it
    takes the same code, which then feeds only the domain stream (its input has no missing channels).
    ``base`` scales every width (released 48: ``48 -> 72 -> 144``, decoder ``u72 -> u48``); the demo models use
    a smaller one with the same shape. ``domain_encoding``: the domain matrix's encoding
    (:mod:`.diamond_domain`; ``"patterns"`` as released, ``"constant"`` for legacy packages).
    ``residual_padding`` (``"zero"`` as released, ``"reflect"``) and ``resample_padding`` (``"keras_same"``
    as released, ``"symmetric"``): see :mod:`.diamond_padding`. The defaults are the released behaviour;
    packages that record none of these options load with the legacy values (their previous outputs).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, n_blocks: int = 9, code_width: int = 3,
                 base: int = 48, domain_encoding: str = ENCODINGS[0], residual_padding: str = RESIDUAL_PADDINGS[0],
                 resample_padding: str = RESAMPLE_PADDINGS[0]):
        super().__init__()
        self.in_channels, self.out_channels, self.code_width = int(in_channels), int(out_channels), int(code_width)
        self.domain_encoding = check_encoding(domain_encoding, self.code_width)
        self.residual_padding = check_option("residual_padding", residual_padding, RESIDUAL_PADDINGS)
        self.resample_padding = check_option("resample_padding", resample_padding, RESAMPLE_PADDINGS)
        self.n_blocks, self.base = int(n_blocks), int(base)
        w0, w1, w2 = _widths(base)
        pads = (self.residual_padding, self.resample_padding)
        self.image_stream = _encoder(self.in_channels, n_blocks, base, *pads)
        self.domain_stream = _encoder(1, n_blocks, base, *pads)
        self.decoder = nn.Sequential(
            _up(2 * w2, w1, self.resample_padding), nn.InstanceNorm2d(w1, affine=True), nn.ReLU(inplace=True),
            _up(w1, w0, self.resample_padding), nn.InstanceNorm2d(w0, affine=True), nn.ReLU(inplace=True),
            nn.Conv2d(w0, self.out_channels, 7, padding=3, padding_mode="reflect"), nn.Tanh())

    def options(self) -> dict[str, str]:
        """The recorded architecture options (what a package manifest stores besides the sizes)."""
        return {"domain_encoding": self.domain_encoding, "residual_padding": self.residual_padding,
                "resample_padding": self.resample_padding}

    def architecture(self) -> dict:
        """Keyword arguments that rebuild this generator (sizes and options)."""
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "n_blocks": self.n_blocks,
                "code_width": self.code_width, "base": self.base, **self.options()}

    def forward(self, x: torch.Tensor, available: torch.Tensor, *, mask_inputs: bool | None = None) -> torch.Tensor:
        """Synthesise from ``x`` given the code ``available`` ``(B, code_width)``.

        Missing channels are filled with -1 when the code has one entry per input channel (``mask_inputs``
        defaults to that), so they cannot influence the output.
        """
        available = self.check_inputs(x, available)
        if mask_inputs is None:
            mask_inputs = self.code_width == self.in_channels
        if mask_inputs:
            x = apply_availability(x, available)
        return self.decoder(torch.cat([self.image_stream(x), self.domain_features(available, x)], 1))

    def check_inputs(self, x: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        """Raise ValueError unless ``x`` is ``(B, in_channels, H, W)`` with H, W divisible by 4 and
        ``available`` is ``(B, code_width)``; returns ``available`` on ``x``'s device."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"H and W must be divisible by 4, got {tuple(x.shape[-2:])}")
        available = available.to(x.device)
        if available.shape != (x.shape[0], self.code_width):
            raise ValueError(f"availability must be (B, {self.code_width}), got {tuple(available.shape)}")
        return available

    def domain_features(self, available: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The domain stream's output for every sample. It depends only on the code (and the slice size and
        the encoding), and instance norm works per sample, so it is computed once per distinct code in the
        batch and indexed:
        exactly the per-sample result, at 1/B of the cost for a volume of one subset."""
        spatial = tuple(x.shape[-2:])
        codes, inverse = torch.unique(available, dim=0, return_inverse=True)
        dm = domain_matrix(codes, spatial, self.domain_encoding)
        d = self.domain_stream(dm.to(device=x.device, dtype=x.dtype))
        return d if len(codes) == len(available) and torch.equal(codes, available) else d[inverse]


class PatchDiscriminator(nn.Module):
    """PatchGAN ``C64-C128-C256-C512`` + 1-channel 4x4 conv + sigmoid; output a patch map in (0, 1).
    ``base`` is the first width (released 64; each layer doubles it). ``padding``: ``"symmetric"`` (torch
    ``padding=1`` everywhere: the last map is one pixel smaller than its input; the default, also used by
    the pix2pix discriminator) or ``"keras_same"`` (DiamondGAN as released, [R] train.py:235, 306: the same
    maps at even sizes, the last conv keeps its input's size; see :mod:`.diamond_padding`)."""

    def __init__(self, in_channels: int = 3, base: int = 64, padding: str = "symmetric"):
        super().__init__()
        b = int(base)
        self.padding = check_option("padding", padding, RESAMPLE_PADDINGS)

        def conv(cin: int, cout: int, stride: int) -> nn.Module:
            return SameConv2d(cin, cout, 4, stride) if self.padding == "keras_same" else nn.Conv2d(cin, cout, 4, stride, 1)

        layers: list[nn.Module] = [conv(in_channels, b, 2), nn.LeakyReLU(0.2, inplace=True)]
        for cin, cout in ((b, 2 * b), (2 * b, 4 * b), (4 * b, 8 * b)):
            layers += [conv(cin, cout, 2), nn.InstanceNorm2d(cout, affine=True), nn.LeakyReLU(0.2, inplace=True)]
        layers += [conv(8 * b, 1, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["MISSING_FILL", "SOURCES", "DiamondGenerator", "PatchDiscriminator", "ResidualBlock", "all_subsets",
           "apply_availability", "availability_tensor", "count_parameters", "domain_matrix"]
