"""Block layout of the tissue-wise derivative (simulate.block_layout): the dense sum within the fixed-point bound,
crisp voxels and tissue-free voxels exact, one streaming pass (file name kept from the former label layout)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from neuroshift.io.params import AcquisitionParams
from neuroshift.simulate import block_layout as BL
from neuroshift.simulate import tissuewise as tw
from neuroshift.simulate.tissuewise import fit_tissue_model

SRC = AcquisitionParams(TE_ms=112, TI_ms=2500, TR_ms=9000, field_T=3.0)
TARGET = AcquisitionParams(TE_ms=150, TI_ms=2200)


def _fractions(shape, tissues=("CSF", "GM", "WM", "lesion"), seed=0, pv_share=0.2, empty_share=0.3):
    """Crisp voxels (one tissue, fraction 1), partial-volume voxels (random 2-, 3- and 4-tissue mixtures, a lone
    0.6) and tissue-free voxels (runs of them, so that spans and gaps alternate)."""
    g = np.random.default_rng(seed)
    n = int(np.prod(shape))
    label = g.integers(1, len(tissues) + 1, n)
    label[np.repeat(g.random(-(-n // 16)) < empty_share, 16)[:n]] = 0   # tissue-free runs of 16 voxels
    pv = (g.random(n) < pv_share) & (label > 0)
    mix = g.random((len(tissues), n)).astype(np.float32)
    keep = g.integers(1, len(tissues) + 1, n)                            # 1..T tissues per mixture
    mix *= np.arange(len(tissues))[:, None] < keep[None, :]
    if len(tissues) > 1:
        mix /= mix.sum(0)  # one tissue: random fractions < 1 (partial volume with background)
    fr = np.zeros((len(tissues), n), np.float32)
    for t in range(len(tissues)):
        fr[t] = np.where(pv, mix[t], (label == t + 1).astype(np.float32))
    fr[:, 5] = 0.0
    fr[-1, 5] = 0.6                                        # one tissue, not crisp
    fr[:, 6] = 0.0                                         # empty
    fr[:, 7] = 0.0
    fr[0, 7] = 1.0                                         # crisp
    return {t: fr[i].reshape(shape) for i, t in enumerate(tissues)}


def _image(fr, seed=1):
    w = np.linspace(200.0, 900.0, len(fr)).astype(np.float32)
    img = sum(w[i] * f for i, f in enumerate(fr.values()))
    return (img + np.random.default_rng(seed).normal(0, 3, img.shape)).astype(np.float32)


def _check(model, img, fr, out, target=TARGET):
    """Crisp voxels exactly S + Δ_t, empty voxels exactly S, all within Σ|Δ_t|·2⁻¹⁶ + float32 rounding."""
    delta = model.deltas(target)
    stack = np.stack([fr[t] for t in model._order]).reshape(len(model._order), -1)
    flat, src = out.reshape(-1), img.reshape(-1)
    crisp = ((stack > 0).sum(0) == 1) & (stack.max(0) == 1)
    assert np.array_equal(flat[crisp], (src + delta[np.argmax(stack, 0)])[crisp])
    empty = (stack > 0).sum(0) == 0
    assert np.array_equal(flat[empty], src[empty])
    expected = src.astype(np.float64) + delta.astype(np.float64) @ stack.astype(np.float64)
    bound = float(np.abs(delta.astype(np.float64)).sum()) * 2.0 ** -16 + 2e-7 * float(np.abs(expected).max())
    err = np.abs(flat - expected)
    assert err.max() <= bound, (err.max(), bound)
    return crisp, empty, err, bound


@pytest.mark.parametrize("tissues", [("CSF", "GM", "WM", "lesion"), ("CSF", "GM", "WM"), ("WM",)])
@pytest.mark.parametrize("shape", [(9, 11, 13), (8, 8, 16)])  # 1287 voxels: a partial last block; 1024: none
def test_block_derivative_equals_the_reference_sum(tissues, shape, monkeypatch):
    fr = _fractions(shape, tissues)
    img = _image(fr)
    model = fit_tissue_model(img, fr, "flair", SRC, estimator="priors")
    assert model._blocks is not None
    out = model.simulate(TARGET)
    crisp, empty, err, _ = _check(model, img, fr, out)
    pv = ~crisp & ~empty
    assert crisp.sum() > 200 and empty.sum() > 100 and pv.sum() > 50 and pv[5]
    assert err[pv].max() > 0  # the mixtures really are rounded sums
    n_mixed = (np.stack([fr[t] for t in model._order]).reshape(len(tissues), -1) > 0).sum(0)
    if len(tissues) >= 3:  # voxels mixing exactly 2 and at least 3 tissues are both present (and within the bound)
        assert (pv & (n_mixed == 2)).sum() > 10 and (pv & (n_mixed >= 3)).sum() > 10
    # the same derivative through the general path (deltas() then the pass), and the dense layouts within the bound
    np.testing.assert_array_equal(model._apply(model.deltas(TARGET)), out)
    monkeypatch.setattr(tw, "BLOCK_LAYOUT", False)
    dense_model = fit_tissue_model(img, fr, "flair", SRC, estimator="priors")
    assert dense_model._blocks is None
    d = model.deltas(TARGET).astype(np.float64)
    assert np.max(np.abs(out - dense_model.simulate(TARGET))) <= (np.abs(d).sum() * 2.0 ** -16
                                                                   + 4e-7 * float(np.abs(out).max()))
    # θ_0 gives the input bit for bit
    assert model.simulate(SRC).tobytes() == img.tobytes()


def test_quantised_fractions_are_within_half_a_step():
    f = np.concatenate([np.linspace(0, 1, 100001, dtype=np.float32), [0.0, 1.0, 2.0 ** -16, 1 - 2.0 ** -17]])
    k = BL.quantise(f)
    assert k.dtype == np.uint16 and k[-4] == 0 and k[-3] == 32768          # 0 and 1 exact
    assert np.max(np.abs(k * 2.0 ** -15 - f.astype(np.float64))) <= 2.0 ** -16


def test_blocks_built_as_specified():
    # 1 × 3 × 16 voxels: row 0 has tissue in voxels 2-3 (block 0) and 9 (block 1); row 1 none; row 2 voxel 47
    shape = (1, 3, 16)
    fr = np.zeros((2, 48), np.float32)
    fr[0, 2] = 1.0
    fr[1, 3] = 0.25
    fr[0, 9], fr[1, 9] = 0.5, 0.5
    fr[1, 47] = 1.0
    lay = BL.build(shape, fr, (slice(0, 1), slice(0, 3), slice(0, 16)))
    assert lay.starts.tolist() == [0, 5] and lay.counts.tolist() == [2, 1] and lay.offsets.tolist() == [0, 2]
    rec = lay.records.reshape(-1, 4, 8)
    assert rec.shape == (3, 4, 8)
    assert rec[0, 0, 2] == 32768 and rec[0, 1, 3] == 8192 and rec[1, 0, 1] == rec[1, 1, 1] == 16384
    assert rec[2, 1, 7] == 32768 and rec[:, 2:].max() == 0  # padded tissues are zero
    assert int(rec.astype(np.int64).sum()) == 2 * 32768 + 8192 + 2 * 16384  # nothing else
    assert lay.tissue_voxels == 4 and lay.block_voxels == 24


def test_all_crisp_and_single_block_inputs():
    """No partial volume at all (every tissue voxel crisp) and a volume whose only tissue is one voxel."""
    g = np.random.default_rng(7)
    label = g.integers(0, 4, (6, 7, 9))
    fr = {t: (label == i + 1).astype(np.float32) for i, t in enumerate(("CSF", "GM", "WM"))}
    img = _image(fr)
    model = fit_tissue_model(img, fr, "flair", SRC, estimator="priors")
    _check(model, img, fr, model.simulate(TARGET))
    one = {"WM": np.zeros((5, 6, 7), np.float32)}
    one["WM"][4, 5, 6] = 1.0  # the last voxel: in the partial last block
    img1 = _image(one)
    m1 = fit_tissue_model(img1, one, "flair", SRC, estimator="priors")
    out1 = m1.simulate(TARGET)
    d = m1.deltas(TARGET)
    expected = img1.copy()
    expected[4, 5, 6] += d[0]
    assert np.array_equal(out1, expected)


def test_threaded_parts_and_out_buffer_give_the_same_derivative(monkeypatch):
    fr = _fractions((10, 12, 14), seed=3)  # 1680 voxels, parts of ~64 voxels cut spans
    img = _image(fr)
    model = fit_tissue_model(img, fr, "flair", SRC, estimator="priors")
    one = model.simulate(TARGET)
    monkeypatch.setattr(BL, "PARALLEL_MIN", 64)
    monkeypatch.setenv("NEUROSHIFT_THREADS", "3")
    buf = np.full_like(img, np.nan)
    three = model.simulate(TARGET, out=buf)
    assert three is buf
    np.testing.assert_array_equal(one, three)
    np.testing.assert_array_equal(model.simulate(SRC, out=np.full_like(img, np.nan)), img)
    with pytest.raises(Exception, match="C-contiguous float32"):
        model.simulate(TARGET, out=np.zeros(img.shape, np.float64))


def test_every_sequence_fast_path_equals_the_array_increments():
    """The compiled increments (block layout) equal c·(S_t(θ) − S_t(θ_0)) from the array signal equations."""
    from neuroshift.physics.signal import sequence_signal

    fr = _fractions((6, 8, 8), seed=2)
    img = _image(fr)
    cases = {"se": ("TE=15,TR=700", "TE=90,TR=3000"), "ir": ("TE=12,TI=400,TR=2000", "TE=20,TI=800,TR=2500"),
             "dir": ("TE=20,TI1=3400,TI2=500,TR=11000", "TE=30,TI1=3000,TI2=400,TR=10000"),
             "gre": ("TE=5,TR=20,FA=15", "TE=8,TR=30,FA=25"),
             "mprage": ("TE=3,TI=900,TR=2300,FA=9,TX=7,N=176", "TE=3,TI=1100,TR=2500,FA=8,TX=7,N=176"),
             "flair": ("TE=112,TI=2500,TR=9000", "TE=140,TI=2800,TR=11000,Trec=8000")}
    for seq, (src, tgt) in cases.items():
        model = fit_tissue_model(img, fr, seq, src, estimator="priors")
        params = model.resolve_target(tgt)
        table = {t: model.tissues[t] for t in model._order}
        arr = lambda p: np.asarray(sequence_signal(  # noqa: E731
            seq, p, pd=np.array([table[t].pd for t in model._order]),
            t1_ms=np.array([table[t].t1_ms for t in model._order]), t2_ms=np.array([table[t].t2_ms for t in model._order]),
            t2star_ms=np.array([table[t].t2star_ms for t in model._order])), np.float64)
        want = model.scale_c * (arr(params) - arr(model.source))
        got = model.scale_c * (model._signals(params) - model._s0)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max(), err_msg=seq)
        _, _, err, _ = _check(model, img, fr, model.simulate(tgt), tgt)
        assert np.abs(got).max() > 1.0  # a real contrast change (not a no-op)


def test_block_derivative_allocates_at_most_1_3_images():
    fr = _fractions((24, 32, 40), seed=4)
    img = _image(fr)
    model = fit_tissue_model(img, fr, "flair", SRC, estimator="priors")
    assert model._blocks is not None
    model.simulate(TARGET)  # warm-up (compilation, caches)
    tracemalloc.start()
    try:
        out = model.simulate(TARGET)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.nbytes == img.nbytes
    assert peak <= 1.3 * img.nbytes, peak / img.nbytes
