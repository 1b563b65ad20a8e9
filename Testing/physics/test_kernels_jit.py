"""Compiled signal kernels (neuroshift.physics.kernels_jit): the vectorisable exponentials, every kind against the
reference formulas, hand-derived limits, scalar maps, chunk skipping and threaded parts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers.reference_formulas import reference
from neuroshift.physics import kernels as K
from neuroshift.physics import kernels_jit as KJ
from neuroshift.physics import parallel as P
from neuroshift.physics import signal as S


_reference = reference


def test_exp_and_expm1_match_libm_to_1e15():
    """Relative error of the polynomial exponentials over x ∈ [−700, 0] and tiny |x| (expm1 without cancellation)."""
    import numba as nb

    @nb.njit
    def both(x):
        e, m = np.empty_like(x), np.empty_like(x)
        for i in range(x.size):
            e[i] = KJ.exp_le0(x[i])
            m[i] = KJ.expm1_le0(x[i])
        return e, m

    x = np.concatenate([-np.linspace(0.0, 700.0, 200_001), -np.logspace(-300, 2.8, 5001), [-0.0]])
    e, m = both(x)
    ref_e = np.array([math.exp(v) for v in x])
    ref_m = np.array([math.expm1(v) for v in x])
    assert np.max(np.abs(e / ref_e - 1.0)) <= 1e-15
    nz = ref_m != 0.0
    assert np.max(np.abs(m[nz] / ref_m[nz] - 1.0)) <= 1e-15
    assert e[-1] == 1.0 and m[-1] == 0.0  # x = −0: exactly 1 and 0
    # ln 2 multiples (the reduction's edges): e^{−k·ln2} = 2^{−k} up to the rounding of k·ln 2 (≤ k·1.1e-16)
    k = np.arange(0, 60)
    e2, _ = both(-k * math.log(2.0))
    np.testing.assert_allclose(e2, 2.0 ** -k, rtol=1e-14)


def _maps(n=3000, seed=3):
    g = np.random.default_rng(seed)
    pd = g.uniform(0.5, 1.0, n)
    t1 = g.uniform(200.0, 5000.0, n)
    t2 = g.uniform(20.0, 2000.0, n)
    b1 = g.uniform(0.8, 1.2, n)
    t1[:1200] = 0.0        # two whole background chunks (CHUNK = 512) and part of a third
    t1[1300:1306] = [-3.0, np.nan, np.inf, 0.0, 1e-3, 1e6]
    t2[1306:1310] = [0.0, np.nan, np.inf, -1.0]
    return pd, t1, t2, b1


KINDS = [
    (S.spin_echo, dict(te_ms=15.0, tr_ms=600.0)),
    (S.inversion_recovery, dict(te_ms=12.0, ti_ms=400.0, tr_ms=3000.0, magnitude=False)),
    (S.flair, dict(te_ms=112.0, ti_ms=2500.0, tr_ms=9000.0, trec_ms=7000.0)),
    (S.double_inversion_recovery, dict(te_ms=25.0, ti1_ms=3400.0, ti2_ms=325.0, tr_ms=15000.0)),
    (S.spoiled_gre, dict(te_ms=5.0, tr_ms=20.0, fa_deg=15.0)),
    (S.mprage, dict(te_ms=3.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=9.0, tx_ms=7.0, n=176)),
    (S.mprage, dict(te_ms=3.0, ti_ms=100.0, tr_ms=900.0, fa_deg=150.0, tx_ms=7.0, n=175,
                    inversion_efficiency=0.9, magnitude=False)),
    (S.mprage_eq6_paper002, dict(te_ms=3.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=9.0, tx_ms=7.0, n=176)),
]


@pytest.mark.parametrize("fn,kw", KINDS, ids=[f"{f.__name__}-{i}" for i, (f, _) in enumerate(KINDS)])
@pytest.mark.parametrize("scalar_b1", [False, True])
def test_compiled_kind_equals_reference(fn, kw, scalar_b1):
    pd, t1, t2, b1 = _maps()
    b1 = 1.1 if scalar_b1 else b1
    with np.errstate(all="ignore"):
        ref = _reference(fn, pd, t1, t2, b1=b1, **kw)
    fast64 = fn(pd, t1, t2, b1=b1, **kw)
    as32 = [v.astype(np.float32) if isinstance(v, np.ndarray) else v for v in (pd, t1, t2, b1)]
    fast32 = fn(*as32[:3], b1=as32[3], **kw)
    scale = float(np.max(np.abs(ref)))
    assert fast32.dtype == np.float32 and fast64.dtype == np.float64 and scale > 1e-3
    np.testing.assert_allclose(fast64, ref, rtol=1e-12, atol=1e-14 * scale)
    # float32 maps: the float64 formula on the float32 inputs, rounded once
    with np.errstate(all="ignore"):
        ref_of_32 = _reference(fn, *[v.astype(np.float64) if isinstance(v, np.ndarray) else v for v in as32[:3]],
                               b1=as32[3] if scalar_b1 else as32[3].astype(np.float64), **kw)
    assert np.max(np.abs(fast32 - ref_of_32)) <= 1e-7 * scale
    bad = ~((t1 > 0) & (t2 > 0))
    assert np.all(fast64[bad] == 0) and np.all(fast32[bad] == 0) and np.count_nonzero(bad) >= 1200


def test_hand_derived_values():
    """Closed forms computed by hand: saturation recovery, the Ernst-angle GRE and the MPRAGE α = 90° train."""
    t1 = np.array([250.0, 800.0, 1600.0, 4000.0])
    t2 = np.array([50.0, 80.0, 100.0, 2000.0])
    # SE at TE -> 0 (tiny TE): 1 − e^{−TR/T1}
    se = S.spin_echo(1.0, t1, t2, te_ms=0.0, tr_ms=1000.0)
    np.testing.assert_allclose(se, 1.0 - np.exp(-1000.0 / t1), rtol=1e-14)
    # GRE at the Ernst angle of T1 = 800 ms, TR = 20 ms: S = sin α (1 − E)/(1 − E²) = sin α /(1 + E), E = cos α
    e = math.exp(-20.0 / 800.0)
    a = math.degrees(math.acos(e))
    g = S.spoiled_gre(1.0, np.full(700, 800.0), np.full(700, 40.0), te_ms=4.0, tr_ms=20.0, fa_deg=a)
    np.testing.assert_allclose(g, math.sin(math.radians(a)) / (1.0 + e) * math.exp(-0.1), rtol=1e-14)
    # MPRAGE α = 90°: the k-space-centre pulse sees M* = 1 − e^{−TX/T1}
    m = S.mprage(1.0, t1, np.inf, te_ms=0.0, ti_ms=500.0, tr_ms=3000.0, fa_deg=90.0, tx_ms=8.0, n=16)
    np.testing.assert_allclose(m, 1.0 - np.exp(-8.0 / t1), rtol=1e-13)
    # T2 = inf: no decay; IR signed at TI = T1·ln 2 with TR -> large: the null (0 to 1e-12)
    ir = S.inversion_recovery(1.0, np.array([1000.0]), np.array([np.inf]), te_ms=0.0, ti_ms=1000.0 * math.log(2.0),
                              tr_ms=1e9, magnitude=False)
    assert abs(float(ir[0])) < 1e-12


def test_chunks_without_tissue_are_zero_and_parts_are_identical(monkeypatch):
    pd, t1, t2, b1 = (v.astype(np.float32) for v in _maps(20_000, seed=5))
    kw = dict(te_ms=3.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=9.0, tx_ms=7.0, n=176)
    one = S.mprage(pd, t1, t2, b1=b1, **kw)
    monkeypatch.setattr(K, "JIT_PARALLEL_MIN", 0)
    monkeypatch.setenv("NEUROSHIFT_THREADS", "3")
    three = S.mprage(pd, t1, t2, b1=b1, **kw)
    np.testing.assert_array_equal(one, three)
    assert np.all(one[:1200] == 0)
    s1, s3 = one.copy(), one.copy()
    K.decay_inplace(s3, 30.0, t2)
    monkeypatch.setenv("NEUROSHIFT_THREADS", "1")
    K.decay_inplace(s1, 30.0, t2)
    np.testing.assert_array_equal(s1, s3)
    with np.errstate(all="ignore"):
        expected = np.where(t2 > 0, one.astype(np.float64) * np.exp(-30.0 / t2.astype(np.float64)), 0.0)
    np.testing.assert_allclose(s1, expected, rtol=1e-6, atol=0)


def test_run_parts_covers_every_voxel_once(monkeypatch):
    seen = np.zeros(10_007, np.int64)

    def run(lo, hi):
        seen[lo:hi] += 1

    monkeypatch.setenv("NEUROSHIFT_THREADS", "4")
    K.run_parts(run, seen.size, 1000, align=512)
    assert np.all(seen == 1)
    K.run_parts(run, seen.size, 10**9)  # below the threshold: one part
    assert np.all(seen == 2)


def test_negative_or_infinite_times_use_the_reference_path():
    """An exponential of a negative or infinite time is outside the compiled kernels' domain: the numpy path."""
    t1 = np.array([500.0, 900.0, 1500.0])
    s = S.spin_echo(1.0, t1, np.array([60.0, 70.0, 80.0]), te_ms=0.0, tr_ms=np.inf)
    np.testing.assert_allclose(s, 1.0, rtol=1e-15)
    assert K._jit_parameters("gre", {"tr": -1.0, "te": 0.0, "cos": 0.5, "sin": 0.8}) is None


