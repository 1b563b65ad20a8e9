"""Run-time summary of a stress test (inference share, overhead, worker efficiency) and its place in the report."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from neuroshift.stress.report import write_report
from neuroshift.stress.runner import run_stress_test
from neuroshift.stress.timing import TIMING_FILE, read_calls, record_call, run_timing, timing_lines

from helpers.stress_engine import PassThroughSimulator, QuadraticF1Model, memory_case


def _fake_run(tmp_path, records):
    return SimpleNamespace(outdir=tmp_path, records=records)


def test_shares_from_literal_timings(tmp_path):
    recs = [{"timing": {"predict_s": 3.0, "simulate_s": 0.5, "metrics_s": 0.25, "fit_s": 1.0}},
            {"timing": {"predict_s": 3.0, "simulate_s": 0.5, "metrics_s": 0.25, "shared_read_s": 0.5}}]
    record_call(tmp_path, wall_s=5.0, workers=2, threads_per_worker=1, computed=2)
    t = run_timing(_fake_run(tmp_path, recs))
    # worker time 5 s x 2 workers = 10 s; inference 6 s; point work 6 + 1 + 0.5 + 1 + 0.5 = 9 s
    assert t["worker_s"] == 10.0 and t["predict_s"] == 6.0
    assert t["inference_share"] == pytest.approx(0.6) and t["overhead_s"] == pytest.approx(4.0)
    assert t["other_s"] == pytest.approx(1.0) and t["worker_efficiency"] == pytest.approx(0.9)
    assert t["complete"] is True
    text = "\n".join(timing_lines(t))
    assert "60.0 % of worker time" in text and "worker efficiency (points' own work / worker time): 90.0 %" in text
    # a second (resumed) call adds its wall time; a missing file gives no shares
    record_call(tmp_path, wall_s=1.0, workers=1, threads_per_worker=0, computed=0, interrupted=True)
    assert [c["interrupted"] for c in read_calls(tmp_path)] == [False, True]
    assert run_timing(_fake_run(tmp_path, recs))["worker_s"] == 11.0
    assert "inference_share" not in run_timing(_fake_run(tmp_path / "none", recs))


def test_run_records_its_calls_and_report_states_shares(tmp_path):
    out = tmp_path / "run"
    run = run_stress_test([memory_case("a")], QuadraticF1Model(), "TE=60:140:2,TI=2100:2900:2", out,
                          simulator=PassThroughSimulator())
    calls = json.loads((out / TIMING_FILE).read_text())["calls"]
    assert len(calls) == 1 and calls[0]["workers"] == 1 and calls[0]["points_computed"] == 5
    t = run_timing(run)
    parts = sum(t[k] for k in ("predict_s", "simulate_s", "metrics_s", "fit_s", "shared_read_s"))
    assert t["points"] == 5 and 0 < parts <= t["worker_s"] == calls[0]["wall_s"]
    assert t["inference_share"] == pytest.approx(t["predict_s"] / t["worker_s"])
    # resuming computes nothing and records no call
    run_stress_test([memory_case("a")], QuadraticF1Model(), "TE=60:140:2,TI=2100:2900:2", out,
                    simulator=PassThroughSimulator())
    assert len(read_calls(out)) == 1
    write_report(run, out)
    html = (out / "report.html").read_text()
    assert "<h2>Run time</h2>" in html and "of worker time" in html and "worker efficiency" in html


def test_worker_timeline_from_literal_spans():
    from neuroshift.stress.timing import worker_timeline

    def rec(pid, a, b):
        return {"timing": {"pid": pid, "began_unix_s": 1000.0 + a, "ended_unix_s": 1000.0 + b}}

    # call 1000-1020 s; worker 1: points 3-8, 8.5-14 (gap 0.5, tail 6); worker 2: 4-10, 10-19 (tail 1)
    recs = [rec(1, 8.5, 14.0), rec(1, 3.0, 8.0), rec(2, 4.0, 10.0), rec(2, 10.0, 19.0), {"timing": {"fit_s": 1.0}}]
    t = worker_timeline(recs, 1000.0, 1020.0)
    assert t == {"processes": 2, "startup_s": 7.0, "gaps_s": 0.5, "tail_s": 7.0, "points_s": 25.5}
    # start-up + gaps + tail + points = processes x wall time
    assert t["startup_s"] + t["gaps_s"] + t["tail_s"] + t["points_s"] == 2 * 20.0
    assert worker_timeline([], 0.0, 1.0)["processes"] == 0
