"""The fused CPU inference path of the U-Net (conv + ReLU in one oneDNN call, decoder convolutions as 2x2 phase
convolutions of the coarser map, :mod:`neuroshift.segment.upconv`)."""

from __future__ import annotations

import pytest
import torch

from neuroshift.segment import unet as U

pytestmark = pytest.mark.skipif(not U._MKLDNN_POINTWISE, reason="oneDNN pointwise convolution not in this torch")


def _pair(net, x, monkeypatch):
    """(fused, unfused) logits of ``net`` on ``x`` (channels-last, no autograd)."""
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert U.fused_inference(x, net.head.weight)
        fused = net.forward_logits(x)
        monkeypatch.setattr(U, "_MKLDNN_POINTWISE", False)
        assert not U.fused_inference(x, net.head.weight)
        plain = net.forward_logits(x)
        monkeypatch.setattr(U, "_MKLDNN_POINTWISE", True)
    return fused, plain


@pytest.mark.parametrize("preset,shape", [("claustrum", (2, 1, 64, 48)), ("demo", (3, 2, 45, 37)),
                                          ("demo", (1, 2, 33, 50))])
def test_fused_float32_matches_the_network_within_float32_rounding(preset, shape, monkeypatch):
    """Same function, other summation order: both paths within float32 rounding of a float64 run, the fused one
    no further from it than the plain one (x 1.5 + 1e-7 for rounding luck)."""
    torch.manual_seed(0)
    net = U.build_unet(preset).eval().to(memory_format=torch.channels_last)
    x = torch.randn(shape)
    fused, plain = _pair(net, x, monkeypatch)
    assert fused.shape == (shape[0], 1) + shape[2:]
    with torch.no_grad():
        ref = net.double().forward_logits(x.double())
    err_fused, err_plain = float((fused.double() - ref).abs().max()), float((plain.double() - ref).abs().max())
    assert err_fused <= 1.5 * err_plain + 1e-7
    assert err_fused <= 1e-6 * max(1.0, float(ref.abs().max()))


def test_up_conv_relu_is_the_upsampled_concatenation_conv():
    """The phase decomposition is an identity: the float32 oneDNN result is within float32 rounding of the float64
    upsample + concatenate + convolve (odd skip sizes cropped as released)."""
    from neuroshift.segment.upconv import phase_weights, up_conv_relu

    torch.manual_seed(4)
    cl = torch.channels_last
    x = torch.randn(2, 5, 6, 7, dtype=torch.float64).contiguous(memory_format=cl)
    skip = torch.randn(2, 3, 13, 15, dtype=torch.float64).contiguous(memory_format=cl)  # cropped to 12 x 14
    w, b = torch.randn(4, 8, 3, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    up = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
    expected = torch.relu(torch.nn.functional.conv2d(torch.cat([up, U.center_crop(skip, (12, 14))], 1), w, b,
                                                     padding=1))
    phases, w_skip = phase_weights(w, 5, torch.float32)
    assert [tuple(p.shape) for p in phases] == [(4, 5, 2, 2)] * 4 and tuple(w_skip.shape) == (4, 3, 3, 3)
    with torch.inference_mode():
        got = up_conv_relu(x.float().contiguous(memory_format=cl), skip.float().contiguous(memory_format=cl),
                           phases, w_skip, b.float())
    assert got.shape == expected.shape and got.is_contiguous(memory_format=cl)
    assert float((got.double() - expected).abs().max()) < 1e-5 * float(expected.abs().max())
    assert int((expected > 0).sum()) > 100  # the ReLU leaves a real comparison


def test_fold_taps_literal():
    from neuroshift.segment.upconv import fold_taps

    w = torch.tensor([1.0, 10.0, 100.0])
    assert fold_taps(w, 0, 0).tolist() == [1.0, 110.0]  # rows i-1, i of the coarse map
    assert fold_taps(w, 0, 1).tolist() == [11.0, 100.0]  # rows i, i+1


def test_fused_bfloat16_matches_unfused_bfloat16(monkeypatch):
    torch.manual_seed(1)
    net = U.build_unet("demo").eval().to(memory_format=torch.channels_last)
    ref = net.forward_logits(torch.randn(2, 2, 40, 40)).detach()  # grad enabled: the unfused path
    torch.manual_seed(1)
    x = torch.randn(2, 2, 40, 40)
    net16 = net.to(torch.bfloat16)
    fused, plain = _pair(net16, x.to(torch.bfloat16), monkeypatch)
    # identical up to bf16 rounding of the ReLU / copy order: within a few bf16 ulps of the logits' scale
    scale = float(plain.float().abs().max())
    assert float((fused.float() - plain.float()).abs().max()) <= 0.02 * scale
    assert ref.shape == fused.shape


def test_training_and_gradients_take_the_plain_path():
    torch.manual_seed(2)
    net = U.build_unet("demo").to(memory_format=torch.channels_last)
    x = torch.randn(2, 2, 32, 32).contiguous(memory_format=torch.channels_last)
    assert not U.fused_inference(x, net.head.weight)  # autograd on
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    with torch.no_grad():
        assert not U.fused_inference(x.contiguous(), net.head.weight)  # NCHW input
        assert not U.fused_inference(x.to(torch.bfloat16), net.head.weight)  # dtype differs from the weights


def test_upsample2_cat_literal():
    x = torch.arange(4.0).reshape(1, 1, 2, 2).contiguous(memory_format=torch.channels_last)
    skip = torch.arange(100.0, 125.0).reshape(1, 1, 5, 5).contiguous(memory_format=torch.channels_last)
    out = U.upsample2_cat(x, skip)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert out[0, 0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    # 5x5 skip centre-cropped to 4x4: the extra row/column comes off the bottom/right
    assert out[0, 1].tolist() == [[100, 101, 102, 103], [105, 106, 107, 108], [110, 111, 112, 113],
                                  [115, 116, 117, 118]]


def test_observe_sees_every_relu_output_in_both_paths(monkeypatch):
    """``forward_logits(observe=...)`` reports each convolution's ReLU output (head excluded), in conv_layers order,
    the same in the fused and the plain path (what int8 calibration relies on)."""
    torch.manual_seed(5)
    net = U.build_unet("demo").eval().to(memory_format=torch.channels_last)
    x = torch.randn(2, 2, 40, 36).contiguous(memory_format=torch.channels_last)
    seen = {True: [], False: []}
    with torch.inference_mode():
        for fused in (True, False):
            monkeypatch.setattr(U, "_MKLDNN_POINTWISE", fused)
            net.forward_logits(x, observe=lambda y, f=fused: seen[f].append((tuple(y.shape), float(y.amax()),
                                                                             float(y.amin()))))
    convs = net.conv_layers()[:-1]
    assert [s[0][1] for s in seen[True]] == [c.out_channels for c in convs]
    assert all(lo >= 0 for _, _, lo in seen[True])  # after the ReLU
    for (sf, mf, _), (sp, mp, _) in zip(seen[True], seen[False]):
        assert sf == sp and abs(mf - mp) <= 1e-5 * max(1.0, mp)
