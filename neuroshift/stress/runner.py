"""The stress-test engine: every case × grid point simulated, segmented and scored, resumably.

For each case the tissue model is fitted once (per worker process) and reused
for all its grid points. Each finished point is appended to
``OUTDIR/points.jsonl`` at once (see :mod:`neuroshift.stress.store`), so an
interrupted run (Ctrl-C, a crash, a Cancel in Slicer) keeps every finished
point and a rerun computes only the missing ones.

Per case the **baseline** point (the case's own parameters) is included: the
image simulated there is compared with the unsimulated image (max |difference|
reported; the tissue-wise model reproduces it bit for bit) and the model is run
on both, so the report shows the real image's metrics beside its simulated twin.

A bad case (missing mask, grids that differ, a parameter the sequence needs but
nobody gave, a file that cannot be read) is recorded with its message and the
run goes on with the others. A model that fails on one point is recorded for
that point only.

Execution: in-process (``workers=1``), local worker processes
(``workers=N``, :mod:`concurrent.futures`, see :mod:`neuroshift.stress.executors`), or a Dask cluster (``scheduler=``
an address such as ``tcp://host:8786`` or a ``dask.distributed.Client``); the
workers need NeuroShift installed and the case files at the same paths. All
three give the same records. The simulator, the model and the metric function
are injected, so tests run the whole engine with synthetic ones. Per point the work is done by
:mod:`neuroshift.stress.worker`; each call records its wall time and workers in ``OUTDIR/timing.json``
(:mod:`neuroshift.stress.timing`: inference share, overhead, worker efficiency for the report).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..progress import ProgressCallback, report
from .cases import Case, LoadedCase, load_cases
from .executors import run_dask, run_processes, worker_threads
from .models import describe, resolve_model
from .simulator import PhysicsSimulator, point_key, stress_grid
from .store import ResultStore
from .worker import BASELINE, METRICS, MetricFunction, evaluate_points, init_worker, mask_metrics, release

_init_worker = init_worker  # former name (bench/stress.py and older scripts)


# --------------------------------------------------------------------------- results
@dataclass
class StressRun:
    """What a stress test produced: the records of its cases (finished now or before) and failures."""

    outdir: Path
    sequence: str
    grid: dict[str, np.ndarray]
    model_name: str
    case_ids: list[str]
    records: list[dict]                  #: status "ok" records, case order then grid order (baseline first)
    failures: list[dict]                 #: failed cases ("point" = "*") and failed points
    computed: int = 0                    #: points computed by this call (the rest came from the store)
    notes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def axes(self) -> list[str]:
        return list(self.grid)

    def grid_records(self) -> list[dict]:
        return [r for r in self.records if not r.get("baseline")]

    def baseline_records(self) -> list[dict]:
        return [r for r in self.records if r.get("baseline")]

    def failed_cases(self) -> list[dict]:
        return [f for f in self.failures if f.get("point") == "*"]


# --------------------------------------------------------------------------- driver
def run_stress_test(cases: str | os.PathLike | Sequence[Case | LoadedCase], model: Any, grid: str | Mapping,
                    outdir: str | os.PathLike, *, sequence: str = "flair", simulator=None,
                    metrics: MetricFunction | None = None, workers: int = 1, scheduler: Any = None,
                    progress: ProgressCallback | None = None, restart: bool = False, baseline: bool = True,
                    device: str = "auto", confirm: Callable[[int, Any, Any], None] | None = None) -> StressRun:
    """Run (or resume) a stress test; every finished point is in ``OUTDIR/points.jsonl``.

    ``cases``: a folder / CSV (see :mod:`neuroshift.stress.cases`) or a list of cases.
    ``model``: ``--model`` text (package name or folder, ``cmd:TEMPLATE``) or a model object.
    ``grid``: text such as ``TE=84:150:7,TI=2200:2900:7`` or ``{axis: values}`` (ms, degrees, tesla).
    ``simulator``: default :class:`PhysicsSimulator`. ``metrics``: ``(pred, gt) -> dict`` (default
    :func:`mask_metrics`). ``progress`` may raise :class:`~neuroshift.progress.Cancelled` to stop.
    ``confirm(n_pending, model, first_pending_case)`` is called before anything is written (e.g. to
    estimate the cost and refuse by raising); ``n_pending`` counts the points not finished yet.
    """
    seq = sequence.lower()
    axes_grid = stress_grid(grid, seq)
    axes = list(axes_grid)
    case_list = load_cases(cases, sequence=seq) if isinstance(cases, (str, os.PathLike)) else list(cases)
    if not case_list:
        raise InputError("no cases to test")
    ids = [c.case_id for c in case_list]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(f"case ids must be unique; repeated: {', '.join(dupes)}")
    model_obj = resolve_model(model, device=device, sequence=seq)
    simulator = simulator if simulator is not None else PhysicsSimulator()
    from ..simulate.grid import grid_points

    points = [(point_key(p), p) for p in grid_points(axes_grid)]
    items: list[tuple[str, dict | None]] = ([(BASELINE, None)] if baseline else []) + points

    store = ResultStore(outdir)
    if confirm is not None:  # before anything is written, so that a refusal leaves no output
        ok = set() if restart else {k for k, r in store.load().items() if r.get("status") == "ok"}
        pending = [c for c in case_list for key, _ in items if f"{c.case_id}|{key}" not in ok]
        confirm(len(pending), model_obj, pending[0] if pending else None)
    store.open({"sequence": seq, "grid": {k: v.tolist() for k, v in axes_grid.items()},
                "model": describe(model_obj), "simulator": type(simulator).__name__,
                "metrics": getattr(metrics, "__name__", "mask_metrics"), "baseline": baseline},
               restart=restart)
    done = store.load()
    total = len(case_list) * len(items)
    jobs = []  # (case, [(key, point), ...]) one point per job; the fitted model is cached per process
    finished = 0
    for case in case_list:
        for key, point in items:
            if done.get(f"{case.case_id}|{key}", {}).get("status") == "ok":
                finished += 1
            else:
                jobs.append((case, [(key, point)]))
    token = f"{os.getpid()}-{time.time_ns()}"
    state = {"finished": finished, "computed": 0}
    failed_cases: set[str] = set()
    timings: list[dict] = []  # this call's per-point timing (process, start, end): the workers' timeline

    def accept(records: list[dict]) -> None:
        fresh = []
        for rec in records:
            if rec["case"] in failed_cases:
                continue
            if rec["status"] == "case_failed":
                failed_cases.add(rec["case"])
            fresh.append(rec)
        store.append(fresh)
        timings.extend({"timing": rec["timing"]} for rec in fresh if "timing" in rec)
        for rec in fresh:
            state["finished"] += len(items) if rec["status"] == "case_failed" else 1
            state["computed"] += rec["status"] == "ok"
        last = fresh[-1] if fresh else records[-1]
        report(progress, state["finished"] / total, f"{last['case']} {last['point']}")

    report(progress, finished / total, f"{finished} of {total} points already finished" if finished else "starting")
    common = (seq, model_obj, simulator, metrics, axes)  # evaluate_points arguments after token and case
    parallel = scheduler is None and workers > 1 and len(jobs) > 1
    t_start, u_start, interrupted = time.perf_counter(), time.time(), True
    try:
        if scheduler is not None:
            run_dask(scheduler, token, jobs, common, accept, failed_cases)
        elif parallel:
            run_processes(workers, token, jobs, common, accept, failed_cases)
        else:
            for case, its in jobs:
                if case.case_id not in failed_cases:
                    accept(evaluate_points(token, case, *common, its))
        interrupted = False
    finally:
        release(token)  # this run's cached cases and objects are no longer needed in this process
        if jobs:
            from ..threads import available_cores
            from .timing import record_call, worker_timeline

            try:  # a failure to record the timing must not hide the run's own outcome
                record_call(outdir, wall_s=time.perf_counter() - t_start, workers=workers if parallel else 1,
                            threads_per_worker=worker_threads(workers) if parallel else 0,
                            computed=state["computed"], interrupted=interrupted, cores=available_cores(),
                            executor="dask" if scheduler is not None else "processes" if parallel else "in-process",
                            timeline=worker_timeline(timings, u_start, time.time()) if parallel else None)
            except OSError:
                pass
    report(progress, 1.0, "done")
    return collect(store, case_list, items, axes_grid, seq, describe(model_obj), computed=state["computed"])


def collect(store: ResultStore, case_list, items, grid, sequence: str, model_name: str, *,
            computed: int = 0) -> StressRun:
    """The run's records from the store, in case and grid order."""
    done = store.load()
    records, failures, notes = [], [], {}
    for case in case_list:
        cid = case.case_id
        case_failure = done.get(f"{cid}|*")
        recs = [done.get(f"{cid}|{key}") for key, _ in items]
        ok = [r for r in recs if r and r.get("status") == "ok"]
        records.extend(ok)
        failures.extend(r for r in recs if r and r.get("status") == "failed")
        if case_failure is not None and len(ok) < len(items):
            failures.append(case_failure)
        for r in ok:
            for n in r.get("notes", []):
                notes.setdefault(cid, [])
                if n not in notes[cid]:
                    notes[cid].append(n)
    return StressRun(Path(store.outdir), sequence, grid, model_name, [c.case_id for c in case_list], records,
                     failures, computed, notes)


def load_run(outdir: str | os.PathLike) -> StressRun:
    """The results already in a stress-test folder (e.g. after a background run), without running anything."""
    import json
    from types import SimpleNamespace

    from ..errors import UnreadableFileError
    from ..simulate.grid import grid_points

    store = ResultStore(outdir)
    if not store.run_path.is_file():
        raise UnreadableFileError(f"{outdir}: no stress-test results here (run.json is missing)")
    fp = json.loads(store.run_path.read_text(encoding="utf-8"))
    grid = {k: np.asarray(v, dtype=np.float64) for k, v in fp["grid"].items()}
    items = ([(BASELINE, None)] if fp.get("baseline", True) else []) + [(point_key(p), p) for p in grid_points(grid)]
    case_ids: list[str] = []
    for rec in store.load().values():
        if rec.get("case") not in case_ids:
            case_ids.append(rec["case"])
    cases = [SimpleNamespace(case_id=c) for c in case_ids]
    return collect(store, cases, items, grid, fp["sequence"], fp["model"])


__all__ = ["BASELINE", "METRICS", "StressRun", "collect", "evaluate_points", "load_run", "mask_metrics",
           "run_stress_test", "worker_threads"]
