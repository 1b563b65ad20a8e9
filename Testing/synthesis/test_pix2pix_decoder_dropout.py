"""synthDIR U-Net's optional decoder dropout (neuroshift.synthesis.pix2pix): placement, packages without it
unchanged, MC sampling by full passes when it is on."""

from __future__ import annotations

import pytest
import torch

from neuroshift.synthesis.pix2pix import UNetGenerator, mc_sample, set_mc_dropout


def test_default_is_the_paper_network_and_weights_keep_their_names():
    plain = UNetGenerator(depth=3, base=8)
    with_dec = UNetGenerator(depth=3, base=8, decoder_dropout=0.3)
    assert plain.decoder_dropout == 0.0
    assert [m.p for m in plain.modules() if isinstance(m, torch.nn.Dropout)] == [0.3]
    # one dropout after each up block but the outermost (depth 3 -> 2), plus the last-layer one
    assert sorted(m.p for m in with_dec.modules() if isinstance(m, torch.nn.Dropout)) == [0.3, 0.3, 0.3]
    assert not any(isinstance(m, torch.nn.Dropout) for m in with_dec.ups[-1].modules())
    assert plain.state_dict().keys() == with_dec.state_dict().keys()  # old packages load either way
    with_dec.load_state_dict(plain.state_dict())
    x = torch.randn(1, 2, 32, 32)
    torch.testing.assert_close(plain.eval()(x), with_dec.eval()(x))  # eval: dropout is the identity


def test_bad_decoder_dropout_refused():
    with pytest.raises(ValueError, match="decoder_dropout"):
        UNetGenerator(depth=3, base=8, decoder_dropout=1.0)


def test_mc_with_decoder_dropout_equals_seeded_full_passes_and_backbone_varies():
    torch.manual_seed(0)
    g = UNetGenerator(depth=3, base=8, dropout=0.3, decoder_dropout=0.3)
    x = torch.randn(2, 2, 32, 32)
    set_mc_dropout(g, True)
    f1, f2 = g.backbone(x), g.backbone(x)
    assert not torch.equal(f1, f2)  # the features before the last layer are random too
    torch.manual_seed(4)
    full = torch.stack([g(x) for _ in range(4)])
    g.eval()
    mean, sd = mc_sample(g, x, 4, seed=4)
    torch.testing.assert_close(mean, full.mean(0), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sd, full.std(0, unbiased=False), atol=1e-6, rtol=1e-5)
    assert not g.training and not any(m.training for m in g.modules())  # state restored


def test_decoder_dropout_only_gives_variance_and_none_gives_zero():
    torch.manual_seed(2)
    x = torch.randn(1, 2, 32, 32)
    g = UNetGenerator(depth=3, base=8, dropout=0.0, decoder_dropout=0.3)
    _, sd = mc_sample(g, x, 4, seed=1)
    assert float(sd.mean()) > 1e-4
    g0 = UNetGenerator(depth=3, base=8, dropout=0.0, decoder_dropout=0.0)
    _, sd0 = mc_sample(g0, x, 4, seed=1)
    assert torch.count_nonzero(sd0) == 0
