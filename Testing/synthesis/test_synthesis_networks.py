"""LesionSynth networks: exact parameter counts of the released layouts, output ranges, availability codes,
MC dropout and flip TTA (acceptance checks of docs/synthesis.md section 6)."""

from __future__ import annotations

import itertools

import pytest
import torch

from neuroshift.synthesis.diamondgan import (DiamondGenerator, PatchDiscriminator, all_subsets,
                                             availability_tensor, count_parameters, domain_matrix)
from neuroshift.synthesis.pix2pix import ConditionalPatchDiscriminator, UNetGenerator, mc_sample, set_mc_dropout
from neuroshift.synthesis.tta import flip_tta, flip_variants
from neuroshift.synthesis.vt1c import VirtualT1cNet


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return DiamondGenerator().eval()


def test_diamondgan_parameter_counts(generator):
    # hand count: per stream 7104+96 + 31176+144 + 93456+288 + 9*374112 (image, 3 ch) / 2400+96+... (domain, 1 ch)
    assert count_parameters(generator) == 7_218_987
    assert count_parameters(DiamondGenerator(n_blocks=6)) == 4_974_315
    assert count_parameters(PatchDiscriminator(3)) == 2_766_529
    assert count_parameters(PatchDiscriminator(1)) == 2_764_481
    # G2 (target -> sources) with a 1-channel target: the image stream's first conv has 7*7*2*48 fewer weights
    assert count_parameters(DiamondGenerator(in_channels=1, out_channels=3)) == 7_218_987 - 7 * 7 * 2 * 48


def test_all_seven_subsets_and_distinct_codes():
    subsets = all_subsets(3)
    assert len(subsets) == 7
    assert set(subsets) == {c for c in itertools.product((0, 1), repeat=3) if any(c)}
    values = {float(domain_matrix(availability_tensor(c), (4, 4))[0, 0, 0, 0]) for c in subsets}
    assert len(values) == 7 and min(values) >= -1 and max(values) == 1.0
    with pytest.raises(ValueError, match="at least one"):
        availability_tensor((0, 0, 0))


def test_missing_channel_cannot_change_output(generator):
    torch.manual_seed(1)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    for code in all_subsets(3):
        c = availability_tensor(code)
        base = generator(x, c)
        assert base.abs().max() <= 1.0
        for i in range(3):
            x2 = x.clone()
            x2[:, i] = torch.rand(16, 16) * 2 - 1
            changed = generator(x2, c)
            if code[i] == 0:
                assert torch.equal(base, changed), (code, i)
            else:
                assert (base - changed).abs().max() > 1e-4, (code, i)


def test_output_ranges():
    torch.manual_seed(2)
    g = DiamondGenerator(n_blocks=1)
    y = g(torch.randn(2, 3, 16, 16) * 100, availability_tensor((1, 1, 1), 2))
    assert y.shape == (2, 3, 16, 16) and y.min() >= -1 and y.max() <= 1
    d = PatchDiscriminator(3)(torch.randn(1, 3, 64, 64))
    assert d.min() > 0 and d.max() < 1
    u = UNetGenerator(depth=3, base=8)(torch.randn(1, 2, 32, 32) * 100)
    assert u.min() >= -1 and u.max() <= 1
    v = VirtualT1cNet(features=(4, 4, 8, 8, 8, 4))(torch.randn(1, 4, 32, 32, 32) * 100)
    assert v.shape == (1, 1, 32, 32, 32) and v.min() >= 0 and v.max() <= 1
    assert ConditionalPatchDiscriminator(2, 1)(torch.zeros(1, 2, 32, 32), torch.zeros(1, 1, 32, 32)).shape[1] == 1


def test_vt1c_uses_leaky_relu_02():
    net = VirtualT1cNet(features=(4, 4, 8, 8, 8, 4))
    slopes = {m.negative_slope for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.2}
    assert not any(isinstance(m, torch.nn.ReLU) for m in net.modules())


