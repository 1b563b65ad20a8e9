"""Signal equations: every limiting case of shift-simulator.md §3, DIR identities, numpy/torch agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuroshift.errors import MissingParameterError
from neuroshift.io.params import AcquisitionParams
from neuroshift.physics import signal as S
from neuroshift.physics.noise import add_rician_noise, bias_field, rician_mean
from neuroshift.physics.sampling import SEQUENCES_002, sample_raw, sample_sequence

INF = np.inf


# ------------------------------------------------------------------ limiting cases
def test_fse_te0_trinf_gives_b1_pd():
    pd = np.array([0.7, 0.8, 1.0])
    out = S.spin_echo(pd, np.array([832.0, 1331.0, 4163.0]), np.array([80.0, 110.0, 379.0]),
                      te_ms=0.0, tr_ms=INF, b1=np.array([0.9, 1.0, 1.2]))
    np.testing.assert_allclose(out, pd * [0.9, 1.0, 1.2], rtol=0, atol=1e-15)


def test_fse_matches_paper_002_rate_form():
    r1, r2, tr, te = 1.2, 12.5, 0.6, 0.09  # s^-1, s
    expected = 0.8 * 1.1 * (1 - math.exp(-r1 * tr)) * math.exp(-r2 * te)
    # paper 002's form is the multi-echo convention (longitudinal factor at TE -> 0) ...
    got = S.sequence_signal("se", AcquisitionParams(TE_ms=te * 1000, TR_ms=tr * 1000), pd=0.8, t1_ms=1000 / r1,
                            t2_ms=1000 / r2, b1=1.1, multi_echo=True)
    assert float(got) == pytest.approx(expected, rel=1e-12)
    # ... the single-echo spin echo adds the Mz inversion of the refocusing pulse at TE/2
    exact = 0.8 * 1.1 * (1 - 2 * math.exp(-r1 * (tr - te / 2)) + math.exp(-r1 * tr)) * math.exp(-r2 * te)
    got = S.spin_echo(0.8, 1000 / r1, 1000 / r2, te_ms=te * 1000, tr_ms=tr * 1000, b1=1.1)
    assert float(got) == pytest.approx(exact, rel=1e-12)


def test_gre_peaks_at_ernst_angle_1142_deg():
    fa = np.linspace(1.0, 40.0, 390001)  # 1e-4 degree steps
    s = S.spoiled_gre(1.0, 1000.0, 50.0, te_ms=0.0, tr_ms=20.0, fa_deg=fa)
    best = fa[np.argmax(s)]
    assert best == pytest.approx(11.42, abs=5e-3)
    assert best == pytest.approx(math.degrees(math.acos(math.exp(-0.02))), abs=2e-4)
    assert float(S.ernst_angle(1000.0, 20.0)) == pytest.approx(11.421, abs=1e-3)


def test_gre_numerical_maximiser_agrees():
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda a: -float(S.spoiled_gre(1.0, 1000.0, 50.0, te_ms=0, tr_ms=20.0, fa_deg=a)),
                          bounds=(1, 60), method="bounded", options={"xatol": 1e-8})
    assert res.x == pytest.approx(11.4210, abs=1e-3)


@pytest.mark.parametrize("t1, tr", [(4000.0, INF), (4000.0, 9000.0), (1331.0, 5000.0), (832.0, 3000.0)])
def test_flair_null(t1, tr):
    r1 = 1.0 / t1
    ti_null = -math.log((1 + math.exp(-r1 * tr)) / 2) / r1
    assert float(S.flair_null_ti(t1, tr)) == pytest.approx(ti_null, rel=1e-12)
    assert abs(float(S.flair(1.0, t1, 100.0, te_ms=0.0, ti_ms=ti_null, tr_ms=tr))) < 1e-12
    ti_null = float(S.flair_null_ti(t1, tr, te_ms=10.0))  # with the refocusing pulse at TE/2
    s = S.flair(1.0, t1, 100.0, te_ms=10.0, ti_ms=ti_null, tr_ms=tr)
    assert abs(float(s)) < 1e-12
    # a little away from the null the magnitude is positive on both sides
    assert float(S.flair(1.0, t1, 100.0, te_ms=10.0, ti_ms=ti_null * 0.9, tr_ms=tr)) > 1e-3
    assert float(S.flair(1.0, t1, 100.0, te_ms=10.0, ti_ms=ti_null * 1.1, tr_ms=tr)) > 1e-3


def test_flair_null_2772_6_ms():
    assert float(S.flair_null_ti(4000.0)) == pytest.approx(2772.5887, abs=1e-3)
    assert float(S.flair_null_ti(4000.0)) == pytest.approx(4000.0 * math.log(2), rel=1e-12)


def test_flair_sign_and_trec():
    # CSF Mz is negative at short TI: magnitude by default, sign on request
    signed = S.flair(1.0, 4163.0, 379.0, te_ms=100, ti_ms=1000, tr_ms=9000, magnitude=False)
    mag = S.flair(1.0, 4163.0, 379.0, te_ms=100, ti_ms=1000, tr_ms=9000)
    assert float(signed) < 0 and float(mag) == pytest.approx(-float(signed))
    # Trec replaces TR in the recovery term only; default Trec = TR equals IR
    a = S.flair(1.0, 1331.0, 110.0, te_ms=100, ti_ms=2500, tr_ms=9000)
    b = S.inversion_recovery(1.0, 1331.0, 110.0, te_ms=100, ti_ms=2500, tr_ms=9000)
    c = S.flair(1.0, 1331.0, 110.0, te_ms=100, ti_ms=2500, tr_ms=9000, trec_ms=9000)
    d = S.flair(1.0, 1331.0, 110.0, te_ms=100, ti_ms=2500, tr_ms=9000, trec_ms=6000)
    assert float(a) == float(b) == float(c)
    expected = abs(1 - 2 * math.exp(-2500 / 1331) + 2 * math.exp(-5950 / 1331) - math.exp(-6000 / 1331)) \
        * math.exp(-100 / 110)
    assert float(d) == pytest.approx(expected, rel=1e-12)


def test_mprage_eq6_tends_to_pd_b1_as_td_grows():
    t1 = np.array([832.0, 1331.0, 4163.0])
    for td in (1e5, 1e6, 1e8):
        s = S.mprage_eq6_paper002(0.8, t1, 60.0, te_ms=0.0, ti_ms=900, tr_ms=2300, fa_deg=9, tx_ms=7, n=100,
                                  b1=1.25, td_ms=td)
        tol = np.exp(-td / t1.max()) + 1e-12
        np.testing.assert_allclose(s, 0.8 * 1.25, atol=tol)
    # TD -> inf through the timing: TR -> inf with TI, TX, n fixed
    s = S.mprage_eq6_paper002(1.0, t1, 60.0, te_ms=0.0, ti_ms=900, tr_ms=1e9, fa_deg=9, tx_ms=7, n=100)
    np.testing.assert_allclose(s, 1.0, atol=1e-12)
    s = S.mprage_eq6_paper002(1.0, t1, 60.0, te_ms=0.0, ti_ms=900, tr_ms=INF, fa_deg=9, tx_ms=7, n=100)
    np.testing.assert_allclose(s, 1.0, atol=1e-12)


def test_mprage_published_form_exact():
    r1, tr, ti, tx, te, n, a = 1 / 1.331, 2.3, 0.9, 0.007, 0.003, 100, math.radians(9)
    td = tr - ti - n * tx
    core = math.sin(a) * ((1 - math.exp(-r1 * tr)) / (1 - math.cos(a) * math.exp(-r1 * tr))
                          * (1 - (math.cos(a) * math.exp(-tx * r1)) ** n))
    expected = abs(core * math.exp(-td * r1) + (1 - math.exp(-td * r1))) * 0.8 * math.exp(-te / 0.066)
    got = S.mprage_eq6_paper002(0.8, 1331.0, 66.0, te_ms=3, ti_ms=900, tr_ms=2300, fa_deg=9, tx_ms=7, n=100)
    assert float(got) == pytest.approx(expected, rel=1e-12)
    assert float(S.mprage_delay_time(900, 2300, 7, 100)) == pytest.approx(700.0)
    assert float(S.mprage_delay_time(900, 2300, 8, 200)) == 0.0  # clamped


def test_mprage_finite_nonnegative_random_sweep():
    g = np.random.default_rng(1234)
    m = 20000
    kw = dict(te_ms=g.uniform(0, 20, m), ti_ms=g.uniform(0, 5000, m), tr_ms=g.uniform(1, 10000, m),
              fa_deg=g.uniform(0, 180, m), tx_ms=g.uniform(0.1, 50, m), n=g.integers(1, 400, m).astype(float))
    pd, t1, t2s = g.uniform(0, 1.2, m), 10 ** g.uniform(0, 4.5, m), 10 ** g.uniform(0, 3, m)
    for fn in (S.mprage_eq6_paper002, S.mprage):
        s = fn(pd, t1, t2s, **kw)
        assert np.all(np.isfinite(s)) and np.all(s >= 0)
    # also with the paper's own distributions and extreme T1 (0 and inf)
    for fn in (S.mprage_eq6_paper002, S.mprage):
        s = fn(np.ones(3), np.array([0.0, INF, 1000.0]), 50.0, te_ms=3, ti_ms=900, tr_ms=2300, fa_deg=0,
               tx_ms=7, n=100)
        assert np.all(np.isfinite(s)) and np.all(s >= 0)


def test_mprage_steady_state_contrast_and_limits():
    t1 = np.array([832.0, 1331.0, 4163.0])  # WM, GM, CSF
    s = S.mprage_steady_state(1.0, t1, 60.0, te_ms=3, ti_ms=900, tr_ms=2300, fa_deg=9, tx_ms=7, n=176)
    assert s[0] > s[1] > s[2]  # T1 weighting
    # no readout loss (n = 1, long TR): Mz at TI = 1 - 2 e^{-TI/T1}, signal sin(a)*|..|
    s1 = S.mprage_steady_state(1.0, t1, INF, te_ms=0, ti_ms=900, tr_ms=1e9, fa_deg=9, tx_ms=7, n=1)
    np.testing.assert_allclose(s1, math.sin(math.radians(9)) * np.abs(1 - 2 * np.exp(-900 / t1)), rtol=1e-10)


def test_dir_identities():
    t1 = np.array([832.0, 1331.0, 4163.0])
    t2 = np.array([80.0, 110.0, 379.0])
    kw = dict(te_ms=20.0)
    # TI1 = TI2 -> the spin echo (refocusing pulse at TE/2 included)
    sat = S.double_inversion_recovery(1.0, t1, t2, ti1_ms=700, ti2_ms=700, tr_ms=5000, **kw)
    np.testing.assert_allclose(sat, (1 - 2 * np.exp(-4990 / t1) + np.exp(-5000 / t1)) * np.exp(-20 / t2),
                               rtol=1e-12)
    np.testing.assert_allclose(sat, S.spin_echo(1.0, t1, t2, tr_ms=5000, **kw), rtol=1e-12)
    # TE = 0, TI1 = TR (first inversion of a saturated Mz) -> IR with TI = TI2
    d = S.double_inversion_recovery(1.0, t1, t2, ti1_ms=5000, ti2_ms=700, tr_ms=5000, te_ms=0.0)
    ir = S.inversion_recovery(1.0, t1, t2, ti_ms=700, tr_ms=5000, te_ms=0.0)
    np.testing.assert_allclose(d, ir, rtol=1e-12)
    # TI1 -> inf (and TR >= TI1) -> IR at TR -> inf
    d = S.double_inversion_recovery(1.0, t1, t2, ti1_ms=1e8, ti2_ms=700, tr_ms=2e8, **kw)
    ir = S.inversion_recovery(1.0, t1, t2, ti_ms=700, tr_ms=INF, **kw)
    np.testing.assert_allclose(d, ir, rtol=1e-12)
    # brief's equation, signed
    d = S.double_inversion_recovery(0.9, 1331.0, 110.0, ti1_ms=3400, ti2_ms=325, tr_ms=11000, te_ms=25,
                                    magnitude=False)
    e = 0.9 * (1 - 2 * math.exp(-325 / 1331) + 2 * math.exp(-3400 / 1331) - 2 * math.exp(-10987.5 / 1331)
               + math.exp(-11000 / 1331)) * math.exp(-25 / 110)
    assert float(d) == pytest.approx(e, rel=1e-12)


def test_vectorised_over_parameters_grid():
    te = np.linspace(84, 150, 7)[:, None, None]
    ti = np.linspace(2200, 2900, 7)[None, :, None]
    t1 = np.array([832.0, 1331.0, 4163.0])
    t2 = np.array([80.0, 110.0, 379.0])
    out = S.flair(1.0, t1, t2, te_ms=te, ti_ms=ti, tr_ms=9000)
    assert out.shape == (7, 7, 3)
    one = S.flair(1.0, t1, t2, te_ms=float(te[3, 0, 0]), ti_ms=float(ti[0, 5, 0]), tr_ms=9000)
    np.testing.assert_allclose(out[3, 5], one, rtol=1e-14)


def test_background_zero_without_warnings():
    with np.errstate(divide="raise", invalid="raise", over="raise"):
        z = np.zeros(4, dtype=np.float32)
        for fn, kw in [(S.spin_echo, dict(te_ms=10, tr_ms=500)),
                       (S.flair, dict(te_ms=100, ti_ms=2500, tr_ms=9000)),
                       (S.spoiled_gre, dict(te_ms=5, tr_ms=20, fa_deg=15)),
                       (S.mprage, dict(te_ms=3, ti_ms=900, tr_ms=2300, fa_deg=9, tx_ms=7, n=100)),
                       (S.mprage_eq6_paper002, dict(te_ms=3, ti_ms=900, tr_ms=2300, fa_deg=9, tx_ms=7, n=100))]:
            out = fn(z, z, z, **kw)
            assert out.dtype == np.float32 and np.all(out == 0)


def test_float32_preserved():
    x = np.float32([0.8])
    assert S.spin_echo(x, np.float32([1000]), np.float32([100]), te_ms=10, tr_ms=500).dtype == np.float32


def test_sequence_signal_dispatch_and_missing():
    p = AcquisitionParams.parse("TE=112,TI=2500,TR=9000")
    a = S.sequence_signal("flair", p, pd=0.8, t1_ms=1331.0, t2_ms=110.0)
    b = S.flair(0.8, 1331.0, 110.0, te_ms=112, ti_ms=2500, tr_ms=9000)
    assert float(a) == float(b)
    with pytest.raises(MissingParameterError, match="TI"):
        S.sequence_signal("flair", AcquisitionParams.parse("TE=112,TR=9000"), pd=1, t1_ms=1000, t2_ms=100)
    with pytest.raises(MissingParameterError, match="T2\\*"):
        S.sequence_signal("gre", AcquisitionParams.parse("TE=5,TR=20,FA=15"), pd=1, t1_ms=1000, t2_ms=100)
    p = AcquisitionParams.parse("TE=3,TI=900,TR=2300,FA=9,TX=7,N=100")
    a = S.sequence_signal("mprage", p, pd=1.0, t1_ms=1000.0, t2star_ms=50.0)
    assert float(a) == float(S.mprage(1.0, 1000.0, 50.0, te_ms=3, ti_ms=900, tr_ms=2300, fa_deg=9, tx_ms=7, n=100))
    p = AcquisitionParams.parse("TE=20,TI1=3400,TI2=325,TR=11000")
    assert float(S.sequence_signal("dir", p, pd=1, t1_ms=1331.0, t2_ms=110.0)) > 0


# ------------------------------------------------------------------ torch backend
torch = pytest.importorskip("torch")

CASES = [
    (S.spin_echo, "t2", dict(te_ms=90.0, tr_ms=3000.0)),
    (S.inversion_recovery, "t2", dict(te_ms=90.0, ti_ms=800.0, tr_ms=3000.0)),
    (S.flair, "t2", dict(te_ms=112.0, ti_ms=2500.0, tr_ms=9000.0, trec_ms=7000.0)),
    (S.double_inversion_recovery, "t2", dict(te_ms=25.0, ti1_ms=3400.0, ti2_ms=325.0, tr_ms=11000.0)),
    (S.spoiled_gre, "t2s", dict(te_ms=5.0, tr_ms=20.0, fa_deg=15.0)),
    (S.mprage_eq6_paper002, "t2s", dict(te_ms=3.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=9.0, tx_ms=7.0, n=100)),
    (S.mprage, "t2s", dict(te_ms=3.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=9.0, tx_ms=7.0, n=176)),
]


@pytest.mark.parametrize("fn, t2kind, kw", CASES, ids=[c[0].__name__ for c in CASES])
def test_torch_numpy_agree_and_gradients(fn, t2kind, kw):
    g = np.random.default_rng(0)
    pd = g.uniform(0.5, 1.0, 50)
    t1 = g.uniform(600, 4500, 50)
    t2 = g.uniform(40, 400, 50)
    b1 = g.uniform(0.8, 1.2, 50)
    ref = fn(pd, t1, t2, b1=b1, **kw)
    tt = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (pd, t1, t2)]
    out = fn(*tt, b1=torch.tensor(b1), **kw)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-12, atol=1e-15)
    out.sum().backward()
    for t in tt:
        assert t.grad is not None and torch.all(torch.isfinite(t.grad))
    # dS/dPD = S/PD analytically
    np.testing.assert_allclose(tt[0].grad.numpy(), ref / pd, rtol=1e-10)
    # dS/dT1 against central finite differences
    h = 1e-3
    fd = (fn(pd, t1 + h, t2, b1=b1, **kw) - fn(pd, t1 - h, t2, b1=b1, **kw)) / (2 * h)
    np.testing.assert_allclose(tt[1].grad.numpy(), fd, rtol=1e-5, atol=1e-9)


def test_torch_parameters_as_tensors_and_float32():
    te = torch.linspace(84, 150, 7, dtype=torch.float32)[:, None]
    t1 = torch.tensor([832.0, 1331.0, 4163.0])
    out = S.flair(1.0, t1, torch.tensor([80.0, 110.0, 379.0]), te_ms=te, ti_ms=2500.0, tr_ms=9000.0)
    assert out.shape == (7, 3) and out.dtype == torch.float32
    ref = S.flair(1.0, t1.numpy(), np.array([80.0, 110.0, 379.0], np.float32), te_ms=te.numpy(), ti_ms=2500.0,
                  tr_ms=9000.0)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5)


def test_numpy_path_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; import numpy as np; from neuroshift.physics import signal as S; "
            "S.flair(np.ones(3), np.ones(3)*1000, np.ones(3)*100, te_ms=100, ti_ms=2500, tr_ms=9000); "
            "import neuroshift.physics.noise, neuroshift.physics.sampling; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ noise
def test_rician_mean_at_zero_signal():
    sigma = 3.0
    x = add_rician_noise(np.zeros(400_000), sigma, rng=7)
    expected = sigma * math.sqrt(math.pi / 2)  # 1.2533 sigma
    # MC standard error of the mean: sqrt(var/N), var = (2 - pi/2) sigma^2
    se = sigma * math.sqrt(2 - math.pi / 2) / math.sqrt(x.size)
    assert abs(x.mean() - expected) < 5 * se
    assert float(rician_mean(0.0, sigma)) == pytest.approx(expected, rel=1e-12)


def test_rician_mean_nonzero_and_seeded():
    x = add_rician_noise(np.full(400_000, 4.0), 1.5, rng=3)
    assert x.mean() == pytest.approx(float(rician_mean(4.0, 1.5)), abs=0.01)
    np.testing.assert_array_equal(add_rician_noise(np.ones(10), 1.0, rng=5), add_rician_noise(np.ones(10), 1.0, rng=5))
    assert np.all(add_rician_noise(np.ones(10), 0.0) == 1.0)
    t = add_rician_noise(torch.ones(10, dtype=torch.float64), 1.0, rng=5)
    np.testing.assert_allclose(t.numpy(), add_rician_noise(np.ones(10), 1.0, rng=5), rtol=1e-12)
    gen = torch.Generator().manual_seed(0)
    s = torch.zeros(100_000, requires_grad=True)
    y = add_rician_noise(s + 1.0, 1.0, rng=gen)
    y.mean().backward()
    assert torch.isfinite(s.grad).all()


def test_rician_bad_sigma():
    from neuroshift.errors import ParameterRangeError

    with pytest.raises(ParameterRangeError):
        add_rician_noise(np.ones(3), -1.0)
    with pytest.raises(ParameterRangeError):
        add_rician_noise(np.ones(3), float("nan"))


def test_bias_field_smooth_seeded_mean_one():
    a = bias_field((24, 32, 40), 0.3, rng=11)
    b = bias_field((24, 32, 40), 0.3, rng=11)
    c = bias_field((24, 32, 40), 0.3, rng=12)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.dtype == np.float32 and np.all(a > 0)
    assert float(a.mean()) == pytest.approx(1.0, abs=1e-5)
    assert np.abs(np.diff(a, axis=2)).max() < 0.1  # smooth
    np.testing.assert_array_equal(bias_field((5, 6, 7), 0.0, rng=1), 1.0)


# ------------------------------------------------------------------ sampling
def test_sample_sequence_seeded_uniform_and_valid():
    a = sample_sequence(42)
    b = sample_sequence(42)
    assert a == b
    g = np.random.default_rng(0)
    counts = dict.fromkeys(SEQUENCES_002, 0)
    for _ in range(4000):
        seq, p = sample_sequence(g)
        counts[seq] += 1
        p.require(seq)
        if seq == "mprage":
            assert 600 <= p.TI_ms <= 900 and 4 <= p.TX_ms <= 8 and 2 <= p.TE_ms <= 4 and 5 <= p.FA_deg <= 12
            assert p.N == 100
        if seq == "gre":
            assert 2 <= p.TE_ms <= 80 and 5 <= p.TR_ms <= 5000 and 5 <= p.FA_deg <= 50
        if seq == "se":
            assert 1 <= p.TE_ms <= 3000 and 1 <= p.TR_ms <= 3000
        if seq == "flair":
            assert 1 <= p.TR_ms <= 5000 and 1 <= p.TI_ms <= min(3000, p.TR_ms)
    for n in counts.values():
        assert abs(n - 1000) < 4 * math.sqrt(4000 * 0.25 * 0.75)


def test_sample_distributions_match_paper():
    g = np.random.default_rng(1)
    tr = np.array([sample_raw("mprage", g)["TR_ms"] for _ in range(20000)])
    assert tr.mean() == pytest.approx(2300, rel=0.01) and tr.std() == pytest.approx(230, rel=0.05)
    te = np.array([sample_raw("flair", g)["TE_ms"] for _ in range(20000)])
    assert np.median(te) == pytest.approx(20.0, rel=0.1)
    assert np.log10(te / 1000).std() == pytest.approx(1.0, rel=0.05)
