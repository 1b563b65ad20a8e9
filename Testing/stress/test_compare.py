"""stress.compare: two models' stress results on one grid, side by side, with B − A (numbers by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neuroshift.errors import InputError
from neuroshift.stress.compare import common_cases, compare_runs, point_table, write_comparison
from neuroshift.stress.runner import StressRun
from neuroshift.stress.simulator import point_key

TE = [84.0, 117.0, 150.0]
TI = [2200.0, 2550.0, 2900.0]


def _run(name: str, f, cases=("c1", "c2"), grid=None, sequence="flair", skip=()) -> StressRun:
    """A StressRun whose lesion F1 at (case, TE, TI) is ``f(case_index, TE, TI)`` and DSC half of it."""
    grid = grid or {"TE": np.array(TE), "TI": np.array(TI)}
    recs = []
    for ci, c in enumerate(cases):
        recs.append({"case": c, "point": "baseline", "baseline": True, "grid": {}, "metrics": {"lesion_f1": 0.5}})
        for te in grid["TE"]:
            for ti in grid["TI"]:
                p = {"TE": float(te), "TI": float(ti)}
                if (c, te, ti) in skip:
                    continue
                v = f(ci, te, ti)
                recs.append({"case": c, "point": point_key(p), "baseline": False, "grid": p,
                             "metrics": {"lesion_f1": v, "dice": v / 2}})
    return StressRun(Path("."), sequence, grid, name, list(cases), recs, [])


def test_point_means_difference_and_summary_by_hand():
    a = _run("old", lambda ci, te, ti: 0.1 * ci + (te - 84.0) / 660.0)   # case 2 is 0.1 higher
    b = _run("new", lambda ci, te, ti: 0.6)
    doc = compare_runs(a, b, names=("wmh-demo", "qsynth"))
    m = doc["metrics"]["lesion_f1"]
    assert m["cases"] == ["c1", "c2"] and doc["models"] == {"a": "wmh-demo", "b": "qsynth"}
    row = {(r["TE"], r["TI"]): r for r in m["points"]}
    # A at TE 150: case means of 0.1 and 0.2 -> 0.05 + 0.1 = 0.15; B = 0.6; diff 0.45
    assert row[(150.0, 2200.0)]["a"] == pytest.approx(0.15)
    assert row[(150.0, 2200.0)]["diff"] == pytest.approx(0.45)
    assert row[(84.0, 2900.0)]["a"] == pytest.approx(0.05)
    s = m["summary"]
    # A over TE: 0.05, 0.10, 0.15 (each thrice) -> mean 0.10, range 0.10; B flat 0.6
    assert s["mean_a"] == pytest.approx(0.10) and s["mean_b"] == pytest.approx(0.6)
    assert s["mean_diff"] == pytest.approx(0.5) and s["min_diff"] == pytest.approx(0.45)
    assert s["max_diff"] == pytest.approx(0.55) and s["share_b_better"] == 1.0
    assert s["range_a"] == pytest.approx(0.10) and s["range_b"] == pytest.approx(0.0) and s["n_points"] == 9
    assert doc["metrics"]["dice"]["summary"]["mean_diff"] == pytest.approx(0.25)
    # A's quadratic surface is exactly linear in TE: slope 1/660 per ms, intercept 0.1 * 0.5 - 84/660
    terms = {t["term"]: t["coefficient"] for t in m["surfaces"]["a"]["terms"]}
    assert terms["TE"] == pytest.approx(1 / 660, rel=1e-6) and m["surfaces"]["a"]["r2"] == pytest.approx(1.0)
    assert terms["TI"] == pytest.approx(0.0, abs=1e-9) and m["surfaces"]["a"]["n_points"] == 9


def test_only_cases_complete_in_both_runs_are_averaged():
    a = _run("a", lambda ci, te, ti: float(ci), skip={("c2", 84.0, 2200.0)})
    b = _run("b", lambda ci, te, ti: 1.0)
    assert common_cases(a, b, "lesion_f1") == ["c1"]
    rows = point_table(a, b, "lesion_f1", ["c1"])
    assert all(r["a"] == 0.0 and r["b"] == 1.0 and r["diff"] == 1.0 for r in rows)


@pytest.mark.parametrize("change, word", [({"sequence": "se"}, "sequences"),
                                          ({"grid": {"TE": np.array(TE), "TI": np.array([2200.0, 2500.0, 2800.0])}}, "TI")])
def test_other_grid_or_sequence_is_refused(change, word):
    a = _run("a", lambda ci, te, ti: 0.5)
    b = _run("b", lambda ci, te, ti: 0.5, **change)
    with pytest.raises(InputError, match=word):
        compare_runs(a, b)


def test_write_comparison_files(tmp_path):
    a = _run("a", lambda ci, te, ti: 0.2)
    b = _run("b", lambda ci, te, ti: 0.7)
    res = write_comparison(a, b, tmp_path, links={"a": "a/report.html"})
    doc = json.loads((tmp_path / "compare.json").read_text(encoding="utf-8"))
    assert doc["metrics"]["lesion_f1"]["summary"]["mean_diff"] == pytest.approx(0.5)
    html = (tmp_path / "compare.html").read_text(encoding="utf-8")
    assert "a/report.html" in html and "0.500" in html and html.count("data:image/png;base64,") == 2
    assert (tmp_path / "compare_lesion_f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(res["paths"]) == {"compare_lesion_f1.png", "compare_dice.png", "json", "html"}
    assert not list(tmp_path.glob("*.tmp*"))
