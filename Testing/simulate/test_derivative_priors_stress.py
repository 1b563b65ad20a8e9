"""Stress-test records carry the per-tissue interval of each derivative (PhysicsSimulator(uncertainty=True)).

SYNTHETIC case: four tissue blocks imaged with the 3 T table (FLAIR), a threshold "model".
"""

from __future__ import annotations

import numpy as np
import pytest

from neuroshift.io import Volume
from neuroshift.io.params import AcquisitionParams
from neuroshift.physics.relaxation import relaxation_table
from neuroshift.simulate import estimate as E
from neuroshift.stress.cases import LoadedCase
from neuroshift.stress.runner import run_stress_test
from neuroshift.stress.simulator import PhysicsSimulator

TISSUES = ("CSF", "GM", "WM", "lesion")
SRC = AcquisitionParams(TE_ms=112, TI_ms=2500, TR_ms=9000, field_T=3.0)


class ThresholdModel:
    name = "threshold"
    image_channel = "FLAIR"
    extra_inputs = ()

    def predict(self, inputs, *, case_id=""):
        img = inputs["FLAIR"]
        return img.with_data((img.data > np.percentile(img.data, 90)).astype(np.uint8))


def _case():
    shape = (16, 12, 4)
    x = np.arange(shape[0])[:, None, None] * np.ones(shape)
    fr = {t: ((x >= 4 * i) & (x < 4 * i + 4)).astype(np.float32) for i, t in enumerate(TISSUES)}
    tab = relaxation_table(3.0)
    s = E.tissue_signals("flair", SRC, *[np.array([getattr(tab[t], k) for t in TISSUES])
                                         for k in ("pd", "t1_ms", "t2_ms", "t2star_ms")])
    img = sum(fr[t] * 1000.0 * s[i] for i, t in enumerate(TISSUES)).astype(np.float32)
    vol = Volume(img)
    return LoadedCase("c1", vol, SRC, {t: vol.with_data(f) for t, f in fr.items()},
                      vol.with_data(fr["lesion"].astype(np.uint8)))


def test_records_carry_per_tissue_intervals(tmp_path):
    run = run_stress_test([_case()], ThresholdModel(), "TE=84:150:2,TI=2200:2900:2", tmp_path / "o",
                          simulator=PhysicsSimulator(uncertainty=True))
    recs = run.records
    assert len(recs) == 5  # baseline + 2x2
    for r in recs:
        iv = r["uncertainty"]["tissues"]
        assert set(iv) == set(TISSUES) and r["uncertainty"]["level"] == 0.9
        for t in TISSUES:
            assert iv[t]["lo"] <= iv[t]["mean"] <= iv[t]["hi"]
    base = next(r for r in recs if r.get("baseline"))
    # at the source parameters every prior sample gives the same derivative: zero-width intervals
    assert all(base["uncertainty"]["tissues"][t]["halfwidth"] == pytest.approx(0.0, abs=1e-9) for t in TISSUES)
    far = next(r for r in recs if r["params"]["TE_ms"] == 150 and r["params"]["TI_ms"] == 2200)
    assert far["uncertainty"]["tissues"]["WM"]["halfwidth_rel_pct"] > 0.1
    # without the option the records have no interval (and the run costs no posterior)
    run = run_stress_test([_case()], ThresholdModel(), "TE=84:150:2,TI=2200:2900:2", tmp_path / "p",
                          simulator=PhysicsSimulator())
    assert all("uncertainty" not in r for r in run.records)
