"""qMRI fit internals: analytic model Jacobian vs finite differences, block-wise fits recover noise-free maps."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from neuroshift.io.params import AcquisitionParams as P
from neuroshift.io.volume import Volume
from neuroshift.physics.signal import sequence_signal
from neuroshift.qmri import QMRIMaps, fit, synthesize
from neuroshift.qmri.model import model_and_jacobian
from neuroshift.qmri.nlls import residual_jacobian

fitmod = importlib.import_module("neuroshift.qmri.fit")

ACQS = {
    "se": ("se", P.parse("TE=30,TR=800")),
    "ir": ("ir", P.parse("TE=12,TI=400,TR=3000")),
    "flair": ("flair", P.parse("TE=100,TI=2500,TR=9000")),
    "dir": ("dir", P.parse("TE=25,TI1=3400,TI2=325,TR=15000")),
    "gre": ("gre", P.parse("TE=6,TR=25,FA=20")),
    "mprage": ("mprage", P.parse("TE=3,TI=900,TR=2300,FA=9,TX=7,N=176")),
}
FREE = {"se": ("T1", "T2"), "ir": ("T1", "T2"), "flair": ("T1", "T2"), "dir": ("T1", "T2"),
        "gre": ("T1", "T2star"), "mprage": ("T1", "T2star")}


def _theta(free, n=64, seed=0):
    g = np.random.default_rng(seed)
    lo = {"T1": 200.0, "T2": 20.0, "T2star": 10.0}
    hi = {"T1": 5000.0, "T2": 2000.0, "T2star": 300.0}
    return np.stack([np.log(g.uniform(lo[f], hi[f], n)) for f in free], -1)


def _reference(acqs, free, theta):
    """Unit-PD signals straight from physics.signal (T1 -> 0, T2/T2* -> inf when not free)."""
    T = {f: np.exp(theta[:, i]) for i, f in enumerate(free)}
    n = theta.shape[0]
    t1 = T.get("T1", np.full(n, 1e-9))
    t2 = T.get("T2", np.full(n, np.inf))
    t2s = T.get("T2star", np.full(n, np.inf))
    cols = []
    for seq, p in acqs:
        kw = {"t2_ms": t2, "multi_echo": True} if seq in ("se", "ir", "flair", "dir") else {"t2star_ms": t2s}
        cols.append(np.asarray(sequence_signal(seq, p, pd=1.0, t1_ms=t1, **kw), dtype=np.float64))
    return np.stack(cols, -1)


@pytest.mark.parametrize("name", list(ACQS))
@pytest.mark.parametrize("subset", ["both", "T1 only", "decay only"])
def test_model_and_analytic_jacobian_match_signal_equations(name, subset):
    acqs = [ACQS[name]]
    free = {"both": FREE[name], "T1 only": FREE[name][:1], "decay only": FREE[name][1:]}[subset]
    theta = _theta(free)
    F, J = model_and_jacobian(acqs, free, theta)
    np.testing.assert_allclose(F, _reference(acqs, free, theta), rtol=1e-12, atol=1e-15)
    h = 1e-6
    for i in range(len(free)):
        up, dn = theta.copy(), theta.copy()
        up[:, i] += h
        dn[:, i] -= h
        fd = (_reference(acqs, free, up) - _reference(acqs, free, dn)) / (2 * h)
        assert np.max(np.abs(fd)) > 1e-6  # the parameter does act on this signal
        np.testing.assert_allclose(J[..., i], fd, rtol=1e-6, atol=1e-9 * np.max(np.abs(fd)))


def test_residual_jacobian_of_variable_projection_matches_finite_differences():
    acqs = [ACQS[k] for k in ("se", "ir", "flair", "dir")]
    free = ("T1", "T2")
    theta = _theta(free, n=40, seed=3)
    y = 0.8 * _reference(acqs, free, _theta(free, n=40, seed=4))  # data from other parameters: r != 0
    r, J, cost = residual_jacobian(y, acqs, free, theta)
    np.testing.assert_allclose(cost, (r * r).sum(-1), rtol=1e-14)
    h = 1e-6
    for i in range(2):
        up, dn = theta.copy(), theta.copy()
        up[:, i] += h
        dn[:, i] -= h
        fd = (residual_jacobian(y, acqs, free, up)[0] - residual_jacobian(y, acqs, free, dn)[0]) / (2 * h)
        np.testing.assert_allclose(J[..., i], fd, rtol=1e-5, atol=1e-8)


@pytest.fixture
def truth():
    shape = (9, 10, 11)
    g = np.random.default_rng(5)
    pd = g.uniform(0.6, 1.0, shape)
    t1 = g.uniform(700, 4000, shape)
    t2 = g.uniform(50, 400, shape)
    t2s = t2 * g.uniform(0.3, 0.8, shape)
    for a in (pd, t1, t2, t2s):
        a[0] = 0.0  # background slice
    ref = Volume(np.zeros(shape, np.float32), spacing=(1.0, 1.0, 1.5))
    maps = QMRIMaps({k: ref.with_data(v) for k, v in dict(PD=pd, T1=t1, T2=t2, T2star=t2s).items()})
    return maps, dict(PD=pd, T1=t1, T2=t2, T2star=t2s)


def _rel(est, true):
    m = true > 0
    return float(np.max(np.abs(est[m] / true[m] - 1)))


def test_blockwise_fits_recover_noise_free_maps(truth, monkeypatch):
    maps, t = truth
    monkeypatch.setattr(fitmod, "CLOSED_BLOCK", 97)  # many blocks, one partial; background blocks skipped
    seqs = ["se", "se", "flair", "ir"]
    ps = [P.parse(x) for x in ["TE=10,TR=500", "TE=100,TR=4000", "TE=100,TI=2500,TR=9000", "TE=10,TI=300,TR=5000"]]
    ims = [synthesize(maps, s, p, dtype=np.float64) for s, p in zip(seqs, ps)]
    r = fit(ims, seqs, ps, chunk=300)  # several LM chunks
    for k in ("PD", "T1", "T2"):
        assert _rel(r.maps.array(k), t[k]) < 1e-6, k
    assert np.all(r.maps.array("T1")[0] == 0)
    # closed forms: two echoes and DESPOT1, float32 inputs
    ps = [P.parse("TE=4,TR=30,FA=20"), P.parse("TE=24,TR=30,FA=20")]
    ims = [synthesize(maps, "gre", p) for p in ps]
    r = fit(ims, "gre", ps)
    assert "closed form" in r.method and _rel(r.maps.array("T2star"), t["T2star"]) < 2e-5  # float32 images
    ims64 = [synthesize(maps, "gre", p, dtype=np.float64) for p in ps]
    assert _rel(fit(ims64, "gre", ps).maps.array("T2star"), t["T2star"]) < 1e-6  # float32 maps
    ps = [P.parse("TE=4,TR=20,FA=4"), P.parse("TE=4,TR=20,FA=25")]
    ims64 = [synthesize(maps, "gre", p, dtype=np.float64) for p in ps]
    r = fit(ims64, "gre", ps)
    assert "DESPOT1" in r.method and _rel(r.maps.array("T1"), t["T1"]) < 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_closed_forms_equal_the_general_blockwise_path(dtype):
    from neuroshift.qmri.closed import despot1_fit, echo2_fit

    g = np.random.default_rng(7)
    shape = (13, 17, 19)
    s1 = g.uniform(0.0, 1.0, shape)
    s2 = s1 * g.uniform(0.3, 1.2, shape)          # some "growth" (s2 > s1): no decay -> upper bound
    s1.flat[:40] = 0.0                             # S1 = 0: PD from S2
    s2.flat[20:60] = 0.0                           # S2 = 0 and both 0 (not fitted)
    s2.flat[60:70] = s1.flat[60:70]                # equal: no decay
    ref = Volume(np.zeros(shape, np.float32))
    ims = [ref.with_data(s1.astype(dtype)), ref.with_data(s2.astype(dtype))]
    mask = ref.with_data((g.random(shape) > 0.2).astype(np.uint8))
    b1 = ref.with_data(g.uniform(-0.1, 1.5, shape))  # includes B1 <= 0 -> PD 0
    for m, b in ((None, None), (mask, b1)):
        pd, t, n = echo2_fit(ims, np.array([15.0, 90.0]), m, b, fitmod.BOUNDS_MS["T2"], block=500)

        def solve(Yv):
            a, tt = fitmod._fit_echoes(Yv, np.array([15.0, 90.0]))
            return {"PD": a, "T2": tt}
        out, clip = fitmod._blockwise(ims, m, b, ["PD", "T2"], solve, 700)
        # float32 images are fitted in float32: log of a ratio near 1 (long T2) costs a few 1e-6
        np.testing.assert_allclose(t, out["T2"], rtol=1e-5 if dtype == np.float32 else 1e-12)
        np.testing.assert_allclose(pd, out["PD"], rtol=2e-6 if dtype == np.float32 else 1e-12, atol=1e-12)
        assert n == clip["T2"] and n > 0
    # DESPOT1 with three flip angles
    fa = np.array([3.0, 12.0, 25.0])
    t1 = g.uniform(300, 4000, shape)
    sig = [np.sin(np.deg2rad(a)) * (1 - np.exp(-20 / t1)) / (1 - np.cos(np.deg2rad(a)) * np.exp(-20 / t1))
           * g.uniform(0.98, 1.02, shape) for a in fa]
    sig[0].flat[:30] = 0.0
    ims = [ref.with_data(x.astype(dtype)) for x in sig]
    pd, t, n = despot1_fit(ims, fa, 20.0, mask, b1, fitmod.BOUNDS_MS["T1"], block=333)

    def solve1(Yv):
        a, tt = fitmod._fit_despot1(Yv, fa, 20.0)
        return {"PD": a, "T1": tt}
    out, clip = fitmod._blockwise(ims, mask, b1, ["PD", "T1"], solve1, 1000)
    np.testing.assert_allclose(t, out["T1"], rtol=1e-6)
    np.testing.assert_allclose(pd, out["PD"], rtol=1e-6, atol=1e-12)
    assert n == clip["T1"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_two_echo_fit_equals_the_numpy_path(dtype, monkeypatch):
    """The compiled two-echo kernel (closed_jit, float64 per voxel) gives the block-wise numpy path's maps and
    clip count, NaN/zero/growth voxels, mask and B1 included (float32 images: the numpy path computes in
    float32, so within its rounding)."""
    from neuroshift.physics import kernels
    from neuroshift.qmri import closed

    pytest.importorskip("numba")
    g = np.random.default_rng(11)
    shape = (9, 11, 13)
    s1 = g.uniform(0.0, 1.0, shape)
    s2 = s1 * g.uniform(0.3, 1.2, shape)
    s1.flat[:30] = 0.0
    s2.flat[15:45] = 0.0
    s1.flat[50:55] = np.nan
    s2.flat[55:60] = np.nan
    ref = Volume(np.zeros(shape, np.float32))
    ims = [ref.with_data(s1.astype(dtype)), ref.with_data(s2.astype(dtype))]
    mask = ref.with_data(g.random(shape) > 0.2)
    b1 = ref.with_data(g.uniform(-0.1, 1.5, shape))
    te = np.array([12.0, 80.0])
    for m, b in ((None, None), (mask, b1)):
        assert closed._compiled() is not None
        pd_c, t_c, n_c = closed.echo2_fit(ims, te, m, b, fitmod.BOUNDS_MS["T2"])
        monkeypatch.setattr(kernels, "JIT", False)
        assert closed._compiled() is None
        pd_n, t_n, n_n = closed.echo2_fit(ims, te, m, b, fitmod.BOUNDS_MS["T2"], block=100)
        monkeypatch.setattr(kernels, "JIT", True)
        rtol = 1e-5 if dtype == np.float32 else 1e-7  # float64 images: both round the same value to float32
        np.testing.assert_allclose(t_c, t_n, rtol=rtol)
        np.testing.assert_allclose(pd_c, pd_n, rtol=rtol, atol=1e-12)
        assert n_c == n_n > 0
        assert np.all(t_c[(s1.ravel() <= 0) & (s2.ravel() <= 0)] == 0)  # not fitted: 0
