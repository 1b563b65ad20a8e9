"""Stress-test worker model: with worker processes every case is read and fitted once (by the parent); the
workers start with the run and load the model before their first point."""

from __future__ import annotations

import os

import numpy as np

from neuroshift.stress import runner
from neuroshift.stress.runner import run_stress_test
from neuroshift.stress.worker import shared_object, warm_up

from helpers.stress_engine import QuadraticF1Model, by_key, memory_case

GRID = "TE=60:140:3,TI=2100:2900:3"


class FitCountingSimulator:
    """Pass-through simulator that logs every fit (pid and case) to a file, across processes."""

    def __init__(self, log):
        self.log = str(log)

    def fit(self, case, sequence):
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {case.case_id}\n")
        return {"fitted_for": case.case_id, "weights": np.arange(1000.0)}

    def render(self, fitted, case, target, shifts, *, seed):
        assert fitted["fitted_for"] == case.case_id and fitted["weights"][-1] == 999.0
        return case.image.with_data(np.array(case.image.data, dtype=np.float32))


def test_workers_share_one_fit_per_case(tmp_path):
    cases = [memory_case("a"), memory_case("b", te=80, ti=2300)]
    serial = run_stress_test(cases, QuadraticF1Model(), GRID, tmp_path / "s",
                             simulator=FitCountingSimulator(tmp_path / "serial.log"))
    par = run_stress_test(cases, LoadLoggingModel(tmp_path / "model.log"), GRID, tmp_path / "p",
                          simulator=FitCountingSimulator(tmp_path / "par.log"), workers=2)
    assert by_key(par) == by_key(serial) and len(par.records) == 20
    # the workers started with the run and loaded the model before their first point (2 cases x 10 + 2 real)
    check_each_worker_loaded_the_model_once_before_its_first_point(tmp_path / "model.log", 22)
    fits = (tmp_path / "par.log").read_text().split("\n")[:-1]
    # one fit per case, both in this (the parent) process: the workers never refit
    assert sorted(f.split()[1] for f in fits) == ["a", "b"]
    assert {f.split()[0] for f in fits} == {str(os.getpid())}
    # the fit time is reported once per case
    for cid in ("a", "b"):
        assert sum(r["timing"]["fit_s"] > 0 for r in par.records if r["case"] == cid) == 1
    assert not list(tmp_path.glob("p/*.pkl"))


def test_thread_budget_is_split_between_workers(monkeypatch):
    import neuroshift.threads as th

    monkeypatch.setattr(th, "available_cores", lambda: 8)
    assert [runner.worker_threads(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


class Fitted:
    """A fitted model of a class outside NeuroShift: the pickle-free hand-over refuses it."""

    def __init__(self, case_id):
        self.case_id = case_id


class ForeignFitSimulator(FitCountingSimulator):
    def fit(self, case, sequence):
        super().fit(case, sequence)
        return Fitted(case.case_id)

    def render(self, fitted, case, target, shifts, *, seed):
        assert fitted.case_id == case.case_id
        return case.image.with_data(np.array(case.image.data, dtype=np.float32))


def test_shared_case_is_read_by_workers_and_foreign_fits_fall_back(tmp_path):
    cases = [memory_case("a"), memory_case("b", te=80, ti=2300)]
    serial = run_stress_test(cases, QuadraticF1Model(), GRID, tmp_path / "s",
                             simulator=FitCountingSimulator(tmp_path / "serial.log"))
    par = run_stress_test(cases, QuadraticF1Model(), GRID, tmp_path / "p",
                          simulator=FitCountingSimulator(tmp_path / "par.log"), workers=2)
    # each worker read each case it evaluated from the parent's file at most once (2 workers x 2 cases)
    reads = [r["timing"]["shared_read_s"] for r in par.records if "shared_read_s" in r["timing"]]
    assert 2 <= len(reads) <= 4 and min(reads) > 0
    # a fitted model of a foreign class is not shared: workers read and fit the case themselves, same results
    foreign = run_stress_test(cases, QuadraticF1Model(), GRID, tmp_path / "f",
                              simulator=ForeignFitSimulator(tmp_path / "foreign.log"), workers=2)
    assert by_key(foreign) == by_key(serial) and len(foreign.records) == 20
    fits = [f.split() for f in (tmp_path / "foreign.log").read_text().split("\n")[:-1]]
    assert any(pid != str(os.getpid()) for pid, _ in fits)  # some fits ran in worker processes
    assert not any("shared_read_s" in r["timing"] for r in foreign.records)


class LoadLoggingModel(QuadraticF1Model):
    """Logs ``load <pid>`` and ``predict <pid> <loaded?>`` lines to a file, across processes."""

    def __init__(self, log):
        self.log = str(log)
        self.loaded = False

    def _write(self, text):
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")

    def load(self):
        if not self.loaded:
            self._write(f"load {os.getpid()}")
            self.loaded = True

    def predict(self, inputs, *, case_id=""):
        self._write(f"predict {os.getpid()} {int(self.loaded)}")
        return super().predict(inputs, case_id=case_id)


def check_each_worker_loaded_the_model_once_before_its_first_point(log, n_predictions: int) -> None:
    """From a :class:`LoadLoggingModel` log of a run with 2 workers (used by test_perf_stress.py)."""
    lines = [ln.split() for ln in log.read_text().splitlines()]
    loads = [pid for kind, pid, *_ in lines if kind == "load"]
    predicts = [(pid, flag) for kind, pid, *rest in lines if kind == "predict" for flag in rest]
    assert len(loads) == 2 == len(set(loads)) and str(os.getpid()) not in loads  # once in each worker
    assert len(predicts) == n_predictions
    assert {flag for _, flag in predicts} == {"1"} and {pid for pid, _ in predicts} <= set(loads)


class FailingLoad(QuadraticF1Model):
    def load(self):
        raise RuntimeError("no weights here")


def test_warm_up_keeps_the_run_objects_and_leaves_a_failure_to_the_points():
    model, sim = LoadLoggingModel(os.devnull), object()
    warm_up("tok-warm", model, sim)
    assert model.loaded and shared_object("tok-warm", "model", None) is model
    assert shared_object("tok-warm", "simulator", None) is sim
    warm_up("tok-fail", FailingLoad(), sim)  # does not raise: the first point reports the error