def test_run_parts_does_not_wait_for_a_pool_thread_that_has_not_started(monkeypatch):
    """The caller takes every part itself when the pool's thread is busy: the queued helper is cancelled."""
    import threading

    monkeypatch.setenv("NEUROSHIFT_THREADS", "2")
    monkeypatch.setattr(P, "_POOL", [])  # a fresh pool with one thread
    ex = P._executor(1)
    release = threading.Event()
    blocker = ex.submit(release.wait, 30.0)  # the only pool thread is busy
    try:
        seen = np.zeros(4096, np.int64)
        callers = set()

        def run(lo, hi):
            seen[lo:hi] += 1
            callers.add(threading.get_ident())

        K.run_parts(run, seen.size, 512, align=64)
        assert np.all(seen == 1) and callers == {threading.get_ident()}
    finally:
        release.set()
        blocker.result()


def test_run_parts_uses_one_thread_on_a_busy_machine_unless_told(monkeypatch):
    import os
    import threading

    parts = []
    monkeypatch.delenv("NEUROSHIFT_THREADS", raising=False)
    monkeypatch.setattr("neuroshift.threads.available_cores", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (7.5, 7.0, 6.0))  # 2 cores, load 7.5: busy
    P.run_parts(lambda lo, hi: parts.append((lo, hi, threading.get_ident())), 4096, 512)
    assert parts == [(0, 4096, threading.get_ident())]
    parts.clear()
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.5, 0.5))  # idle: 4 parts per thread
    P.run_parts(lambda lo, hi: parts.append((lo, hi, threading.get_ident())), 4096, 512)
    assert sorted(p[:2] for p in parts) == [(512 * i, 512 * (i + 1)) for i in range(8)]
    parts.clear()
    monkeypatch.setattr(os, "getloadavg", lambda: (7.5, 7.0, 6.0))
    monkeypatch.setenv("NEUROSHIFT_THREADS", "2")  # explicit: threaded even when busy
    P.run_parts(lambda lo, hi: parts.append((lo, hi, threading.get_ident())), 4096, 512)
    assert len(parts) == 8


