"""Reference values A-F, K of docs/reader-study.md and the agreement statistics."""

import math

import numpy as np
import pytest

from neuroshift.readerstudy import stats as st


@pytest.fixture(scope="module")
def paper004_detection(tmp_path_factory):
    """Detection rows of the paper-004 study (published counts) through create -> import-reads -> analysis."""
    from helpers import paper004

    from neuroshift.cli.main import main
    from neuroshift.readerstudy.analysis import analyze_store
    from neuroshift.readerstudy.store import StudyStore

    tmp = tmp_path_factory.mktemp("stats_paper004")
    db = tmp / "study.sqlite"
    assert main(["reader-study", "create", str(paper004.study_yaml(tmp / "study")), "--db", str(db)]) == 0
    with StudyStore(db) as store:
        lesions_csv, answers_csv = paper004.write_csvs(tmp, store.schedule())
    assert main(["reader-study", "import-reads", "--db", str(db), str(lesions_csv), str(answers_csv)]) == 0
    with StudyStore(db) as store:
        rows = analyze_store(store)["detection"]
    return {(r["reader"], r["image_set"], r["threshold_mm"]): r for r in rows}


def test_A_se_ppv_fdr_f1_from_counts(paper004_detection):
    # Reference value A: 91 reference lesions, TP 48, FP 18, 38 patients (R1 virtual, all sizes)
    row = paper004_detection[("R1", "virtual", 0.0)]
    assert (row["n_ref"], row["tp"], row["fp"], row["fn"], row["n_patients"]) == (91, 48, 18, 43, 38)
    assert round(row["se"], 4) == 0.5275 and round(row["ppv"], 4) == 0.7273
    assert round(row["fdr"], 4) == 0.4737 and round(row["f1"], 4) == 0.6115


def test_B_f1(paper004_detection):
    # Reference value B: TP 35, FP 1, FN 7 -> F1 = 70/78 (R1 virtual >= 10 mm); FP 5 -> 70/82 (R2 virtual)
    r1 = paper004_detection[("R1", "virtual", 10.0)]
    assert (r1["tp"], r1["fp"], r1["fn"]) == (35, 1, 7)
    assert r1["f1"] == pytest.approx(70 / 78, abs=1e-12) and round(r1["f1"], 4) == 0.8974
    r2 = paper004_detection[("R2", "virtual", 10.0)]
    assert (r2["tp"], r2["fp"], r2["fn"]) == (35, 5, 7)
    assert r2["f1"] == pytest.approx(70 / 82, abs=1e-12) and round(r2["f1"], 4) == 0.8537


@pytest.mark.parametrize("k,n,lo,hi", [(38, 91, 0.3150, 0.5257), (48, 91, 0.4200, 0.6331), (35, 42, 0.6864, 0.9303),
                                       (45, 52, 0.7421, 0.9441), (34, 74, 0.3429, 0.5793)])
def test_C_clopper_pearson(k, n, lo, hi):
    a, b = st.clopper_pearson(k, n)
    assert round(a, 4) == lo and round(b, 4) == hi


def test_C_clopper_pearson_edges():
    assert st.clopper_pearson(0, 10)[0] == 0.0 and st.clopper_pearson(10, 10)[1] == 1.0


@pytest.mark.parametrize("k,half", [(4, 0.1022), (3, 0.0898), (2, 0.0744), (1, 0.0533)])
def test_D_student_t_half_width_of_per_patient_fp(k, half):
    counts = [1] * k + [0] * (38 - k)
    mean, h = st.t_interval(counts)
    assert round(h, 4) == half
    if k == 4:
        assert round(mean, 4) == 0.1053


def test_E_reader_average_from_unrounded_values_round_half_even():
    avg = np.mean([34 / 52, 31 / 52])
    assert avg == pytest.approx(0.625)
    assert st.percent(avg) == "62%"
    # the rounded values would give (65 + 60) / 2 = 62.5 -> a different path; we never average rounded values
    assert st.percent(0.635) == "64%" and st.percent(0.645) == "64%"


def test_F_mcnemar_midp():
    assert round(st.mcnemar_midp(3, 13), 4) == 0.0127
    assert round(st.mcnemar_midp(1, 6), 4) == 0.0703
    assert st.mcnemar_midp(5, 5) == 1.0 and st.mcnemar_midp(0, 0) == 1.0
    from scipy.stats import binomtest
    assert round(binomtest(3, 16, 0.5).pvalue, 4) == 0.0213  # the exact test differs, as the note says


