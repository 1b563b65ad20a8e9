"""The fused CPU inference path of the U-Net (conv + ReLU in one oneDNN call, upsample written into the concat buffer)."""

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
def test_fused_float32_is_identical(preset, shape, monkeypatch):
    torch.manual_seed(0)
    net = U.build_unet(preset).eval().to(memory_format=torch.channels_last)
    fused, plain = _pair(net, torch.randn(shape), monkeypatch)
    assert fused.shape == (shape[0], 1) + shape[2:]
    # same convolutions; oneDNN may block a batch of 1 differently with the post-op: float32 rounding at most
    assert float((fused - plain).abs().max()) <= 1e-6
    if shape[0] > 1:
        assert torch.equal(fused, plain)


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
