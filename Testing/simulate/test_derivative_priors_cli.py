"""``neuroshift simulate --estimator / --joint / --uncertainty`` on a small SYNTHETIC case."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neuroshift.cli.main import main
from neuroshift.io.files import read_volume, write_volume
from neuroshift.io.params import AcquisitionParams as P
from neuroshift.io.volume import Volume
from neuroshift.physics.relaxation import relaxation_table
from neuroshift.simulate import estimate as E

TISSUES = ("CSF", "GM", "WM", "lesion")
GEOM = dict(spacing=(1.0, 1.1, 1.2), origin=(-5.0, 3.0, 7.0))


def _fractions(shape=(20, 16, 6)):
    x = np.arange(shape[0])[:, None, None] * np.ones(shape)
    edges = [5, 10, 15]
    fr = {}
    for i, t in enumerate(TISSUES):
        lo = -np.inf if i == 0 else edges[i - 1]
        hi = np.inf if i == 3 else edges[i]
        fr[t] = np.clip(np.minimum(x - lo + 1, hi - x) / 2.0, 0, 1)
    total = sum(fr.values())
    return {t: (v / total).astype(np.float32) for t, v in fr.items()}


@pytest.fixture()
def case(tmp_path):
    fr = _fractions()
    tab = relaxation_table(1.5)
    arrs = [np.array([getattr(tab[t], k) for t in TISSUES]) for k in ("pd", "t1_ms", "t2_ms", "t2star_ms")]
    rng = np.random.default_rng(0)

    def image(seq, p):
        s = E.tissue_signals(seq, p, *arrs)
        img = sum(fr[t] * 1000.0 * s[i] for i, t in enumerate(TISSUES))
        return (img + rng.normal(0, 2.0, img.shape)).astype(np.float32)

    write_volume(Volume(image("se", P.parse("TE=10,TR=600")), **GEOM), tmp_path / "t1.nii.gz")
    (tmp_path / "t1.json").write_text(json.dumps({"EchoTime": 0.010, "RepetitionTime": 0.6,
                                                  "MagneticFieldStrength": 1.5}))
    write_volume(Volume(image("flair", P.parse("TE=140,TI=2800,TR=11000")), **GEOM), tmp_path / "flair.nii.gz")
    pv = []
    for t in TISSUES:
        write_volume(Volume(fr[t], **GEOM), tmp_path / f"pv_{t}.nii.gz")
        pv.append(f"{t}={tmp_path / f'pv_{t}.nii.gz'}")
    return tmp_path, ",".join(pv), fr


def _run(d, pv, *extra):
    return main(["simulate", str(d / "t1.nii.gz"), str(d / "out.nii.gz"), "--sequence", "se",
                 "--target", "TE=100,TR=3000", "--pv", pv, *extra])


def test_uncertainty_map_and_sidecar(case):
    d, pv, fr = case
    assert _run(d, pv, "--estimator", "posterior", "--uncertainty", str(d / "pm.nii.gz"),
                "--joint", f"{d / 'flair.nii.gz'}:flair:TE=140,TI=2800,TR=11000") == 0
    pm = read_volume(d / "pm.nii.gz")
    assert pm.same_grid(read_volume(d / "t1.nii.gz"), atol_mm=1e-6)
    doc = json.loads((d / "out.json").read_text())["NeuroShift"]
    assert doc["estimator"] == "posterior"
    iv = doc["uncertainty"]["tissue_intervals"]
    for t in TISSUES:
        pure = fr[t] >= 0.999
        np.testing.assert_allclose(pm.data[pure], iv[t]["halfwidth"], rtol=1e-5)
        assert iv[t]["lo"] < iv[t]["mean"] < iv[t]["hi"]
    # the derivative's pure-tissue means are the posterior means of the intervals (up to the texture)
    out = read_volume(d / "out.nii.gz").data
    wm = fr["WM"] >= 0.999
    assert float(out[wm].mean()) == pytest.approx(iv["WM"]["mean"], rel=0.01)


def test_priors_estimator_and_refusals(case):
    d, pv, _ = case
    assert _run(d, pv, "--estimator", "priors") == 0
    doc = json.loads((d / "out.json").read_text())["NeuroShift"]
    assert doc["estimator"] == "priors"
    tab = relaxation_table(1.5)
    assert doc["apparent_tissue_parameters"]["GM"]["t1_ms"] == tab["GM"].t1_ms
    (d / "out.nii.gz").unlink()
    (d / "out.json").unlink()
    # --uncertainty and --joint need the posterior: exit 2, nothing written
    assert _run(d, pv, "--uncertainty", str(d / "pm.nii.gz")) == 2
    assert _run(d, pv, "--joint", f"{d / 'flair.nii.gz'}:flair") == 2
    assert not (d / "out.nii.gz").exists() and not (d / "pm.nii.gz").exists()
    # a joint image whose parameters are unknown (no sidecar, none given) is refused by name
    assert _run(d, pv, "--estimator", "posterior", "--joint", f"{d / 'flair.nii.gz'}:flair") == 2
    assert not (d / "out.nii.gz").exists()
    # the ± map may not overwrite an input
    assert _run(d, pv, "--estimator", "posterior", "--uncertainty", str(d / "t1.nii.gz")) == 2


def test_auto_estimator_records_its_choice(case):
    d, pv, fr = case
    assert _run(d, pv, "--estimator", "auto") == 0
    doc = json.loads((d / "out.json").read_text())["NeuroShift"]
    assert doc["estimator"] == "auto"
    choice = doc["estimator_choice"]
    assert set(choice) == set(TISSUES)
    for t in TISSUES:
        c = choice[t]
        assert c["choice"] in ("fit", "priors")
        # the recorded choice is the estimator with the lower calibration error (ties: the fit)
        assert (c["choice"] == "fit") == (c["calibration_error_fit_pct"] <= c["calibration_error_priors_pct"])
    # the written derivative is what the library gives with the same estimator
    from neuroshift.simulate.tissuewise import fit_tissue_model

    img = read_volume(d / "t1.nii.gz", dtype="float32")
    m = fit_tissue_model(img, {t: Volume(fr[t], **GEOM) for t in TISSUES}, "se", P.parse("TE=10,TR=600,B0=1.5"),
                         estimator="auto")
    np.testing.assert_allclose(read_volume(d / "out.nii.gz").data, m.simulate(P.parse("TE=100,TR=3000")),
                               rtol=1e-5, atol=1e-2)


def test_validate_simulation_reports_auto_choices(case, capsys):
    d, pv, fr = case
    tab = relaxation_table(1.5)
    arrs = [np.array([getattr(tab[t], k) for t in TISSUES]) for k in ("pd", "t1_ms", "t2_ms", "t2star_ms")]
    s = E.tissue_signals("se", P.parse("TE=100,TR=3000"), *arrs)
    write_volume(Volume(sum(fr[t] * 1000.0 * s[i] for i, t in enumerate(TISSUES)).astype(np.float32), **GEOM),
                 d / "t2.nii.gz")
    (d / "t2.json").write_text(json.dumps({"EchoTime": 0.100, "RepetitionTime": 3.0, "MagneticFieldStrength": 1.5}))
    assert main(["validate-simulation", "--baseline", str(d / "t1.nii.gz"), "--real", str(d / "t2.nii.gz"),
                 "--tissues", pv, "--sequence", "se", "--estimator", "auto", "--out", str(d / "v.json")]) == 0
    doc = json.loads((d / "v.json").read_text())
    assert doc["estimator"] == "auto" and "estimator 'auto'" in doc["auto_choices"]
    rows = [r for r in doc["rows"] if not r["baseline"]]
    assert {r["tissue"] for r in rows} == {"CSF", "GM", "WM", "lesion"}
    assert "subjects using the fit" in capsys.readouterr().out
    assert main(["validate-simulation", "--baseline", str(d / "t1.nii.gz"), "--real", str(d / "t2.nii.gz"),
                 "--tissues", pv, "--sequence", "se", "--estimator", "fit", "--out", str(d / "f.json")]) == 0
    fit_rows = {r["tissue"]: r for r in json.loads((d / "f.json").read_text())["rows"] if not r["baseline"]}
    for r in rows:
        # each row simulates exactly what its chosen estimator does (priors-only: the baseline column)
        want = (fit_rows[r["tissue"]]["mean_simulated"] if r["estimator_choice"] == "fit"
                else r["mean_simulated_baseline"])
        assert r["mean_simulated"] == pytest.approx(want, rel=1e-5)
        assert r["calibration_error_fit_pct"] >= 0 and r["calibration_error_priors_pct"] >= 0
        assert fit_rows[r["tissue"]]["estimator_choice"] is None
