"""Guards from the mutation audit (issue 13): signal-equation masking and tissue-wise GRE/MPRAGE.

Expected values come from the signal equations written out here with literal 3 T relaxation
values, never from the production helpers, so a wrong parameter lookup (T2* taken from T2)
or a loosened validity mask cannot hide behind a test that shares the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuroshift.io.params import AcquisitionParams
from neuroshift.physics import signal as sig
from neuroshift.physics.relaxation import relaxation_table
from neuroshift.simulate.tissuewise import fit_tissue_model

from helpers import hand_signals as hand  # Testing/ helper: literal relaxation values, written-out equations

LIT_3T = hand.LIT_3T
ORDER = tuple(LIT_3T)


def gre_by_hand(pd, t1, t2s, te, tr, fa_deg):
    return hand.spoiled_gre(pd, t1, t2s, te=te, tr=tr, fa=fa_deg)


def test_literal_table_is_the_3t_table():
    table = relaxation_table(3.0)
    for t, (pd, t1, t2, t2s) in LIT_3T.items():
        p = table[t]
        assert (p.pd, p.t1_ms, p.t2_ms, p.t2star_ms) == (pd, t1, t2, t2s), t


def test_hand_equations_agree_with_a_literal_value():
    # WM, GRE TE 10 / TR 30 / FA 25, step by step: e1 = exp(-30/832) = 0.964585, 1 - e1 = 0.035415,
    # 1 - cos25*e1 = 1 - 0.906308*0.964585 = 0.125789, ratio 0.281543, x sin25 (0.422618) x PD 0.7
    # = 0.083290, x exp(-10/53.2) = 0.828640 -> 0.069017
    assert gre_by_hand(0.7, 832.0, 53.2, 10, 30, 25) == pytest.approx(0.069017, abs=2e-6)
    assert float(sig.spoiled_gre(0.7, 832.0, 53.2, te_ms=10, tr_ms=30, fa_deg=25)) == pytest.approx(0.069017, abs=2e-6)


# --------------------------------------------------------------------------- item 9: T <= 0 gives 0
@pytest.mark.parametrize("t1,t2", [(0.0, 80.0), (800.0, 0.0), (-5.0, 80.0), (800.0, -1.0)])
def test_non_positive_relaxation_time_gives_zero_signal_with_nonzero_pd(t1, t2):
    kw = dict(te_ms=10.0, tr_ms=1000.0)
    assert float(sig.spin_echo(1.0, t1, t2, **kw)) == 0.0
    assert float(sig.flair(1.0, t1, t2, te_ms=10.0, ti_ms=300.0, tr_ms=1000.0)) == 0.0
    assert float(sig.spoiled_gre(1.0, t1, t2, te_ms=5.0, tr_ms=30.0, fa_deg=20.0)) == 0.0
    assert float(sig.mprage(1.0, t1, t2, te_ms=3.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=9.0, tx_ms=7.0, n=10)) == 0.0
    # the neighbouring valid voxel is not zero (so the zeros above are the mask, not an underflow)
    assert float(sig.spin_echo(1.0, 800.0, 80.0, **kw)) > 0.3
    assert float(sig.spoiled_gre(1.0, 800.0, 80.0, te_ms=5.0, tr_ms=30.0, fa_deg=20.0)) > 0.01


# --------------------------------------------------------------------------- item 1: T2* of GRE/MPRAGE
def _fractions(shape=(4, 8, 8)):
    """Four pure-tissue blocks and a mixed block (SYNTHETIC fractions)."""
    fr = {t: np.zeros(shape, np.float32) for t in ORDER}
    rows = shape[0]
    for k, t in enumerate(ORDER):
        fr[t][k % rows, :, :6] = 1.0
    for k, t in enumerate(ORDER):  # columns 6-7: equal mixture of all four
        fr[t][:, :, 6:] = 0.25
    return fr


def _image(fr, equation, c=1000.0):
    img = np.zeros(next(iter(fr.values())).shape, np.float64)
    for t in ORDER:
        img += c * equation(*LIT_3T[t]) * fr[t]
    return img.astype(np.float32)


GRE = AcquisitionParams(TE_ms=10, TR_ms=30, FA_deg=25, field_T=3.0)
MPRAGE = AcquisitionParams(TE_ms=3, TI_ms=900, TR_ms=2300, FA_deg=9, TX_ms=7, N=176, field_T=3.0)


def test_tissuewise_gre_uses_t2star_and_moves_with_te():
    fr = _fractions()
    img = _image(fr, lambda pd, t1, t2, t2s: gre_by_hand(pd, t1, t2s, 10, 30, 25))
    model = fit_tissue_model(img, fr, "gre", GRE)
    for t in ORDER:
        assert model.tissues[t].t2star_ms == pytest.approx(LIT_3T[t][3], rel=1e-4), t
    assert model.scale_c == pytest.approx(1000.0, rel=1e-5)
    out = model.simulate(AcquisitionParams(TE_ms=25))
    for k, t in enumerate(ORDER):
        pd, t1, _, t2s = LIT_3T[t]
        expected = 1000.0 * gre_by_hand(pd, t1, t2s, 25, 30, 25)
        assert out[k, 0, 0] == pytest.approx(expected, rel=1e-4), t


def test_tissuewise_mprage_uses_t2star_and_moves_with_te():
    """Whatever the T1 part of the MPRAGE equation, S ∝ PD·M(T1)·e^{−TE/T2*}: a TE change from 3 to
    20 ms multiplies each pure tissue by exp(−17/T2*) with the literal T2*."""
    fr = _fractions()
    img = _image(fr, lambda pd, t1, t2, t2s: float(sig.mprage(pd, t1, t2s, te_ms=3, ti_ms=900, tr_ms=2300,
                                                              fa_deg=9, tx_ms=7, n=176)))
    model = fit_tissue_model(img, fr, "mprage", MPRAGE)
    for t in ORDER:
        assert model.tissues[t].t2star_ms == pytest.approx(LIT_3T[t][3], rel=1e-4), t
    out = model.simulate(AcquisitionParams(TE_ms=20))
    for k, t in enumerate(ORDER):
        ratio = out[k, 0, 0] / img[k, 0, 0]
        assert ratio == pytest.approx(math.exp(-17.0 / LIT_3T[t][3]), rel=1e-4), t


# --------------------------------------------------------------------------- audit round 2
def test_dispatcher_uses_the_flair_recovery_time():
    """FLAIR with Trec (paper 000's recovery time) is not FLAIR with TR: the dispatcher must pass Trec on."""
    from neuroshift.physics.signal import sequence_signal

    p = AcquisitionParams(TE_ms=100.0, TI_ms=2000.0, TR_ms=9000.0, Trec_ms=3000.0)
    got = float(sequence_signal("flair", p, pd=1.0, t1_ms=1000.0, t2_ms=100.0))
    kw = dict(te_ms=100.0, ti_ms=2000.0, tr_ms=9000.0)
    assert got == float(sig.flair(1.0, 1000.0, 100.0, trec_ms=3000.0, **kw))
    # with T1 = 1000 ms, e^{-3000/T1} = 0.0498 against e^{-9000/T1} = 0.0001: the two differ by ~0.05 x e^{-1}
    assert abs(got - float(sig.flair(1.0, 1000.0, 100.0, **kw))) > 0.01


def test_a_tissue_below_the_minimum_voxels_keeps_its_priors():
    fr = _fractions()
    # lesion only in 12 voxels (< 20 voxel-equivalents): not fitted, priors kept, even if its signal is off
    fr["lesion"][:] = 0.0
    fr["lesion"][3, 0, :6] = 1.0
    fr["lesion"][3, 1, :6] = 1.0
    fr["WM"][3, :2, :6] = 0.0
    fr["WM"][3, 2:, :6] = 1.0
    img = _image(fr, lambda pd, t1, t2, t2s: gre_by_hand(pd, t1, t2s, 10, 30, 25))
    img[3, :2, :6] *= 3.0  # the lesion looks nothing like its prior
    model = fit_tissue_model(img, fr, "gre", GRE)
    assert "lesion" not in model.report.fitted_tissues and "lesion" in model.report.prior_tissues
    les = model.tissues["lesion"]
    assert (les.pd, les.t1_ms, les.t2star_ms) == (0.8, 1350.0, 60.0)


def test_slice_thickness_rect_and_gaussian_profiles_literal():
    from neuroshift.simulate.shifts import change_slice_thickness

    data = np.zeros((9, 2, 2), np.float32)
    data[3:6] = 1.0  # one 3 mm slab, 1 mm slices along array axis 0
    # rect, 3 mm: coarse slices centred on 1, 4, 7 average 3 fine slices each -> 0, 1, 0; linear back:
    # positions 3 and 5 lie 1/3 of a coarse slice from the centre -> 2/3
    rect = change_slice_thickness(data, 3.0, axis=0, profile="rect")[:, 0, 0]
    np.testing.assert_allclose(rect, [0, 0, 1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0, 0], atol=1e-6)
    # gaussian, FWHM 3 mm: sigma = 3 / (2 sqrt(2 ln 2)) = 1.27398; weights exp(-o^2 / (2 sigma^2)) at offsets
    # 0, ±1, ±2, ±3, ±4 = 1, 0.73499, 0.29180, 0.06258, 0.00725 -> centre (1 + 2*0.73499) / 3.19324 = 0.77348
    gauss = change_slice_thickness(data, 3.0, axis=0, profile="gaussian")[:, 0, 0]
    assert gauss[4] == pytest.approx(0.77348, abs=2e-4)


def test_a_dark_tissue_is_never_the_reference_even_when_most_abundant():
    """FLAIR nulls CSF (< 10 % of the brightest tissue): the contrast reference is the most abundant of the
    others (here WM), whatever the CSF volume."""
    fr = _fractions((6, 8, 8))
    for row in (4, 5):
        fr["CSF"][row, :, :6] = 1.0  # CSF: 3 rows, WM: 2 rows, GM and lesion: 1 row
    fr["WM"][3, :, :6] = 1.0
    fr["lesion"][3, :, :6] = 0.0
    fr["lesion"][4, 0, :6] = 1.0
    fr["CSF"][4, 0, :6] = 0.0
    img = np.zeros(fr["GM"].shape, np.float64)
    for t in ORDER:
        img += 1000.0 * hand.flair(*LIT_3T[t][:3], te=112, ti=2500, tr=9000) * fr[t]
    flair = AcquisitionParams(TE_ms=112, TI_ms=2500, TR_ms=9000, field_T=3.0)
    model = fit_tissue_model(img.astype(np.float32), fr, "flair", flair)
    mass = {t: float(fr[t].sum()) for t in ORDER}
    assert max(mass, key=mass.get) == "CSF"
    assert model.report.reference == "WM"
    # the fit is exact here (the image was made from the priors): c = 1000, CSF ratio to WM literal
    assert model.scale_c == pytest.approx(1000.0, rel=1e-6)
    assert model.report.ratios_measured["CSF"] == pytest.approx(0.015761 / 0.154426, rel=1e-4)
