"""The layout and padding kernels of neuroshift.synthesis.diamond_infer, each against the plain torch op it
replaces (float64 references; literal small cases for the padding)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuroshift.synthesis.diamond_infer import (_instance_norm_channels_last, _row_folded_conv, conv_pads,
                                                 pad_into)
from neuroshift.synthesis.diamond_padding import SameConv2d


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_pad_into_equals_f_pad(mode, relu, fmt):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 9, 11)
    x_before = x.clone()
    for pads in ((3, 3, 3, 3), (0, 2, 0, 2), (1, 0, 2, 1)):
        got = pad_into(x, pads, mode, relu=relu, memory_format=fmt)
        want = F.pad(x.relu() if relu else x, pads, mode="constant" if mode == "zeros" else mode)
        assert torch.equal(got, want)  # the same values, copied: bit for bit
        assert got.is_contiguous(memory_format=fmt)
    assert torch.equal(x, x_before)  # the input is not modified


def test_pad_into_reflect_literal():
    """One row [1, 2, 3, 4] reflected by 2 each side: [3, 2, 1, 2, 3, 4, 3, 2] (numpy/torch 'reflect')."""
    x = torch.tensor([[[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]]]])
    y = pad_into(x, (2, 2, 1, 1), "reflect")
    assert y[0, 0, 1].tolist() == [3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]
    assert y[0, 0, 0].tolist() == [7.0, 6.0, 5.0, 6.0, 7.0, 8.0, 7.0, 6.0]  # top row reflects input row 1
    assert y[0, 0, 4].tolist() == y[0, 0, 2].tolist()  # bottom row reflects input row 1 (from the end)


def test_conv_pads_of_the_generator_layers():
    x = torch.zeros(1, 4, 240, 240)
    # Keras 'same' stride 2 at 240: 0 before, 1 after, plus an unread zero to an even 242
    assert conv_pads(SameConv2d(4, 4, 3, 2), x) == ((0, 2, 0, 2), "zeros")
    assert conv_pads(nn.Conv2d(4, 4, 7, padding=3, padding_mode="reflect"), x) == ((3, 3, 3, 3), "reflect")
    assert conv_pads(nn.Conv2d(4, 4, 3, padding=1), x) is None  # zero padding: oneDNN pads itself


@pytest.mark.parametrize("shape", [(1, 48, 60, 60), (2, 16, 20, 24)])
def test_channels_last_norm_equals_group_norm(shape):
    """Two-pass statistics: as accurate as the NCHW group-norm kernel against float64 (torch's own
    channels_last kernel is one-pass; at this mean/std ratio it is ~10x farther off)."""
    torch.manual_seed(1)
    n, c, h, w = shape
    x = (torch.randn(shape) * 3 + 2).contiguous(memory_format=torch.channels_last)
    m = nn.InstanceNorm2d(c, affine=True)
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0.0, 0.5)
        got = _instance_norm_channels_last(m, x)
        ref = F.group_norm(x.double().contiguous(), c, m.weight.double(), m.bias.double(), m.eps)
        nchw = F.group_norm(x.contiguous(), c, m.weight, m.bias, m.eps)
    assert got.is_contiguous(memory_format=torch.channels_last) and got.shape == x.shape
    err = float((got.double() - ref).abs().max())
    assert err < 3e-6
    assert err <= 2 * float((nchw.double() - ref).abs().max()) + 1e-7


@pytest.mark.parametrize("out_channels", [1, 3])
def test_row_folded_conv_equals_conv2d(out_channels):
    torch.manual_seed(2)
    xp = torch.randn(2, 12, 26, 30)
    w = torch.randn(out_channels, 12, 7, 7) * 0.1
    b = torch.randn(out_channels)
    got = _row_folded_conv(xp, w, b)
    ref = F.conv2d(xp.double(), w.double(), b.double())
    assert got.shape == (2, out_channels, 20, 24)
    assert float((got.double() - ref).abs().max()) < 1e-5
    # float64 in, float64 arithmetic: the same function to rounding
    assert float((_row_folded_conv(xp.double(), w.double(), b.double()) - ref).abs().max()) < 1e-12
    # under bfloat16 autocast the sums stay float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = _row_folded_conv(xp.bfloat16(), w, b)
    assert y.dtype == torch.float32


def test_pad_into_reuse_is_per_thread_scratch():
    """``reuse=True`` (what the convs use) returns this thread's scratch tensor of that shape: the same storage
    call after call, each time with the right values (borders re-zeroed); ``reuse=False`` a new tensor."""
    import threading
    torch.manual_seed(3)
    a, b = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    pa = pad_into(a, (0, 2, 0, 2), "zeros", relu=True, reuse=True)
    pa_copy = pa.clone()
    pb = pad_into(b, (0, 2, 0, 2), "zeros", relu=True, reuse=True)
    assert pb.data_ptr() == pa.data_ptr()
    assert torch.equal(pb, F.pad(b.relu(), (0, 2, 0, 2)))
    assert torch.equal(pa_copy, F.pad(a.relu(), (0, 2, 0, 2)))
    assert pad_into(a, (0, 2, 0, 2), "zeros").data_ptr() != pb.data_ptr()
    other = []
    t = threading.Thread(target=lambda: other.append(pad_into(a, (0, 2, 0, 2), "zeros", reuse=True).data_ptr()))
    t.start()
    t.join()
    assert other[0] != pb.data_ptr()
