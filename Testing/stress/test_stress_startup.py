"""Stress-test worker start-up: a fork server imports torch / the kernels once for all workers, every worker
starts with the run, each reports when its initialiser ran, and the results stay those of the serial run."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from neuroshift.errors import InputError
from neuroshift.stress.executors import START_METHOD_ENV, preload_modules, start_workers, worker_context
from neuroshift.stress.models import PackageModel
from neuroshift.stress.runner import run_stress_test
from neuroshift.stress.simulator import PhysicsSimulator
from neuroshift.stress.timing import worker_timeline

from helpers.stress_engine import PassThroughSimulator, QuadraticF1Model, by_key, memory_case

GRID = "TE=60:140:3,TI=2100:2900:3"
FORKSERVER = sys.platform.startswith("linux")  # where the workers are forked by a fork server


def test_preload_follows_the_model_and_simulator_kinds():
    package = PackageModel(path="unused")
    assert preload_modules(package, PhysicsSimulator()) == ["neuroshift.stress.preload_torch",
                                                            "neuroshift.stress.preload_physics"]
    assert preload_modules(package, PassThroughSimulator()) == ["neuroshift.stress.preload_torch"]
    assert preload_modules(QuadraticF1Model(), PhysicsSimulator()) == ["neuroshift.stress.preload_physics"]
    assert preload_modules(QuadraticF1Model(), PassThroughSimulator()) == []


def test_start_method_choice(monkeypatch):
    monkeypatch.setenv(START_METHOD_ENV, "spawn")
    assert worker_context(QuadraticF1Model(), PassThroughSimulator()).get_start_method() == "spawn"
    monkeypatch.setenv(START_METHOD_ENV, "fork")  # plain fork of a parent that may have run torch: refused
    with pytest.raises(InputError, match="NEUROSHIFT_STRESS_START='fork': use forkserver or spawn"):
        worker_context(QuadraticF1Model(), PassThroughSimulator())
    monkeypatch.delenv(START_METHOD_ENV)
    expected = "forkserver" if FORKSERVER else "spawn"
    assert worker_context(QuadraticF1Model(), PassThroughSimulator()).get_start_method() == expected


@pytest.mark.skipif(not FORKSERVER, reason="workers are spawned on this platform")
def test_start_workers_starts_every_worker_at_once():
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=3, mp_context=ctx) as ex:
        ex.submit(int).result()  # what a single early job does: one worker
        assert len(ex._processes) == 1
    with ProcessPoolExecutor(max_workers=3, mp_context=ctx) as ex:
        start_workers(ex, 3).join(timeout=60)
        assert len(ex._processes) == 3


@pytest.mark.skipif(not FORKSERVER, reason="workers are spawned on this platform")
def test_workers_are_forks_of_a_server_that_imported_the_kernels(tmp_path):
    # a fresh interpreter: this test process may already run a fork server (started by another test, other modules)
    script = textwrap.dedent("""
        import os, sys
        from concurrent.futures import ProcessPoolExecutor
        from neuroshift.stress.executors import worker_context
        from neuroshift.stress.simulator import PhysicsSimulator

        def probe():
            return "neuroshift.stress.preload_physics" in sys.modules, "numba" in sys.modules, os.getppid()

        if __name__ == "__main__":
            ctx = worker_context(object(), PhysicsSimulator())
            with ProcessPoolExecutor(2, mp_context=ctx) as ex:
                found, numba, ppid = ex.submit(probe).result()
            print(ctx.get_start_method(), found, numba, "numba" in sys.modules, ppid == os.getpid())
    """)
    (tmp_path / "probe.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    env.pop(START_METHOD_ENV, None)
    out = subprocess.run([sys.executable, str(tmp_path / "probe.py")], capture_output=True, text=True, env=env,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    # the worker found the kernels already imported (by the server it was forked from); the parent never imported
    # numba, and the worker is not the parent's own child
    assert out.stdout.split() == ["forkserver", "True", "True", "False", "False"]


@pytest.mark.parametrize("method", ["forkserver", "spawn"] if FORKSERVER else ["spawn"])
def test_each_worker_reports_its_start_up_and_results_match_the_serial_run(tmp_path, monkeypatch, method):
    cases = [memory_case("a"), memory_case("b", te=80, ti=2300)]
    serial = run_stress_test(cases, QuadraticF1Model(), GRID, tmp_path / "s", simulator=PassThroughSimulator())
    monkeypatch.setenv(START_METHOD_ENV, method)
    par = run_stress_test(cases, QuadraticF1Model(), GRID, tmp_path / "p", simulator=PassThroughSimulator(),
                          workers=2)
    assert by_key(par) == by_key(serial) and len(par.records) == 20
    timings = [r["timing"] for r in par.records]
    first = [t for t in timings if "worker_init_unix_s" in t]
    pids = {t["pid"] for t in timings}
    # exactly one record per worker process carries its start-up, and it is that worker's first point
    assert sorted(t["pid"] for t in first) == sorted(pids) and os.getpid() not in pids
    for t in first:
        assert t["worker_init_unix_s"] <= t["worker_ready_unix_s"] <= t["began_unix_s"]
        assert t["began_unix_s"] == min(u["began_unix_s"] for u in timings if u["pid"] == t["pid"])
    assert not any("worker_init_unix_s" in r["timing"] for r in serial.records)


def test_worker_timeline_splits_start_up_from_literal_times():
    def rec(pid, a, b, init=None):
        t = {"pid": pid, "began_unix_s": 1000.0 + a, "ended_unix_s": 1000.0 + b}
        if init is not None:
            t.update(worker_init_unix_s=1000.0 + init[0], worker_ready_unix_s=1000.0 + init[1])
        return {"timing": t}

    # call 1000-1020 s. Worker 1: initialiser 1.5-2.0 s, first point at 3 s -> 1.5 + 0.5 + 1.0.
    # Worker 2: initialiser 0.5-6.0 s but first point at 4 s -> clamped: 0.5 + 3.5 + 0. Worker 3: no split.
    recs = [rec(1, 3.0, 8.0, (1.5, 2.0)), rec(1, 8.0, 20.0), rec(2, 4.0, 20.0, (0.5, 6.0)), rec(3, 5.0, 20.0)]
    t = worker_timeline(recs, 1000.0, 1020.0)
    assert t["startup_s"] == 12.0 and t["startup_split_processes"] == 2
    assert (t["startup_process_s"], t["startup_init_s"], t["startup_wait_s"]) == (2.0, 4.0, 1.0)
    assert "startup_split_processes" not in worker_timeline([rec(3, 5.0, 20.0)], 1000.0, 1020.0)


def test_run_records_the_workers_timeline_and_the_report_states_it(tmp_path):
    import json

    from neuroshift.stress.timing import TIMING_FILE, run_timing, timing_lines

    par = run_stress_test([memory_case("a")], QuadraticF1Model(), GRID, tmp_path / "p",
                          simulator=PassThroughSimulator(), workers=2)
    call = json.loads((tmp_path / "p" / TIMING_FILE).read_text())["calls"][0]
    tl = call["timeline"]
    assert tl["processes"] == 2 == tl["startup_split_processes"]
    # start-up + gaps + idle tail + points = 2 processes x the call's wall time (rounded to 0.1 ms each)
    assert tl["startup_s"] + tl["gaps_s"] + tl["tail_s"] + tl["points_s"] == pytest.approx(2 * call["wall_s"], abs=0.02)
    assert tl["startup_process_s"] + tl["startup_init_s"] + tl["startup_wait_s"] == pytest.approx(tl["startup_s"],
                                                                                                  abs=1e-3)
    assert run_timing(par)["timeline"]["startup_s"] == pytest.approx(tl["startup_s"])
    serial = run_stress_test([memory_case("a")], QuadraticF1Model(), GRID, tmp_path / "s",
                             simulator=PassThroughSimulator())
    assert "timeline" not in json.loads((tmp_path / "s" / TIMING_FILE).read_text())["calls"][0]
    assert "timeline" not in run_timing(serial)
    # the report's line, from literal figures
    t = {"worker_s": 40.0, "wall_s": 20.0, "calls": 1, "workers": [2], "points": 50, "predict_s": 30.0,
         "overhead_s": 10.0, "other_s": 8.0, "worker_efficiency": 0.8,
         "timeline": {"startup_s": 4.0, "startup_split_processes": 2, "startup_process_s": 3.0,
                      "startup_init_s": 0.5, "startup_wait_s": 0.5, "tail_s": 0.4}}
    assert ("    of which worker processes before their first point 4.0 s = 10.0 % (process start 3.0 s, initialiser "
            "0.5 s, waiting for the first case 0.5 s), idle at the end 0.4 s = 1.0 %") in timing_lines(t)
