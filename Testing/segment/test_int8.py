"""8-bit integer U-Net inference (``--precision int8``): exact integer steps, calibration rules, agreement with float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuroshift.errors import InputError
from neuroshift.segment.int8 import calibrated_int8_unet, int8_available, int8_weights, max_pool2_u8
from neuroshift.segment.predict import int8_model, predict_slices
from neuroshift.segment.unet import build_unet

pytestmark = pytest.mark.skipif(not int8_available(), reason="torch without oneDNN int8 convolutions")
CPU = torch.device("cpu")


@pytest.mark.parametrize("hw", [(8, 8), (9, 7)])
def test_max_pool2_u8_equals_float_max_pool(hw):
    g = torch.Generator().manual_seed(1)
    q = torch.randint(0, 256, (2, 5) + hw, generator=g, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    got = max_pool2_u8(q)
    assert got.dtype == torch.uint8 and got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got.float(), F.max_pool2d(q.float(), 2))  # floor for odd sizes, like Keras


def _net(seed=0, preset="demo"):
    torch.manual_seed(seed)
    return build_unet({"preset": preset, "in_channels": 1}).eval()


def test_calibration_shares_scales_across_each_concatenation():
    net = _net()
    x = torch.randn(2, 1, 48, 40)
    q = calibrated_int8_unet(int8_weights(net), x)
    s = q.out_scale
    assert len(s) == len(net.conv_layers()) and s[-1] is None  # the head returns float32 logits
    # decoder level d concatenates [previous output, encoder level 3-d]: conv indices (9, 7), (11, 5), (13, 3), (15, 1)
    for prev, skip in ((9, 7), (11, 5), (13, 3), (15, 1)):
        assert s[prev] == s[skip]
    with torch.inference_mode():
        first = torch.relu(net.encoder[0].conv1(x))
    assert s[0] == pytest.approx(float(first.max()) / 255, rel=1e-6)  # largest calibration value -> 255
    q8 = q.first_level_input(x)
    assert q8.dtype == torch.uint8 and int(q8.max()) == 255
    assert float((q8.float() * s[0] - first).abs().max()) <= s[0] / 2 + 1e-6  # rounding to the nearest step
    y = 3 * x  # a slice brighter than the calibration ones: values beyond the range saturate at 255, never wrap
    with torch.inference_mode():
        over = torch.relu(net.encoder[0].conv1(y)) >= 255.5 * s[0]
    assert int(over.sum()) > 100 and bool((q.first_level_input(y)[over] == 255).all())


def test_int8_logits_track_float32_on_a_trained_network(phantom_volumes):
    """The bundled phantom-trained wmh-demo network on phantom FLAIR slices: int8 logits within a few % of
    their range, and the mask flips only near the threshold."""
    from neuroshift.segment.package import load_package
    from neuroshift.segment.registry import find_model

    net = next(iter(load_package(find_model("wmh-demo"), CPU).models.values()))[0].eval()
    flair = np.asarray(phantom_volumes.images["FLAIR"].data, np.float32)
    brain = np.asarray(phantom_volumes.brain_mask.data) > 0
    z = np.where(brain, (flair - flair[brain].mean()) / flair[brain].std(), 0.0).astype(np.float32)
    k = np.argsort(brain.sum(axis=(1, 2)))[-8:]  # the 8 axial slices with most brain
    x = torch.from_numpy(z[np.sort(k)][:, None].copy())
    q = int8_model(net, x)
    with torch.inference_mode():
        ref, got = net.forward_logits(x), q.forward_logits(x)
    span = float(ref.max() - ref.min())
    assert float((ref - got).abs().mean()) < 0.008 * span  # measured 0.0037
    assert float((ref - got).abs().max()) < 0.06 * span  # measured 0.033
    p_ref, p_got = torch.sigmoid(ref), torch.sigmoid(got)
    flips = (p_ref > 0.5) != (p_got > 0.5)
    assert int((p_ref > 0.5).sum()) > 50  # the slices hold lesions: the comparison is not vacuous
    assert float(flips.float().mean()) < 1e-3
    assert bool(((p_ref[flips] - 0.5).abs() < 0.15).all())  # flips only where float32 is near 0.5 (1 pixel, 0.047)


def test_predict_slices_int8_runs_the_int8_network_with_its_float32_agreement():
    net = _net(3).to(memory_format=torch.channels_last)
    x = np.random.default_rng(0).normal(size=(6, 1, 32, 32)).astype(np.float32)
    p8 = predict_slices(net, x, device=CPU, batch_size=2, precision="int8")
    p32 = predict_slices(net, x, device=CPU, batch_size=2, precision="fp32")
    expected = torch.sigmoid(int8_model(net, x).forward_logits(torch.from_numpy(x)))[:, 0].numpy()
    assert np.array_equal(p8, expected)  # the int8 network, same calibration, batch by batch
    assert 0 < np.abs(p8 - p32).max() < 0.02


def test_int8_is_refused_outside_the_unet_cpu_path():
    class NotAUNet(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(InputError, match="U-Nets only"):
        predict_slices(NotAUNet(), np.zeros((1, 1, 16, 16), np.float32), device=CPU, batch_size=1, precision="int8")
