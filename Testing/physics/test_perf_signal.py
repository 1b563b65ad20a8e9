"""Fused signal kernels (neuroshift.physics.kernels) equal the reference formulas of neuroshift.physics.signal."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.reference_formulas import reference
from neuroshift.physics import kernels as K
from neuroshift.physics import signal as S

SHAPE = (7, 9, 11)  # 693 voxels: several blocks with the small BLOCK set below, plus a partial one

CASES = [
    ("se", S.spin_echo, dict(te_ms=15.0, tr_ms=600.0), "t2"),
    ("ir", S.inversion_recovery, dict(te_ms=12.0, ti_ms=400.0, tr_ms=3000.0), "t2"),
    ("flair", S.flair, dict(te_ms=112.0, ti_ms=2500.0, tr_ms=9000.0, trec_ms=7000.0), "t2"),
    ("flair signed", S.flair, dict(te_ms=112.0, ti_ms=2500.0, tr_ms=9000.0, magnitude=False), "t2"),
    ("dir", S.double_inversion_recovery, dict(te_ms=25.0, ti1_ms=3400.0, ti2_ms=325.0, tr_ms=15000.0), "t2"),
    ("dir signed", S.double_inversion_recovery,
     dict(te_ms=25.0, ti1_ms=3400.0, ti2_ms=325.0, tr_ms=15000.0, magnitude=False), "t2"),
    ("gre", S.spoiled_gre, dict(te_ms=5.0, tr_ms=20.0, fa_deg=15.0), "t2s"),
    ("gre 170deg", S.spoiled_gre, dict(te_ms=5.0, tr_ms=20.0, fa_deg=170.0), "t2s"),
]


@pytest.fixture
def maps():
    g = np.random.default_rng(1)
    pd = g.uniform(0.5, 1.0, SHAPE)
    t1 = g.uniform(300.0, 4500.0, SHAPE)
    t2 = g.uniform(40.0, 2000.0, SHAPE)
    t2s = t2 * g.uniform(0.2, 0.9, SHAPE)
    b1 = g.uniform(0.8, 1.2, SHAPE)
    # background and edge cases: zero, negative, NaN and infinite relaxation times
    t1.flat[:6] = [0.0, -5.0, np.nan, np.inf, 800.0, 800.0]
    t2.flat[4:8] = [0.0, np.nan, np.inf, 60.0]
    t2s.flat[4:8] = [-1.0, np.nan, np.inf, 30.0]
    return dict(pd=pd, t1=t1, t2=t2, t2s=t2s, b1=b1)


def _call(fn, m, t2key, dtype, kw, b1=True):
    args = [m["pd"].astype(dtype), m["t1"].astype(dtype), m[t2key].astype(dtype)]
    return fn(*args, b1=m["b1"].astype(dtype) if b1 else 1.0, **kw)


_reference = reference


@pytest.mark.parametrize("jit", [True, False], ids=["compiled", "numpy-blocks"])
@pytest.mark.parametrize("name,fn,kw,t2key", CASES, ids=[c[0] for c in CASES])
def test_fused_equals_reference(name, fn, kw, t2key, maps, monkeypatch, jit):
    monkeypatch.setattr(K, "BLOCK", 100)
    monkeypatch.setattr(K, "JIT", jit)
    with np.errstate(all="raise"):  # the fused path must not warn (background voxels included)
        fast64 = _call(fn, maps, t2key, np.float64, kw)
        fast32 = _call(fn, maps, t2key, np.float32, kw)
    ref64 = _reference(_call, fn, maps, t2key, np.float64, kw)
    ref32 = _reference(_call, fn, maps, t2key, np.float32, kw)
    assert fast64.dtype == np.float64 and fast32.dtype == np.float32 and fast32.shape == SHAPE
    scale = float(np.max(np.abs(ref64)))
    assert scale > 1e-3
    np.testing.assert_allclose(fast64, ref64, rtol=1e-12, atol=1e-14 * scale)
    # float32: within float32 rounding of the float64 formula (1 - e^{-x} as -expm1(-x): no cancellation) ...
    np.testing.assert_allclose(fast32, ref64, rtol=2e-6, atol=3e-7 * scale)  # atol: cancellation at a null
    # ... and about as close to it as the reference's own float32 path (within 1.5x)
    assert np.max(np.abs(fast32 - ref64)) <= 1.5 * np.max(np.abs(ref32 - ref64)) + 1e-9 * scale
    # background voxels (T1 or T2 not > 0, NaN) are exactly 0, as in the reference
    bad = ~((maps["t1"] > 0) & (maps[t2key] > 0))
    assert bad.sum() >= 5 and np.all(fast32[bad] == 0) and np.all(ref32[bad] == 0)


def test_fused_limits_and_scalars(maps):
    m = maps
    # TE = 0, TR -> inf: spin echo gives B1·PD exactly
    s = S.spin_echo(m["pd"], np.full(SHAPE, 900.0), np.full(SHAPE, 80.0), te_ms=0.0, tr_ms=np.inf, b1=2.0)
    np.testing.assert_allclose(s, 2.0 * m["pd"], rtol=1e-15)
    # FLAIR with Trec = TR equals IR; DIR with TI1 = TI2 is saturation recovery 1 - e^{-TR/T1}
    t1, t2, pd = np.abs(m["t1"]) + 100, np.abs(m["t2"]) + 10, m["pd"]
    t1[~np.isfinite(t1)] = 1000.0
    t2[~np.isfinite(t2)] = 100.0
    np.testing.assert_allclose(S.flair(pd, t1, t2, te_ms=10, ti_ms=500, tr_ms=5000, trec_ms=5000),
                               S.inversion_recovery(pd, t1, t2, te_ms=10, ti_ms=500, tr_ms=5000), rtol=1e-15)
    d = S.double_inversion_recovery(pd, t1, t2, te_ms=0, ti1_ms=700, ti2_ms=700, tr_ms=2000)
    np.testing.assert_allclose(d, pd * (1 - np.exp(-2000 / t1)), rtol=1e-12)
    # scalar maps mixed with arrays, and a scalar non-positive T1 -> all zero
    g = S.spoiled_gre(0.8, t1.astype(np.float32), 50.0, te_ms=4, tr_ms=25, fa_deg=20)
    r = _reference(S.spoiled_gre, 0.8, t1.astype(np.float32).astype(np.float64), 50.0, te_ms=4, tr_ms=25, fa_deg=20)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, r, rtol=2e-6)
    assert np.all(S.spin_echo(pd, 0.0, t2, te_ms=10, tr_ms=500) == 0)


def test_fallbacks_keep_reference_semantics(maps):
    t1 = np.abs(maps["t1"][..., 0]) + 100
    t1[~np.isfinite(t1)] = 1000.0
    # broadcasting of a parameter vector against maps is not fused but still works
    te = np.array([10.0, 50.0])[:, None, None]
    s = S.spin_echo(1.0, t1[None], 100.0, te_ms=te, tr_ms=1000.0)
    assert s.shape == (2,) + t1.shape
    np.testing.assert_allclose(s[1], (1 - 2 * np.exp(-975 / t1) + np.exp(-1000 / t1)) * np.exp(-0.5), rtol=1e-12)
    # a numpy float64 parameter promotes float32 maps, as in the reference
    assert S.spin_echo(np.float32(1.0), t1.astype(np.float32), np.float32(80.0), te_ms=np.float64(10.0),
                       tr_ms=500.0).dtype == np.float64
    # α = 0: fall back to the reference (0/0 at T1 = inf handled there)
    z = S.spoiled_gre(1.0, np.array([np.inf, 500.0]), 50.0, te_ms=4, tr_ms=25, fa_deg=0.0)
    np.testing.assert_array_equal(z, [0.0, 0.0])


def test_torch_path_still_differentiable():
    torch = pytest.importorskip("torch")
    t1 = torch.tensor([900.0, 1500.0], dtype=torch.float64, requires_grad=True)
    s = S.spoiled_gre(1.0, t1, 60.0, te_ms=4.0, tr_ms=25.0, fa_deg=20.0)
    s.sum().backward()
    h = 1e-3
    num = (S.spoiled_gre(1.0, np.array([900.0 + h, 1500.0 + h]), 60.0, te_ms=4.0, tr_ms=25.0, fa_deg=20.0)
           - S.spoiled_gre(1.0, np.array([900.0 - h, 1500.0 - h]), 60.0, te_ms=4.0, tr_ms=25.0, fa_deg=20.0)) / (2 * h)
    np.testing.assert_allclose(t1.grad.numpy(), num, rtol=1e-6)


def test_decay_inplace_equals_the_reference_product(maps):
    t2 = maps["t2"]
    for dtype in (np.float32, np.float64):
        s = (maps["pd"] * 0.7).astype(dtype)
        expected = np.where(t2 > 0, s.astype(np.float64) * np.exp(-40.0 / np.where(t2 > 0, t2, 1.0)), 0.0)
        out = s.copy()
        assert K.decay_inplace(out, 40.0, t2.astype(dtype))
        np.testing.assert_allclose(out, expected, rtol=2e-6 if dtype == np.float32 else 1e-14, atol=0)
        assert np.all(out[~(t2 > 0)] == 0)
    s = maps["pd"].copy()
    assert K.decay_inplace(s, 10.0, 50.0) and np.allclose(s, maps["pd"] * np.exp(-0.2), rtol=1e-15)
    # not applicable: a float32 signal with a float64 map (the reference promotes), a vector TE, a view
    assert not K.decay_inplace(maps["pd"].astype(np.float32), 10.0, t2)
    assert not K.decay_inplace(maps["pd"].copy(), np.array([10.0, 20.0]), t2)
    assert not K.decay_inplace(maps["pd"][:, ::2], 10.0, t2[:, ::2])


@pytest.mark.parametrize("seq,text", [("se", "TE=90,TR=3000"), ("ir", "TE=12,TI=400,TR=3000"),
                                      ("flair", "TE=100,TI=2500,TR=9000"), ("dir", "TE=25,TI1=3400,TI2=325,TR=15000")])
def test_multi_echo_convention_fused_equals_reference(seq, text, maps):
    from neuroshift.io.params import AcquisitionParams

    p = AcquisitionParams.parse(text)
    args = dict(pd=maps["pd"], t1_ms=maps["t1"], t2_ms=maps["t2"], b1=maps["b1"], multi_echo=True)
    fast = S.sequence_signal(seq, p, **args)
    ref = _reference(S.sequence_signal, seq, p, **args)
    np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-14 * float(np.abs(ref).max()))


def test_threaded_parts_give_the_single_thread_result(maps, monkeypatch):
    t1 = np.abs(np.nan_to_num(maps["t1"], nan=900.0, posinf=900.0)).astype(np.float32)
    args = (maps["pd"].astype(np.float32), t1, maps["t2s"].astype(np.float32))
    kw = dict(te_ms=5.0, tr_ms=20.0, fa_deg=15.0)
    monkeypatch.setattr(K, "BLOCK", 64)
    monkeypatch.setattr(K, "JIT", False)  # the numpy block path (the compiled one: test_kernels_jit.py)
    one = S.spoiled_gre(*args, **kw)
    monkeypatch.setattr(K, "PARALLEL_MIN", 0)
    monkeypatch.setenv("NEUROSHIFT_THREADS", "3")
    three = S.spoiled_gre(*args, **kw)
    np.testing.assert_array_equal(one, three)
    s1, s3 = one.copy(), one.copy()
    monkeypatch.setenv("NEUROSHIFT_THREADS", "1")
    K.decay_inplace(s1, 30.0, args[2])
    monkeypatch.setenv("NEUROSHIFT_THREADS", "4")
    K.decay_inplace(s3, 30.0, args[2])
    np.testing.assert_array_equal(s1, s3)


MPRAGE_CASES = [
    ("mprage even n", S.mprage, dict(te_ms=3.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=9.0, tx_ms=7.0, n=176)),
    ("mprage odd n, eta, signed", S.mprage, dict(te_ms=3.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=9.0, tx_ms=7.0,
                                                   n=175, inversion_efficiency=0.93, magnitude=False)),
    ("mprage train longer than TR", S.mprage, dict(te_ms=2.0, ti_ms=100.0, tr_ms=900.0, fa_deg=150.0, tx_ms=7.0,
                                                     n=175)),
    ("mprage n=1", S.mprage, dict(te_ms=0.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=12.0, tx_ms=7.0, n=1)),
    ("eq6", S.mprage_eq6_paper002, dict(te_ms=3.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=9.0, tx_ms=7.0, n=176)),
    ("eq6 td", S.mprage_eq6_paper002, dict(te_ms=3.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=9.0, tx_ms=7.0, n=176,
                                             td_ms=500.0)),
]


@pytest.mark.parametrize("jit", [True, False], ids=["compiled", "numpy-blocks"])
@pytest.mark.parametrize("name,fn,kw", MPRAGE_CASES, ids=[c[0] for c in MPRAGE_CASES])
def test_fused_mprage_equals_reference(name, fn, kw, maps, monkeypatch, jit):
    """One-pass MPRAGE kernels (powers of cos α·e^{−TX/T1} as exponentials) vs the reference closed forms."""
    monkeypatch.setattr(K, "BLOCK", 100)
    monkeypatch.setattr(K, "JIT", jit)
    with np.errstate(all="raise"):
        fast64 = _call(fn, maps, "t2s", np.float64, kw)
        fast32 = _call(fn, maps, "t2s", np.float32, kw)
    ref64 = _reference(_call, fn, maps, "t2s", np.float64, kw)
    assert fast32.dtype == np.float32 and fast64.dtype == np.float64
    scale = float(np.max(np.abs(ref64)))
    assert scale > 1e-3
    np.testing.assert_allclose(fast64, ref64, rtol=1e-11, atol=1e-13 * scale)
    assert np.max(np.abs(fast32 - ref64)) <= 1e-6 * scale  # float32 rounding only (the goal of issue 9)
    bad = ~((maps["t1"] > 0) & (maps["t2s"] > 0))
    assert np.all(fast32[bad] == 0) and np.all(fast64[bad] == 0)


def test_fused_mprage_limits():
    """Hand-derived values: α = 90° (every pulse saturates) and T1 = ∞ (no recovery, signal 0 after inversion)."""
    t1 = np.array([500.0, 1000.0, 2000.0])
    # α = 90°: Mz = 0 after each pulse, so the k-space-centre pulse (k_c > 0) sees M* = 1 − e^{−TX/T1}
    s = S.mprage(1.0, t1, np.inf, te_ms=0.0, ti_ms=500.0, tr_ms=3000.0, fa_deg=90.0, tx_ms=8.0, n=16)
    np.testing.assert_allclose(s, 1.0 - np.exp(-8.0 / t1), rtol=1e-12)
    # α = 90°, n = 1 (k_c = 0): Mz recovers from 0 over TX + TD = TR − TI, is inverted, recovers over TA = TI:
    # M_1 = 1 − (2 − e^{−(TR − TI)/T1})·e^{−TI/T1} = 1 − 2e^{−TI/T1} + e^{−TR/T1}
    ti, tr, tx = 700.0, 2500.0, 5.0
    s1 = S.mprage(1.0, t1, np.inf, te_ms=0.0, ti_ms=ti, tr_ms=tr, fa_deg=90.0, tx_ms=tx, n=1, magnitude=False)
    np.testing.assert_allclose(s1, 1 - 2 * np.exp(-ti / t1) + np.exp(-tr / t1), rtol=1e-12)
    # T1 = ∞ voxel next to finite ones: equal to the reference (0 signal: Mz stays at the steady state −M_a = 0)
    t1i = np.array([np.inf, 900.0])
    kw = dict(te_ms=3.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=9.0, tx_ms=7.0, n=176)
    np.testing.assert_allclose(S.mprage(1.0, t1i, 40.0, **kw), _reference(S.mprage, 1.0, t1i, 40.0, **kw),
                               rtol=1e-12, atol=1e-15)
    # Eq. 6 as TD -> large: S -> PD·e^{−TE/T2*}
    e6 = S.mprage_eq6_paper002(1.0, t1, 40.0, te_ms=4.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=9.0, tx_ms=7.0, n=176,
                               td_ms=1e7)
    np.testing.assert_allclose(e6, np.exp(-4.0 / 40.0), rtol=1e-12)


@pytest.mark.parametrize("seq,text", [("se", "TE=90,TR=3000"), ("ir", "TE=12,TI=400,TR=3000"),
                                      ("flair", "TE=100,TI=2500,TR=9000,TREC=7000"),
                                      ("dir", "TE=25,TI1=3400,TI2=325,TR=15000")])
def test_multi_echo_single_pass_equals_printed_form(seq, text, maps):
    """The multi-echo convention in one pass: the printed TE -> 0 longitudinal factor times e^{−TE/T2}."""
    from neuroshift.io.params import AcquisitionParams

    p = AcquisitionParams.parse(text)
    t1, t2 = maps["t1"], maps["t2"]
    ok = (t1 > 0) & (t2 > 0)
    with np.errstate(all="ignore"):
        e = {k: np.exp(-v / t1) for k, v in dict(tr=p.TR_ms, ti=p.TI_ms or 0.0, ti1=p.TI1_ms or 0.0,
                                                 ti2=p.TI2_ms or 0.0, trec=p.Trec_ms or 0.0).items()}
        mz = {"se": 1 - e["tr"], "ir": np.abs(1 - 2 * e["ti"] + e["tr"]),
              "flair": np.abs(1 - 2 * e["ti"] + e["trec"]),
              "dir": np.abs(1 - 2 * e["ti2"] + 2 * e["ti1"] - e["tr"])}[seq]
        expected = np.where(ok, maps["b1"] * maps["pd"] * mz * np.exp(-p.TE_ms / t2), 0.0)
    fast = S.sequence_signal(seq, p, pd=maps["pd"], t1_ms=t1, t2_ms=t2, b1=maps["b1"], multi_echo=True)
    np.testing.assert_allclose(fast, expected, rtol=1e-12, atol=1e-15)


def test_background_blocks_are_skipped_and_zero(maps, monkeypatch):
    """Blocks with no valid voxel are written as 0; blocks mixing background and tissue match the reference."""
    monkeypatch.setattr(K, "BLOCK", 64)
    monkeypatch.setattr(K, "JIT", False)  # the numpy block path (the compiled one: test_kernels_jit.py)
    t1 = np.zeros(2000)
    t2 = np.zeros(2000)
    t1[500:700] = np.linspace(300.0, 3000.0, 200)  # tissue in blocks 7-10 only, partly covering two of them
    t2[500:700] = 80.0
    calls = []
    real = K.KERNELS["ir"]
    monkeypatch.setitem(K.KERNELS, "ir", lambda o, *a: (calls.append(o.size), real(o, *a)))
    out = S.spin_echo(1.0, t1, t2, te_ms=20.0, tr_ms=1000.0)
    assert sum(calls) == 4 * 64  # blocks [448, 512), ..., [640, 704): the only ones with tissue
    ref = _reference(S.spin_echo, 1.0, t1, t2, te_ms=20.0, tr_ms=1000.0)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=0)
    assert np.all(out[:500] == 0) and np.all(out[700:] == 0) and np.all(out[500:700] > 0)


@pytest.mark.parametrize("fn", [S.mprage, S.mprage_eq6_paper002])
def test_compact_blocks_equal_full_blocks_and_reference(fn, monkeypatch):
    """Heavy kernels evaluate sparse blocks on their tissue voxels only: same values bit for bit, background 0."""
    monkeypatch.setattr(K, "BLOCK", 128)
    monkeypatch.setattr(K, "JIT", False)  # the numpy block path (the compiled one: test_kernels_jit.py)
    g = np.random.default_rng(7)
    n = 3000
    t1 = np.where(g.random(n) < 0.15, g.uniform(300.0, 4000.0, n), 0.0).astype(np.float32)  # ~15 % tissue
    t1[1000:1128] = 900.0                                                                   # one full block
    t2s = np.where(t1 > 0, g.uniform(20.0, 90.0, n), 0.0).astype(np.float32)
    pd, b1 = g.uniform(0.5, 1.0, n).astype(np.float32), g.uniform(0.8, 1.2, n).astype(np.float32)
    kw = dict(te_ms=3.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=9.0, tx_ms=7.0, n=176)
    compact = fn(pd, t1, t2s, b1=b1, **kw)
    monkeypatch.setattr(K, "COMPACT_SHARE", 0.0)
    full = fn(pd, t1, t2s, b1=b1, **kw)
    np.testing.assert_array_equal(compact, full)
    ref = _reference(fn, pd.astype(np.float64), t1.astype(np.float64), t2s.astype(np.float64), b1=b1.astype(np.float64),
                     **kw)
    assert np.max(np.abs(compact - ref)) <= 1e-6 * float(np.abs(ref).max())
    assert np.all(compact[t1 == 0] == 0) and np.all(compact[t1 > 0] > 0)
