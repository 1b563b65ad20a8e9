"""Simulated vs really acquired images per tissue (paper 000, Table 5)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neuroshift.errors import GeometryError, MissingParameterError
from neuroshift.io import Volume
from neuroshift.io.params import AcquisitionParams
from neuroshift.stress.validate import validate_simulation

CORNERS = [(150, 2900), (150, 2200), (84, 2900), (84, 2200)]


class ScalingSimulator:
    """'Simulates' by scaling the baseline: 1 + (TE - TE0)/1000 (so the expected error is known)."""

    def fit(self, case, sequence):
        return case.params.TE_ms

    def render(self, te0, case, target, shifts, *, seed):
        return case.image.with_data(case.image.data.astype(np.float64) * (1 + (target.TE_ms - te0) / 1000.0))


def two_tissue_case():
    data = np.zeros((4, 4, 4), np.float32)
    data[:2] = 200.0
    data[2:] = 50.0
    img = Volume(data)
    wm = img.with_data((data == 200).astype(np.float32))
    gm = img.with_data((data == 50).astype(np.float32))
    return img, {"WM": wm, "GM": gm}


def test_relative_error_per_tissue_is_computed_over_pure_voxels():
    img, fr = two_tissue_case()
    base = AcquisitionParams(TE_ms=100, TI_ms=2500, TR_ms=9000)
    real = img.with_data(img.data * 1.0)
    result = validate_simulation(img, base, fr, [("te150", real, AcquisitionParams(TE_ms=150, TI_ms=2500, TR_ms=9000))],
                                 simulator=ScalingSimulator())
    rows = {(r.image, r.tissue): r for r in result.rows}
    assert rows[("baseline", "WM")].rel_error_pct == 0 and rows[("baseline", "WM")].baseline
    assert rows[("te150", "WM")].rel_error_pct == pytest.approx(5.0)
    assert rows[("te150", "GM")].signed_error_pct == pytest.approx(5.0)
    assert rows[("te150", "GM")].n_voxels == 32 and rows[("te150", "GM")].mean_real == pytest.approx(50)
    table = result.table()
    assert "150/2500" in table and "100/2500 (base)" in table and "5.0" in table


def test_real_images_must_share_the_grid_and_have_parameters():
    img, fr = two_tissue_case()
    base = AcquisitionParams(TE_ms=100, TI_ms=2500, TR_ms=9000)
    other = Volume(np.ones((4, 4, 5), np.float32))
    with pytest.raises(GeometryError, match="register"):
        validate_simulation(img, base, fr, [("x", other, base)], simulator=ScalingSimulator())
    with pytest.raises(MissingParameterError, match="TR for real image x"):
        validate_simulation(img, base, fr, [("x", img, AcquisitionParams(TE_ms=150, TI_ms=2500))],
                            simulator=ScalingSimulator())
    with pytest.raises(MissingParameterError, match="TI"):
        validate_simulation(img, AcquisitionParams(TE_ms=100, TR_ms=9000), fr, [("x", img, base)],
                            simulator=ScalingSimulator())


def write_real_acquisitions(case_dir, out_dir, t2_shift_ms=0.0):
    """FLAIR of the phantom's subject at the four corner protocols, from its ground truth (+ a WM T2 error)."""
    from dataclasses import replace

    from neuroshift.io.files import read_volume, write_volume
    from neuroshift.physics.noise import add_rician_noise
    from neuroshift.physics.relaxation import relaxation_table
    from neuroshift.physics.signal import flair

    gt = json.loads((case_dir / "ground_truth.json").read_text())
    c = gt["images"]["FLAIR"]["scale_c"]
    sigma = gt["images"]["FLAIR"]["noise_sigma"]
    fr = {t: read_volume(case_dir / f"pv_{t}.nii.gz") for t in ("CSF", "GM", "WM", "lesion")}
    table = relaxation_table(3.0)
    table["WM"] = replace(table["WM"], t2_ms=table["WM"].t2_ms + t2_shift_ms)
    rng = np.random.default_rng(7)
    paths = []
    for te, ti in CORNERS:
        img = sum(np.asarray(fr[t].data, np.float64) * float(flair(table[t].pd, table[t].t1_ms, table[t].t2_ms,
                                                                    te_ms=te, ti_ms=ti, tr_ms=9000.0))
                  for t in fr) * c
        noisy = np.asarray(add_rician_noise(img, sigma, rng=rng), np.float32)
        path = out_dir / f"flair_{te}_{ti}.nii.gz"
        write_volume(fr["WM"].with_data(noisy), path)
        (out_dir / f"flair_{te}_{ti}.json").write_text(json.dumps(
            {"EchoTime": te / 1000, "InversionTime": ti / 1000, "RepetitionTime": 9.0, "MagneticFieldStrength": 3}))
        paths.append(path)
    return paths


