"""qMRI route of paper 002: synthesis from maps, closed-form and least-squares fits, round trips, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from neuroshift.errors import GeometryError, InputError, MissingParameterError, NonFiniteError, ParameterRangeError
from neuroshift.io.params import AcquisitionParams as P
from neuroshift.io.volume import Volume
from neuroshift.physics import signal as S
from neuroshift.qmri import QMRIMaps, fit, identify, read_maps, synthesize, write_maps

SHAPE = (5, 6, 7)


@pytest.fixture
def truth():
    g = np.random.default_rng(0)
    pd = g.uniform(0.6, 1.0, SHAPE)
    t1 = g.uniform(700, 4000, SHAPE)
    t2 = g.uniform(50, 400, SHAPE)
    t2s = t2 * g.uniform(0.3, 0.8, SHAPE)
    for a in (pd, t1, t2, t2s):
        a[0, 0, :] = 0.0  # background row
    ref = Volume(np.zeros(SHAPE, np.float32), spacing=(0.9, 1.1, 2.0), origin=(10, -5, 3))
    maps = QMRIMaps({k: ref.with_data(v.astype(np.float64)) for k, v in
                     dict(PD=pd, T1=t1, T2=t2, T2star=t2s).items()})
    return maps, dict(PD=pd, T1=t1, T2=t2, T2star=t2s)


def _images(maps, seqs, texts):
    ps = [P.parse(t) for t in texts]
    return [synthesize(maps, s, p, dtype=np.float64) for s, p in zip(seqs, ps)], ps


def _rel(est, true):
    m = true > 0
    return float(np.max(np.abs(est[m] / true[m] - 1)))


def test_synthesize_matches_signal_equations(truth):
    maps, t = truth
    p = P.parse("TE=112,TI=2500,TR=9000")
    img = synthesize(maps, "flair", p)
    assert img.data.dtype == np.float32
    # multi-echo convention (qmri.fit's model): longitudinal factor at TE -> 0, times e^{-TE/T2}
    with np.errstate(divide="ignore"):
        expected = S.flair(t["PD"], t["T1"], t["T2"], te_ms=0, ti_ms=2500, tr_ms=9000) * np.exp(-112 / t["T2"])
    np.testing.assert_allclose(img.data, expected, rtol=1e-5, atol=1e-7)
    assert img.same_grid(maps["PD"]) and np.all(img.data[0, 0] == 0)
    img = synthesize(maps, "mprage", P.parse("TE=3,TI=900,TR=2300,FA=9,TX=7,N=176"))
    assert np.all(np.isfinite(img.data)) and np.all(img.data >= 0)


def test_synthesize_b1_noise_and_missing(truth):
    maps, t = truth
    b1 = np.full(SHAPE, 1.3)
    with_b1 = QMRIMaps({**maps.maps, "B1": maps["PD"].with_data(b1)})
    p = P.parse("TE=5,TR=20,FA=15")
    np.testing.assert_allclose(synthesize(with_b1, "gre", p).data, 1.3 * synthesize(maps, "gre", p).data, rtol=1e-6)
    a = synthesize(maps, "gre", p, noise_sigma=0.01, rng=3)
    b = synthesize(maps, "gre", p, noise_sigma=0.01, rng=3)
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, synthesize(maps, "gre", p).data)
    no_t2 = QMRIMaps({k: v for k, v in maps.maps.items() if k != "T2"})
    with pytest.raises(MissingParameterError, match="T2.nii.gz"):
        synthesize(no_t2, "se", P.parse("TE=10,TR=500"))
    img = synthesize(no_t2, "se", P.parse("TE=10,TR=500"), t2star_for_t2=True)
    assert "t2_stand_in" in img.meta
    with pytest.raises(MissingParameterError, match="TI"):
        synthesize(maps, "flair", P.parse("TE=100,TR=9000"))


def test_two_echo_t2_exact(truth):
    maps, t = truth
    ims, ps = _images(maps, ["se", "se"], ["TE=15,TR=3000", "TE=90,TR=3000"])
    # the closed form itself, on one voxel
    s1, s2 = ims[0].data[2, 3, 4], ims[1].data[2, 3, 4]
    assert (90 - 15) / np.log(s1 / s2) == pytest.approx(t["T2"][2, 3, 4], rel=1e-12)
    r = fit(ims, "se", ps)
    assert set(r.maps) == {"PD", "T2"} and r.identified == ["PD (apparent)", "T2"]
    assert "closed form" in r.method
    assert _rel(r.maps.array("T2"), t["T2"]) < 1e-5
    # apparent PD = PD (1 - e^{-TR/T1}) (T1 weighting absorbed)
    m = t["PD"] > 0
    app = t["PD"] * (1 - np.exp(-3000 / np.where(m, t["T1"], 1)))
    assert _rel(r.maps.array("PD"), np.where(m, app, 0)) < 1e-5
    assert any("T1" in n and "not written" in n for n in r.notes)
    assert np.all(r.maps.array("T2")[0, 0] == 0) and np.all(r.maps.array("PD")[0, 0] == 0)


def test_multi_echo_and_two_echo_t2star(truth):
    maps, t = truth
    ims, ps = _images(maps, ["se"] * 4, [f"TE={te},TR=2500" for te in (10, 40, 80, 120)])
    r = fit(ims, "se", ps)
    assert _rel(r.maps.array("T2"), t["T2"]) < 1e-5
    ims, ps = _images(maps, ["gre", "gre"], ["TE=4,TR=30,FA=20", "TE=24,TR=30,FA=20"])
    r = fit(ims, "gre", ps)
    assert set(r.maps) == {"PD", "T2star"}
    assert _rel(r.maps.array("T2star"), t["T2star"]) < 1e-5


def test_despot1(truth):
    maps, t = truth
    ims, ps = _images(maps, ["gre", "gre"], ["TE=4,TR=20,FA=4", "TE=4,TR=20,FA=25"])
    r = fit(ims, "gre", ps)
    assert set(r.maps) == {"PD", "T1"} and "DESPOT1" in r.method
    assert _rel(r.maps.array("T1"), t["T1"]) < 1e-4
    m = t["PD"] > 0
    app = np.where(m, t["PD"] * np.exp(-4 / np.where(m, t["T2star"], 1)), 0)  # apparent: T2* decay absorbed
    assert _rel(r.maps.array("PD"), app) < 1e-4


def test_nlls_mixed_and_round_trip(truth, tmp_path):
    maps, t = truth
    seqs = ["se", "se", "se", "ir"]
    ims, ps = _images(maps, seqs, ["TE=10,TR=500", "TE=100,TR=500", "TE=10,TR=4000", "TE=10,TI=300,TR=5000"])
    r = fit(ims, seqs, ps)
    assert set(r.maps) == {"PD", "T1", "T2"} and r.identified == ["PD", "T1", "T2"]
    assert "Levenberg" in r.method
    for k in ("PD", "T1", "T2"):
        assert _rel(r.maps.array(k), t[k]) < 1e-4, k
    # fit -> write -> read -> synth reproduces a new contrast
    write_maps(r.maps, tmp_path / "maps", report=r.report())
    back = read_maps(tmp_path / "maps")
    assert back.info["identified"] == ["PD", "T1", "T2"]
    target = P.parse("TE=112,TI=2500,TR=9000")
    new = synthesize(back, "flair", target)
    ref = synthesize(maps, "flair", target)
    np.testing.assert_allclose(new.data, ref.data, rtol=2e-4, atol=1e-6)
    assert new.same_grid(maps["PD"])


def test_nlls_with_flair_and_gre_family(truth):
    maps, t = truth
    seqs = ["se", "se", "flair", "ir"]
    ims, ps = _images(maps, seqs, ["TE=10,TR=500", "TE=100,TR=4000", "TE=100,TI=2500,TR=9000",
                                   "TE=10,TI=300,TR=5000"])
    r = fit(ims, seqs, ps)
    for k in ("PD", "T1", "T2"):
        assert _rel(r.maps.array(k), t[k]) < 1e-4, k
    seqs = ["gre"] * 3
    ims, ps = _images(maps, seqs, ["TE=4,TR=20,FA=4", "TE=4,TR=20,FA=25", "TE=30,TR=40,FA=15"])
    r = fit(ims, seqs, ps, method="nlls")
    assert set(r.maps) == {"PD", "T1", "T2star"}
    for k in ("PD", "T1", "T2star"):
        assert _rel(r.maps.array(k), t[k]) < 1e-3, k  # T2* up to 300 ms from TEs of 4-30 ms: ill-conditioned


def test_identification_rules():
    def ident(seqs, texts):
        return identify(seqs, [P.parse(x) for x in texts])

    i = ident(["se", "se"], ["TE=10,TR=3000", "TE=90,TR=3000"])
    assert i.identified == ["T2"] and i.apparent_pd and i.absorbed == ["T1"]
    i = ident(["se", "se"], ["TE=10,TR=500", "TE=10,TR=3000"])
    assert i.identified == ["T1"] and i.absorbed == ["T2"]
    i = ident(["se", "se"], ["TE=10,TR=500", "TE=90,TR=3000"])
    assert i.identified == []
    i = ident(["se", "se", "se"], ["TE=10,TR=500", "TE=90,TR=500", "TE=10,TR=3000"])
    assert i.identified == ["T1", "T2"] and not i.absorbed


def test_refuses_unidentifiable(truth):
    maps, _ = truth
    ims, ps = _images(maps, ["se", "se"], ["TE=10,TR=500", "TE=90,TR=3000"])
    with pytest.raises(InputError, match="identify no relaxation time"):
        fit(ims, "se", ps)
    with pytest.raises(InputError, match="two or more"):
        fit(ims[:1], "se", ps[:1])
    ims, ps = _images(maps, ["se", "se", "se"], ["TE=10,TR=500", "TE=100,TR=500", "TE=10,TR=4000"])
    with pytest.raises(InputError, match="no closed form"):
        fit(ims, "se", ps, method="closed")


def test_bad_inputs(truth):
    maps, _ = truth
    ims, ps = _images(maps, ["se", "se"], ["TE=15,TR=3000", "TE=90,TR=3000"])
    shifted = Volume(ims[1].data, ims[1].spacing, ims[1].origin + 1.0, ims[1].direction)
    with pytest.raises(GeometryError, match="origins differ"):
        fit([ims[0], shifted], "se", ps)
    bad = ims[1].data.copy()
    bad[1, 1, 1] = np.nan
    with pytest.raises(NonFiniteError, match="NaN"):
        fit([ims[0], ims[1].with_data(bad)], "se", ps, names=["a.nii.gz", "b.nii.gz"])
    with pytest.raises(MissingParameterError, match="TR.*b.nii.gz"):
        fit(ims, "se", [ps[0], P.parse("TE=90")], names=["a.nii.gz", "b.nii.gz"])
    with pytest.raises(GeometryError):
        fit(ims, "se", ps, mask=Volume(np.ones((2, 2, 2))))
    with pytest.raises(ParameterRangeError, match="negative"):
        QMRIMaps({"PD": maps["PD"].with_data(-np.ones(SHAPE))})


def test_zero_signal_and_mask_no_nan_no_warnings(truth):
    maps, t = truth
    ims, ps = _images(maps, ["se"] * 3, ["TE=10,TR=500", "TE=100,TR=500", "TE=10,TR=4000"])
    mask = ims[0].with_data((np.arange(np.prod(SHAPE)).reshape(SHAPE) % 2).astype(np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(divide="raise", invalid="raise", over="raise"):
            r = fit(ims, "se", ps, mask=mask)
            zero = [im.with_data(np.zeros(SHAPE)) for im in ims]
            rz = fit(zero, "se", ps)
            r2 = fit(ims[:2], "se", ps[:2])
            z2 = fit([im.with_data(np.zeros(SHAPE)) for im in ims[:2]], "se", ps[:2])
    for res in (r, rz, r2, z2):
        for k in res.maps:
            assert np.all(np.isfinite(res.maps.array(k)))
    off = mask.data == 0
    for k in r.maps:
        assert np.all(r.maps.array(k)[off] == 0)
    for res in (rz, z2):
        for k in res.maps:
            assert np.all(res.maps.array(k) == 0)


def test_b1_divides_pd(truth):
    maps, t = truth
    ims, ps = _images(maps, ["se"] * 3, ["TE=10,TR=500", "TE=100,TR=500", "TE=10,TR=4000"])
    b1 = ims[0].with_data(np.full(SHAPE, 2.0))
    r = fit([im.with_data(im.data * 2.0) for im in ims], "se", ps, b1=b1)
    assert _rel(r.maps.array("PD"), t["PD"]) < 1e-4


def test_noisy_fit_is_reasonable(truth):
    maps, t = truth
    seqs = ["se"] * 3
    ps = [P.parse(x) for x in ["TE=10,TR=500", "TE=100,TR=500", "TE=10,TR=4000"]]
    ims = [synthesize(maps, s, p, noise_sigma=0.002, rng=i, dtype=np.float64) for i, (s, p) in enumerate(zip(seqs, ps))]
    r = fit(ims, seqs, ps)
    m = t["T2"] > 0
    assert np.median(np.abs(r.maps.array("T2")[m] / t["T2"][m] - 1)) < 0.05