def test_K_duration_display():
    assert st.format_duration(145) == "2'25''"
    assert st.format_duration(59.6) == "1'00''"
    assert st.format_duration(321) == "5'21''"


def test_p_value_display_like_table5():
    assert st.format_p(0.0127) == "p=.01"
    assert st.format_p(0.0004) == "p<.001"
    assert st.format_p(1.0) == "p>.99"
    assert st.format_p(0.046) == "p=.046"
    assert st.format_p(0.125) == "p=.13"  # Table 5, R1 vs R2 low-T1c: mid-p of (5, 1) is exactly 0.125
    assert st.format_p(0.0703) == "p=.07"


def test_icc_2_1_shrout_fleiss_example():
    # Shrout & Fleiss (1979) 6 targets x 4 judges: ICC(2,1) = 0.29, 95% CI [0.019, 0.761]
    y = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)
    icc, lo, hi = st.icc_2_1(y)
    assert round(icc, 2) == 0.29
    assert lo == pytest.approx(0.019, abs=0.002) and hi == pytest.approx(0.761, abs=0.002)


def test_icc_perfect_agreement():
    y = np.array([[1, 1], [2, 2], [5, 5], [3, 3]], float)
    assert st.icc_2_1(y)[0] == pytest.approx(1.0)


def test_cohen_kappa_textbook_and_weighted():
    # Cohen's textbook 2x2 (yes/yes 20, yes/no 5, no/yes 10, no/no 15): p_o 0.7, p_e 0.5 -> kappa 0.4
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert st.cohen_kappa(a, b) == pytest.approx(0.4)
    # Unweighted, linear and quadratic kappa of two 5-point ratings of 20 cases; reference values
    # from sklearn.metrics.cohen_kappa_score 1.9.1 (sklearn is not a dependency, so they are literals).
    x = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 2, 3, 3, 4, 1, 5, 2, 2, 4, 3]
    y = [1, 2, 3, 3, 5, 2, 2, 4, 4, 4, 2, 3, 2, 4, 1, 5, 3, 2, 5, 3]
    for w, ref in ((None, 0.554140127388535), ("linear", 0.75177304964539), ("quadratic", 0.8888888888888888)):
        assert st.cohen_kappa(x, y, categories=[1, 2, 3, 4, 5], weights=w) == pytest.approx(ref, abs=1e-12)


def test_wilcoxon_and_t_tests_against_hand_statistics():
    """Statistics derived by hand (ranks, sums of squares); only the reference distributions come from scipy."""
    from scipy import stats
    x = np.array([0, 1, 0, 2, 0, 0, 1, 3, 0, 1] * 4, float)
    y = np.array([0, 0, 0, 1, 0, 0, 0, 0, 0, 1] * 4, float)
    # Wilcoxon: d = x - y has 16 non-zero values, all positive: twelve 1s (ranks 1-12, mean 6.5) and four 3s
    # (ranks 13-16, mean 14.5); W- = 0. Normal approximation without continuity correction:
    # mean n(n+1)/4 = 68; variance n(n+1)(2n+1)/24 - sum(t^3 - t)/48 = 374 - (1716 + 60)/48 = 337.
    z = (0 - 68) / math.sqrt(337)
    assert st.wilcoxon_signed_rank(x, y) == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)
    assert st.wilcoxon_signed_rank(x, y) == pytest.approx(2.1206e-4, rel=1e-4)
    assert st.wilcoxon_signed_rank(x, x) == 1.0
    # paired t: d sums to 24 over 40 pairs (mean 0.6), sum of squares 48 -> SS 33.6, sd sqrt(33.6/39)
    t_paired = 0.6 / (math.sqrt(33.6 / 39) / math.sqrt(40))
    assert st.paired_t(x, y) == pytest.approx(2 * stats.t.sf(t_paired, 39), rel=1e-9)
    # Student t: means 0.8 and 0.2, SS 38.4 and 6.4, pooled variance 44.8/78, df 78
    t_pooled = 0.6 / math.sqrt(44.8 / 78 * (2 / 40))
    assert st.unpaired_t(x, y) == pytest.approx(2 * stats.t.sf(t_pooled, 78), rel=1e-9)
    assert math.isnan(st.unpaired_t([1], [2]))