def test_without_numba_the_numpy_kernels_give_the_same_values(monkeypatch):
    import sys

    pd, t1, t2, b1 = _maps(2000)
    kw = dict(te_ms=3.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=9.0, tx_ms=7.0, n=176)
    compiled = S.mprage(pd, t1, t2, b1=b1, **kw)
    monkeypatch.setitem(sys.modules, "neuroshift.physics.kernels_jit", None)  # import fails
    assert K._compiled() is None
    blocks = S.mprage(pd, t1, t2, b1=b1, **kw)
    np.testing.assert_allclose(blocks, compiled, rtol=1e-11, atol=1e-13 * float(np.abs(compiled).max()))


def test_scalar_or_array_accessors_agree_in_python_and_compiled_code():
    """``_at``/``_part`` index arrays and pass scalar maps through, the same in Python and inside njit code."""
    import numba as nb

    a = np.array([1.5, 2.5, 3.5], np.float32)
    assert KJ._at(a, 1) == 2.5 and KJ._at(0.75, 2) == 0.75
    assert np.array_equal(KJ._part(a, 1, 3), [2.5, 3.5]) and KJ._part(0.75, 0, 2) == 0.75

    @nb.njit
    def both(x, i, lo, hi):
        return KJ._at(x, i), KJ._part(x, lo, hi)

    assert both(a, 2, 0, 1)[0] == 3.5 and np.array_equal(both(a, 2, 0, 1)[1], [1.5])
    assert both(0.75, 2, 0, 1) == (0.75, 0.75)
