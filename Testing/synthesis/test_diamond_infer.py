"""DiamondGAN inference kernels (neuroshift.synthesis.diamond_infer): the same function as the eager
generator, the domain-stream finding behind the "bf16 differs by 1.6" mystery, the cache, the product path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.diamond_helpers import float64_twin, trained_like

from neuroshift.synthesis.diamond_infer import DiamondInference
from neuroshift.synthesis.diamondgan import DiamondGenerator, all_subsets, availability_tensor, domain_matrix


def _trained_like(out_channels: int = 1, seed: int = 0, base: int = 16, n_blocks: int = 2,
                  encoding: str = "patterns") -> DiamondGenerator:
    """See helpers.diamond_helpers.trained_like (init values make the constant-encoded domain stream
    degenerate: see test_init_domain_stream_is_exactly_zero)."""
    return trained_like(out_channels, seed, base, n_blocks, encoding)


_float64_twin = float64_twin


@pytest.mark.parametrize("out_channels", [1, 3])
def test_fast_path_equals_eager_generator(out_channels):
    g = _trained_like(out_channels)
    g64 = _float64_twin(g)
    torch.manual_seed(1)
    x = torch.rand(4, 3, 40, 48) * 2 - 1  # 40 rows: two bands of the last conv
    codes = availability_tensor([(1, 1, 1), (1, 0, 0), (1, 1, 1), (0, 1, 1)])
    with torch.no_grad():
        fast = DiamondInference(g)(x, codes)
        eager = g(x, codes)
        exact = g64(x.double(), codes)
    assert fast.shape == eager.shape == (4, out_channels, 40, 48)
    err_fast = float((fast.double() - exact).abs().max())
    err_eager = float((eager.double() - exact).abs().max())
    assert err_fast < 1e-5  # the eager model in float64: the reference
    # the float32 eager model is farther off (its domain stream carries rounding amplified by the first
    # norm, see the next test): the fast path is within 1e-5 of the function, eager float32 is not always
    assert err_fast <= err_eager + 1e-6
    # the float64 fast path is the same function to float64 rounding
    fast64 = DiamondInference(g64)(x.double(), codes)
    assert float((fast64 - exact).abs().max()) < 1e-10


def test_constant_domain_stream_first_norm_is_its_offset_for_every_code():
    """The finding (legacy ``domain_encoding="constant"``): the domain matrix is spatially constant, a reflection-padded conv of a constant map is
    constant per channel, and instance norm of a constant map is its offset: after the domain stream's first
    norm every code gives the same features, so the code reaches the output only through the -1 fill of the
    image stream (float64: exactly up to 1e-9). Float32 keeps ~1e-5 of rounding (x - mean times
    1/sqrt(eps) = 316), which later norms amplify to O(1) when their offsets are 0 (the initial generator:
    the bf16 / channels_last 'differences of 1.6' were different rounding, not a kernel bug)."""
    g64 = _float64_twin(_trained_like(encoding="constant"))
    conv, norm = g64.domain_stream[0], g64.domain_stream[1]
    beta = norm.bias.view(1, -1, 1, 1)
    for code in all_subsets(3):
        d = domain_matrix(availability_tensor(code), (32, 32), "constant").double()
        with torch.no_grad():
            h = conv(d)
            assert float(h.amax((2, 3)).sub(h.amin((2, 3))).abs().max()) == 0.0  # constant per channel
            assert float((norm(h) - beta).abs().max()) < 1e-9
    fast = DiamondInference(_trained_like(encoding="constant"))
    x = torch.zeros(1, 3, 32, 32)
    shares = [fast._domain_share(availability_tensor(c)[0], (32, 32), x.device, x.dtype) for c in all_subsets(3)]
    assert all(torch.equal(shares[0], s) for s in shares[1:])


def test_init_domain_stream_is_exactly_zero_in_the_fast_path():
    """With init norm parameters (scale 1, offset 0) the constant-encoded domain stream's exact output is 0
    (every norm sees a constant map); the fast path computes it with float64 norm statistics and gets 0 to
    rounding."""
    torch.manual_seed(0)
    g = DiamondGenerator(3, 1, n_blocks=2, base=16, domain_encoding="constant").eval()
    share = DiamondInference(g)._domain_share(availability_tensor((1, 0, 1))[0], (32, 32), torch.device("cpu"),
                                               torch.float32)
    assert share.shape == (1, 24, 16, 16)
    assert float(share.abs().max()) < 1e-6


def test_cache_follows_weight_changes():
    g = _trained_like()
    fast = DiamondInference(g)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    c = availability_tensor((1, 1, 0), 2)
    with torch.no_grad():
        before = fast(x, c)
        g.domain_stream[1].bias.add_(0.3)  # in place, as an optimiser step or load_state_dict would
        after = fast(x, c)
        eager = _float64_twin(g)(x.double(), c)
    assert float((after.double() - eager).abs().max()) < 1e-5
    assert float((after - before).abs().max()) > 1e-3


def test_checks_like_the_generator():
    g = _trained_like()
    fast = DiamondInference(g)
    with pytest.raises(ValueError, match="divisible by 4"):
        fast(torch.zeros(1, 3, 30, 32), availability_tensor((1, 1, 1)))
    with pytest.raises(ValueError, match="availability"):
        fast(torch.zeros(1, 3, 32, 32), availability_tensor((1, 1, 1), 2))
    with pytest.raises(RuntimeError, match="eval"):
        DiamondInference(g.train())(torch.zeros(1, 3, 32, 32), availability_tensor((1, 1, 1)))
    with pytest.raises(TypeError):
        DiamondInference(torch.nn.Linear(2, 2))


def test_missing_channel_cannot_change_the_fast_output():
    g = _trained_like()
    fast = DiamondInference(g)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = x.clone()
    y[:, 1] = torch.rand(32, 32)
    c = availability_tensor((1, 0, 1))
    assert torch.equal(fast(x, c), fast(y, c))


def test_synthesize_uses_the_same_function(tmp_path):
    from neuroshift.synthesis.inference import load_package, normalise_volume, save_package, synthesize
    g = _trained_like()
    arch = {"in_channels": 3, "out_channels": 1, "n_blocks": 2, "code_width": 3, "base": 16}
    save_package(tmp_path / "dg", "diamondgan", "dir", ("flair", "t1", "t2"), arch, g, {"trained_on": "test"})
    model = load_package(tmp_path / "dg")
    rng = np.random.default_rng(0)
    brain = np.zeros((3, 32, 32), bool)
    brain[:, 4:28, 6:26] = True
    vols = {n: (rng.random((3, 32, 32)) * brain).astype(np.float32) for n in ("flair", "t2")}
    out, _ = synthesize(model, vols, brain, histogram_match=False)
    stack = np.stack([normalise_volume(vols[n], brain, (-1.0, 1.0)) if n in vols else np.full(brain.shape, -1.0)
                      for n in ("flair", "t1", "t2")]).astype(np.float32)
    with torch.no_grad():
        y = _float64_twin(g)(torch.from_numpy(stack).permute(1, 0, 2, 3).double(),
                             availability_tensor((1, 0, 1), 3))[:, 0].numpy()
    expected = np.clip((y + 1) / 2, 0, 1) * 1000.0 * brain
    assert np.abs(out - expected).max() < 1e-5 * 1000


def test_streams_split_gives_the_same_result():
    """Samples are independent: 3 single-threaded streams give what one pass gives (also under autocast,
    whose per-thread state the streams re-enter)."""
    g = _trained_like()
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    c = availability_tensor([(1, 1, 1), (0, 1, 0), (1, 1, 1), (1, 0, 1), (0, 1, 0)])
    one, three = DiamondInference(g, streams=1), DiamondInference(g, streams=3)
    assert float((three(x, c) - one(x, c)).abs().max()) < 1e-5  # thread counts: summation order only
    ref = one(x, c)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = one(x, c), three(x, c)
    assert a.dtype == b.dtype  # float32: the 1-channel last layer sums its 49 terms in float32
    assert float((a - b).abs().max()) < 1e-2  # bfloat16: split-dependent rounding allowed
    assert 1e-4 < float((b - ref).abs().max()) < 5e-2  # the streams did run in bfloat16
