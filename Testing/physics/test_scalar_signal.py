"""The float scalar signal equations (physics/scalar_signal.py) equal the array path to 1e-12 for every sequence."""

from __future__ import annotations

import numpy as np
import pytest

from neuroshift.io.params import AcquisitionParams
from neuroshift.physics.scalar_signal import tissue_signals
from neuroshift.physics.signal import sequence_signal

# CSF, GM, WM, lesion at 3 T (ms) plus a background tissue (T1 = 0) and an unrelaxed one (T2 = inf)
PD = [1.0, 0.8, 0.7, 0.85, 0.9, 0.6]
T1 = [4200.0, 1400.0, 850.0, 1500.0, 0.0, 1000.0]
T2 = [2000.0, 100.0, 75.0, 140.0, 80.0, np.inf]
T2S = [1500.0, 60.0, 45.0, 90.0, 50.0, -1.0]

PARAMS = {
    "se": [AcquisitionParams(TE_ms=10, TR_ms=600), AcquisitionParams(TE_ms=100, TR_ms=4000)],
    "fse": [AcquisitionParams(TE_ms=90, TR_ms=5000)],
    "ir": [AcquisitionParams(TE_ms=12, TI_ms=400, TR_ms=2000), AcquisitionParams(TE_ms=80, TI_ms=2500, TR_ms=9000)],
    "flair": [AcquisitionParams(TE_ms=112, TI_ms=2500, TR_ms=9000),
              AcquisitionParams(TE_ms=140, TI_ms=2800, TR_ms=11000, Trec_ms=7000),
              AcquisitionParams(TE_ms=90, TI_ms=200, TR_ms=3000)],  # CSF not nulled: sign flips
    "dir": [AcquisitionParams(TE_ms=20, TI1_ms=3400, TI2_ms=500, TR_ms=11000),
            AcquisitionParams(TE_ms=100, TI1_ms=3000, TI2_ms=3000 - 1e-3, TR_ms=9000)],
    "gre": [AcquisitionParams(TE_ms=5, TR_ms=20, FA_deg=15), AcquisitionParams(TE_ms=20, TR_ms=40, FA_deg=90)],
    "mprage": [AcquisitionParams(TE_ms=3, TI_ms=900, TR_ms=2300, FA_deg=9, TX_ms=7, N=176),
               AcquisitionParams(TE_ms=3, TI_ms=1100, TR_ms=2000, FA_deg=8, TX_ms=6.5, N=175),
               AcquisitionParams(TE_ms=2.5, TI_ms=50, TR_ms=1500, FA_deg=12, TX_ms=8, N=256)],  # train does not fit
}
CASES = [(seq, i) for seq, plist in PARAMS.items() for i in range(len(plist))]


@pytest.mark.parametrize("seq,i", CASES)
def test_scalar_equals_the_array_path(seq, i):
    p = PARAMS[seq][i]
    got = np.array(tissue_signals(seq, p, PD, T1, T2, T2S))
    ref = np.asarray(sequence_signal(seq, p, pd=np.array(PD), t1_ms=np.array(T1), t2_ms=np.array(T2),
                                     t2star_ms=np.array(T2S)), dtype=np.float64)
    assert got.shape == ref.shape == (len(PD),)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * float(np.abs(ref).max()))
    assert got[4] == 0.0  # T1 = 0: background, signal 0
    assert np.all(got >= 0) and np.abs(got[:4]).min() > 0


def test_limits_are_the_closed_forms():
    # spin echo at TE -> 0, TR -> inf is PD; GRE at the Ernst angle is PD·sqrt((1 - E)/(1 + E))
    s = tissue_signals("se", AcquisitionParams(TE_ms=1e-9, TR_ms=1e5), [0.8], [1000.0], [80.0], [50.0])
    assert s[0] == pytest.approx(0.8, rel=1e-9)
    e = np.exp(-20 / 1000.0)
    fa = np.degrees(np.arccos(e))
    s = tissue_signals("gre", AcquisitionParams(TE_ms=1e-9, TR_ms=20, FA_deg=fa), [1.0], [1000.0], [80.0], [50.0])
    assert s[0] == pytest.approx(np.sqrt((1 - e) / (1 + e)), rel=1e-9)


def test_unknown_sequence_is_refused():
    with pytest.raises(ValueError, match="unknown sequence 'bold'"):
        tissue_signals("bold", PARAMS["se"][0], PD, T1, T2, T2S)