def test_unet_dropout_only_before_last_layer():
    g = UNetGenerator(depth=3, base=8, dropout=0.3)
    drops = [m for m in g.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(drops) == 1 and drops[0].p == 0.3 and g.dropout is drops[0]


def test_mc_mode_keeps_norms_in_eval_and_restores_state():
    g = UNetGenerator(depth=3, base=8).train()
    set_mc_dropout(g, True)
    norms = [m for m in g.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert norms and not any(m.training for m in norms) and g.dropout.training
    g.train()
    mc_sample(g, torch.randn(1, 2, 32, 32), 2)
    assert all(m.training for m in g.modules())  # state restored


def test_mc_variance_zero_without_dropout_positive_with_it_and_seeded():
    torch.manual_seed(3)
    x = torch.randn(1, 2, 32, 32)
    g0 = UNetGenerator(depth=3, base=8, dropout=0.0)
    _, sd0 = mc_sample(g0, x, 5)
    assert torch.count_nonzero(sd0) == 0
    g = UNetGenerator(depth=3, base=8, dropout=0.3)
    m1, sd1 = mc_sample(g, x, 5, seed=7)
    m2, sd2 = mc_sample(g, x, 5, seed=7)
    assert torch.equal(m1, m2) and torch.equal(sd1, sd2)
    assert sd1.mean() > 1e-3
    m3, _ = mc_sample(g, x, 5, seed=8)
    assert not torch.equal(m1, m3)


def test_flip_tta_identity_and_flip_back():
    assert len(flip_variants(3)) == 8 and len(set(flip_variants(3))) == 8
    x = torch.arange(2 * 3 * 4, dtype=torch.float64).reshape(1, 1, 2, 3, 4)
    assert torch.equal(flip_tta(lambda t: t, x), x)
    # a position-dependent model w * x: the TTA result is x times the mean over the 8 flips of w
    w = torch.rand(1, 1, 2, 3, 4, dtype=torch.float64)
    calls = []

    def model(t):
        calls.append(1)
        return t * w

    out = flip_tta(model, x)
    expected = x * torch.stack([torch.flip(w, f) if f else w for f in flip_variants(3)]).mean(0)
    assert len(calls) == 8
    torch.testing.assert_close(out, expected)
    # 2 models x 8 flips = 16 passes, averaged
    assert torch.equal(flip_tta([lambda t: t, lambda t: 3 * t], x), 2 * x)


def test_mc_samples_only_the_head_same_draws_as_full_passes():
    torch.manual_seed(0)
    g = UNetGenerator(depth=3, base=8, dropout=0.3)
    x = torch.randn(2, 2, 32, 32)
    set_mc_dropout(g, True)
    torch.manual_seed(11)
    full = [g(x) for _ in range(3)]  # the backbone draws no random numbers: same masks in the same order
    g.eval()
    mean, sd = mc_sample(g, x, 3, seed=11)
    stack = torch.stack(full)
    torch.testing.assert_close(mean, stack.mean(0), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sd, stack.std(0, unbiased=False), atol=1e-6, rtol=1e-5)


def test_mc_flip_tta_pools_by_total_variance():
    from neuroshift.synthesis.tta import mc_flip_tta
    # no dropout: every MC SD is 0, so the pooled SD is the SD over the 4 flipped-back outputs
    torch.manual_seed(1)
    g = UNetGenerator(depth=2, base=4, dropout=0.0).eval()
    x = torch.randn(1, 2, 16, 16)
    mean, sd = mc_flip_tta(g, x, 3, spatial_dims=2)
    outs = torch.stack([torch.flip(g(torch.flip(x, f)), f) if f else g(x) for f in flip_variants(2)])
    torch.testing.assert_close(mean, outs.mean(0), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sd, outs.std(0, unbiased=False), atol=1e-5, rtol=1e-4)


def test_width_settings_keep_the_released_counts_and_scale():
    assert count_parameters(DiamondGenerator(base=48)) == 7_218_987
    assert count_parameters(PatchDiscriminator(3, base=64)) == 2_766_529
    # base 16: widths 16-24-48; hand count of the 1-block, 1-channel-out generator
    conv = lambda ci, co, k: ci * co * k * k + co  # noqa: E731
    norm = lambda c: 2 * c  # noqa: E731
    enc = lambda ci: (conv(ci, 16, 7) + norm(16) + conv(16, 24, 3) + norm(24) + conv(24, 48, 3) + norm(48)  # noqa: E731
                      + 2 * (conv(48, 48, 3) + norm(48)))
    dec = conv(96, 24, 3) + norm(24) + conv(24, 16, 3) + norm(16) + conv(16, 1, 7)
    assert count_parameters(DiamondGenerator(3, 1, n_blocks=1, base=16)) == enc(3) + enc(1) + dec
    with pytest.raises(ValueError, match="even"):
        DiamondGenerator(base=15)


def test_domain_stream_once_per_distinct_code_same_result():
    torch.manual_seed(0)
    g = DiamondGenerator(n_blocks=1, out_channels=1, base=8).eval()
    x = torch.randn(5, 3, 32, 32)
    c = torch.tensor([[1, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 1], [1, 1, 1]], dtype=torch.float32)
    seen = []
    hook = g.domain_stream.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    with torch.no_grad():
        y = g(x, c)
        single = torch.cat([g(x[i:i + 1], c[i:i + 1]) for i in range(5)])
    hook.remove()
    assert seen[0] == 3  # three distinct codes in the batch of five
    torch.testing.assert_close(y, single, atol=1e-5, rtol=1e-4)