def test_validation_on_the_phantom_recovers_its_corner_protocols(tmp_path):
    pytest.importorskip("neuroshift.simulate.tissuewise")
    from neuroshift.cli.main import main
    from neuroshift.phantom.make import make_phantom

    case = tmp_path / "sub"
    make_phantom(case, seed=0)
    real = write_real_acquisitions(case, tmp_path)
    out = tmp_path / "validation.csv"
    code = main(["validate-simulation", "--baseline", str(case / "FLAIR.nii.gz"), "--real", *map(str, real),
                 "--tissues", str(case), "--brain-mask", str(case / "brain_mask.nii.gz"), "--out", str(out)])
    assert code == 0
    import csv

    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 5 * 4
    for r in rows:
        # The phantom is the image model itself: errors are noise-level only (paper: 7-75 % on volunteers).
        assert float(r["rel_error_pct"]) < (1e-9 if r["baseline"] == "True" else 1.0), r
    # A wrong white-matter T2 in the "scanner" shows up in WM and not in GM (paper 000: +1 ms ≈ +1 %).
    (tmp_path / "shifted").mkdir()
    shifted = write_real_acquisitions(case, tmp_path / "shifted", t2_shift_ms=10.0)
    code = main(["validate-simulation", "--baseline", str(case / "FLAIR.nii.gz"), "--real", str(shifted[0]),
                 "--tissues", str(case), "--out", str(tmp_path / "v.json")])
    assert code == 0
    doc = json.loads((tmp_path / "v.json").read_text())
    err = {r["tissue"]: r["rel_error_pct"] for r in doc["rows"] if not r["baseline"]}
    # TE = 150 ms: (1/S)·dS/dT2 = TE/T2² ≈ 150/75² per ms, so +10 ms of WM T2 ≈ 20 % more WM signal
    assert err["WM"] > 10.0 and err["GM"] < err["WM"] / 4
    # A label map works as the tissue input too (pure labels: partial-volume voxels count as pure).
    code = main(["validate-simulation", "--baseline", str(case / "FLAIR.nii.gz"), "--real", str(real[0]),
                 "--tissues", str(case / "tissue_labels.nii.gz"), "--labels", "CSF=1,GM=2,WM=3,lesion=4"])
    assert code == 0


def test_several_subjects_mean_and_sd_in_table5_layout():
    from neuroshift.stress.validate import validate_subjects

    img, fr = two_tissue_case()
    base = AcquisitionParams(TE_ms=100, TI_ms=2500, TR_ms=9000)
    te150 = AcquisitionParams(TE_ms=150, TI_ms=2500, TR_ms=9000)
    subjects = [
        {"subject": "s1", "baseline": img, "params": base, "fractions": fr, "real": [("a", img, te150)]},
        # the second subject's real image is 2 % brighter: |1.05/1.02 - 1| = 2.941 %
        {"subject": "s2", "baseline": img, "params": base, "fractions": fr,
         "real": [("a", img.with_data(img.data * 1.02), te150)]},
    ]
    res = validate_subjects(subjects, simulator=ScalingSimulator())
    cell = res.summary()["WM"]["150/2500"]
    assert cell["n"] == 2
    assert cell["mean"] == pytest.approx((5.0 + 100 * (1.05 / 1.02 - 1)) / 2, rel=1e-9)
    assert cell["sd"] == pytest.approx(abs(5.0 - 100 * (1.05 / 1.02 - 1)) / np.sqrt(2), rel=1e-9)
    assert res.summary()["GM"]["100/2500 (base)"] == {"mean": 0.0, "sd": 0.0, "n": 2, "baseline_mean": None,
                                                      "baseline_sd": None}
    table = res.table()
    assert "2 subject(s)" in table and "4 ±1" in table and table.splitlines()[2].startswith("WM")


def test_several_subjects_cli_with_the_priors_baseline(tmp_path):
    from neuroshift.cli.main import main
    from neuroshift.phantom.make import make_phantom

    case = tmp_path / "sub"
    make_phantom(case, seed=0)
    real = write_real_acquisitions(case, tmp_path)
    csv_path = tmp_path / "subjects.csv"
    reals = ";".join(str(p.relative_to(tmp_path)) for p in real[:2])
    csv_path.write_text("subject,baseline,real,tissues,brain_mask\n"
                        f"a,sub/FLAIR.nii.gz,{reals},sub,sub/brain_mask.nii.gz\n"
                        f"b,sub/FLAIR.nii.gz,{reals},sub,\n")
    out = tmp_path / "t5.json"
    assert main(["validate-simulation", "--subjects", str(csv_path), "--estimator", "priors",
                 "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["estimator"] == "priors"
    t5 = doc["table5"]
    assert set(t5) == {"WM", "GM", "CSF", "lesion"}
    cell = t5["WM"]["150/2900"]
    assert cell["n"] == 2 and cell["mean"] < 1.0 and cell["baseline_mean"] == pytest.approx(cell["mean"], rel=1e-6)
    subjects = {r["subject"] for r in doc["rows"]}
    assert subjects == {"a", "b"}
    # both inputs at once, or neither: exit 2
    assert main(["validate-simulation", "--subjects", str(csv_path), "--baseline", str(case / "FLAIR.nii.gz")]) == 2
    assert main(["validate-simulation", "--baseline", str(case / "FLAIR.nii.gz")]) == 2
