"""The released 2D U-Nets: parameter counts and output sizes (segmentation.md acceptance check 1)."""

import warnings

import pytest
import torch
import torch.nn.functional as F

from neuroshift.segment.unet import (SameConv2d, UNet2D, build_unet, center_crop, claustrum_unet, count_parameters,
                                     demo_unet, pad_to, same_padding, wmh_unet)


@pytest.mark.parametrize("factory,expected", [
    (claustrum_unet, 2_494_529),
    (lambda: wmh_unet(2), 8_742_209),
    (lambda: wmh_unet(1), 8_740_609),
])
def test_released_parameter_counts(factory, expected):
    assert count_parameters(factory()) == expected


def test_level4_second_conv_is_4x4_and_first_wmh_convs_5x5():
    c = claustrum_unet()
    assert c.encoder[3].conv2.kernel_size == (4, 4)
    assert all(conv.kernel_size == (3, 3) for i, conv in enumerate(c.conv_layers()[:-1]) if i != 7)
    w = wmh_unet()
    assert w.encoder[0].conv1.kernel_size == (5, 5) and w.encoder[0].conv2.kernel_size == (5, 5)
    assert w.encoder[1].conv1.kernel_size == (3, 3)
    assert len(c.conv_layers()) == 19 and c.conv_layers()[-1].kernel_size == (1, 1)


@pytest.mark.parametrize("hw", [(200, 200), (180, 180), (181, 217), (16, 31)])
def test_output_size_equals_input_size(hw):
    torch.manual_seed(0)
    net = claustrum_unet().eval()
    with torch.inference_mode():
        out = net(torch.randn(2, 1, *hw))
    assert out.shape == (2, 1, *hw)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_wmh_two_channels_odd_size():
    net = wmh_unet(2).eval()
    with torch.inference_mode():
        assert net(torch.randn(1, 2, 181, 217)).shape == (1, 1, 181, 217)


def test_same_padding_is_tensorflow_rule():
    assert same_padding(3) == (1, 1) and same_padding(4) == (1, 2) and same_padding(5) == (2, 2)
    torch.manual_seed(1)
    conv = SameConv2d(3, 2, 4)
    x = torch.randn(1, 3, 9, 10)
    ref = F.conv2d(F.pad(x, (1, 2, 1, 2)), conv.weight, conv.bias)
    assert torch.allclose(conv(x), ref)
    with warnings.catch_warnings():  # torch warns that even 'same' kernels need a padded copy
        warnings.simplefilter("ignore", UserWarning)
        assert torch.allclose(conv(x), F.conv2d(x, conv.weight, conv.bias, padding="same"), atol=1e-6)


def test_crop_and_pad_put_the_odd_pixel_bottom_right():
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    c = center_crop(x, (4, 4))
    assert torch.equal(c, x[..., 0:4, 0:4])  # diff 1: 0 off the top/left, 1 off bottom/right
    c3 = center_crop(x, (2, 2))
    assert torch.equal(c3, x[..., 1:3, 1:3])  # diff 3: 1 off the top, 2 off the bottom
    p = pad_to(torch.ones(1, 1, 2, 2), (5, 4))
    assert p.shape == (1, 1, 5, 4)
    assert torch.equal(p[0, 0, :, 0], torch.zeros(5))
    assert torch.equal(p[0, 0, 1:3, 1:3], torch.ones(2, 2)) and float(p.sum()) == 4  # (1 before, 2 after) rows


def test_odd_size_matches_manual_reference():
    """Odd sizes follow the released graph: crop skips, then zero-pad the last decoder map."""
    torch.manual_seed(2)
    net = build_unet({"preset": "demo", "in_channels": 1}).eval()
    x = torch.randn(1, 1, 37, 45)
    skips, h = [], x
    for level, block in enumerate(net.encoder):
        h = block(h)
        if level < 4:
            skips.append(h)
            h = F.max_pool2d(h, 2)
    for block, skip in zip(net.decoder, reversed(skips)):
        h = h.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        dh, dw = skip.shape[2] - h.shape[2], skip.shape[3] - h.shape[3]
        h = block(torch.cat([h, skip[:, :, dh // 2: dh // 2 + h.shape[2], dw // 2: dw // 2 + h.shape[3]]], 1))
    dh, dw = 37 - h.shape[2], 45 - h.shape[3]
    assert (dh, dw) == (5, 13)
    h = F.pad(h, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
    ref = torch.sigmoid(net.head(h))
    with torch.inference_mode():
        assert torch.allclose(net(x), ref, atol=1e-6)


def test_configurable_family():
    net = build_unet({"in_channels": 3, "encoder": [8, 16, 32], "decoder": [16, 8], "first_kernel": 5})
    assert net.depth == 2 and net.encoder[1].conv2.kernel_size == (4, 4)
    with torch.inference_mode():
        assert net(torch.randn(1, 3, 23, 30)).shape == (1, 1, 23, 30)
    again = build_unet(net.config())
    assert count_parameters(again) == count_parameters(net)
    assert build_unet({"preset": "wmh", "in_channels": 1}).config()["in_channels"] == 1
    assert count_parameters(demo_unet()) < 200_000
    with pytest.raises(ValueError):
        build_unet({"encoder": [8, 16], "decoder": [8, 8]})
    with pytest.raises(ValueError):
        build_unet({"widths": [1]})
    with pytest.raises(ValueError):
        claustrum_unet()(torch.randn(1, 1, 8, 8))
    assert isinstance(net, UNet2D)
