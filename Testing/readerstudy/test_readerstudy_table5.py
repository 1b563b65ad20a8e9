"""Paper 004, Table 5 reproduced end to end: create -> import-reads (CSV) -> analyze (CLI).

The reads are generated from the published counts (helpers/paper004.py):
38 patients, R1 and R2, low-dose and virtual T1c in a 2-phase crossover, R1's reference reads.
"""

import csv
import json

import pytest

from neuroshift.cli.main import main
from neuroshift.readerstudy.stats import fixed, format_p, percent
from neuroshift.readerstudy.store import StudyStore

from helpers import paper004

THRESHOLDS = (0.0, 5.0, 7.5, 10.0)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paper004")
    yaml_path = paper004.study_yaml(tmp / "study")
    db = tmp / "study.sqlite"
    assert main(["reader-study", "create", str(yaml_path), "--db", str(db)]) == 0
    with StudyStore(db) as store:
        lesions_csv, answers_csv = paper004.write_csvs(tmp, store.schedule())
    assert main(["reader-study", "import-reads", "--db", str(db), str(lesions_csv), str(answers_csv)]) == 0
    out = tmp / "out"
    assert main(["reader-study", "analyze", "--db", str(db), "--out", str(out)]) == 0
    with open(out / "detection.csv") as fh:
        rows = list(csv.DictReader(fh))
    result = json.loads((out / "results.json").read_text())
    return out, rows, result


def test_detection_csv_columns_exact(analysed):
    out, rows, _ = analysed
    header = (out / "detection.csv").read_text().splitlines()[0]
    assert header == "reader,image_set,threshold_mm,n_ref,tp,fp,fn,se,se_ci_low,se_ci_high,fdr,fdr_ci_half,ppv,f1"
    assert len(rows) == 2 * 2 * 5


def test_reference_lesions_91_74_52_42(analysed):
    _, _, result = analysed
    n = result["reference"]["n_lesions"]
    assert [n[str(t)] for t in (0.0, 2.5, 5.0, 7.5, 10.0)] == [91, 91, 74, 52, 42]


@pytest.mark.parametrize("key", sorted(paper004.TABLE5))
def test_table5_se_fdr_ppv_f1(analysed, key):
    _, rows, _ = analysed
    reader, image_set, t = key
    row = next(r for r in rows if r["reader"] == reader and r["image_set"] == image_set
               and float(r["threshold_mm"]) == t)
    tp, n_ref, fp = paper004.TABLE5_COUNTS[key]
    assert (int(row["tp"]), int(row["n_ref"]), int(row["fp"]), int(row["fn"])) == (tp, n_ref, fp, n_ref - tp)
    se, fdr, ppv, f1 = paper004.TABLE5[key]
    assert percent(float(row["se"])) == f"{se}%"
    assert fixed(float(row["fdr"])) == f"{fdr:.2f}"
    assert percent(float(row["ppv"])) == f"{ppv}%"
    assert percent(float(row["f1"])) == f"{f1}%"
    (lo, hi), half = paper004.TABLE5_CI[key]
    assert percent(float(row["se_ci_low"])) == f"{lo}%" and percent(float(row["se_ci_high"])) == f"{hi}%"
    assert fixed(float(row["fdr_ci_half"])) == f"{half:.2f}"


@pytest.mark.parametrize("key", sorted(paper004.TABLE5_AVERAGES))
def test_table5_reader_averages(analysed, key):
    _, _, result = analysed
    image_set, t = key
    avg = next(a for a in result["reader_average"] if a["image_set"] == image_set and a["threshold_mm"] == t)
    se, fdr, ppv, f1 = paper004.TABLE5_AVERAGES[key]
    assert (percent(avg["se"]), fixed(avg["fdr"]), percent(avg["ppv"]), percent(avg["f1"])) == (
        f"{se}%", f"{fdr:.2f}", f"{ppv}%", f"{f1}%")


@pytest.mark.parametrize("key", sorted(paper004.TABLE5_MCNEMAR))
def test_table5_mcnemar_midp_and_wilcoxon(analysed, key):
    _, _, result = analysed
    who, t = key
    comps = result["detection_comparisons"]
    if who in ("R1", "R2"):
        c = next(c for c in comps if c["comparison"] == "image_sets" and c["reader_a"] == who
                 and c["threshold_mm"] == t)
    else:
        c = next(c for c in comps if c["comparison"] == "readers" and c["image_set_a"] == who
                 and c["threshold_mm"] == t)
    assert format_p(c["mcnemar_midp"]) == paper004.TABLE5_MCNEMAR[key]
    assert format_p(c["wilcoxon_p"]) == paper004.TABLE5_WILCOXON[key]


def test_quality_and_reading_times_tables_4_and_6(analysed):
    _, _, result = analysed
    q = {(r["reader"], r["image_set"]): (fixed(r["mean"], 1), fixed(r["sd"], 1)) for r in result["quality"]}
    assert q == {("R1", "low"): ("2.1", "0.7"), ("R1", "virtual"): ("3.3", "0.8"), ("R1", "reference"): ("2.9", "0.9"),
                 ("R2", "low"): ("2.1", "0.8"), ("R2", "virtual"): ("3.3", "0.7")}
    t = {(r["reader"], r["image_set"]): (r["mean_display"], r["sd_display"]) for r in result["times"]}
    assert t[("R1", "low")] == ("2'25''", "2'30''") and t[("R2", "low")] == ("5'21''", "4'48''")
    assert t[("R1", "reference")] == ("3'59''", "3'42''")


def test_report_laid_out_like_table5(analysed):
    out, _, result = analysed
    md = (out / "report.md").read_text()
    assert "| >= 7.5 mm | SE | 65% (34/52) [51; 78] | 81% (42/52) [67; 90] | p=.02 |" in md
    assert "0.47 (18/38) [±0.38]" in md and "97% (35/36)" in md
    assert "numpy" in md and "scipy" in md and "neuroshift" in md and "mid-p" in md
    assert "blinding off" in md
    html = (out / "report.html").read_text()
    assert "<table>" in html and "class='sig'" in html
    assert set(result["versions"]) >= {"numpy", "scipy", "neuroshift"}
