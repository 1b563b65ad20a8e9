"""Analysis beyond Table 5: visual Turing test, lesion counts with ICC, kappa on Likert grades."""

import csv
import json
import math
from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from neuroshift.cli.main import main
from neuroshift.readerstudy.analysis import analyze_store
from neuroshift.readerstudy.answers import Read
from neuroshift.readerstudy.stats import icc_2_1
from neuroshift.readerstudy.store import StudyStore

from helpers.readerstudy_helpers import small_study_folder


def test_turing_accuracy_and_plausibility(tmp_path):
    y = small_study_folder(tmp_path, "turing_study.yaml", images=False)
    db = tmp_path / "t.sqlite"
    assert main(["reader-study", "create", str(y), "--db", str(db), "--allow-missing-images"]) == 0
    with StudyStore(db) as store:
        reads = []
        for i, s in enumerate(store.schedule()):
            synthetic = s.image_set != "dir_real"
            # N1 always right, N2 says "real" always, N3 right every other trial
            if s.reader == "N1":
                choice = "synthetic" if synthetic else "real"
            elif s.reader == "N2":
                choice = "real"
            else:
                choice = ("synthetic" if synthetic else "real") if i % 2 else ("real" if synthetic else "synthetic")
            stars = 5 if not synthetic else (4 if s.image_set == "dir_syn_b" else 2)
            reads.append(Read(s.reader, s.case, s.image_set, 1, {"plausibility": stars, "real_or_synthetic": choice},
                              source="import"))
        store.submit_many(reads)
        result = analyze_store(store)
    acc = {a["reader"]: a for a in result["turing"]["accuracy"]}
    assert acc["N1"]["accuracy"] == 1.0 and acc["N1"]["n"] == 16
    assert acc["N2"]["correct"] == 4  # the real trials only
    assert acc["all"]["n"] == 48
    assert acc["N1"]["binomial_p_vs_chance"] < 0.001
    pl = {(p["reader"], p["image_set"]): p["mean"] for p in result["turing"]["plausibility"]}
    assert pl[("all", "dir_real")] == 5 and pl[("all", "dir_syn_a")] == 2 and pl[("all", "dir_syn_b")] == 4
    tests = [t for t in result["turing"]["plausibility_tests"] if t["reader"] == "all"]
    assert {t["image_set"] for t in tests} == {"dir_syn_a", "dir_syn_b"} and all(t["p"] < 0.001 for t in tests)
    assert "detection" not in result


def test_lesion_counts_icc_and_wilcoxon(tmp_path):
    y = small_study_folder(tmp_path, "counts_study.yaml", images=False)
    db = tmp_path / "c.sqlite"
    assert main(["reader-study", "create", str(y), "--db", str(db), "--allow-missing-images"]) == 0
    rng = np.random.default_rng(0)
    truth = {f"M{i:02d}": rng.integers(0, 12, 4) for i in range(1, 11)}
    with StudyStore(db) as store:
        sched = store.schedule()
        # each reader reads each case x modality once; the 3 modalities of a case fall in 3 different sessions
        assert Counter((s.reader, s.case) for s in sched) == {(r, c): 3 for r in "AB" for c in truth}
        assert all(len({s.phase for s in sched if s.reader == r and s.case == c}) == 3 for r in "AB" for c in truth)
        t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
        reads = []
        for s in sched:
            noise = 1 if (s.reader == "B" and s.case in ("M02", "M05")) else 0
            extra = 2 if s.image_set != "flair" else 0  # DIR shows more juxtacortical lesions
            c = truth[s.case]
            counts = {"juxtacortical": int(c[0] + extra + noise), "periventricular": int(c[1]),
                      "infratentorial": int(c[2]), "subcortical": int(c[3])}
            when = (t0 + timedelta(days=10 * (s.phase - 1), minutes=s.position)).isoformat()
            reads.append(Read(s.reader, s.case, s.image_set, s.phase, {"counts": counts}, (), when, when, 60.0,
                              "import"))
        store.submit_many(reads)
        result = analyze_store(store)
    icc = {(a["measure"], a["image_set"]): a for a in result["agreement"] if a["statistic"] == "ICC(2,1)"}
    assert icc[("counts:periventricular", "flair")]["value"] == pytest.approx(1.0)
    jc = icc[("counts:juxtacortical", "flair")]
    a = [truth[c][0] for c in sorted(truth)]
    b = [truth[c][0] + (1 if c in ("M02", "M05") else 0) for c in sorted(truth)]
    assert jc["value"] == pytest.approx(icc_2_1(np.array([a, b]).T)[0])
    assert 0.8 < jc["value"] < 1.0 and jc["ci_low"] < jc["value"] < jc["ci_high"]
    cmp = [c for c in result["count_comparisons"] if c["measure"] == "counts:juxtacortical" and c["reader"] == "A"
           and c["image_set_a"] == "flair" and c["image_set_b"] == "true_dir"]
    assert cmp[0]["mean_b"] - cmp[0]["mean_a"] == pytest.approx(2.0)
    # all 10 differences are +2 (tied ranks 5.5, W- = 0): mean 27.5, variance 96.25 - (10^3 - 10)/48 = 75.625,
    # two-sided normal p = erfc(27.5 / sqrt(75.625) / sqrt(2)) = 0.001565
    assert cmp[0]["wilcoxon_p"] == pytest.approx(math.erfc(27.5 / math.sqrt(75.625) / math.sqrt(2)), rel=1e-9)
    assert cmp[0]["wilcoxon_p"] == pytest.approx(0.001565, rel=1e-3)
    # the CLI writes the tables
    out = tmp_path / "out"
    assert main(["reader-study", "analyze", "--db", str(db), "--out", str(out)]) == 0
    with open(out / "agreement.csv", newline="") as fh:
        agreement = list(csv.DictReader(fh))
    peri = [r for r in agreement if r["measure"] == "counts:periventricular" and r["image_set"] == "flair"
            and r["statistic"] == "ICC(2,1)"]
    assert len(peri) == 1 and float(peri[0]["value"]) == pytest.approx(1.0)  # identical counts of both readers
    with open(out / "count_comparisons.csv", newline="") as fh:
        counts = list(csv.DictReader(fh))
    row = [r for r in counts if r["measure"] == "counts:juxtacortical" and r["reader"] == "A"
           and r["image_set_a"] == "flair" and r["image_set_b"] == "true_dir"]
    assert len(row) == 1 and float(row[0]["mean_b"]) - float(row[0]["mean_a"]) == pytest.approx(2.0)
    assert float(row[0]["wilcoxon_p"]) == pytest.approx(0.0015654, rel=1e-4)  # as derived above
    assert not (out / "detection.csv").exists()
    assert json.loads((out / "results.json").read_text())["study"]["blinding"] is True


def test_likert_kappa_between_readers(tmp_path):
    y = small_study_folder(tmp_path, images=False)
    db = tmp_path / "k.sqlite"
    assert main(["reader-study", "create", str(y), "--db", str(db), "--allow-missing-images"]) == 0
    with StudyStore(db) as store:
        reads = [Read(s.reader, s.case, s.image_set, s.phase, {"quality": 1 + int(s.case[1:]) % 5}, (), None, None,
                      None, "import") for s in store.schedule() if s.kind == "read"]
        store.submit_many(reads)
        result = analyze_store(store)
    kap = [a for a in result["agreement"] if a["measure"] == "quality" and a["statistic"].startswith("kappa")]
    assert kap and all(a["value"] == pytest.approx(1.0) for a in kap)  # same grade per case: perfect agreement
